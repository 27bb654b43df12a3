"""Lesion-wise metrics on hand-worked lesion layouts: merging, matching, small lesions, penalties, counts."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from raagr2_monai.constants import SCORED_REGIONS
from raagr2_monai.data.labels import labelmap_to_regions
from raagr2_monai.metrics import (
    LESIONWISE_COLUMNS,
    LESIONWISE_PRESETS,
    LesionwiseSettings,
    gt_lesions,
    lesionwise_metrics,
    lesionwise_region,
    score_subject,
    scored_regions,
)


def line(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    """A (1, 1, n) mask, True on the given [start, stop) ranges: lesions along a line, every voxel a border voxel."""
    mask = np.zeros((1, 1, n), dtype=bool)
    for start, stop in ranges:
        mask[0, 0, start:stop] = True
    return mask


# label: A = 2..9 and B = 14..19 (one lesion after 3 dilations), C = 30..39, D = 50..51 (small)
LABEL = line(60, (2, 10), (14, 20), (30, 40), (50, 52))
# prediction: P1 = 3..10 on A; P2 = 42..44 touches only C's dilated region; P3 = 52..53 touches D's; P4 = 57..58
PRED = line(60, (3, 11), (42, 45), (52, 54), (57, 59))
# HD95 of P1 against A + B: pooled distances 14 x 0, 2 x 1, 4, 5, 6, 7, 8, 9 -> rank 19.95 of 0..21 -> 7.95;
# of P2 against C: 3, 3, 4, 4, 5, 5, 6, ..., 12 -> rank 11.4 of 0..12 -> 11.4; of P3 against D: 1, 1, 2, 2 -> 2
HD_AB, HD_C, HD_D = 7.95, 11.4, 2.0
#: every lesion scored, whatever its size
ANY_SIZE = LesionwiseSettings(min_lesion_volume=0)
#: and every label component a lesion of its own
EVERY_COMPONENT = replace(ANY_SIZE, gt_dilation=0)


def test_gt_lesions_merge_by_dilation() -> None:
    lesions, rois, count = gt_lesions(LABEL, gt_dilation=3)
    assert count == 3
    assert np.unique(lesions[LABEL]).tolist() == [1, 2, 3]
    assert (lesions[0, 0, 2:10] == 1).all() and (lesions[0, 0, 14:20] == 1).all()  # A and B merged
    assert (lesions[~LABEL] == 0).all()  # the label itself is not dilated
    assert np.flatnonzero(rois[0, 0] == 2).tolist() == list(range(27, 43))  # C grown by 3 on each side
    lesions, rois, count = gt_lesions(LABEL, gt_dilation=0)
    assert count == 4 and (rois == lesions).all()
    # four empty voxels between A and B: two steps from each side make the dilations adjacent, one step does not
    assert gt_lesions(LABEL, gt_dilation=2)[2] == 3
    assert gt_lesions(LABEL, gt_dilation=1)[2] == 4


def test_gt_lesions_connectivity() -> None:
    diagonal = np.zeros((3, 3, 3), dtype=bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True
    assert gt_lesions(diagonal, gt_dilation=0)[2] == 1  # full (26) connectivity by default
    assert gt_lesions(diagonal, connectivity=1, gt_dilation=0)[2] == 2
    assert gt_lesions(diagonal, connectivity=1, gt_dilation=1)[2] == 1  # their dilations touch face to face


def test_dilated_overlap_matching_brats2023() -> None:
    r = lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(gt_dilation=3, min_lesion_volume=5))
    # lesions A+B (14 voxels), C (10), D (2: at most 5, ignored); P3 touches D, so it is no false positive; P4 is
    assert (r.tp, r.fn, r.fp) == (2, 0, 1)
    assert r.lesion_volume.tolist() == [14.0, 10.0, 2.0]
    assert r.lesion_scored.tolist() == [True, True, False]
    assert r.lesion_detected.tolist() == [True, True, True]
    assert r.lesion_dice.tolist() == pytest.approx([2 * 7 / (14 + 8), 0.0, 0.0])  # P2 touches C's region only
    assert r.lesion_hd95.tolist() == pytest.approx([HD_AB, HD_C, HD_D])
    assert r.dice == pytest.approx((14 / 22 + 0.0) / 3)  # the false positive counts as a third lesion
    assert r.hd95 == pytest.approx((HD_AB + HD_C + 373.0) / 3)
    assert (r.precision, r.recall, r.f1) == pytest.approx((2 / 3, 1.0, 0.8))


def test_small_lesion_threshold_is_inclusive_and_in_mm3() -> None:
    r = lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(min_lesion_volume=2))
    assert r.lesion_scored.tolist() == [True, True, False]
    # D (2 voxels) now counts: found by P3, Dice 0
    r = lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(min_lesion_volume=1.9))
    assert (r.tp, r.fn, r.fp) == (3, 0, 1)
    assert r.dice == pytest.approx((14 / 22) / 4)
    assert r.hd95 == pytest.approx((HD_AB + HD_C + HD_D + 373.0) / 4)
    # at 2 mm along the line D has 4 mm^3, above 3; every distance doubles
    r = lesionwise_region(PRED, LABEL, spacing=(1.0, 1.0, 2.0), settings=LesionwiseSettings(min_lesion_volume=3))
    assert r.lesion_volume.tolist() == [28.0, 20.0, 4.0]
    assert r.hd95 == pytest.approx((2 * (HD_AB + HD_C + HD_D) + 373.0) / 4)
    r = lesionwise_region(PRED, LABEL, spacing=(1.0, 1.0, 2.0), settings=LesionwiseSettings(min_lesion_volume=5))
    assert r.lesion_scored.tolist() == [True, True, False]


def test_bipartite_matching_brats_evaluation() -> None:
    settings = LesionwiseSettings(**{**LESIONWISE_PRESETS["brats-evaluation-gli"], "min_lesion_volume": 5})
    r = lesionwise_region(PRED, LABEL, settings=settings)
    # no merging: A, B, C, D (ignored); only P1 overlaps a lesion (A, Dice 14 / 16); P2, P3, P4 are false positives
    assert (r.tp, r.fn, r.fp) == (1, 2, 3)
    assert r.lesion_dice.tolist() == pytest.approx([14 / 16, 0.0, 0.0, 0.0])
    assert r.lesion_hd95.tolist() == pytest.approx([1.0, 373.0, 373.0, 373.0])
    assert r.dice == pytest.approx((14 / 16) / 6)
    assert r.hd95 == pytest.approx((1.0 + 5 * 373.0) / 6)
    assert (r.precision, r.recall, r.f1) == pytest.approx((1 / 4, 1 / 3, 2 / 7))


def test_many_to_one_and_one_to_one() -> None:
    label = line(40, (0, 4), (6, 10), (20, 30))  # E, F, G
    pred = line(40, (2, 8), (20, 24), (26, 30))  # Q overlaps E and F; R1 and R2 both lie in G
    r = lesionwise_region(pred, label, settings=EVERY_COMPONENT)
    # dilated_overlap: Q serves both E and F (Dice 2 * 2 / (4 + 6) each), G takes the union of R1 and R2
    assert (r.tp, r.fn, r.fp) == (3, 0, 0)
    assert r.lesion_dice.tolist() == pytest.approx([0.4, 0.4, 16 / 18])
    r = lesionwise_region(pred, label, settings=replace(EVERY_COMPONENT, matching="bipartite"))
    # one-to-one: Q goes to E or F (the other is missed), G to R1 or R2 (the other is a false positive)
    assert (r.tp, r.fn, r.fp) == (2, 1, 1)
    assert sorted(r.lesion_dice.tolist()) == pytest.approx([0.0, 0.4, 8 / 14])
    assert r.dice == pytest.approx((0.4 + 8 / 14) / 4)


def test_empty_cases_per_convention() -> None:
    empty = line(20)
    r = lesionwise_region(empty, empty)
    assert (r.tp, r.fp, r.fn) == (0, 0, 0)
    assert all(math.isnan(v) for v in (r.dice, r.hd95, r.precision, r.recall, r.f1))
    r = lesionwise_region(empty, empty, settings=LesionwiseSettings(convention="thesis"))
    assert (r.dice, r.hd95) == (1.0, 0.0)
    r = lesionwise_region(line(20, (2, 5)), empty, settings=ANY_SIZE)  # a false positive only
    assert (r.tp, r.fp, r.fn, r.dice, r.hd95, r.precision, r.f1) == (0, 1, 0, 0.0, 373.0, 0.0, 0.0)
    assert math.isnan(r.recall)
    r = lesionwise_region(empty, line(20, (2, 5)), settings=replace(ANY_SIZE, convention="thesis"))  # a missed lesion
    assert (r.tp, r.fp, r.fn, r.dice) == (0, 0, 1, 0.0)
    assert r.hd95 == pytest.approx(math.sqrt(1 + 1 + 20**2))  # the volume diagonal under "thesis"
    r = lesionwise_region(empty, line(20, (2, 5)), settings=replace(ANY_SIZE, max_hd95=374.0))
    assert r.hd95 == 374.0


def test_lesionwise_metrics_per_region_and_batch() -> None:
    label = torch.zeros(2, 3, 12, 12, 12)
    label[:, 1, 1:5, 1:5, 1:5] = 1  # WT lesion 1
    label[:, 0, 2:4, 2:4, 2:4] = 1  # TC inside it
    label[:, 1, 8:11, 8:11, 8:11] = 1  # WT lesion 2, edema only
    pred = label.clone()
    pred[1, 1, 8:11, 8:11, 8:11] = 0  # subject 1 misses lesion 2
    m = lesionwise_metrics(pred, label, spacing=(1.0, 1.0, 1.0), settings=EVERY_COMPONENT)
    assert tuple(m) == LESIONWISE_COLUMNS
    assert len(LESIONWISE_COLUMNS) == 8 * len(SCORED_REGIONS)
    assert all(v.shape == (2,) and v.dtype == np.float64 for v in m.values())
    assert m["lesion_tp_WT"].tolist() == [2.0, 1.0] and m["lesion_fn_WT"].tolist() == [0.0, 1.0]
    assert m["lesion_dice_WT"].tolist() == [1.0, 0.5]
    assert m["lesion_hd95_WT"].tolist() == [0.0, 373.0 / 2]
    assert m["lesion_tp_ED"].tolist() == [2.0, 1.0]  # ED: the shell around TC, and lesion 2
    assert np.isnan(m["lesion_dice_ET"]).all() and (m["lesion_fp_ET"] == 0).all()  # no ET anywhere
    # the batch function is the per-region function over scored_regions
    p, g = scored_regions(pred, label)
    for c, name in enumerate(SCORED_REGIONS):
        stats = lesionwise_region(p[1, c], g[1, c], settings=EVERY_COMPONENT).stats()
        assert all(
            np.array_equal(m[f"lesion_{k}_{name}"][1], v, equal_nan=True) for k, v in stats.items()
        )


def test_results_do_not_depend_on_the_surrounding_volume() -> None:
    big_pred = np.zeros((3, 5, 90), dtype=bool)
    big_label = np.zeros_like(big_pred)
    big_pred[1, 2, 20:80] = PRED[0, 0]
    big_label[1, 2, 20:80] = LABEL[0, 0]
    for matching in ("dilated_overlap", "bipartite"):
        settings = LesionwiseSettings(matching=matching, min_lesion_volume=5)
        small = lesionwise_region(PRED, LABEL, settings=settings)
        big = lesionwise_region(big_pred, big_label, settings=settings)
        assert small.stats() == pytest.approx(big.stats())
        assert small.lesion_hd95.tolist() == pytest.approx(big.lesion_hd95.tolist())


def test_presets_are_keyword_sets() -> None:
    for preset in LESIONWISE_PRESETS.values():
        r = lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(**preset))
        assert r.tp + r.fn == int(r.lesion_scored.sum())
    # dilation 1, threshold 2
    met = lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(**LESIONWISE_PRESETS["brats2023-met"]))
    assert met.lesion_volume.tolist() == [8.0, 6.0, 10.0, 2.0]  # A and B stay apart with one dilation


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="matching"):
        lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(matching="hungarian"))
    with pytest.raises(ValueError, match="gt_dilation"):
        lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(gt_dilation=-1))
    with pytest.raises(ValueError, match="connectivity"):
        lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(connectivity=4))
    with pytest.raises(ValueError, match="min_lesion_volume"):
        lesionwise_region(PRED, LABEL, settings=LesionwiseSettings(min_lesion_volume=-1))
    with pytest.raises(ValueError, match="shape"):
        lesionwise_region(PRED, LABEL[..., :30])
    with pytest.raises(ValueError, match="binary"):
        lesionwise_region(PRED * 2, LABEL)
    with pytest.raises(ValueError, match="spacing"):
        lesionwise_region(PRED, LABEL, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="TC, WT, ET"):
        lesionwise_metrics(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 4, 4)))


def test_default_settings_are_the_brats2023_gli_evaluation() -> None:
    assert LesionwiseSettings() == LesionwiseSettings(**LESIONWISE_PRESETS["brats2023-gli"])
    assert (LesionwiseSettings().connectivity, LesionwiseSettings().dilation_connectivity) == (None, 2)
    assert LesionwiseSettings().check().name == "brats"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"matching": "hungarian"},
         "Unknown lesion matching 'hungarian'; choose one of ['dilated_overlap', 'bipartite']."),
        ({"min_lesion_volume": -1}, "min_lesion_volume must be >= 0, got -1."),
        ({"gt_dilation": -1}, "gt_dilation must be >= 0, got -1."),
        ({"convention": "kaggle"}, "Unknown metric convention 'kaggle'; choose one of ['brats', 'thesis']."),
    ],
)
def test_settings_check_refuses_a_bad_value_in_one_line(changes, message) -> None:
    with pytest.raises(ValueError) as refused:
        LesionwiseSettings(**changes).check()
    assert str(refused.value) == message


def test_an_evaluations_options_score_as_the_settings_they_name() -> None:
    """A bundle's ``lesionwise`` mapping (with the evaluation's convention) scores a subject as the settings
    object built from the same values."""
    truth = torch.zeros(1, 12, 12, 12, dtype=torch.uint8)
    truth[0, 1:5, 1:5, 1:5], truth[0, 2:4, 2:4, 2:4], truth[0, 8:11, 8:11, 8:11] = 2, 4, 2
    pred = truth.clone()
    pred[0, 8:11, 8:11, 8:11] = 0
    row = score_subject(pred, truth, "c", convention="thesis", lesionwise={"min_lesion_volume": 0.0, "gt_dilation": 1})
    settings = LesionwiseSettings(min_lesion_volume=0.0, gt_dilation=1, convention="thesis")
    regions = [labelmap_to_regions(t)[None].bool() for t in (pred, truth)]
    expected = lesionwise_metrics(*regions, settings=settings)
    assert {k: row[k] for k in LESIONWISE_COLUMNS} == pytest.approx({k: float(v[0]) for k, v in expected.items()},
                                                                     nan_ok=True)
    assert row["lesion_fn_WT"] == 1.0 and row["lesion_dice_ED"] == 0.5
