"""Tests of the Ignite handlers of the BraTS metrics; the metric functions are tested in tests/metrics/."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine

from raagr2_monai.handlers import BraTSMeanDice, BraTSMetricsWriter
from raagr2_monai.metrics import METRIC_COLUMNS, SUBJECT_COLUMNS, pooled_dice

from .metrics.test_functional import nested_cubes


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_brats_mean_dice_handler_scores_empty_regions_brats_style() -> None:
    label = nested_cubes()
    empty_et = label.clone()
    empty_et[2] = 0
    shifted = torch.roll(label, shifts=1, dims=-1)
    outputs = [
        [{"pred": label, "label": label}],  # perfect: 1, 1, 1
        [{"pred": empty_et, "label": empty_et}],  # ET empty in both: counts as 1, not NaN
        [{"pred": shifted, "label": label}],  # 3/4, 7/8, 1/2
    ]
    engine = Engine(lambda e, batch: batch)
    BraTSMeanDice(output_transform=from_engine(["pred", "label"])).attach(engine, "dice")
    engine.run(outputs)
    expected = (3 + 3 + (3 / 4 + 7 / 8 + 1 / 2)) / 9
    assert engine.state.metrics["dice"] == pytest.approx(expected)
    assert engine.state.metric_details["dice"].shape == (3, 3)


def write_seg(path: Path, labels: torch.Tensor, spacing=(1.0, 1.0, 1.0)) -> MetaTensor:
    """A seg file on disk, and the label MetaTensor that names it as the evaluator's output items do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels[0].numpy().astype(np.uint8), np.diag([*spacing, 1.0])), str(path))
    label = MetaTensor(torch.zeros(3, 2, 2, 2))  # the working-grid label: only its file name matters here
    label.meta["filename_or_obj"] = str(path)
    return label


def cube_labels(size: int = 16) -> torch.Tensor:
    """(1, size, size, size): edema 2 around NCR 1 around ET 4, as nested_cubes."""
    regions = nested_cubes(size)
    labels = torch.zeros(1, size, size, size, dtype=torch.uint8)
    labels[0][regions[1] > 0] = 2
    labels[0][regions[0] > 0] = 1
    labels[0][regions[2] > 0] = 4
    return labels


def test_metrics_writer_scores_written_label_maps_against_seg_files(tmp_path: Path) -> None:
    truth = cube_labels()
    plate = torch.zeros(1, 8, 8, 8, dtype=torch.uint8)
    plate[0, :, :, 1] = 1  # a plate of NCR (TC and WT), no ET
    plate_pred = torch.zeros_like(plate)
    plate_pred[0, :, :, 1:5] = 1  # a slab from the plate up to three voxels higher
    labels = {
        "subject_b": write_seg(tmp_path / "b_seg.nii.gz", truth),
        "subject_a": write_seg(tmp_path / "a_seg.nii.gz", truth),
        "plate": write_seg(tmp_path / "BraTS2021_00042_seg.nii.gz", plate, spacing=(1.0, 1.0, 2.0)),
    }
    prob = nested_cubes() * 0.8 + 0.1
    outputs = {
        0: [{"pred": torch.roll(truth, 1, dims=-1), "label": labels["subject_b"]},
            {"pred": truth, "label": labels["subject_a"], "pred_prob": prob}],
        1: [{"pred": plate_pred, "label": labels["plate"]}],
    }
    batches = [[{"case": "subject_b"}, {"case": "subject_a"}], [{}]]
    engine = Engine(lambda e, batch: outputs[e.state.iteration - 1])
    writer = BraTSMetricsWriter(tmp_path / "eval", prob_key="pred_prob", lesionwise=None)
    writer.attach(engine)
    for _ in range(2):  # a second run (next validation round) must replace, not append
        engine.run(batches)
    per_subject = read_csv(tmp_path / "eval" / "metrics_per_subject.csv")
    summary = read_csv(tmp_path / "eval" / "metrics_summary.csv")
    assert list(per_subject[0]) == ["case", *METRIC_COLUMNS]
    assert [r["case"] for r in per_subject] == ["BraTS2021_00042_seg", "subject_a", "subject_b"]  # sorted
    assert [r["statistic"] for r in summary] == ["mean", "std", "median", "count"]
    c, a, b = per_subject
    assert float(a["dice_TC"]) == 1.0 and float(a["hd95_WT"]) == 0.0 and float(a["mean_iou"]) == 1.0
    assert float(a["thesis_pooled_dice"]) == pytest.approx(float(pooled_dice(prob, nested_cubes())))
    assert math.isnan(float(b["thesis_pooled_dice"]))  # no probabilities given
    assert float(b["dice_WT"]) == pytest.approx(7 / 8)
    # spacing 2 along z from the seg file's header: the slab's top face lies three voxels, 6 mm, above the plate
    assert float(c["hd95_TC"]) == pytest.approx(6.0)
    assert float(c["dice_TC"]) == pytest.approx(2 * 64 / (64 + 256))
    # ET empty on both sides: NaN under the official convention, left out of the mean and its count
    assert math.isnan(float(c["dice_ET"])) and math.isnan(float(c["hd95_ET"]))
    mean, count = summary[0], summary[3]
    assert float(mean["dice_WT"]) == pytest.approx((1 + 7 / 8 + 0.4) / 3)
    assert float(count["dice_TC"]) == 3.0 and float(count["dice_ET"]) == 2.0
    settings = json.loads((tmp_path / "eval" / "metrics_settings.json").read_text())
    assert settings["convention"] == "brats" and "brats-evaluation" in settings["convention_description"]
    assert settings["subjects"] == 3 and settings["lesionwise"] is None


