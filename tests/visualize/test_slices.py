"""The axial slices chosen through the tumour."""

from __future__ import annotations

import numpy as np
import pytest

from raagr2_monai.visualize import TumourSlice, region_masks, tumour_slices


def labels() -> np.ndarray:
    """(6, 6, 8): WT areas per z 0, 0, 9, 0, 16, 16, 4, 0 (first largest: 4); TC areas 0, 0, 0, 0, 1, 4, 4, 0
    (first largest: 5); ET only on z 6 (area 2)."""
    seg = np.zeros((6, 6, 8), np.uint8)
    seg[0:3, 0:3, 2] = 2
    seg[1:5, 1:5, 4:6] = 2
    seg[2, 2, 4] = 1
    seg[2:4, 2:4, 5] = 1
    seg[2:4, 2:4, 6] = 1
    seg[2, 2:4, 6] = 4
    return seg


def test_largest_slice_of_each_region_in_order_wt_tc_et() -> None:
    assert tumour_slices(region_masks(labels())) == [
        TumourSlice(4, ("largest WT",)),
        TumourSlice(5, ("largest TC",)),
        TumourSlice(6, ("largest ET",)),
    ]


def test_a_slice_chosen_by_several_regions_is_listed_once() -> None:
    seg = labels()
    seg[2:4, 2:4, 6] = 0
    seg[2, 2:4, 5] = 4  # ET moves onto TC's largest slice
    assert tumour_slices(region_masks(seg)) == [TumourSlice(4, ("largest WT",)), TumourSlice(5, ("largest TC", "largest ET"))]


def test_region_missing_from_the_truth_is_looked_for_in_the_prediction() -> None:
    truth = labels()
    truth[truth == 4] = 1  # no ET in the ground truth
    pred = truth.copy()
    pred[0, 0, 2] = 4  # a false-positive ET on slice 2
    assert tumour_slices(region_masks(truth), region_masks(pred)) == [
        TumourSlice(4, ("largest WT",)),
        TumourSlice(5, ("largest TC",)),
        TumourSlice(2, ("largest ET (predicted)",)),
    ]
    # empty on both sides: skipped
    assert [s.index for s in tumour_slices(region_masks(truth), region_masks(truth))] == [4, 5]


def test_without_any_tumour_the_brain_centre_is_shown() -> None:
    empty = region_masks(np.zeros((6, 6, 9), np.uint8))
    image = np.zeros((6, 6, 9))
    image[1:5, 1:5, 2:8] = 1.0  # brain on slices 2..7
    assert tumour_slices(empty, empty, image=image) == [TumourSlice(4, ("brain centre",))]
    assert tumour_slices(empty) == [TumourSlice(4, ("brain centre",))]  # 9 // 2 without an image
    assert tumour_slices(empty, image=np.zeros((6, 6, 9))) == [TumourSlice(4, ("brain centre",))]


def test_slices_along_another_axis() -> None:
    # the same label map stored with z first: the same slices, counted along axis 0
    assert tumour_slices(region_masks(labels().transpose(2, 0, 1)), axis=0) == tumour_slices(region_masks(labels()))


def test_bad_masks_are_refused() -> None:
    masks = region_masks(labels())
    with pytest.raises(ValueError, match=r"\(3, X, Y, Z\) region masks"):
        tumour_slices(masks[:2])
    with pytest.raises(ValueError, match="differ from the true ones"):
        tumour_slices(masks, masks[:, :, :, :4])
    with pytest.raises(ValueError, match="axis must be"):
        tumour_slices(masks, axis=3)
