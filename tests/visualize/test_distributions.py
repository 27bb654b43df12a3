"""Per-subject distributions of several models' scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from raagr2_monai.metrics import write_metrics_csv
from raagr2_monai.visualize import distribution_figure, distribution_values, read_subject_rows, save_png

NAN = math.nan


def rows(dice: list[float], hd95: list[float]) -> list[dict]:
    """Rows whose TC, WT and ET columns all hold the given values."""
    return [
        {"case": f"c{i}", **{f"dice_{r}": d for r in ("TC", "WT", "ET")}, **{f"hd95_{r}": h for r in ("TC", "WT", "ET")}}
        for i, (d, h) in enumerate(zip(dice, hd95))
    ]


def test_values_leave_nan_and_empty_cells_out(tmp_path: Path) -> None:
    baseline = rows([0.9, NAN, 0.7], [2.0, NAN, 373.0])
    csv_path = write_metrics_csv(rows([0.5, 0.6, NAN, 0.8], [1.0, 2.0, NAN, 4.0]), tmp_path / "paired.csv")
    text_rows = [{"dice_TC": "0.25", "dice_WT": "", "dice_ET": "nan"}]
    values = distribution_values({"baseline": baseline, "paired": csv_path, "text": text_rows}, "dice")
    assert values["TC"]["baseline"].tolist() == [0.9, 0.7]
    assert values["WT"]["paired"].tolist() == [0.5, 0.6, 0.8]  # read back from the CSV, "nan" left out
    assert values["TC"]["text"].tolist() == [0.25]
    assert values["WT"]["text"].size == 0 and values["ET"]["text"].size == 0
    assert distribution_values({"baseline": baseline}, "hd95", ["ET"]) == {"ET": {"baseline": pytest.approx([2.0, 373.0])}}
    assert len(read_subject_rows(csv_path)) == 4


def test_missing_columns_and_text_are_refused(tmp_path: Path) -> None:
    path = write_metrics_csv([{"case": "a", "dice_TC": 0.5}], tmp_path / "m.csv")
    with pytest.raises(ValueError, match=r"Model b \(.*m.csv\): 1 of 1 rows have no column dice_WT"):
        distribution_values({"b": path}, "dice")
    with pytest.raises(ValueError, match="Model b: column dice_TC holds 'high', not a number"):
        distribution_values({"b": [{"dice_TC": "high"}]}, "dice", ["TC"])
    with pytest.raises(ValueError, match="at least one model"):
        distribution_figure({})


def test_figure_shows_the_subjects_counted_per_box(tmp_path: Path) -> None:
    models = {
        "baseline": rows([0.9, NAN, 0.7], [2.0, NAN, 373.0]),
        "paired": rows([NAN, NAN, NAN], [NAN, NAN, NAN]),  # nothing to draw: n=0, no box
    }
    figure = distribution_figure(models, dpi=40)
    dice_ax, hd95_ax = figure.axes
    assert [t.get_text() for t in dice_ax.texts] == ["n=2", "n=0"] * 3  # TC, WT, ET; baseline then paired
    assert [t.get_text() for t in dice_ax.get_xticklabels()] == ["TC", "WT", "ET"]
    assert dice_ax.get_ylabel() == "Dice" and hd95_ax.get_ylabel() == "HD95 (mm)"
    assert [t.get_text() for t in dice_ax.get_legend().get_texts()] == ["baseline (3 subjects)", "paired (3 subjects)"]
    # one box and one strip of two points per region, for the baseline only
    assert len(dice_ax.patches) == 3 and [len(c.get_offsets()) for c in dice_ax.collections] == [2, 2, 2]
    assert sorted(np.concatenate([c.get_offsets()[:, 1] for c in hd95_ax.collections]).tolist()) == [2.0] * 3 + [373.0] * 3
    path = save_png(figure, tmp_path / "distributions.png")
    assert imread(path).shape == (4 * 40, 2 * 5.5 * 40, 4)
