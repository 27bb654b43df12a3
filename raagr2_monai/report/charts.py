"""The report's charts (PNG): quality against parameters and against latency, per-region Dice, training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

from raagr2_monai.constants import SCORED_REGIONS
from raagr2_monai.utils import atomic_write

__all__ = ["write_charts"]

_COLOURS = {"architecture": "tab:blue", "magnitude": "tab:orange", "snip": "tab:green", "depgraph": "tab:red"}


def _scatter(rows: Sequence[Mapping[str, Any]], x_of, xlabel: str, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for family, colour in _COLOURS.items():
        points = [(x_of(r), r["quality"]["dice_mean"], r) for r in rows if r["family"] == family]
        points = [p for p in points if p[0] is not None and p[1] is not None]
        if not points:
            continue
        ax.scatter([p[0] for p in points], [p[1] for p in points], c=colour, label=family, s=36,
                   marker="o" if family == "architecture" else "^")
        for x, y, r in points:
            ax.annotate(r["model"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean BraTS Dice (TC/WT/ET), test subjects")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")
    finally:
        plt.close(fig)


def write_charts(rows: Sequence[Mapping[str, Any]], folder: Path, bench_note: str) -> Dict[str, Path]:
    """Write the PNG charts: Dice against parameters, Dice against latency, per-region Dice, training curves.

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).
        folder: where the PNG files go (created if missing).
        bench_note: where the latency was measured, for the latency axis's label.

    Returns:
        Chart name -> path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = {name: folder / f"{name}.png" for name in
              ("dice_vs_params", "dice_vs_latency", "region_dice", "training_curves")}
    _scatter(rows, lambda r: r["cost"]["nonzero_params"] / 1e6, "non-zero parameters (millions)",
             "Quality against parameters", charts["dice_vs_params"])
    _scatter(rows, lambda r: r["cost"]["latency_b1_ms"], f"latency, ms per forward pass at batch 1 ({bench_note})",
             "Quality against latency", charts["dice_vs_latency"])

    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(rows) + 3), 5))
    width = 0.8 / len(SCORED_REGIONS)
    for i, region in enumerate(SCORED_REGIONS):
        values = [r["quality"][f"dice_{region}"] or 0.0 for r in rows]
        ax.bar([j + i * width for j in range(len(rows))], values, width, label=region)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["model"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("Dice, mean over test subjects")
    ax.set_ylim(0, 1)
    ax.set_title("Per-region Dice per model")
    ax.legend(fontsize=8, ncol=5)
    _save(fig, charts["region_dice"])

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in rows:
        epochs = r["history"].get("epochs") or []
        if not epochs:
            continue
        axis = left if r["kind"] == "architecture" or r["from_scratch"] else right
        steps = r["history"].get("iterations") or []
        line = axis.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], marker="o",
                         label=f"{r['model']} loss")[0]
        if steps:
            axis.plot([s[1] for s in steps], [s[2] for s in steps], color=line.get_color(), alpha=0.35, linewidth=0.8)
        val = [(e["epoch"], e["val_mean_dice"]) for e in epochs if "val_mean_dice" in e]
        if val:
            axis.plot([v[0] for v in val], [v[1] for v in val], linestyle="--", marker="x", color=line.get_color(),
                      label=f"{r['model']} val Dice")
    left.set_title("Training: loss (per iteration, epoch means o), validation mean Dice (x)", fontsize=9)
    right.set_title("Fine-tuning after pruning (same marks)", fontsize=9)
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=6, ncol=2)
    _save(fig, charts["training_curves"])
    return charts
