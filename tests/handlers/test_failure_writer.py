"""BraTSMetricsWriter with an uncertainty: each subject's score in the CSVs, and how well it predicts failure
(``failure_prediction.json``, ``reliability.png``, the summary's rows) on a constructed evaluation; nothing of it
without an uncertainty."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from raagr2_monai.data.labels import labelmap_to_regions
from raagr2_monai.handlers import FAILURE_JSON, RELIABILITY_PNG, BraTSMetricsWriter
from raagr2_monai.metrics import SUBJECT_COLUMNS, reliability, study_uncertainty, subject_mean_dice

from ..test_metrics import cube_labels, write_seg

PNG = b"\x89PNG\r\n\x1a\n"


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _evaluation(tmp_path: Path, writer: BraTSMetricsWriter) -> dict[str, torch.Tensor]:
    """Four subjects with one truth; subject ``s<k>``'s prediction is the truth shifted by ``k`` voxels and its mean
    probability inside the predicted regions is ``0.95 - 0.1 k``: the further off, the less sure. Two iterations of
    two subjects, run twice (a second evaluation replaces the first). Returns each subject's probabilities."""
    truth = cube_labels()
    probabilities, items = {}, []
    for k in range(4):
        pred = torch.roll(truth, k, dims=-1)
        regions = labelmap_to_regions(pred)
        prob = regions * (0.95 - 0.1 * k) + (1 - regions) * 0.01
        probabilities[f"s{k}"] = prob
        items.append({"pred": pred, "label": write_seg(tmp_path / f"s{k}_seg.nii.gz", truth), "pred_prob": prob,
                      "case": f"s{k}"})
    engine = Engine(lambda e, batch: items[2 * (e.state.iteration - 1): 2 * e.state.iteration])
    writer.attach(engine)
    for _ in range(2):
        engine.run([0, 1])
    return probabilities


def test_the_uncertainty_of_each_subject_and_its_failure_prediction_are_written(tmp_path):
    out = tmp_path / "eval"
    writer = BraTSMetricsWriter(out, prob_key="pred_prob", lesionwise=None, uncertainty="tta", failure_dice=0.8)
    probabilities = _evaluation(tmp_path, writer)
    rows = _read(out / "metrics_per_subject.csv")
    assert list(rows[0])[-1] == "uncertainty" and [r["case"] for r in rows] == ["s0", "s1", "s2", "s3"]
    scores = [float(r["uncertainty"]) for r in rows]
    assert scores == pytest.approx([study_uncertainty(probabilities[f"s{k}"]) for k in range(4)], rel=1e-6)
    dices = [subject_mean_dice({key: float(value) for key, value in r.items() if key != "case"}) for r in rows]
    assert dices[0] == 1.0 and dices == sorted(dices, reverse=True) and dices[1] < 0.8  # one success, three failures
    assert scores == sorted(scores), "the constructed score rises as the Dice falls"

    figures = json.loads((out / FAILURE_JSON).read_text())
    assert {k: figures[k] for k in ("uncertainty", "subjects", "failure_dice", "failures")} == {
        "uncertainty": "tta", "subjects": 4, "failure_dice": 0.8, "failures": 3}
    assert figures["spearman"] == pytest.approx(-1.0) and figures["auroc"] == 1.0
    # the reliability of every voxel of the four subjects, pooled from their bin sums
    pooled = reliability(np.stack([p.numpy() for p in probabilities.values()], axis=1),
                         labelmap_to_regions(cube_labels()).numpy()[:, None].repeat(4, axis=1))
    assert figures["reliability"]["voxels"] == pooled["voxels"] == 4 * 3 * 16 ** 3
    assert figures["reliability"]["ece"] == pytest.approx(pooled["ece"], rel=1e-6)
    assert [b["count"] for b in figures["reliability"]["bins"]] == [b["count"] for b in pooled["bins"]]
    assert 0 < figures["reliability_tumour"]["voxels"] < figures["reliability"]["voxels"]
    assert None in [b["accuracy"] for b in figures["reliability"]["bins"]], "an empty bin is null, not NaN"
    assert (out / RELIABILITY_PNG).read_bytes()[:8] == PNG

    summary = {r["statistic"]: r for r in _read(out / "metrics_summary.csv")}
    assert list(summary) == ["mean", "std", "median", "count", "failure_spearman", "failure_auroc", "failures", "ece"]
    assert float(summary["mean"]["uncertainty"]) == pytest.approx(sum(scores) / 4, rel=1e-6)
    assert float(summary["failure_spearman"]["uncertainty"]) == pytest.approx(-1.0)
    assert float(summary["failure_auroc"]["uncertainty"]) == 1.0 and float(summary["failures"]["uncertainty"]) == 3
    assert float(summary["ece"]["uncertainty"]) == pytest.approx(figures["reliability"]["ece"])
    assert math.isnan(float(summary["failure_auroc"]["dice_TC"]))
    settings = json.loads((out / "metrics_settings.json").read_text())
    assert (settings["uncertainty"], settings["failure_dice"], settings["reliability_bins"]) == ("tta", 0.8, 10)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary file left behind"


def test_without_an_uncertainty_nothing_changes(tmp_path):
    out = tmp_path / "eval"
    _evaluation(tmp_path, BraTSMetricsWriter(out, prob_key="pred_prob", lesionwise=None))
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics_per_subject.csv", "metrics_settings.json", "metrics_summary.csv"]
    assert list(_read(out / "metrics_per_subject.csv")[0]) == ["case", *(c for c in SUBJECT_COLUMNS
                                                                         if not c.startswith("lesion_"))]
    assert [r["statistic"] for r in _read(out / "metrics_summary.csv")] == ["mean", "std", "median", "count"]
    assert "uncertainty" not in json.loads((out / "metrics_settings.json").read_text())


def test_settings_that_cannot_work_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uncertainty must be one of none, tta, mc_dropout; got 'flips'"):
        BraTSMetricsWriter(tmp_path, prob_key="pred_prob", uncertainty="flips")
    with pytest.raises(ValueError, match="uncertainty tta scores the mean probabilities: give prob_key"):
        BraTSMetricsWriter(tmp_path, uncertainty="tta")
    for bad in (0.0, 1.5, True):
        with pytest.raises(ValueError, match="failure_dice must lie in"):
            BraTSMetricsWriter(tmp_path, prob_key="pred_prob", uncertainty="tta", failure_dice=bad)
    truth = cube_labels(8)
    engine = Engine(lambda e, batch: [{"pred": truth, "label": write_seg(tmp_path / "a_seg.nii.gz", truth),
                                       "pred_prob": torch.zeros(3, 8, 8, 4)}])
    BraTSMetricsWriter(tmp_path / "eval", prob_key="pred_prob", lesionwise=None, uncertainty="tta").attach(engine)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 8, 8, 4\) and label shape \(1, 3, 8, 8, 8\)"):
        engine.run([0])
