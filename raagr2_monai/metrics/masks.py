"""Binary-mask helpers shared by the metric modules: input conversion and checks, bounding boxes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["as_mask", "check_spacing", "bounding_box"]


def as_mask(x: np.ndarray | torch.Tensor, name: str = "mask") -> np.ndarray:
    """A binary mask (bool, 0/1 integers or floats) as a numpy bool array.

    Args:
        x: numpy array or torch tensor (a MetaTensor's metadata is dropped).
        name: what the array is, for the error message.

    Returns:
        a bool array of the same shape.

    Raises:
        ValueError: if ``x`` holds a value other than 0 and 1.

    Example:
        >>> as_mask(torch.tensor([0.0, 1.0])).tolist()
        [False, True]
    """
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if array.dtype == bool:
        return array
    if not np.isin(array, (0, 1)).all():
        raise ValueError(
            f"{name} must be binary (0/1 or bool); binarise probabilities first, e.g. with "
            "monai.transforms.AsDiscrete(threshold=0.5)."
        )
    return array.astype(bool)


def check_spacing(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    """Voxel spacing as a float64 array of ``ndim`` positive values (None = 1 everywhere).

    Args:
        spacing: voxel size per spatial dimension, or None.
        ndim: the number of spatial dimensions.

    Returns:
        float64 array of shape (ndim,).

    Raises:
        ValueError: if ``spacing`` has another length or a value that is not positive.

    Example:
        >>> check_spacing(None, 2).tolist(), check_spacing((1, 2.5), 2).tolist()
        ([1.0, 1.0], [1.0, 2.5])
    """
    if spacing is None:
        return np.ones(ndim)
    steps = np.asarray([float(s) for s in spacing])
    if steps.shape != (ndim,) or not (steps > 0).all():
        raise ValueError(f"spacing {tuple(spacing)} must give one positive value per spatial dimension ({ndim}).")
    return steps


def bounding_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...]:
    """The smallest box holding every True voxel of a non-empty mask, grown by ``pad`` voxels within the array.

    Args:
        mask: a non-empty bool array.
        pad: voxels added on each side, clipped at the array's edges.

    Returns:
        one slice per dimension.

    Raises:
        ValueError: if the mask is empty.

    Example:
        >>> m = np.zeros((4, 6), bool); m[1, 2:4] = True
        >>> bounding_box(m, pad=1)
        (slice(0, 3, None), slice(1, 5, None))
    """
    if not mask.any():
        raise ValueError("bounding_box: the mask is empty.")
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + 1 + pad, mask.shape[axis])))
    return tuple(box)
