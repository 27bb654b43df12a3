"""Point labels of a chart that overlap neither each other nor any point: each label goes to the first free place on
rings of growing radius around its point (a leader line joins it to a far one), else to the nearest free place in the
axes; the same overlap test checks a drawn chart (:func:`overlapping_labels`).

Boxes are measured as drawn, in display pixels, so a chart's layout must be final (axes placed, limits set) before
its labels are placed, and it must be saved at the figure's own dpi.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

__all__ = ["LABEL_GID", "boxes_overlap", "label_boxes", "overlapping_labels", "place_labels"]

#: The ``gid`` of every label :func:`place_labels` draws (how :func:`label_boxes` finds them).
LABEL_GID = "point-label"
# (dx, dy) directions tried on each ring, the upper right first: labels read best there
_DIRECTIONS = ((1, 1), (-1, 1), (1, -1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_RADII_PT = (4, 8, 13, 19, 26, 35, 46, 60, 78, 100)
_LEADER_FROM_PT = 13  # labels this far (points) or farther get a leader line to their point
_PAD_PX = 1.0  # the gap kept between boxes while placing, so that rounding when saving cannot make them touch


def boxes_overlap(a: Bbox, b: Bbox, pad: float = 0.0) -> bool:
    """Whether two boxes overlap once each is grown by ``pad`` on every side (touching edges do not overlap).

    Example::

        >>> boxes_overlap(Bbox.from_extents(0, 0, 2, 2), Bbox.from_extents(1, 1, 3, 3))
        True
        >>> boxes_overlap(Bbox.from_extents(0, 0, 2, 2), Bbox.from_extents(2, 0, 4, 2))
        False
        >>> boxes_overlap(Bbox.from_extents(0, 0, 2, 2), Bbox.from_extents(2, 0, 4, 2), pad=0.5)
        True
    """
    return bool(a.x0 - pad < b.x1 + pad and b.x0 - pad < a.x1 + pad
                and a.y0 - pad < b.y1 + pad and b.y0 - pad < a.y1 + pad)


def _text_box(label: Annotation, renderer: Any) -> Bbox:
    # the text alone: a leader line may cross other labels' leader lines, never their text
    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def label_boxes(ax: Any) -> List[Tuple[str, Bbox]]:
    """The text and drawn box (display pixels, without the leader line) of every label :func:`place_labels` put on
    ``ax``."""
    renderer = ax.figure.canvas.get_renderer()
    return [(t.get_text(), _text_box(t, renderer)) for t in ax.texts
            if isinstance(t, Annotation) and t.get_gid() == LABEL_GID]


def overlapping_labels(ax: Any) -> List[Tuple[str, str]]:
    """The pairs of labels on ``ax`` whose drawn boxes overlap (empty: none do)."""
    boxes = label_boxes(ax)
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if boxes_overlap(box_a, box_b)]


def _alignment(dx: float, dy: float) -> Tuple[str, str]:
    return ("left" if dx > 0 else "right" if dx < 0 else "center",
            "bottom" if dy > 0 else "top" if dy < 0 else "center")


def _free(box: Bbox, inside: Bbox, taken: Sequence[Bbox]) -> bool:
    return (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            and not any(boxes_overlap(box, other, _PAD_PX) for other in taken))


def _offsets(point: Tuple[float, float], area: Bbox, step_px: float, px_per_pt: float):
    """Offsets (points) to try: the rings around the point, then a grid over the whole area, nearest first."""
    for radius in _RADII_PT:
        for dx, dy in _DIRECTIONS:
            scale = radius / math.hypot(dx, dy) if dx and dy else radius
            yield dx * scale, dy * scale
    cells = [((area.x0 + (i + 0.5) * step_px - point[0]) / px_per_pt, (area.y0 + (j + 0.5) * step_px - point[1])
              / px_per_pt) for i in range(int(area.width // step_px)) for j in range(int(area.height // step_px))]
    yield from sorted(cells, key=lambda c: math.hypot(*c))


def place_labels(
    ax: Any,
    points: Sequence[Tuple[float, float]],
    texts: Sequence[str],
    fontsize: float = 7.0,
    marker_pt: float = 5.0,
    colour: str = "0.15",
) -> List[Annotation]:
    """Label each point (data coordinates) of ``ax`` with its text, no label overlapping another label or any point's
    marker (a square of ``2 * marker_pt`` points around it), every label inside the axes.

    Args:
        ax: the axes, with its final position and limits.
        points: the points, in data coordinates.
        texts: one label per point.
        fontsize: the labels' font size (points).
        marker_pt: half the side of the square each marker is taken to cover (points).
        colour: the labels' colour.

    Returns:
        The labels (annotations with ``gid`` :data:`LABEL_GID`), in the order of ``points``.

    Raises:
        ValueError: ``points`` and ``texts`` differ in length.
        RuntimeError: the axes have no free place left for a label.
    """
    if len(points) != len(texts):
        raise ValueError(f"place_labels: {len(points)} points but {len(texts)} texts.")
    figure = ax.figure
    renderer = figure.canvas.get_renderer()
    px_per_pt = figure.dpi / 72.0
    area = ax.get_window_extent(renderer)
    shown = [tuple(ax.transData.transform(p)) for p in points]
    half = marker_pt * px_per_pt
    taken: List[Bbox] = [Bbox.from_extents(x - half, y - half, x + half, y + half) for x, y in shown]
    labels: List[Annotation] = []
    for point, xy, text in zip(shown, points, texts):
        probe = ax.annotate(text, xy, xytext=(0, 0), textcoords="offset points", fontsize=fontsize)
        chosen: Optional[Tuple[float, float]] = None
        for dx, dy in _offsets(point, area, fontsize * px_per_pt, px_per_pt):
            probe.set_horizontalalignment(_alignment(dx, dy)[0])
            probe.set_verticalalignment(_alignment(dx, dy)[1])
            probe.xyann = (dx, dy)
            if _free(_text_box(probe, renderer), area, taken):
                chosen = (dx, dy)
                break
        probe.remove()
        if chosen is None:
            raise RuntimeError(f"place_labels: no free place left in the axes for label {text!r}.")
        far = math.hypot(*chosen) >= _LEADER_FROM_PT
        ha, va = _alignment(*chosen)
        label = ax.annotate(text, xy, xytext=chosen, textcoords="offset points", fontsize=fontsize, color=colour,
                            ha=ha, va=va, gid=LABEL_GID, annotation_clip=False,
                            arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5, "shrinkA": 1, "shrinkB": 3}
                            if far else None)
        taken.append(_text_box(label, renderer))
        labels.append(label)
    return labels
