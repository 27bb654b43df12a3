"""The reliability diagram of voxel probabilities: accuracy against confidence per bin, and how many voxels each bin
holds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .figures import new_figure

__all__ = ["reliability_figure"]


def _finite(value: Any) -> float:
    return math.nan if value is None else float(value)


def reliability_figure(curves: Mapping[str, Mapping[str, Any]], title: str = "", dpi: int = 100) -> Figure:
    """A reliability diagram of one or several reliabilities, one line each.

    Above: each non-empty bin's accuracy (the share of voxel-channels whose thresholded prediction is right) at its
    mean confidence (``max(p, 1 - p)``), beside the diagonal where the two agree (a well-calibrated model); below it
    means over-confidence. Below: the share of voxel-channels in each bin, on a log scale (most voxels are confident
    background). Each line's legend entry gives its expected calibration error.

    Args:
        curves: name -> a reliability (:func:`~raagr2_monai.metrics.reliability_from_counts`: ``ece`` and ``bins``
            with ``low``, ``high``, ``count``, ``confidence``, ``accuracy``; ``None`` stands for NaN, as JSON holds
            it).
        title: the figure's title.
        dpi: pixels per inch.

    Returns:
        The figure (Agg canvas; write it with :func:`~raagr2_monai.visualize.save_png`).

    Raises:
        ValueError: no curve.

    Example::

        from raagr2_monai.metrics import reliability
        save_png(reliability_figure({"baseline": reliability(probabilities, regions)}), "reliability.png")
    """
    if not curves:
        raise ValueError("reliability_figure needs at least one reliability to draw.")
    figure = new_figure(6.0, 6.0, dpi)
    grid = figure.add_gridspec(2, 1, height_ratios=(3, 1.2), hspace=0.08)
    top, bottom = figure.add_subplot(grid[0]), figure.add_subplot(grid[1])
    top.plot([0.5, 1.0], [0.5, 1.0], color="0.5", linestyle="dotted", linewidth=1, label="perfect calibration")
    colours = matplotlib.colormaps["tab10"]
    lowest = 0.5
    for i, (name, curve) in enumerate(curves.items()):
        bins = curve["bins"]
        count = np.array([float(b["count"]) for b in bins])
        confidence = np.array([_finite(b["confidence"]) for b in bins])
        accuracy = np.array([_finite(b["accuracy"]) for b in bins])
        filled = count > 0
        lowest = min([lowest, *accuracy[filled & np.isfinite(accuracy)]])
        ece = _finite(curve.get("ece"))
        label = f"{name} (ECE {ece:.4f})" if math.isfinite(ece) else f"{name} (no voxel)"
        top.plot(confidence[filled], accuracy[filled], marker="o", markersize=4, linewidth=1.2, color=colours(i % 10),
                 label=label)
        middles = np.array([(b["low"] + b["high"]) / 2 for b in bins])
        share = count / count.sum() if count.sum() else count
        bottom.plot(middles[filled], share[filled], marker="o", markersize=3, linewidth=1, color=colours(i % 10))
    top.set_xlim(0.5, 1.0)
    top.set_ylim(max(0.0, lowest - 0.05), 1.02)  # the accuracy of a bin of confidence c is rarely far below c
    top.set_ylabel("accuracy (prediction right)")
    top.tick_params(labelbottom=False)
    top.grid(alpha=0.3)
    top.legend(fontsize=7, loc="upper left")
    bottom.set_xlim(0.5, 1.0)
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence max(p, 1 - p) of a voxel and region")
    bottom.set_ylabel("share of voxels")
    bottom.grid(alpha=0.3)
    if title:
        top.set_title(title, fontsize=9)
    return figure
