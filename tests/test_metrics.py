"""Tests of the Ignite handlers of the BraTS metrics; the metric functions are tested in tests/metrics/."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine

from raagr2_monai.handlers import BraTSMeanDice, BraTSMetricsWriter
from raagr2_monai.metrics import METRIC_COLUMNS, pooled_dice


def nested_cubes(size: int = 16) -> torch.Tensor:
    """A (3, size, size, size) label: WT cube of side 8, TC cube of side 4 inside, ET cube of side 2 inside that."""
    label = torch.zeros(3, size, size, size)
    label[1, 2:10, 2:10, 2:10] = 1
    label[0, 4:8, 4:8, 4:8] = 1
    label[2, 5:7, 5:7, 5:7] = 1
    return label


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


def test_metrics_writer_with_fake_engine(tmp_path: Path) -> None:
    label = nested_cubes()
    prob = label * 0.8 + 0.1  # right everywhere after thresholding
    plate_label = MetaTensor(torch.zeros(3, 8, 8, 8), affine=torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0])))
    plate_label[:2, :, :, 1] = 1
    plate_pred = torch.zeros(3, 8, 8, 8)
    plate_pred[:2, :, :, 1:5] = 1  # a slab from the label's plate up to three voxels higher
    plate_label.meta["filename_or_obj"] = "/data/BraTS2021_00042/BraTS2021_00042_seg.nii.gz"
    batches = [
        [{"case": "subject_a"}, {"case": "subject_b"}],
        [{}],
    ]
    outputs = {
        0: [{"pred": prob, "label": label}, {"pred": torch.roll(label, 1, dims=-1), "label": label}],
        1: [{"pred": plate_pred, "label": plate_label}],
    }
    engine = Engine(lambda e, batch: outputs[e.state.iteration - 1])
    writer = BraTSMetricsWriter(tmp_path / "eval")
    writer.attach(engine)
    for _ in range(2):  # a second run (next validation round) must replace, not append
        engine.run(batches)
    per_subject = read_csv(tmp_path / "eval" / "metrics_per_subject.csv")
    summary = read_csv(tmp_path / "eval" / "metrics_summary.csv")
    assert list(per_subject[0]) == ["case", *METRIC_COLUMNS]
    assert [r["case"] for r in per_subject] == ["subject_a", "subject_b", "BraTS2021_00042_seg"]
    assert list(summary[0]) == ["statistic", *METRIC_COLUMNS]
    assert [r["statistic"] for r in summary] == ["mean", "std", "median", "count"]
    a, b, c = per_subject
    assert float(a["dice_TC"]) == 1.0 and float(a["hd95_WT"]) == 0.0 and float(a["mean_iou"]) == 1.0
    assert float(a["thesis_pooled_dice"]) == pytest.approx(float(pooled_dice(prob, label)))
    assert float(b["dice_WT"]) == pytest.approx(7 / 8)
    # the plate subject: spacing 2 along z from the label's affine; the slab's top face (64 of its 184 border voxels,
    # with the label's 64 at distance 0) lies three voxels, 6 mm, above the plate: the pooled 95th percentile
    assert float(c["hd95_TC"]) == pytest.approx(6.0)
    assert float(c["dice_TC"]) == pytest.approx(2 * 64 / (64 + 256))
    # ET empty on both sides: NaN under the default "brats" convention, left out of the mean and its count
    assert math.isnan(float(c["dice_ET"])) and math.isnan(float(c["hd95_ET"]))
    mean, count = summary[0], summary[3]
    assert float(mean["dice_WT"]) == pytest.approx((1 + 7 / 8 + 0.4) / 3)
    assert float(mean["dice_ET"]) == pytest.approx((1 + 1 / 2) / 2)
    assert float(count["dice_TC"]) == 3.0 and float(count["dice_ET"]) == 2.0


def test_metrics_writer_reports_missing_keys(tmp_path: Path) -> None:
    engine = Engine(lambda e, batch: [{"pred": torch.zeros(3, 4, 4, 4)}])
    BraTSMetricsWriter(tmp_path).attach(engine)
    with pytest.raises(ValueError, match=r"no \['label'\]"):
        engine.run([0])


def binarised_pred_and_label(output: list[dict]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [item["pred"] >= 0.5 for item in output], [item["label"] for item in output]


def test_handlers_in_monai_supervised_evaluator(tmp_path: Path) -> None:
    label = nested_cubes(12)
    soft = label * 0.8 + 0.1
    data = [{"image": soft, "label": label, "case": f"case{i}"} for i in range(3)]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=2),
        network=torch.nn.Identity(),
        key_val_metric={"dice": BraTSMeanDice(output_transform=binarised_pred_and_label)},
        val_handlers=[BraTSMetricsWriter(tmp_path)],
    )
    evaluator.run()
    assert evaluator.state.metrics["dice"] == 1.0
    rows = read_csv(tmp_path / "metrics_per_subject.csv")
    assert [r["case"] for r in rows] == ["case0", "case1", "case2"]
    # decollated outputs keep the soft prediction: the pooled Dice sees 0.9 / 0.1, the region Dice the mask
    expected = float(pooled_dice(soft, label))
    assert expected < 0.95
    assert all(float(r["thesis_pooled_dice"]) == pytest.approx(expected) and float(r["dice_ET"]) == 1.0 for r in rows)
