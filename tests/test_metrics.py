"""Tests of the BraTS region metrics, the thesis-style pooled Dice, the CSV helpers and the Ignite handlers."""

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

from raagr2_monai.data.labels import regions_to_subregions
from raagr2_monai.handlers import BraTSMeanDice, BraTSMetricsWriter
from raagr2_monai.metrics import METRIC_COLUMNS, brats_metrics, mean_iou, pooled_dice, summarise, write_metrics_csv


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


def test_regions_to_subregions_exact() -> None:
    # voxels: TC+WT+ET, TC+WT, WT, nothing
    regions = torch.tensor([[[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]]], dtype=torch.uint8)
    sub = regions_to_subregions(regions, dim=1)
    assert sub.dtype == torch.uint8
    assert sub.tolist() == [[[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]]


def test_dice_exact_on_shifted_nested_cubes() -> None:
    label = nested_cubes()[None]
    pred = torch.roll(label, shifts=1, dims=-1)
    m = brats_metrics(pred, label)
    # a cube of side s shifted by one voxel keeps s^2 (s - 1) voxels: Dice (s - 1) / s
    assert float(m["dice_WT"][0]) == pytest.approx(7 / 8)
    assert float(m["dice_TC"][0]) == pytest.approx(3 / 4)
    assert float(m["dice_ET"][0]) == pytest.approx(1 / 2)
    # NCR (TC shell around ET, 56 voxels) keeps 36 voxels; ED (WT minus TC, 448 voxels) keeps 368: counted by layer
    assert float(m["dice_NCR"][0]) == pytest.approx(72 / 112)
    assert float(m["dice_ED"][0]) == pytest.approx(736 / 896)
    # each surface voxel either coincides with the other surface or lies one voxel away from it
    for name in ("TC", "WT", "ET", "NCR", "ED"):
        assert float(m[f"hd95_{name}"][0]) == pytest.approx(1.0)
    assert set(m) == {c for c in METRIC_COLUMNS if c.startswith(("dice_", "hd95_"))}
    assert all(v.shape == (1,) and v.dtype == torch.float32 for v in m.values())


def test_hd95_exact_on_parallel_plates_with_outlier_and_spacing() -> None:
    label = torch.zeros(1, 3, 8, 8, 8)
    pred = torch.zeros(1, 3, 8, 8, 8)
    label[0, :2, :, :, 1] = 1  # TC and WT: a plate at z = 1
    pred[0, :2, :, :, 4] = 1  # predicted three voxels higher
    pred[0, 0, 0, 0, 7] = 1  # one stray TC voxel six voxels away: it moves the maximum, not the 95th percentile
    m = brats_metrics(pred, label)
    assert float(m["hd95_TC"][0]) == pytest.approx(3.0)
    assert float(m["hd95_WT"][0]) == pytest.approx(3.0)
    assert float(m["dice_TC"][0]) == 0.0
    m = brats_metrics(pred, label, spacing=(1.0, 1.0, 2.5))
    assert float(m["hd95_TC"][0]) == pytest.approx(7.5)


def test_tc_channel_is_not_dropped() -> None:
    label = nested_cubes()[None]
    pred = label.clone()
    pred[0, 0, :, :, 6:] = 0  # keep the TC cube's lower half (32 of 64 voxels); WT and ET untouched
    m = brats_metrics(pred, label)
    assert float(m["dice_TC"][0]) == pytest.approx(2 * 32 / (32 + 64))
    assert float(m["hd95_TC"][0]) > 0
    assert float(m["dice_WT"][0]) == 1.0
    assert float(m["dice_ET"][0]) == 1.0


def test_empty_case_conventions() -> None:
    label = torch.zeros(2, 3, 8, 8, 8)
    pred = torch.zeros(2, 3, 8, 8, 8)
    label[:, 1, 2:5, 2:5, 2:5] = 1  # WT only: TC, ET, NCR empty in the label
    pred[:, 1, 2:5, 2:5, 2:5] = 1
    pred[1, 0, 2:4, 2:4, 2:4] = 1  # subject 1 predicts a TC that is not there
    m = brats_metrics(pred, label)
    diagonal = math.sqrt(3 * 8**2)
    assert m["dice_ET"].tolist() == [1.0, 1.0]  # both empty
    assert m["hd95_ET"].tolist() == [0.0, 0.0]
    assert m["dice_TC"].tolist() == [1.0, 0.0]  # empty label, non-empty prediction in subject 1
    assert m["hd95_TC"][0] == 0.0 and float(m["hd95_TC"][1]) == pytest.approx(diagonal)
    assert m["dice_WT"].tolist() == [1.0, 1.0]
    # the predicted TC also removes voxels from the predicted ED, which the label has everywhere in WT
    assert float(m["dice_ED"][1]) == pytest.approx(2 * 19 / (19 + 27))
    # label not empty, prediction empty: same scores; the physical diagonal follows the spacing
    m = brats_metrics(torch.zeros_like(label), label, spacing=(1.0, 1.0, 2.0))
    assert m["dice_WT"].tolist() == [0.0, 0.0]
    assert float(m["hd95_WT"][0]) == pytest.approx(math.sqrt(8**2 + 8**2 + 16**2))
    m = brats_metrics(torch.zeros_like(label), label, max_hd95=373.13)
    assert float(m["hd95_WT"][0]) == pytest.approx(373.13)


def test_brats_metrics_rejects_bad_input() -> None:
    label = torch.zeros(1, 3, 8, 8, 8)
    with pytest.raises(ValueError, match="binary"):
        brats_metrics(torch.full_like(label, 0.7), label)
    with pytest.raises(ValueError, match="TC, WT, ET"):
        brats_metrics(torch.zeros(1, 2, 8, 8, 8), torch.zeros(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8, 4\)"):
        brats_metrics(torch.zeros(1, 3, 8, 8, 4), label)
    with pytest.raises(ValueError, match="spacing"):
        brats_metrics(label, label, spacing=(1.0, 1.0))


def test_pooled_dice_is_inflated_by_background_like_channels() -> None:
    regions = nested_cubes()
    background = 1 - regions[1:2]  # the thesis's extra outputs included background-like channels
    label = torch.cat([background, regions])[None]
    prob = label * 0.9 + 0.05
    prob[0, 3] = 0.05  # ET entirely missed
    pooled = float(pooled_dice(prob, label))
    per_region = brats_metrics(prob[:, 1:] >= 0.5, label[:, 1:])
    assert float(per_region["dice_ET"][0]) == 0.0
    assert pooled > 0.85
    # exact pooled value: sums over all four channels and the whole volume
    expected = (2 * (prob * label).sum() + 1) / (prob.sum() + label.sum() + 1)
    assert pooled == pytest.approx(float(expected))
    assert pooled_dice(torch.ones(2, 3), torch.ones(2, 3), smooth=0.0) == 1.0


def test_mean_iou_exact() -> None:
    label = torch.zeros(1, 3, 4, 4, 4)
    pred = torch.zeros(1, 3, 4, 4, 4)
    label[0, 0, :2] = 1  # TC: 32 voxels, predicted 16 of them -> IoU 1/2
    pred[0, 0, :1] = 1
    label[0, 1, :2] = 1  # WT: predicted 64 voxels for 32 -> IoU 1/2
    pred[0, 1] = 1
    # ET: empty in both -> IoU 1
    assert mean_iou(pred, label).tolist() == pytest.approx([(0.5 + 0.5 + 1.0) / 3])


def test_summarise_ignores_nan_and_text() -> None:
    rows = [
        {"case": "a", "dice_TC": 0.2, "hd95_TC": 1.0},
        {"case": "b", "dice_TC": 0.4, "hd95_TC": float("nan")},
        {"case": "c", "dice_TC": 0.9, "hd95_TC": 3.0},
        {"case": "d", "dice_TC": 0.5, "hd95_TC": float("nan")},
    ]
    s = summarise(rows)
    assert "case" not in s["mean"]
    assert s["mean"]["dice_TC"] == pytest.approx(0.5)
    assert s["median"]["dice_TC"] == pytest.approx(0.45)
    assert s["std"]["dice_TC"] == pytest.approx(math.sqrt((0.09 + 0.01 + 0.16 + 0.0) / 3))
    assert s["count"]["hd95_TC"] == 2.0
    assert s["mean"]["hd95_TC"] == pytest.approx(2.0)
    assert math.isnan(summarise(rows[:1])["std"]["dice_TC"])


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
    plate_pred[:2, :, :, 4] = 1
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
    # the plate subject: spacing 2 along z from the label's affine, so the three-voxel offset is 6 mm
    assert float(c["hd95_TC"]) == pytest.approx(6.0)
    assert float(c["dice_ET"]) == 1.0 and float(c["hd95_ET"]) == 0.0
    mean = summary[0]
    assert float(mean["dice_WT"]) == pytest.approx((1 + 7 / 8 + 0) / 3)
    assert float(summary[3]["dice_TC"]) == 3.0


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
