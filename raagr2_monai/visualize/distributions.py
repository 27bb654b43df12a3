"""Per-subject scores of several models as distributions: a box and the subjects' points per model and region."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from raagr2_monai.constants import REGIONS

from .figures import new_figure

__all__ = ["METRIC_LABELS", "read_subject_rows", "distribution_values", "distribution_figure"]

#: The axis label of each per-subject metric (the column prefix of ``metrics_per_subject.csv``).
METRIC_LABELS: dict[str, str] = {"dice": "Dice", "hd95": "HD95 (mm)"}

Rows = Sequence[Mapping[str, Any]]


def read_subject_rows(source: Rows | str | os.PathLike) -> list[dict[str, Any]]:
    """Per-subject rows: a ``metrics_per_subject.csv`` file read as dictionaries of text, or rows given as they are.

    Raises:
        FileNotFoundError: the CSV file does not exist.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, newline="") as handle:
            return list(csv.DictReader(handle))
    return [dict(row) for row in source]


def _number(value: Any, model: str, column: str) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Model {model}: column {column} holds {value!r}, not a number.") from None


def distribution_values(
    models: Mapping[str, Rows | str | os.PathLike], metric: str = "dice", regions: Sequence[str] = REGIONS
) -> dict[str, dict[str, np.ndarray]]:
    """The finite per-subject values of ``<metric>_<region>`` for every region and model; NaN (a region empty on
    both sides under the official convention) and empty cells are left out.

    Args:
        models: model name -> its per-subject rows, or the path of its ``metrics_per_subject.csv``.
        metric: the column prefix, e.g. ``"dice"``, ``"hd95"``, ``"lesion_dice"``.
        regions: the regions, e.g. :data:`~raagr2_monai.constants.REGIONS`.

    Returns:
        ``{region: {model: float64 array}}``.

    Raises:
        ValueError: a model's rows lack a column, or hold text that is not a number there.

    Example::

        >>> rows = [{"dice_ET": 0.5}, {"dice_ET": "nan"}, {"dice_ET": "0.75"}]
        >>> distribution_values({"base": rows}, "dice", ["ET"])["ET"]["base"].tolist()
        [0.5, 0.75]
    """
    values: dict[str, dict[str, np.ndarray]] = {region: {} for region in regions}
    for model, source in models.items():
        rows = read_subject_rows(source)
        for region in regions:
            column = f"{metric}_{region}"
            missing = sum(column not in row for row in rows)
            if missing:
                where = f" ({source})" if isinstance(source, (str, os.PathLike)) else ""
                raise ValueError(f"Model {model}{where}: {missing} of {len(rows)} rows have no column {column}.")
            numbers = np.array([_number(row[column], model, column) for row in rows], dtype=np.float64)
            values[region][model] = numbers[np.isfinite(numbers)]
    return values


def distribution_figure(
    models: Mapping[str, Rows | str | os.PathLike],
    metrics: Sequence[str] = ("dice", "hd95"),
    regions: Sequence[str] = REGIONS,
    title: str = "",
    panel_inches: tuple[float, float] = (5.5, 4.0),
    dpi: int = 100,
) -> Figure:
    """Per-subject distributions of each metric: one panel per metric, a group per region, and per model a box
    (median, quartiles, whiskers at 1.5 IQR) with every subject's value as a point; under each box the number of
    subjects it shows (NaN values are left out, so it can differ between regions).

    Args:
        models: model name -> per-subject rows or the path of its ``metrics_per_subject.csv``; one colour each, in
            this order (e.g. the baseline, then each family's best model).
        metrics: column prefixes, one panel each (:data:`METRIC_LABELS` names the known ones).
        regions: the regions of each panel.
        title: above the panels.
        panel_inches: (width, height) of one panel.
        dpi: pixels per inch.

    Returns:
        The figure (save it with :func:`~.figures.save_png`).

    Raises:
        ValueError: no model, or a model lacks a column (see :func:`distribution_values`).

    Example::

        runs = {"baseline": "baseline/runs/evaluate/metrics_per_subject.csv", "paired": "paired/.../metrics_per_subject.csv"}
        save_png(distribution_figure(runs, title="test subjects"), "report/charts/distributions.png")
    """
    if not models:
        raise ValueError("distribution_figure needs at least one model.")
    tables = {model: read_subject_rows(source) for model, source in models.items()}
    colours = matplotlib.colormaps["tab10"].colors
    width = 0.8 / len(tables)
    figure = new_figure(panel_inches[0] * len(metrics), panel_inches[1], dpi)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        values = distribution_values(tables, metric, regions)
        for g, region in enumerate(regions):
            for k, model in enumerate(tables):
                data, colour = values[region][model], colours[k % len(colours)]
                position = g + (k - (len(tables) - 1) / 2) * width
                if data.size:
                    box = ax.boxplot(data, positions=[position], widths=0.85 * width, patch_artist=True,
                                     showfliers=False, medianprops={"color": "black"})
                    box["boxes"][0].set(facecolor=colour, alpha=0.35)
                    jitter = np.random.default_rng(k).uniform(-0.25, 0.25, data.size) * width
                    ax.scatter(position + jitter, data, s=8, color=colour, zorder=3)
                ax.text(position, -0.01, f"n={data.size}", transform=ax.get_xaxis_transform(), ha="center",
                        va="top", fontsize=6)
        ax.set_xticks(range(len(regions)), regions)
        ax.tick_params(axis="x", length=0, pad=12)
        ax.set_xlim(-0.5, len(regions) - 0.5)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(axis="y", alpha=0.3)
        if metric == "dice":
            ax.set_ylim(-0.02, 1.02)
    handles = [Patch(color=colours[k % len(colours)], alpha=0.6, label=f"{model} ({len(rows)} subjects)")
               for k, (model, rows) in enumerate(tables.items())]
    axes[0].legend(handles=handles, fontsize=7, loc="lower left")
    figure.suptitle(title or "Per-subject scores (NaN left out)", fontsize=10)
    figure.subplots_adjust(left=0.08 / len(metrics) + 0.02, right=0.99, top=0.9, bottom=0.12, wspace=0.18)
    return figure
