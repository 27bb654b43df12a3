"""The scoring benchmark (``raagr2 benchmark_metrics``): its generated study, its figures and their text, on volumes
small enough to run in a second."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import label as label_components

from raagr2_monai.benchmark import lesion_study, render_scoring, scoring_command, time_scoring
from raagr2_monai.cli import COMMANDS

SMALL = (81, 81, 81)  # two lesions per axis fit: 3 x 27 voxels


def components(mask: np.ndarray) -> int:
    return int(label_components(mask, structure=np.ones((3, 3, 3)))[1])


def test_study_has_the_lesions_one_miss_and_two_false_positives():
    pred, label = lesion_study(5, SMALL)
    assert tuple(pred.shape) == tuple(label.shape) == (1, 3, *SMALL) and pred.dtype == label.dtype == torch.bool
    for channel in range(3):  # TC, WT, ET: each tumour is one lesion of every region
        assert components(label[0, channel].numpy()) == 5
        assert components(pred[0, channel].numpy()) == 5 - 1 + 2
    tc, wt, et = label[0].numpy()
    assert not (tc & ~wt).any() and not (et & ~tc).any(), "ET inside TC inside WT"
    # the first tumour (WT radius 9 around voxel 27, 27, 27) is predicted one voxel further along each axis
    assert label[0, 1, 27, 27, 18] and not pred[0, 1, 27, 27, 18]
    assert pred[0, 1, 28, 28, 37] and not label[0, 1, 28, 28, 37]


def test_timing_returns_medians_and_counts_for_a_small_volume():
    result = time_scoring(lesions=2, shape=SMALL, repeats=2)
    assert result["shape"] == list(SMALL) and result["repeats"] == 2 and result["timer"] == "time.perf_counter"
    assert result["lesion_counts"] == {"TC": [1, 2, 1], "WT": [1, 2, 1], "ET": [1, 2, 1]}
    assert set(result["seconds"]) == {"global", "lesionwise", "lesionwise_bipartite"}
    assert all(0.0 < s < 60.0 and math.isfinite(s) for s in result["seconds"].values())
    assert result["environment"]["logical_cpus"] >= 1
    text = render_scoring(result)
    assert text.startswith("study 81x81x81, 2 lesion(s) per region, lesion counts [TP, FP, FN]: TC [1, 2, 1]")
    assert "median of 2 runs (time.perf_counter)" in text and "lesion-wise, brats2023-gli (5 regions):" in text


def test_command_takes_the_shape_as_text_and_is_a_raagr2_command():
    assert "lesion-wise, bipartite matching" in scoring_command(lesions=1, shape="54,54,54", repeats=1)
    assert "benchmark_metrics" in COMMANDS


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match=r"too small for 20 lesions \(3 per axis need 108 voxels"):
        lesion_study(20, (100, 240, 155))
    with pytest.raises(ValueError, match="at least one lesion"):
        lesion_study(0, SMALL)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_scoring(1, (54, 54, 54), repeats=0)
    with pytest.raises(ValueError, match="Unknown lesion-wise preset 'brats2099'"):
        time_scoring(1, (54, 54, 54), preset="brats2099")
