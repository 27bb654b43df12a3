"""Per-subject metric rows as tables: summary statistics and CSV files."""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raagr2_monai.constants import REGIONS
from raagr2_monai.utils import atomic_write_text

__all__ = ["subject_mean_dice", "summarise", "write_metrics_csv"]


def subject_mean_dice(scores: Mapping[str, Any]) -> float:
    """A subject's mean Dice over TC, WT and ET (numbers, or the CSV's text), its NaN, empty or missing regions left
    out (NaN when all are): the score of the report's mean Dice and of failure prediction.

    Example::

        >>> subject_mean_dice({"dice_TC": 0.5, "dice_WT": "0.7", "dice_ET": ""})
        0.6
    """
    values = [float(scores[f"dice_{r}"]) for r in REGIONS if scores.get(f"dice_{r}") not in (None, "")]
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation, median and count of every numeric column, ignoring NaN.

    A column is numeric when every row holds a real number there (Python or numpy; booleans and strings such as the
    case id are skipped). NaN values, e.g. the both-empty regions of the ``"brats"`` convention, are left out, so
    ``count`` is the number of subjects that entered each mean; a column whose values are all NaN gets NaN statistics
    and count 0. ``std`` is the sample standard deviation (n - 1) and needs two values.

    Args:
        rows: per-subject rows, e.g. from :class:`~raagr2_monai.handlers.BraTSMetricsWriter`.

    Returns:
        ``{"mean": {column: value}, "std": {...}, "median": {...}, "count": {...}}``.

    Example:
        >>> rows = [{"case": "a", "dice_TC": 0.5}, {"case": "b", "dice_TC": 1.0}, {"case": "c", "dice_TC": math.nan}]
        >>> s = summarise(rows)
        >>> s["mean"]["dice_TC"], s["median"]["dice_TC"], s["count"]["dice_TC"]
        (0.75, 0.75, 2.0)
    """
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    numeric = [
        key
        for key in columns
        if all(
            key in row and isinstance(row[key], numbers.Real) and not isinstance(row[key], (bool, np.bool_))
            for row in rows
        )
    ]
    summary: dict[str, dict[str, float]] = {"mean": {}, "std": {}, "median": {}, "count": {}}
    for key in numeric:
        values = torch.tensor([float(row[key]) for row in rows], dtype=torch.float64)
        values = values[~torch.isnan(values)]
        count = values.numel()
        summary["count"][key] = float(count)
        summary["mean"][key] = float(values.mean()) if count else math.nan
        summary["std"][key] = float(values.std(correction=1)) if count > 1 else math.nan
        # torch.median picks the lower middle value; the usual median averages the two middle ones
        summary["median"][key] = float(values.quantile(0.5)) if count else math.nan
    return summary


def write_metrics_csv(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, fieldnames: Sequence[str] | None = None
) -> Path:
    """Write rows to a CSV file atomically (a temporary file in the same folder, then renamed over ``path``).

    Args:
        rows: one mapping per line.
        path: destination; missing parent folders are created.
        fieldnames: column order; None = the keys of all rows, in order of first appearance.

    Returns:
        the written path.

    Raises:
        ValueError: if there are neither rows nor ``fieldnames``, or a row has a key outside ``fieldnames``.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_metrics_csv([{"case": "a", "dice_TC": 0.5}], pathlib.Path(tempfile.mkdtemp()) / "m.csv")
        >>> p.read_text().splitlines()
        ['case,dice_TC', 'a,0.5']
    """
    target = Path(path)
    if fieldnames is None:
        if not rows:
            raise ValueError(f"write_metrics_csv: no rows and no fieldnames for {target}.")
        columns: list[str] = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
    else:
        columns = list(fieldnames)
        for i, row in enumerate(rows):
            extra = set(row) - set(columns)
            if extra:
                raise ValueError(f"write_metrics_csv: row {i} for {target} has keys {sorted(extra)} not in fieldnames.")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(target, buffer.getvalue(), newline="")
    return target
