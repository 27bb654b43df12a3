"""Failure prediction from a per-study uncertainty: Spearman and AUROC on constructed cases, and the reliability
pooled from per-study bin sums."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raagr2_monai.metrics import (
    failure_prediction,
    reliability,
    reliability_counts,
    reliability_from_counts,
    study_uncertainty,
    subject_mean_dice,
)


def test_a_score_that_ranks_the_subjects_perfectly_gives_spearman_minus_one_and_auroc_one():
    dices = [0.9, 0.3, 0.85, 0.5, 0.95, 0.7]
    scores = [1.0 - d for d in dices]  # the worse the subject, the more uncertain
    figures = failure_prediction(scores, dices, failure_dice=0.8)
    assert figures == {"subjects": 6, "failure_dice": 0.8, "failures": 3, "spearman": pytest.approx(-1.0),
                       "auroc": 1.0}
    # the opposite score is as wrong as can be; a constant score says nothing
    backwards = failure_prediction(dices, dices, failure_dice=0.8)
    assert backwards["spearman"] == pytest.approx(1.0) and backwards["auroc"] == 0.0
    flat = failure_prediction([0.4] * 6, dices, failure_dice=0.8)
    assert math.isnan(flat["spearman"]) and flat["auroc"] == 0.5


def test_subjects_without_a_score_or_a_dice_are_left_out_and_one_class_gives_no_auroc():
    figures = failure_prediction([0.9, math.nan, 0.5, 0.1], [0.2, 0.1, math.nan, 0.9], failure_dice=0.5)
    assert (figures["subjects"], figures["failures"]) == (2, 1)
    assert math.isnan(figures["spearman"])  # fewer than 3 pairs
    assert figures["auroc"] == 1.0
    none_below = failure_prediction([0.1, 0.2, 0.3], [0.9, 0.95, 0.99], failure_dice=0.8)
    assert none_below["failures"] == 0 and math.isnan(none_below["auroc"])
    with pytest.raises(ValueError, match="one Dice per score"):
        failure_prediction([0.1, 0.2], [0.5], failure_dice=0.8)


def test_mean_dice_of_a_subject_leaves_empty_regions_out():
    assert subject_mean_dice({"dice_TC": 0.5, "dice_WT": 0.7, "dice_ET": math.nan}) == pytest.approx(0.6)
    assert math.isnan(subject_mean_dice({"dice_TC": math.nan, "dice_WT": "", "dice_ET": None}))


def _reference_counts(p: np.ndarray, y: np.ndarray, bins: int) -> np.ndarray:
    """The bin sums written out the plain way (float64, numpy's digitize with right-closed bins)."""
    edges = np.linspace(0.5, 1.0, bins + 1)
    p64, truth = p.ravel().astype(np.float64), y.ravel() > 0.5
    confidence = np.maximum(p64, 1 - p64)
    correct = (p64 >= 0.5) == truth
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return np.stack([np.bincount(index, minlength=bins), np.bincount(index, weights=confidence, minlength=bins),
                     np.bincount(index, weights=correct, minlength=bins)], axis=1)


def _volume(seed: int, shape=(3, 12, 10, 8)) -> tuple[np.ndarray, np.ndarray]:
    """Mostly confident background with an uncertain blob, and a label that the blob half overlaps."""
    rng = np.random.default_rng(seed)
    p = (rng.random(shape) * 0.03).astype(np.float32)
    p[:, 3:8, 2:7, 2:6] = rng.random((shape[0], 5, 5, 4)).astype(np.float32)
    y = np.zeros(shape, np.float32)
    y[:, 5:10, 2:7, 2:6] = 1.0
    return p, y


@pytest.mark.parametrize("bins", [1, 5, 10, 20])
def test_reliability_counts_are_the_plain_bin_sums(bins):
    p, y = _volume(0)
    counts = reliability_counts(p, y, bins)
    np.testing.assert_allclose(counts, _reference_counts(p, y, bins), rtol=1e-6, atol=1e-6)
    assert counts[:, 0].sum() == p.size and counts[:, 2].sum() <= p.size


def test_reliability_pooled_from_per_study_sums_is_that_of_the_studies_together():
    (p1, y1), (p2, y2) = _volume(1), _volume(2, shape=(3, 9, 10, 8))
    pooled = reliability_from_counts(reliability_counts(p1, y1) + reliability_counts(p2, y2))
    together = reliability(np.concatenate([p1.ravel(), p2.ravel()])[None],
                           np.concatenate([y1.ravel(), y2.ravel()])[None])
    assert pooled["voxels"] == together["voxels"] == p1.size + p2.size
    assert pooled["ece"] == pytest.approx(together["ece"], rel=1e-9)
    assert [b["count"] for b in pooled["bins"]] == [b["count"] for b in together["bins"]]


def test_reliability_counts_in_a_mask_count_every_channel_of_its_voxels():
    p, y = _volume(3)
    mask = p.max(axis=0) >= 0.1
    inside, outside = reliability_counts(p, y, mask=mask), reliability_counts(p, y, mask=~mask)
    np.testing.assert_allclose(inside + outside, reliability_counts(p, y), rtol=1e-9)
    assert inside[:, 0].sum() == 3 * mask.sum()
    with pytest.raises(ValueError, match="spatial shape"):
        reliability_counts(p, y, mask=mask[:-1])
    with pytest.raises(ValueError, match="labels of the probabilities' shape"):
        reliability_counts(p, y[:2])


def test_a_perfectly_calibrated_bin_has_no_error_and_no_voxel_gives_nan():
    # confidence 0.75 in every voxel-channel, right on three of four: accuracy 0.75, ECE 0
    result = reliability(np.array([[0.75, 0.75, 0.25, 0.25]]), np.array([[1, 1, 0, 1]]), bins=5)
    assert result["ece"] == pytest.approx(0.0, abs=1e-7)
    (filled,) = [b for b in result["bins"] if b["count"]]
    assert filled["count"] == 4 and filled["accuracy"] == 0.75
    empty = reliability_from_counts(np.zeros((4, 3)))
    assert math.isnan(empty["ece"]) and empty["voxels"] == 0 and math.isnan(empty["bins"][0]["accuracy"])
    with pytest.raises(ValueError, match="bins"):
        reliability_counts(np.zeros((1, 2)), np.zeros((1, 2)), bins=0)


def test_study_uncertainty_refuses_what_is_not_probabilities():
    p, _ = _volume(4)
    assert 0.0 < study_uncertainty(p) <= 3 * math.log(2)
    assert study_uncertainty(np.zeros((3, 4, 4))) == 0.0  # nothing reaches the margin: confident and empty
    for bad in (np.full((3, 2, 2), np.nan), np.full((3, 2, 2), 1.5), np.full((3, 2, 2), -0.1)):
        with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
            study_uncertainty(bad)
