"""The report's trade-off charts: mean test Dice against non-zero parameters and against batch-1 latency, with the 95 %
confidence interval of each mean Dice, the latency's p25-p75, the Pareto front (higher Dice at lower cost) as a step
line, and one point per model, or per model and inference backend where the benchmark has backend figures.

Points carry their model's number (its place in the report's rows), and a key beside the axes maps numbers to
models: names would not fit beside dozens of points. Each family has its colour and marker (a family the report does
not know gets a spare colour); the hybrid family, the deployable model, is drawn as a large star on both charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from raagr2_monai.visualize.figures import new_figure

from .chart_labels import place_labels

__all__ = [
    "BACKEND_MARKERS",
    "COST_AXES",
    "axis_range",
    "FAMILY_STYLES",
    "CostPoint",
    "cost_points",
    "family_styles",
    "pareto_front",
    "quality_cost_figure",
]

#: Colour and marker of each known family (``ModelSpec.family``).
FAMILY_STYLES: Dict[str, Tuple[str, str]] = {
    "architecture": ("tab:blue", "o"),
    "magnitude": ("tab:orange", "^"),
    "snip": ("tab:green", "v"),
    "depgraph": ("tab:red", "s"),
    "hybrid": ("tab:purple", "*"),
}
_SPARE_COLOURS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
_SPARE_MARKER = "D"
#: Marker of each inference backend on the latency chart (another backend gets a spare one).
BACKEND_MARKERS: Dict[str, str] = {"torch": "o", "onnxruntime": "s", "openvino": "D", "openvino-bf16": "d"}
_SPARE_BACKEND_MARKERS = ("P", "X", "h", "<", ">")
_HYBRID = "hybrid"
_DPI = 110  # the figure's own dpi, also the saved one: labels are placed in pixels

#: The x axis label of each cost of :func:`cost_points`.
COST_AXES: Dict[str, str] = {
    "params": "non-zero parameters (millions)",
    "latency": "latency (ms per {size}x{size} slice, batch 1)",
}


@dataclass(frozen=True)
class CostPoint:
    """One point of a trade-off chart.

    Attributes:
        model: the row's model name; ``number``: its place in the report's rows (from 1), its label on the chart.
        family: the row's family.
        backend: the inference backend of a latency point from the benchmark's backend figures, else ``None``.
        cost: the x value; ``cost_low``, ``cost_high``: its p25 and p75 (latency), else ``None``.
        dice: the mean test Dice; ``ci95``: the half-width of its 95 % confidence interval, ``None`` if unknown.
    """

    model: str
    number: int
    family: str
    backend: Optional[str]
    cost: float
    cost_low: Optional[float]
    cost_high: Optional[float]
    dice: float
    ci95: Optional[float]


def family_styles(families: Sequence[str]) -> Dict[str, Tuple[str, str]]:
    """Colour and marker of each family: :data:`FAMILY_STYLES`, and spare colours (a diamond marker) for the others
    in order of first appearance.

    Example::

        >>> styles = family_styles(["architecture", "distillation", "hybrid", "distillation"])
        >>> styles["distillation"], styles["hybrid"]
        (('tab:brown', 'D'), ('tab:purple', '*'))
    """
    unknown = [f for i, f in enumerate(families) if f not in FAMILY_STYLES and f not in families[:i]]
    styles = {f: FAMILY_STYLES[f] for f in families if f in FAMILY_STYLES}
    styles.update({f: (_SPARE_COLOURS[i % len(_SPARE_COLOURS)], _SPARE_MARKER) for i, f in enumerate(unknown)})
    return styles


def _backend_markers(backends: Sequence[str]) -> Dict[str, str]:
    unknown = [b for b in backends if b not in BACKEND_MARKERS]
    markers = {b: BACKEND_MARKERS[b] for b in backends if b in BACKEND_MARKERS}
    markers.update({b: _SPARE_BACKEND_MARKERS[i % len(_SPARE_BACKEND_MARKERS)] for i, b in enumerate(unknown)})
    return markers


def cost_points(rows: Sequence[Mapping[str, Any]], cost: str) -> Tuple[List[CostPoint], List[str]]:
    """The points of a trade-off chart, and the models left out (no mean Dice, or no cost).

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).
        cost: ``"params"`` (non-zero parameters, millions) or ``"latency"`` (batch-1 median, ms; one point per
            backend of ``cost["latency_b1_backends_ms"]`` where the row has it).

    Returns:
        ``(points, left_out)``.

    Raises:
        ValueError: an unknown ``cost``.
    """
    if cost not in COST_AXES:
        raise ValueError(f"cost_points: cost must be one of {sorted(COST_AXES)}, not {cost!r}.")
    points: List[CostPoint] = []
    left_out: List[str] = []
    for number, row in enumerate(rows, start=1):
        dice, ci95, c = row["quality"]["dice_mean"], row["quality"]["dice_mean_ci95"], row["cost"]
        if cost == "params":
            figures = [(None, c["nonzero_params"] / 1e6, None, None)]
        elif c["latency_b1_backends_ms"]:
            figures = [(b, m, c["latency_b1_backends_p25_ms"][b], c["latency_b1_backends_p75_ms"][b])
                       for b, m in c["latency_b1_backends_ms"].items()]
        else:
            figures = [(None, c["latency_b1_ms"], c["latency_b1_p25_ms"], c["latency_b1_p75_ms"])]
        figures = [f for f in figures if f[1] is not None]
        if dice is None or not figures:
            left_out.append(row["model"])
            continue
        points += [CostPoint(row["model"], number, row["family"], b, x, low, high, dice, ci95)
                   for b, x, low, high in figures]
    return points, left_out


def pareto_front(pairs: Sequence[Tuple[float, float]]) -> List[int]:
    """The indices of the (cost, quality) pairs that no other pair beats (lower or equal cost and higher or equal
    quality, one of them strictly), by increasing cost.

    Example::

        >>> pareto_front([(1.0, 0.5), (2.0, 0.4), (3.0, 0.9), (0.5, 0.2), (3.0, 0.8)])
        [3, 0, 2]
    """
    def beaten(i: int) -> bool:
        x, y = pairs[i]
        return any(u <= x and v >= y and (u < x or v > y) for u, v in pairs)

    return sorted((i for i in range(len(pairs)) if not beaten(i)), key=lambda i: pairs[i])


def axis_range(low: float, high: float) -> Tuple[float, float]:
    """An axis for values from ``low`` to ``high`` (not negative) with a margin of a tenth of their span: from 0,
    unless every value lies well above it (``low`` over 40 % of ``high``); then from a round value below ``low``, and
    the caller's axis label must say so. Both ends are multiples of the power of ten below the span.

    Example::

        >>> axis_range(0.1, 0.8), axis_range(0.78, 0.86), axis_range(0.031, 0.033)
        ((0.0, 0.9), (0.77, 0.87), (0.03, 0.034))
    """
    span = (high - low) or abs(high) or 1.0
    step = 10.0 ** math.floor(math.log10(span))
    bottom = 0.0 if low <= 0.4 * high else math.floor((low - 0.1 * span) / step) * step
    return round(bottom, 12), round(math.ceil((high + 0.1 * span) / step) * step, 12)


def _from(name: str, bottom: float) -> str:
    return "" if bottom == 0 else f"\n{name} axis from {bottom:g}, not from 0"


def _key_text(rows: Sequence[Mapping[str, Any]], left_out: Sequence[str]) -> List[str]:
    return [f"{n:>2}  {r['model']}" + ("  (not shown)" if r["model"] in left_out else "")
            for n, r in enumerate(rows, start=1)]


def quality_cost_figure(rows: Sequence[Mapping[str, Any]], cost: str, size: int, device: str) -> Any:
    """The mean test Dice of every row against its cost, with the Pareto front and a numbered key.

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).
        cost: ``"params"`` or ``"latency"`` (:func:`cost_points`).
        size: the benchmark's in-plane input size (the latency axis's label).
        device: where the latency was measured (the title; backend figures are the CPU's).

    Returns:
        The matplotlib figure, labels placed (save it at its own dpi).
    """
    points, left_out = cost_points(rows, cost)
    families = family_styles([r["family"] for r in rows])
    backends = _backend_markers(sorted({p.backend for p in points if p.backend is not None}))
    key = _key_text(rows, left_out)
    per_column = 32
    columns = max(1, math.ceil(len(key) / per_column))
    width = 9.0 + 1.7 * columns
    fig = new_figure(width, 6.5, _DPI)
    ax = fig.add_axes((1.0 / width, 0.13, 6.7 / width, 0.76))
    latency = cost == "latency"
    ax.set_xlabel(COST_AXES[cost].format(size=size))
    title = "Quality against non-zero parameters" if not latency else (
        f"Quality against latency ({'CPU, per inference backend' if backends else device})")
    ax.set_title(title + "\npoints: mean over test subjects, bars: 95 % CI of the mean Dice"
                 + (", latency p25-p75" if latency else ""), fontsize=9)
    ax.grid(alpha=0.3)
    if not points:
        ax.text(0.5, 0.5, "no model has both a mean Dice and this cost", ha="center", transform=ax.transAxes)
    else:
        bottom, top = axis_range(min(p.dice - (p.ci95 or 0.0) for p in points),
                                 max(p.dice + (p.ci95 or 0.0) for p in points))
        ax.set_ylim(bottom, min(top, 1.0))
        ax.set_ylabel("mean Dice (TC/WT/ET), test subjects" + _from("Dice", bottom))
        left, right = axis_range(min(p.cost_low or p.cost for p in points),
                                 max(p.cost_high or p.cost for p in points))
        ax.set_xlim(left, right)
        ax.set_xlabel(COST_AXES[cost].format(size=size) + _from("cost", left))
        for p in points:
            colour, marker = families[p.family]
            marker = backends[p.backend] if p.backend is not None else marker
            big = p.family == _HYBRID
            xerr = None if p.cost_low is None else [[p.cost - p.cost_low], [p.cost_high - p.cost]]
            ax.errorbar([p.cost], [p.dice], yerr=None if p.ci95 is None else [[p.ci95], [p.ci95]], xerr=xerr,
                        fmt="none", ecolor=colour, alpha=0.45, elinewidth=0.9, capsize=2, gid="dice-ci")
            if big:
                ax.scatter([p.cost], [p.dice], marker="*", s=420, facecolors="none", edgecolors=colour,
                           linewidths=1.4, zorder=4, gid=_HYBRID)
            ax.scatter([p.cost], [p.dice], c=colour, marker=marker, s=110 if big and p.backend is None else 40,
                       edgecolors="white", linewidths=0.5, zorder=5, gid="point")
        front = [points[i] for i in pareto_front([(p.cost, p.dice) for p in points])]
        xs = [p.cost for p in front] + [ax.get_xlim()[1]]
        ax.step(xs, [p.dice for p in front] + [front[-1].dice], where="post", color="black", linewidth=1.0,
                alpha=0.7, zorder=3, gid="pareto-line")
        ax.scatter([p.cost for p in front], [p.dice for p in front], s=170, facecolors="none", edgecolors="black",
                   linewidths=1.0, zorder=6, gid="pareto-points")
        place_labels(ax, [(p.cost, p.dice) for p in points], [str(p.number) for p in points],
                     marker_pt=7.0 if any(p.family == _HYBRID for p in points) else 5.0)
    handles: List[Any] = []
    for family, (colour, marker) in families.items():
        label = f"{family} (deployable)" if family == _HYBRID else family
        if backends and family != _HYBRID:
            # the marker is the backend's: a family is its colour alone (the hybrid keeps its star)
            handles.append(Patch(facecolor=colour, label=label))
        else:
            handles.append(Line2D([], [], color=colour, marker=marker, linestyle="",
                                  markersize=11 if family == _HYBRID else 7, label=label))
    handles += [Line2D([], [], color="0.4", marker=m, linestyle="", label=f"backend: {b}") for b, m in backends.items()]
    handles += [Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=10,
                       label="Pareto front (higher Dice, lower cost)")]
    legend = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(8.0 / width, 0.95), fontsize=8,
                        frameon=False)
    legend_height = legend.get_window_extent(fig.canvas.get_renderer()).height / fig.bbox.height
    for column in range(columns):
        fig.text((8.0 + 1.7 * column) / width, 0.93 - legend_height - 0.03,
                 "\n".join(["number  model"] * (column == 0) + key[column * per_column:(column + 1) * per_column]),
                 va="top", ha="left", fontsize=7, family="monospace")
    return fig
