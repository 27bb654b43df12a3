"""The spread of per-subject scores (against scipy's own interval) and the detection of identical rows."""

import math

import numpy as np
import pytest
from scipy import stats

from raagr2_monai.metrics import METRIC_COLUMNS, write_metrics_csv
from raagr2_monai.report import identical_rows, quality_spread, read_subject_scores, spread

NAN = float("nan")


def test_spread_is_the_sample_std_and_the_t_interval_of_the_mean():
    values = [0.2, 0.4, NAN, 0.9, 0.65]
    finite = [v for v in values if not math.isnan(v)]
    low, high = stats.t.interval(0.95, len(finite) - 1, loc=np.mean(finite), scale=stats.sem(finite))
    std, ci95 = spread(values)
    assert std == pytest.approx(np.std(finite, ddof=1))
    assert ci95 == pytest.approx((high - low) / 2)
    assert spread([NAN, 0.3]) == (None, None) and spread([]) == (None, None)


def _scores(**columns):
    """Per-subject scores of every metric column: the given ones per case, the others 0.5."""
    cases = len(next(iter(columns.values())))
    return {f"c{i}": {k: columns.get(k, [0.5] * cases)[i] for k in METRIC_COLUMNS} for i in range(cases)}


def test_quality_spread_covers_every_column_and_the_subjects_mean_dice():
    scores = _scores(dice_TC=[0.2, 0.4, 0.6], dice_WT=[0.8, 0.8, 0.8], dice_ET=[NAN, 0.1, 0.3], hd95_ET=[NAN, 4, 8])
    result = quality_spread(scores)
    assert set(result) == {f"{k}_{s}" for k in (*METRIC_COLUMNS, "dice_mean") for s in ("std", "ci95")}
    assert result["dice_TC_std"] == pytest.approx(0.2) and result["dice_WT_std"] == pytest.approx(0.0, abs=1e-12)
    assert result["hd95_ET_std"] == pytest.approx(math.sqrt(8))  # two subjects: the NaN one is left out
    # each subject's mean over TC/WT/ET without its NaN: 0.5, 0.4333, 0.5667
    assert result["dice_mean_std"] == pytest.approx(np.std([0.5, 1.3 / 3, 1.7 / 3], ddof=1))
    assert result["dice_mean_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * result["dice_mean_std"] / math.sqrt(3))


def test_identical_rows_within_the_tolerance_only():
    base = _scores(dice_TC=[0.2, 0.4], hd95_ET=[NAN, 3.0])
    same = _scores(dice_TC=[0.2 + 1e-11, 0.4], hd95_ET=[NAN, 3.0])
    close = _scores(dice_TC=[0.2 + 1e-6, 0.4], hd95_ET=[NAN, 3.0])
    nan_differs = _scores(dice_TC=[0.2, 0.4], hd95_ET=[2.0, 3.0])
    fewer = {"c0": base["c0"]}
    found = identical_rows({"a": base, "b": close, "c": same, "d": nan_differs, "e": fewer})
    assert found == {"a": ["c"], "b": [], "c": ["a"], "d": [], "e": []}
    # the thesis-comparison columns are not compared: Dice and HD95 alone decide
    other_iou = _scores(dice_TC=[0.2, 0.4], hd95_ET=[NAN, 3.0], mean_iou=[0.1, 0.9])
    assert identical_rows({"a": base, "b": other_iou}) == {"a": ["b"], "b": ["a"]}


def test_per_subject_csv_errors_name_the_file(tmp_path):
    rows = [{"case": "c1", **{k: 0.5 for k in METRIC_COLUMNS}}, {"case": "c2", **{k: NAN for k in METRIC_COLUMNS}}]
    path = write_metrics_csv(rows, tmp_path / "metrics_per_subject.csv")
    scores = read_subject_scores(path)
    assert scores["c1"]["hd95_ED"] == 0.5 and math.isnan(scores["c2"]["dice_TC"])
    write_metrics_csv([{"case": "c1", "dice_TC": 0.5}], path)
    with pytest.raises(ValueError, match=r"metrics_per_subject.csv: no column dice_WT"):
        read_subject_scores(path)
    write_metrics_csv([{"case": "c1", **{k: "bad" for k in METRIC_COLUMNS}}], path)
    with pytest.raises(ValueError, match=r"metrics_per_subject.csv: case c1 holds a score that is not a number"):
        read_subject_scores(path)
