"""Label maps as the region masks the pictures draw, and the per-region Dice their titles show.

A label map (raw BraTS values) is turned into TC, WT, ET by :func:`raagr2_monai.data.labels.labelmap_to_regions`, the
same function the metrics use, so a contour shows exactly the voxels that were scored.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import convert_to_numpy

from raagr2_monai.constants import REGIONS
from raagr2_monai.data.labels import labelmap_to_regions
from raagr2_monai.metrics import Convention, bounding_box, get_convention

__all__ = ["as_labelmap", "region_masks", "region_dice"]


def as_labelmap(labelmap: np.ndarray | torch.Tensor, name: str = "label map") -> np.ndarray:
    """A label map as a numpy (X, Y, Z) array: a leading channel of one is dropped, tensors are copied to the CPU.

    Args:
        labelmap: (X, Y, Z) or (1, X, Y, Z), numpy or torch (a MetaTensor too).
        name: what the array is, for the error message.

    Raises:
        ValueError: the array is neither 3D nor 4D with one leading channel.

    Example::

        >>> as_labelmap(torch.zeros(1, 4, 5, 6, dtype=torch.uint8)).shape
        (4, 5, 6)
    """
    array = convert_to_numpy(labelmap)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"The {name} must be (X, Y, Z) or (1, X, Y, Z), got shape {tuple(array.shape)}.")
    return array


def region_masks(labelmap: np.ndarray | torch.Tensor, labels: str | None = None) -> np.ndarray:
    """The regions TC, WT, ET of a label map as boolean masks.

    Args:
        labelmap: raw labels, (X, Y, Z) or (1, X, Y, Z).
        labels: their label convention (``raagr2_monai.constants.LABEL_CONVENTIONS``); ``None`` = BraTS 2018-2021.

    Returns:
        (3, X, Y, Z) bool, channels in the order of :data:`~raagr2_monai.constants.REGIONS`.

    Example::

        >>> region_masks(np.array([[[0, 1, 2, 4]]])).astype(int)[:, 0, 0].tolist()
        [[0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]]
    """
    array = as_labelmap(labelmap)
    if not np.issubdtype(array.dtype, np.integer):
        return labelmap_to_regions(torch.as_tensor(array)[None], labels).bool().numpy()
    # labelmap_to_regions is applied to the label values once, and looked up within the labelled voxels' box only:
    # comparing every voxel of a BraTS volume with every label takes ten times longer
    masks = np.zeros((len(REGIONS), *array.shape), dtype=bool)
    labelled = array != 0
    if labelled.any():
        box = bounding_box(labelled)
        inside = array[box]
        low = int(inside.min())
        table = labelmap_to_regions(torch.arange(low, int(inside.max()) + 1)[None], labels).bool().numpy()
        masks[(slice(None), *box)] = table[:, inside - low]
    return masks


def region_dice(
    pred: np.ndarray, truth: np.ndarray, convention: str | Convention = "brats"
) -> dict[str, float]:
    """Dice of each region over the whole volume, from masks given by :func:`region_masks`.

    Args:
        pred: (3, X, Y, Z) predicted region masks.
        truth: the true ones, same shape.
        convention: how a region empty on both sides scores (``"brats"``: NaN; ``"thesis"``: 1), as in
            :mod:`raagr2_monai.metrics.conventions`.

    Returns:
        ``{"TC": dice, "WT": dice, "ET": dice}``.

    Raises:
        ValueError: the two shapes differ, or the convention is unknown.

    Example::

        >>> truth = region_masks(np.array([[[0, 2, 2, 1]]]))
        >>> region_dice(region_masks(np.array([[[2, 2, 0, 1]]])), truth)
        {'TC': 1.0, 'WT': 0.6666666666666666, 'ET': nan}
    """
    if pred.shape != truth.shape or pred.shape[0] != len(REGIONS):
        raise ValueError(
            f"Region masks must both be ({len(REGIONS)}, X, Y, Z) of one shape; got {pred.shape} and {truth.shape}."
        )
    rules = get_convention(convention)
    scores = {}
    for name, p, t in zip(REGIONS, pred, truth):
        total = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
        scores[name] = 2.0 * int(np.count_nonzero(p & t)) / total if total else rules.both_empty_dice
    return scores
