"""What every picture shares: region colours and line styles, the intensity window, a panel of one slice with its
contours, the legend, and writing a figure to PNG atomically.

Figures are built with matplotlib's object interface on the Agg canvas (``matplotlib.figure.Figure``, never
``pyplot``): no global figure registry, no interactive backend, nothing to close, safe in worker processes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from contourpy import contour_generator
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from raagr2_monai.constants import REGIONS
from raagr2_monai.utils import atomic_write

from .orientation import AxialView

__all__ = [
    "REGION_COLOURS",
    "TRUTH_STYLE",
    "PRED_STYLE",
    "intensity_window",
    "new_figure",
    "save_png",
    "draw_slice",
    "draw_contours",
    "dice_text",
    "legend_handles",
]

#: Contour colour per region, chosen to stand out on grey MRI and from each other.
REGION_COLOURS: dict[str, str] = {"WT": "#2fe65f", "TC": "#ffd21f", "ET": "#ff3b3b"}
#: Line style of ground-truth contours.
TRUTH_STYLE = "solid"
#: Line style of predicted contours.
PRED_STYLE = "dashed"
# WT under TC under ET, so that the innermost region's line is on top where they touch
_DRAW_ORDER = ("WT", "TC", "ET")


def intensity_window(volume: np.ndarray, lower: float = 1.0, upper: float = 99.0) -> tuple[float, float]:
    """The grey-level window of a volume: the ``lower`` and ``upper`` percentiles of its brain voxels (the non-zero
    ones, as BraTS images are skull-stripped with a zero background; every voxel when none is non-zero).

    Returns:
        ``(vmin, vmax)`` with ``vmax > vmin``.

    Example::

        >>> intensity_window(np.array([0.0, 0.0, 1.0, 2.0, 3.0]), 0.0, 100.0)
        (1.0, 3.0)
    """
    values = volume[volume != 0]
    if values.size == 0:
        values = volume.ravel()
    vmin, vmax = (float(v) for v in np.percentile(values, (lower, upper)))
    return vmin, (vmax if vmax > vmin else vmin + 1.0)


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure of ``width`` x ``height`` inches on the Agg canvas; saved, it is ``int(width * dpi)`` by
    ``int(height * dpi)`` pixels (Agg truncates)."""
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` as a PNG at its own size and resolution, atomically (a hidden temporary file beside
    ``path``, then renamed; nothing is left behind when drawing fails).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example::

        save_png(overlay_figure(images, truth, pred, affine), "runs/evaluate/overlays/case.png")
    """
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=figure.dpi), suffix=".png")


def draw_slice(ax: Axes, plane: np.ndarray, window: tuple[float, float], view: AxialView, title: str = "") -> None:
    """An image slice already turned by ``view`` (:meth:`~.orientation.AxialView.slice`), in grey within
    ``window``, with the patient directions at its edges and no axis ticks."""
    ax.imshow(plane, cmap="gray", vmin=window[0], vmax=window[1], aspect=view.aspect, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    top, bottom, left, right = view.edge_labels()
    style = {"transform": ax.transAxes, "color": "white", "fontsize": 7, "fontweight": "bold"}
    ax.text(0.5, 0.99, top, ha="center", va="top", **style)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
    ax.text(0.01, 0.5, left, ha="left", va="center", **style)
    ax.text(0.99, 0.5, right, ha="right", va="center", **style)


def draw_contours(ax: Axes, masks: np.ndarray, linestyle: str = TRUTH_STYLE, linewidth: float = 1.2) -> int:
    """The outline of each region on a displayed slice.

    The outlines are traced by contourpy (matplotlib's contouring engine) at level 0.5 of each mask, through the
    pixel centres as ``imshow`` places them, and drawn as one line collection per region: ``Axes.contour`` builds a
    full contour set per call, which costs ten times more.

    Args:
        ax: the panel, showing a slice turned the same way as ``masks``.
        masks: (3, rows, columns) bool, channels TC, WT, ET, turned for display.
        linestyle: :data:`TRUTH_STYLE` or :data:`PRED_STYLE`.
        linewidth: in points.

    Returns:
        The number of regions outlined (those present on the slice).
    """
    drawn = 0
    for name in _DRAW_ORDER:
        mask = masks[REGIONS.index(name)]
        if not mask.any():
            continue
        # a pad of background closes the outline of a region touching the slice's edge
        lines = contour_generator(z=np.pad(mask, 1).astype(np.float32), line_type="Separate").lines(0.5)
        ax.add_collection(
            LineCollection([line - 1.0 for line in lines], colors=REGION_COLOURS[name], linestyles=linestyle,
                           linewidths=linewidth),
            autolim=False,
        )
        drawn += 1
    return drawn


def dice_text(scores: Mapping[str, float]) -> str:
    """Per-region Dice on one line; ``n/a`` for NaN (region empty on both sides under the official convention).

    Example::

        >>> dice_text({"TC": 0.9123, "WT": 0.95, "ET": float("nan")})
        'Dice TC 0.912 | WT 0.950 | ET n/a'
    """
    parts = [f"{r} {'n/a' if math.isnan(scores[r]) else format(scores[r], '.3f')}" for r in REGIONS if r in scores]
    return "Dice " + " | ".join(parts)


def legend_handles(styles: bool = True) -> list[Line2D]:
    """Legend entries: one per region colour, then (``styles``) the ground-truth and prediction line styles."""
    handles = [Line2D([], [], color=REGION_COLOURS[r], linewidth=2, label=r) for r in _DRAW_ORDER]
    if styles:
        handles += [
            Line2D([], [], color="black", linestyle=TRUTH_STYLE, label="ground truth"),
            Line2D([], [], color="black", linestyle=PRED_STYLE, label="prediction"),
        ]
    return handles
