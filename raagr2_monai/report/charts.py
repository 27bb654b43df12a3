"""The report's charts (PNG): quality against non-zero parameters and against latency (:mod:`.tradeoff`), each
model's paired difference to the baseline (:mod:`.paired`), per-region Dice with the 95 % confidence interval of each
mean, and training curves (loss above, validation Dice below; the architectures and rows trained from scratch in the
first column, then one column per family of fine-tuned rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from matplotlib.ticker import MaxNLocator

from raagr2_monai.constants import SCORED_REGIONS
from raagr2_monai.visualize import save_png
from raagr2_monai.visualize.figures import new_figure

from .evaluation_figures import FAMILY_TITLES
from .paired import paired_difference_figure
from .tradeoff import quality_cost_figure

__all__ = ["CHART_NAMES", "region_dice_figure", "training_curves_figure", "training_groups", "write_charts"]

#: The charts :func:`write_charts` writes, as ``<name>.png``.
CHART_NAMES: Tuple[str, ...] = ("dice_vs_params", "dice_vs_latency", "paired_difference", "region_dice",
                                 "training_curves")
_DPI = 110


def _clipped_ci(mean: Any, ci95: Any) -> Tuple[float, float]:
    """The error bar below and above a mean Dice: its CI half-width, cut at 0 and 1 (a Dice never leaves them)."""
    if mean is None or ci95 is None:
        return float("nan"), float("nan")
    return min(ci95, mean), min(ci95, 1.0 - mean)


def region_dice_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Bars of each row's mean Dice per scored region, with the 95 % CI of each mean as error bars (no bar where the
    region has no mean).

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).

    Returns:
        The matplotlib figure.
    """
    fig = new_figure(max(8, 0.45 * len(rows) + 3), 5, _DPI)
    ax = fig.subplots()
    width = 0.8 / len(SCORED_REGIONS)
    for i, region in enumerate(SCORED_REGIONS):
        means = [r["quality"][f"dice_{region}"] for r in rows]
        errors = [_clipped_ci(m, r["quality"][f"dice_{region}_ci95"]) for m, r in zip(means, rows)]
        ax.bar([j + i * width for j in range(len(rows))], [float("nan") if m is None else m for m in means], width,
               yerr=[[e[0] for e in errors], [e[1] for e in errors]], capsize=1.5,
               error_kw={"elinewidth": 0.7, "ecolor": "0.25"}, label=region, gid=f"region-{region}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["model"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("Dice, mean over test subjects")
    ax.set_ylim(0, 1)
    ax.set_title("Per-region Dice per model; error bars: 95 % CI of the mean (t), cut at 0 and 1", fontsize=10)
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.32), frameon=False)
    fig.tight_layout()
    return fig


def training_groups(rows: Sequence[Mapping[str, Any]]) -> List[Tuple[str, List[Mapping[str, Any]]]]:
    """The panels of the training curves: the rows trained from scratch (architectures, and pruned rows trained
    from initialisation), then the fine-tuned rows of each family, in order of first appearance; rows without
    training epochs are left out, and so is an empty group.

    Example::

        >>> rows = [{"model": m, "kind": k, "family": f, "from_scratch": s, "history": {"epochs": e}}
        ...         for m, k, f, s, e in (("baseline", "architecture", "architecture", False, [{}]),
        ...                               ("snip-20", "pruned", "snip", False, []),
        ...                               ("snip-20-ft", "pruned", "snip", False, [{}]),
        ...                               ("snip-20-init", "pruned", "snip", True, [{}]))]
        >>> [(title, [r["model"] for r in group]) for title, group in training_groups(rows)]
        [('training from scratch', ['baseline', 'snip-20-init']), ('fine-tuning: SNIP pruning', ['snip-20-ft'])]
    """
    trained = [r for r in rows if r["history"].get("epochs")]
    scratch = [r for r in trained if r["kind"] == "architecture" or r["from_scratch"]]
    groups: Dict[str, List[Mapping[str, Any]]] = {}
    for r in trained:
        if not any(r is s for s in scratch):
            groups.setdefault(r["family"], []).append(r)
    panels = [("training from scratch", scratch)] if scratch else []
    return panels + [(f"fine-tuning: {FAMILY_TITLES.get(f, f)}", group) for f, group in groups.items()]


def training_curves_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Training loss (top row: per iteration, faint, and the epoch means, o) and validation mean Dice (bottom row) by
    epoch, one column per :func:`training_groups` panel, each column's legend below it.

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).

    Returns:
        The matplotlib figure.
    """
    groups = training_groups(rows) or [("no training epochs", [])]
    fig = new_figure(4.3 * len(groups) + 0.8, 8.0, _DPI)
    axes = fig.subplots(2, len(groups), sharex="col", squeeze=False)
    for column, (title, group) in enumerate(groups):
        loss_ax, dice_ax = axes[0][column], axes[1][column]
        for r in group:
            epochs = r["history"]["epochs"]
            line = loss_ax.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], marker="o",
                                label=r["model"])[0]
            steps = r["history"].get("iterations") or []
            if steps:
                loss_ax.plot([s[1] for s in steps], [s[2] for s in steps], color=line.get_color(), alpha=0.35,
                             linewidth=0.8)
            val = [(e["epoch"], e["val_mean_dice"]) for e in epochs if "val_mean_dice" in e]
            dice_ax.plot([v[0] for v in val], [v[1] for v in val], marker="x", color=line.get_color(),
                         label=r["model"])
        loss_ax.set_title(title, fontsize=10)
        loss_ax.set_ylabel("training loss")
        dice_ax.set_ylabel("validation mean Dice")
        dice_ax.set_xlabel("epoch")
        dice_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for axis in (loss_ax, dice_ax):
            axis.grid(alpha=0.3)
        if group:
            dice_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=2, frameon=False)
    fig.suptitle("Training curves: loss per iteration (faint) and epoch means (o); validation mean Dice per epoch",
                 fontsize=10)
    fig.tight_layout()
    return fig


def write_charts(rows: Sequence[Mapping[str, Any]], folder: Path, size: int, device: str) -> Dict[str, Path]:
    """Write the PNG charts of :data:`CHART_NAMES`: Dice against non-zero parameters, Dice against latency (per
    inference backend where the benchmark has them), the paired difference to the baseline, per-region Dice, training
    curves.

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).
        folder: where the PNG files go (created if missing).
        size: the benchmark's in-plane input size (the latency axis's label).
        device: where the benchmark measured the latency.

    Returns:
        Chart name -> path.
    """
    figures = {
        "dice_vs_params": lambda: quality_cost_figure(rows, "params", size, device),
        "dice_vs_latency": lambda: quality_cost_figure(rows, "latency", size, device),
        "paired_difference": lambda: paired_difference_figure(rows),
        "region_dice": lambda: region_dice_figure(rows),
        "training_curves": lambda: training_curves_figure(rows),
    }
    return {name: save_png(figures[name](), Path(folder) / f"{name}.png") for name in CHART_NAMES}
