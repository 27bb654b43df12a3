"""Summary statistics and atomic CSV writing of per-subject metric rows."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from raagr2_monai.metrics import summarise, write_metrics_csv


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_summarise_ignores_nan_and_text_and_counts_the_subjects_of_each_mean() -> None:
    rows = [
        {"case": "a", "dice_TC": 0.2, "hd95_TC": 1.0, "flag": True},
        {"case": "b", "dice_TC": 0.4, "hd95_TC": float("nan"), "flag": False},
        {"case": "c", "dice_TC": 0.9, "hd95_TC": 3.0, "flag": True},
        {"case": "d", "dice_TC": 0.5, "hd95_TC": float("nan"), "flag": True},
    ]
    s = summarise(rows)
    assert "case" not in s["mean"] and "flag" not in s["mean"]
    assert s["mean"]["dice_TC"] == pytest.approx(0.5)
    assert s["median"]["dice_TC"] == pytest.approx(0.45)
    assert s["std"]["dice_TC"] == pytest.approx(math.sqrt((0.09 + 0.01 + 0.16 + 0.0) / 3))
    assert s["count"] == {"dice_TC": 4.0, "hd95_TC": 2.0}
    assert s["mean"]["hd95_TC"] == pytest.approx(2.0)
    assert math.isnan(summarise(rows[:1])["std"]["dice_TC"])
    all_nan = summarise([{"x": math.nan}, {"x": math.nan}])
    assert all_nan["count"]["x"] == 0.0 and math.isnan(all_nan["mean"]["x"])


def test_summarise_accepts_numpy_scalars() -> None:
    rows = [{"tp": np.int64(2), "dice": np.float32(0.5)}, {"tp": 4, "dice": np.float64(1.0)}]
    s = summarise(rows)
    assert s["mean"] == {"tp": 3.0, "dice": 0.75}


def test_write_metrics_csv_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out" / "m.csv"
    write_metrics_csv([{"case": "a", "dice_TC": 0.5}, {"case": "b", "dice_TC": 1.0, "mean_iou": 0.25}], target)
    assert read_csv(target) == [
        {"case": "a", "dice_TC": "0.5", "mean_iou": ""},
        {"case": "b", "dice_TC": "1.0", "mean_iou": "0.25"},
    ]
    before = target.read_text()
    with pytest.raises(ValueError, match="m.csv.*'extra'"):
        write_metrics_csv([{"case": "a", "extra": 1}], target, fieldnames=("case",))
    with pytest.raises(ValueError, match="no rows"):
        write_metrics_csv([], target)
    assert target.read_text() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.csv"]
