"""Axial slices of a volume stored in any voxel order, turned for display: anterior up, the patient's right on the
left of the picture (the radiological convention of clinical viewers) or on its right (neurological).

A NIfTI array is in its file's voxel order; the affine says where each voxel axis points. nibabel's
``io_orientation`` (the function behind ``aff2axcodes``) gives, for every voxel axis, the nearest RAS+ world axis and
whether the index runs along it or against it. The voxel axis nearest superior-inferior is the slicing axis; of the
two others, the one nearest anterior-posterior becomes the rows and the one nearest left-right the columns, each
reversed when needed. An RAS file (``aff2axcodes`` ``('R', 'A', 'S')``), an LPS one (``('L', 'P', 'S')``, DICOM and
ITK style) or one stored with its axes swapped thus show the same anatomy the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import nibabel as nib
import numpy as np

__all__ = ["AxialView", "axial_view"]

_LR, _AP, _SI = 0, 1, 2  # RAS+ world axes as io_orientation numbers them


class AxialView(NamedTuple):
    """How to cut and turn a volume's axial slices for display (built by :func:`axial_view`).

    Attributes:
        slice_axis: the voxel axis nearest superior-inferior; slice indices count along it, in file order.
        row_axis: the voxel axis shown as rows (anterior-posterior).
        col_axis: the voxel axis shown as columns (left-right).
        flip_rows: reverse the rows so that anterior is up.
        flip_cols: reverse the columns so that the patient's right is on the chosen side.
        aspect: height / width of a displayed pixel in mm (``imshow(aspect=...)``).
        radiological: the patient's right is on the left of the picture.
    """

    slice_axis: int
    row_axis: int
    col_axis: int
    flip_rows: bool
    flip_cols: bool
    aspect: float
    radiological: bool

    def slice(self, volume: np.ndarray, index: int) -> np.ndarray:
        """Axial slice ``index`` (along :attr:`slice_axis`) of a 3D array, turned for display: rows top to bottom
        run anterior to posterior; columns run from the patient's right to left (radiological) or left to right.

        Raises:
            ValueError: the array is not 3D, or ``index`` is outside it.
        """
        if volume.ndim != 3:
            raise ValueError(f"Expected a 3D volume, got shape {volume.shape}.")
        size = volume.shape[self.slice_axis]
        if not 0 <= index < size:
            raise ValueError(f"Slice {index} is outside the volume's {size} slices along axis {self.slice_axis}.")
        plane = volume[(slice(None),) * self.slice_axis + (index,)]  # a view: np.take would copy the volume's plane
        if self.row_axis > self.col_axis:  # the remaining axes keep their order
            plane = plane.T
        return plane[:: -1 if self.flip_rows else 1, :: -1 if self.flip_cols else 1]

    def edge_labels(self) -> tuple[str, str, str, str]:
        """The patient directions at the picture's (top, bottom, left, right) edges."""
        return ("A", "P", "R", "L") if self.radiological else ("A", "P", "L", "R")


def axial_view(affine: np.ndarray | None = None, radiological: bool = True) -> AxialView:
    """The display of a volume's axial slices, from its affine.

    Args:
        affine: the 4x4 voxel-to-world (RAS+ mm) matrix of the file, e.g. ``nibabel.load(path).affine``; ``None``
            = identity (voxel axes already R, A, S at 1 mm).
        radiological: show the patient's right on the left of the picture, as clinical viewers do; ``False``
            shows it on the right.

    Returns:
        The :class:`AxialView`.

    Raises:
        ValueError: the affine is not 4x4 or not invertible.

    Example::

        >>> view = axial_view(np.diag([-1.0, -1.0, 1.0, 1.0]))  # an LPS file
        >>> view.slice(np.arange(8).reshape(2, 2, 2), 0).tolist()  # voxel [i, j] shown at row j, column i
        [[0, 4], [2, 6]]
    """
    matrix = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise ValueError(f"Expected an invertible 4x4 affine, got {matrix.tolist()}.")
    ornt = nib.orientations.io_orientation(matrix)
    axis_of = {int(world): voxel for voxel, world in enumerate(ornt[:, 0])}
    rows, cols = axis_of[_AP], axis_of[_LR]
    # the rows run anterior to posterior, so they are reversed when the index runs towards anterior; the columns
    # run from the patient's right (+x in RAS+) leftwards in radiological display
    runs_along = ornt[:, 1] > 0
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    return AxialView(
        slice_axis=axis_of[_SI],
        row_axis=rows,
        col_axis=cols,
        flip_rows=bool(runs_along[rows]),
        flip_cols=bool(runs_along[cols]) == radiological,
        aspect=float(spacing[rows] / spacing[cols]),
        radiological=radiological,
    )
