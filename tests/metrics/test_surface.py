"""Surface borders, distances and HD95: hand-worked geometries, spacing, and agreement with the reference formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance
from scipy.ndimage import binary_dilation, binary_erosion, distance_transform_edt

from raagr2_monai.metrics import bounding_box, check_spacing, hd95, mask_border, surface_distances


def line(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    """A (1, 1, n) mask, True on the given [start, stop) ranges: every voxel of it is a border voxel."""
    mask = np.zeros((1, 1, n), dtype=bool)
    for start, stop in ranges:
        mask[0, 0, start:stop] = True
    return mask


def random_blobs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return binary_dilation(rng.random(shape) < 0.08, iterations=1)


def test_mask_border_equals_scipy_erosion_xor() -> None:
    rng = np.random.default_rng(0)
    for shape in [(9,), (6, 7), (5, 6, 7)]:
        for _ in range(10):
            mask = rng.random(shape) < 0.7
            assert (mask_border(mask) == (mask ^ binary_erosion(mask))).all()
    cube = np.zeros((5, 5, 5), dtype=bool)
    cube[1:4, 1:4, 1:4] = True
    assert int(mask_border(cube).sum()) == 26  # a 3^3 cube keeps only its centre
    assert mask_border(np.ones((3, 3), dtype=bool)).sum() == 8  # the array's edge counts as background


def test_pooled_and_directed_hd95_on_a_known_geometry() -> None:
    label = line(20, (0, 10))
    pred = line(20, (1, 11), (19, 20))  # shifted by one voxel, plus an outlier 10 voxels from the label
    pred_to_label, label_to_pred = surface_distances(pred, label)
    assert sorted(pred_to_label.tolist()) == [0.0] * 9 + [1.0, 10.0]
    assert sorted(label_to_pred.tolist()) == [0.0] * 9 + [1.0]
    # pooled: 18 zeros, two ones, one 10 -> the 95th percentile (rank 19 of 0..20) is 1
    assert hd95(pred, label) == pytest.approx(1.0)
    # directed: pred -> label ranks 9.5 between 1 and 10 -> 5.5; label -> pred 0.55; the larger is 5.5
    assert hd95(pred, label, pooled=False) == pytest.approx(5.5)
    assert hd95(pred, label, spacing=(1.0, 1.0, 2.5)) == pytest.approx(2.5)
    assert hd95(pred, label, spacing=(1.0, 1.0, 2.5), pooled=False) == pytest.approx(13.75)


def test_anisotropic_spacing_changes_the_nearest_voxel() -> None:
    pred = np.zeros((5, 5), dtype=bool)
    pred[0, 0] = True
    label = np.zeros((5, 5), dtype=bool)
    label[3, 0] = label[0, 2] = True
    # at 1 x 1 the nearest label voxel is (0, 2), 2 away; at 1 x 2 mm it is (3, 0), 3 mm away, (0, 2) being 4 mm
    assert surface_distances(pred, label)[0].tolist() == [2.0]
    assert surface_distances(pred, label, spacing=(1.0, 2.0))[0].tolist() == [3.0]
    assert sorted(surface_distances(pred, label, spacing=(1.0, 2.0))[1].tolist()) == [3.0, 4.0]
    assert hd95(pred, label) == pytest.approx(2.9)  # pooled [2, 2, 3]
    assert hd95(pred, label, spacing=(1.0, 2.0)) == pytest.approx(3.9)  # pooled [3, 3, 4]


def test_pooled_hd95_equals_the_distance_transform_formula_of_panoptica() -> None:
    rng = np.random.default_rng(1)
    for _ in range(8):
        shape = tuple(int(n) for n in rng.integers(10, 18, size=3))
        a, b = random_blobs(rng, shape), random_blobs(rng, shape)
        spacing = tuple(float(s) for s in rng.uniform(0.5, 3.0, size=3))
        border_a, border_b = a ^ binary_erosion(a), b ^ binary_erosion(b)
        d_ab = distance_transform_edt(~border_b, sampling=spacing)[border_a]
        d_ba = distance_transform_edt(~border_a, sampling=spacing)[border_b]
        assert hd95(a, b, spacing) == pytest.approx(np.percentile(np.hstack((d_ab, d_ba)), 95), rel=1e-12)


def test_directed_hd95_equals_monai() -> None:
    rng = np.random.default_rng(2)
    for _ in range(8):
        shape = tuple(int(n) for n in rng.integers(10, 18, size=3))
        a, b = random_blobs(rng, shape), random_blobs(rng, shape)
        spacing = [float(s) for s in rng.uniform(0.5, 3.0, size=3)]
        expected = compute_hausdorff_distance(
            torch.from_numpy(a)[None, None].float(),
            torch.from_numpy(b)[None, None].float(),
            include_background=True,
            percentile=95,
            spacing=spacing,
        )
        # MONAI computes in float32
        assert hd95(a, b, spacing, pooled=False) == pytest.approx(float(expected[0, 0]), rel=1e-6)


def test_torch_and_float_masks_are_accepted() -> None:
    label = line(20, (0, 10))
    pred = line(20, (1, 11), (19, 20))
    assert hd95(torch.from_numpy(pred).float(), torch.from_numpy(label)) == pytest.approx(1.0)


def test_bad_input_is_refused() -> None:
    mask = line(8, (0, 3))
    with pytest.raises(ValueError, match="non-empty"):
        hd95(mask, np.zeros_like(mask))
    with pytest.raises(ValueError, match="shape"):
        hd95(mask, line(9, (0, 3)))
    with pytest.raises(ValueError, match="binary"):
        hd95(mask * 0.5, mask)
    with pytest.raises(ValueError, match="spacing"):
        hd95(mask, mask, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        check_spacing((1.0, 0.0), 2)
    with pytest.raises(ValueError, match="empty"):
        bounding_box(np.zeros(3, dtype=bool))
