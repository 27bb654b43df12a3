"""Which axial slices a picture of a subject shows: those through the tumour where each region is largest."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from raagr2_monai.constants import REGIONS

__all__ = ["TumourSlice", "SLICE_REGIONS", "tumour_slices"]

#: The regions whose largest slice is shown, in the order the slices are listed.
SLICE_REGIONS: tuple[str, ...] = ("WT", "TC", "ET")


class TumourSlice(NamedTuple):
    """A chosen slice: its index along the slicing axis, and why it was chosen (``"largest WT"``,
    ``"largest ET (predicted)"``, ``"brain centre"``; several reasons when regions share their largest slice)."""

    index: int
    reasons: tuple[str, ...]


def _largest(masks: np.ndarray, axis: int) -> list[int | None]:
    """Per region, the first slice of largest area along ``axis`` (spatial axis of the (3, X, Y, Z) masks), or
    ``None`` for an empty region."""
    other = tuple(a + 1 for a in range(3) if a != axis)
    areas = np.count_nonzero(masks, axis=other)
    return [int(np.argmax(a)) if a.any() else None for a in areas]


def _brain_centre(image: np.ndarray | None, size: int, axis: int) -> int:
    if image is None:
        return size // 2
    occupied = np.flatnonzero(np.any(image != 0, axis=tuple(a for a in range(3) if a != axis)))
    return int((occupied[0] + occupied[-1]) // 2) if occupied.size else size // 2


def tumour_slices(
    truth: np.ndarray,
    pred: np.ndarray | None = None,
    axis: int = 2,
    image: np.ndarray | None = None,
) -> list[TumourSlice]:
    """The axial slices through the tumour: of largest WT area, then of largest TC and of largest ET area.

    A slice chosen for several regions is listed once, with every reason. A region empty in the ground truth is
    looked for in the prediction instead (reason ``"largest <region> (predicted)"``, so that a false positive is
    seen); a region empty in both is skipped. When no region is anywhere, the middle of the brain is shown: the
    slice halfway between the first and last slices where ``image`` is non-zero (the volume's middle without
    ``image``). Ties go to the lowest index.

    Args:
        truth: (3, X, Y, Z) true region masks, channels TC, WT, ET (:func:`~.regions.region_masks`).
        pred: the predicted ones, same shape, or ``None``.
        axis: the spatial axis (0, 1 or 2) that slices are taken along
            (:attr:`~.orientation.AxialView.slice_axis`).
        image: an (X, Y, Z) image, for the fallback.

    Returns:
        One to three :class:`TumourSlice`, in the order WT, TC, ET of the first region that chose them.

    Raises:
        ValueError: the masks are not (3, X, Y, Z), their shapes differ, or ``axis`` is not 0, 1 or 2.

    Example::

        >>> truth = np.zeros((3, 1, 1, 5), bool)
        >>> truth[1, 0, 0, 1:4] = True; truth[0, 0, 0, 3] = True  # WT on slices 1 to 3, TC on 3, no ET
        >>> tumour_slices(truth)
        [TumourSlice(index=1, reasons=('largest WT',)), TumourSlice(index=3, reasons=('largest TC',))]
    """
    if truth.ndim != 4 or truth.shape[0] != len(REGIONS):
        raise ValueError(f"Expected ({len(REGIONS)}, X, Y, Z) region masks, got shape {truth.shape}.")
    if pred is not None and pred.shape != truth.shape:
        raise ValueError(f"Predicted masks of shape {pred.shape} differ from the true ones, {truth.shape}.")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}.")
    true_best = _largest(truth, axis)
    pred_best = _largest(pred, axis) if pred is not None else [None] * len(REGIONS)
    chosen: dict[int, list[str]] = {}
    for name in SLICE_REGIONS:
        r = REGIONS.index(name)
        if true_best[r] is not None:
            chosen.setdefault(true_best[r], []).append(f"largest {name}")
        elif pred_best[r] is not None:
            chosen.setdefault(pred_best[r], []).append(f"largest {name} (predicted)")
    if not chosen:
        return [TumourSlice(_brain_centre(image, truth.shape[axis + 1], axis), ("brain centre",))]
    return [TumourSlice(index, tuple(reasons)) for index, reasons in chosen.items()]
