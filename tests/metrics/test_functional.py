"""Global BraTS region metrics under both conventions, and the thesis-style pooled Dice and mean IoU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from raagr2_monai.data.labels import regions_to_subregions
from raagr2_monai.metrics import (
    BRATS_HD95_PENALTY,
    CONVENTIONS,
    METRIC_COLUMNS,
    brats_metrics,
    dice_hd95,
    get_convention,
    mean_iou,
    pooled_dice,
    scored_regions,
)


def nested_cubes(size: int = 16) -> torch.Tensor:
    """A (3, size, size, size) label: WT cube of side 8, TC cube of side 4 inside, ET cube of side 2 inside that."""
    label = torch.zeros(3, size, size, size)
    label[1, 2:10, 2:10, 2:10] = 1
    label[0, 4:8, 4:8, 4:8] = 1
    label[2, 5:7, 5:7, 5:7] = 1
    return label


def plates(size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Two parallel (size x size) plates, the label at z = 1 and the prediction three voxels higher: no overlap."""
    label = np.zeros((size, size, size), dtype=bool)
    pred = np.zeros_like(label)
    label[:, :, 1] = True
    pred[:, :, 4] = True
    return pred, label


def line(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((1, 1, n), dtype=bool)
    for start, stop in ranges:
        mask[0, 0, start:stop] = True
    return mask


def test_regions_to_subregions_exact() -> None:
    # voxels: TC+WT+ET, TC+WT, WT, nothing
    regions = torch.tensor([[[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]]], dtype=torch.uint8)
    sub = regions_to_subregions(regions, dim=1)
    assert sub.dtype == torch.uint8
    assert sub.tolist() == [[[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]]


def test_scored_regions_order_and_types() -> None:
    regions = torch.tensor([[[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]]])
    p, g = scored_regions(regions, regions.numpy().astype(bool))
    assert p.dtype == bool and g.dtype == bool and p.shape == (1, 5, 4)
    # TC, WT, ET, NCR = TC - ET, ED = WT - TC
    assert p.astype(int).tolist() == [[[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]]
    assert (p == g).all()


def test_dice_exact_on_shifted_nested_cubes() -> None:
    label = nested_cubes()[None]
    pred = torch.roll(label, shifts=1, dims=-1)
    for convention in CONVENTIONS:
        m = brats_metrics(pred, label, convention=convention)
        # a cube of side s shifted by one voxel keeps s^2 (s - 1) voxels: Dice (s - 1) / s
        assert float(m["dice_WT"][0]) == pytest.approx(7 / 8)
        assert float(m["dice_TC"][0]) == pytest.approx(3 / 4)
        assert float(m["dice_ET"][0]) == pytest.approx(1 / 2)
        # NCR (TC shell around ET, 56 voxels) keeps 36 voxels; ED (WT minus TC, 448 voxels) keeps 368
        assert float(m["dice_NCR"][0]) == pytest.approx(72 / 112)
        assert float(m["dice_ED"][0]) == pytest.approx(736 / 896)
        # each surface voxel either coincides with the other surface or lies one voxel away from it
        for name in ("TC", "WT", "ET", "NCR", "ED"):
            assert float(m[f"hd95_{name}"][0]) == pytest.approx(1.0)
        assert set(m) == {c for c in METRIC_COLUMNS if c.startswith(("dice_", "hd95_"))}
        assert all(v.shape == (1,) and v.dtype == np.float64 for v in m.values())


def test_pooled_hd95_on_a_known_geometry_per_convention() -> None:
    label = line(20, (0, 10))
    pred = line(20, (1, 11), (19, 20))  # overlapping, plus an outlier: see tests/metrics/test_surface.py
    assert dice_hd95(pred, label) == pytest.approx((2 * 9 / 21, 1.0))  # pooled 95th percentile
    assert dice_hd95(pred, label, convention="thesis") == pytest.approx((2 * 9 / 21, 5.5))  # larger directed one
    assert dice_hd95(pred, label, spacing=(1.0, 1.0, 2.0)) == pytest.approx((2 * 9 / 21, 2.0))
    assert dice_hd95(pred, label, spacing=(1.0, 1.0, 2.0), convention="thesis") == pytest.approx((2 * 9 / 21, 11.0))


def test_anisotropic_spacing_in_mm() -> None:
    label = nested_cubes()[None]
    pred = torch.roll(label, shifts=1, dims=-1)  # moved one voxel along z
    m = brats_metrics(pred, label, spacing=(0.5, 0.5, 3.0))
    # WT cube: the label's bottom face and the prediction's top face (64 of the 296 border voxels of each side) lie
    # one z step, 3 mm, from the other surface; every other border voxel is nearer (0.5 mm steps along x and y)
    assert float(m["hd95_WT"][0]) == pytest.approx(3.0)
    assert float(brats_metrics(pred, label)["hd95_WT"][0]) == pytest.approx(1.0)
    m = brats_metrics(pred.transpose(-1, -3), label.transpose(-1, -3), spacing=(0.5, 0.5, 3.0))
    assert float(m["hd95_WT"][0]) == pytest.approx(0.5)  # now the shift runs along x: one 0.5 mm step


def test_one_side_empty_per_convention() -> None:
    label = np.zeros((8, 8, 8), dtype=bool)
    label[2:5, 2:5, 2:5] = True
    empty = np.zeros_like(label)
    assert dice_hd95(empty, label) == (0.0, BRATS_HD95_PENALTY)
    assert dice_hd95(label, empty) == (0.0, 373.0)
    assert dice_hd95(empty, label, spacing=(1.0, 1.0, 2.0)) == (0.0, 373.0)  # a constant, whatever the volume
    diagonal = math.sqrt(8**2 + 8**2 + 16**2)  # the volume's diagonal in mm
    assert dice_hd95(empty, label, spacing=(1.0, 1.0, 2.0), convention="thesis") == pytest.approx((0.0, diagonal))
    assert dice_hd95(empty, label, convention="thesis", max_hd95=100.0) == (0.0, 100.0)
    assert dice_hd95(empty, label, max_hd95=374.0) == (0.0, 374.0)


def test_no_overlap_per_convention() -> None:
    pred, label = plates()
    assert dice_hd95(pred, label) == (0.0, 373.0)  # official: a miss
    assert dice_hd95(pred, label, convention="thesis") == pytest.approx((0.0, 3.0))  # former: the distance
    assert dice_hd95(pred, label, spacing=(1.0, 1.0, 2.5), convention="thesis") == pytest.approx((0.0, 7.5))
    pred[0, 0, 1] = True  # one voxel in common: no longer a miss, the geometric HD95 counts again
    dice, hd = dice_hd95(pred, label)
    assert dice == pytest.approx(2 / (65 + 64))
    assert hd == pytest.approx(3.0)


def test_both_empty_per_convention() -> None:
    empty = np.zeros((4, 4, 4), dtype=bool)
    dice, hd = dice_hd95(empty, empty)
    assert math.isnan(dice) and math.isnan(hd)
    assert dice_hd95(empty, empty, convention="thesis") == (1.0, 0.0)


def test_empty_regions_in_a_batch() -> None:
    label = torch.zeros(2, 3, 8, 8, 8)
    pred = torch.zeros(2, 3, 8, 8, 8)
    label[:, 1, 2:5, 2:5, 2:5] = 1  # WT only: TC, ET, NCR empty in the label
    pred[:, 1, 2:5, 2:5, 2:5] = 1
    pred[1, 0, 2:4, 2:4, 2:4] = 1  # subject 1 predicts a TC that is not there
    m = brats_metrics(pred, label)
    assert np.isnan(m["dice_ET"]).all() and np.isnan(m["hd95_ET"]).all()  # both empty
    assert math.isnan(m["dice_TC"][0]) and m["dice_TC"][1] == 0.0
    assert math.isnan(m["hd95_TC"][0]) and m["hd95_TC"][1] == 373.0
    assert m["dice_WT"].tolist() == [1.0, 1.0]
    # the predicted TC also removes voxels from the predicted ED, which the label has everywhere in WT
    assert float(m["dice_ED"][1]) == pytest.approx(2 * 19 / (19 + 27))
    thesis = brats_metrics(pred, label, convention="thesis")
    assert thesis["dice_ET"].tolist() == [1.0, 1.0] and thesis["hd95_ET"].tolist() == [0.0, 0.0]
    assert thesis["dice_TC"].tolist() == [1.0, 0.0]
    assert float(thesis["hd95_TC"][1]) == pytest.approx(math.sqrt(3 * 8**2))


def test_tc_channel_is_not_dropped() -> None:
    label = nested_cubes()[None]
    pred = label.clone()
    pred[0, 0, :, :, 6:] = 0  # keep the TC cube's lower half (32 of 64 voxels); WT and ET untouched
    m = brats_metrics(pred, label)
    assert float(m["dice_TC"][0]) == pytest.approx(2 * 32 / (32 + 64))
    assert float(m["hd95_TC"][0]) > 0
    assert float(m["dice_WT"][0]) == 1.0
    assert float(m["dice_ET"][0]) == 1.0


def test_numpy_and_metatensor_inputs_agree() -> None:
    label = nested_cubes()[None]
    pred = torch.roll(label, shifts=1, dims=-2)
    from_torch = brats_metrics(MetaTensor(pred), MetaTensor(label))
    from_numpy = brats_metrics(pred.numpy().astype(bool), label.numpy().astype(np.uint8))
    assert all(np.array_equal(from_torch[k], from_numpy[k], equal_nan=True) for k in from_torch)


def test_conventions_are_named_with_their_reference() -> None:
    assert "brats-evaluation 0.0.10" in get_convention("brats").description
    assert "373" in get_convention("brats").description
    assert get_convention("thesis").description.startswith("thesis:")
    assert get_convention(CONVENTIONS["thesis"]) is CONVENTIONS["thesis"]
    with pytest.raises(ValueError, match=r"'brats', 'thesis'"):
        get_convention("medpy")


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
    with pytest.raises(ValueError, match="convention"):
        brats_metrics(label, label, convention="panoptica")


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
    with pytest.raises(ValueError, match="shape"):
        pooled_dice(torch.ones(2, 3), torch.ones(3, 2))


def test_mean_iou_exact() -> None:
    label = torch.zeros(1, 3, 4, 4, 4)
    pred = torch.zeros(1, 3, 4, 4, 4)
    label[0, 0, :2] = 1  # TC: 32 voxels, predicted 16 of them -> IoU 1/2
    pred[0, 0, :1] = 1
    label[0, 1, :2] = 1  # WT: predicted 64 voxels for 32 -> IoU 1/2
    pred[0, 1] = 1
    # ET: empty in both -> IoU 1
    iou = mean_iou(pred, label)
    assert iou.dtype == torch.float32 and iou.tolist() == pytest.approx([(0.5 + 0.5 + 1.0) / 3])
