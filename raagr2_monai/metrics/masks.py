"""Input helpers shared by the metric modules: where scoring runs (:func:`on_cpu`), binary masks, spacing, bounding
boxes.

Scoring runs on the CPU, whatever device the network ran on: every metric moves its inputs there itself
(:func:`on_cpu`, :func:`as_mask`), so a prediction left on a GPU by the inverse transforms and a ground truth read
from disk can be passed as they are, in any dtype. A subject's volumes are small next to a GPU's transfer rate, and
the distance transforms of HD95 exist on the CPU only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["on_cpu", "as_mask", "check_spacing", "bounding_box"]


def on_cpu(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``x`` as a plain CPU tensor of its own dtype, detached from any graph: where every metric computes.

    Args:
        x: a numpy array or a tensor on any device (a MetaTensor's metadata is dropped).

    Returns:
        a ``torch.Tensor`` on the CPU (a view of ``x``, no copy, when ``x`` is on the CPU already).

    Example::

        >>> on_cpu(np.array([1, 2], dtype=np.uint8))
        tensor([1, 2], dtype=torch.uint8)
    """
    tensor = torch.as_tensor(x).detach()
    if hasattr(tensor, "as_tensor"):  # MetaTensor
        tensor = tensor.as_tensor()
    return tensor.cpu()


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
    array = on_cpu(x).numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
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