def test_metrics_writer_thesis_convention_and_lesionwise_columns(tmp_path: Path) -> None:
    plate = torch.zeros(1, 8, 8, 8, dtype=torch.uint8)
    plate[0, :, :, 1] = 1
    label = write_seg(tmp_path / "p_seg.nii.gz", plate)
    engine = Engine(lambda e, batch: [{"pred": plate, "label": label}])
    BraTSMetricsWriter(tmp_path / "eval", convention="thesis", lesionwise={"min_lesion_volume": 0.0}).attach(engine)
    engine.run([0])
    (row,) = read_csv(tmp_path / "eval" / "metrics_per_subject.csv")
    assert list(row) == ["case", *SUBJECT_COLUMNS]
    assert float(row["dice_ET"]) == 1.0 and float(row["hd95_ET"]) == 0.0  # both empty: 1 / 0 under "thesis"
    assert float(row["lesion_tp_TC"]) == 1.0 and float(row["lesion_dice_TC"]) == 1.0


def test_metrics_writer_reports_what_is_missing(tmp_path: Path) -> None:
    engine = Engine(lambda e, batch: [{"label": MetaTensor(torch.zeros(3, 2, 2, 2))}])
    BraTSMetricsWriter(tmp_path).attach(engine)
    with pytest.raises(ValueError, match="has no 'pred'"):
        engine.run([0])
    engine = Engine(lambda e, batch: [{"pred": torch.zeros(1, 2, 2, 2), "label": MetaTensor(torch.zeros(3, 2, 2, 2))}])
    BraTSMetricsWriter(tmp_path).attach(engine)
    with pytest.raises(ValueError, match="names no seg file"):
        engine.run([0])
    label = write_seg(tmp_path / "s_seg.nii.gz", cube_labels(8))
    engine = Engine(lambda e, batch: [{"pred": torch.zeros(1, 8, 8, 4, dtype=torch.uint8), "label": label}])
    BraTSMetricsWriter(tmp_path).attach(engine)
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8, 4\).*input's grid"):
        engine.run([0])


def test_handlers_in_monai_supervised_evaluator(tmp_path: Path) -> None:
    """The evaluator's postprocessing turns probabilities into the label map; the writer scores it."""
    from raagr2_monai.data.transforms import RegionsToLabelMapd

    truth = cube_labels(12)
    soft = nested_cubes(12) * 0.8 + 0.1
    data = [
        {"image": soft, "label": write_seg(tmp_path / f"c{i}_seg.nii.gz", truth), "case": f"case{i}"} for i in range(3)
    ]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=2),
        network=torch.nn.Identity(),
        postprocessing=RegionsToLabelMapd("pred"),
        val_handlers=[BraTSMetricsWriter(tmp_path / "eval", lesionwise="brats2023-gli")],
    )
    evaluator.run()
    rows = read_csv(tmp_path / "eval" / "metrics_per_subject.csv")
    assert [r["case"] for r in rows] == ["case0", "case1", "case2"]
    assert all(float(r["dice_ET"]) == 1.0 and float(r["lesion_f1_WT"]) == 1.0 for r in rows)
