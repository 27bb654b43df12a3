"""Slices turned for display the same way whatever the file's voxel order."""

from __future__ import annotations

import numpy as np
import pytest

from raagr2_monai.visualize import axial_view

from .tiny_case import SHAPE, anatomy, lps, lps_affine


def marker_corner(plane: np.ndarray) -> tuple[str, str]:
    """Where the brightest voxels are in a displayed slice: (top|bottom, left|right)."""
    rows, cols = np.nonzero(plane == plane.max())
    return ("top" if rows.mean() < plane.shape[0] / 2 else "bottom", "left" if cols.mean() < plane.shape[1] / 2 else "right")


def test_ras_and_lps_files_show_the_same_anatomy_the_same_way() -> None:
    images, _ = anatomy()
    ras = images["flair"]
    ras_view, lps_view = axial_view(np.eye(4)), axial_view(lps_affine())
    for z in (1, 5, 8):
        shown = ras_view.slice(ras, z)
        assert shown.shape == (SHAPE[1], SHAPE[0])  # rows: anterior-posterior (y), columns: left-right (x)
        np.testing.assert_array_equal(lps_view.slice(lps(ras), z), shown)
        # the marker is right anterior: anterior up, the patient's right on the left of the picture
        assert marker_corner(shown) == ("top", "left")
    assert marker_corner(axial_view(np.eye(4), radiological=False).slice(ras, 5)) == ("top", "right")
    assert marker_corner(axial_view(lps_affine(), radiological=False).slice(lps(ras), 5)) == ("top", "right")
    assert ras_view.edge_labels() == ("A", "P", "R", "L")


def test_swapped_and_slice_first_storage() -> None:
    ras = anatomy()[0]["flair"]
    expected = axial_view().slice(ras, 5)
    # stored as (y, x, z): voxel (j, i, k) lies at world (i, j, k)
    swapped = np.array([[0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    np.testing.assert_array_equal(axial_view(swapped).slice(ras.transpose(1, 0, 2), 5), expected)
    # stored as (z, x, y), with z running inferior: the slicing axis is the first one, counted from the top
    z_first = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [-1.0, 0, 0, SHAPE[2] - 1], [0, 0, 0, 1.0]])
    view = axial_view(z_first)
    assert view.slice_axis == 0
    np.testing.assert_array_equal(view.slice(ras.transpose(2, 0, 1)[::-1], SHAPE[2] - 1 - 5), expected)


def test_pixel_aspect_follows_the_voxel_spacing() -> None:
    view = axial_view(np.diag([0.5, 2.0, 3.0, 1.0]))
    assert view.aspect == 4.0  # a displayed pixel is 2 mm (y, rows) high and 0.5 mm (x, columns) wide
    assert axial_view(np.diag([-0.5, -2.0, 3.0, 1.0])).aspect == 4.0


def test_bad_affine_and_slice() -> None:
    with pytest.raises(ValueError, match="invertible 4x4 affine"):
        axial_view(np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="invertible 4x4 affine"):
        axial_view(np.eye(3))
    with pytest.raises(ValueError, match=r"Slice 10 is outside the volume's 10 slices along axis 2"):
        axial_view().slice(np.zeros(SHAPE), 10)
    with pytest.raises(ValueError, match="3D volume"):
        axial_view().slice(np.zeros((2, 2)), 0)
