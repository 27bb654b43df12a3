"""BraTS per-subject region metrics (Dice, HD95), and the thesis-style pooled Dice and mean IoU kept apart.

All metrics are computed per subject on the 3D volume (the 2D network's slices stacked back), on binarised
predictions and labels of shape (B, 3, *spatial) whose channels are the BraTS regions TC, WT, ET (the order of MONAI's
``ConvertToMultiChannelBasedOnBratsClasses``). The disjoint subregions NCR = TC - ET, ED = WT - TC and ET are derived
with :func:`raagr2_monai.data.labels.regions_to_subregions` and scored the same way, giving the
:data:`~raagr2_monai.constants.SCORED_REGIONS` TC, WT, ET, NCR, ED.

Empty regions and non-overlapping masks are scored by a named :class:`~.conventions.Convention`, the official BraTS
one by default:

==========================================  =================  ==================================================
case                                        ``"brats"``        ``"thesis"``
==========================================  =================  ==================================================
label and prediction both empty             Dice NaN, HD95     Dice 1, HD95 0
                                            NaN (left out of
                                            means)
exactly one of them empty                   Dice 0, HD95 373   Dice 0, HD95 the volume diagonal in mm
both non-empty, no voxel in common          Dice 0, HD95 373   Dice 0, HD95 the geometric distance
HD95 of two overlapping masks               pooled 95th        larger directed 95th percentile
                                            percentile
==========================================  =================  ==================================================

HD95 is in the units of ``spacing`` (mm for the NIfTI pixdim; voxels when ``spacing`` is None); see
:mod:`.surface`.

The thesis's headline Dice is a different quantity: all output channels and voxels of a batch pooled into one soft
Dice (:func:`pooled_dice`). Channels that are mostly background, or large and easy, dominate the pooled sums, so the
figure is far higher than, and not comparable to, the per-region BraTS Dice; it is reported only as the labelled
column ``thesis_pooled_dice``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from raagr2_monai.constants import REGIONS, SCORED_REGIONS, SUBREGIONS
from raagr2_monai.data.labels import regions_to_subregions

from .conventions import Convention, get_convention
from .masks import as_mask, on_cpu
from .surface import hd95

__all__ = ["METRIC_COLUMNS", "scored_regions", "dice_hd95", "brats_metrics", "pooled_dice", "mean_iou"]

#: The per-subject columns of the global metrics: Dice and HD95 per scored region, then the two thesis-comparison
#: figures.
METRIC_COLUMNS: tuple[str, ...] = (
    *(f"dice_{name}" for name in SCORED_REGIONS),
    *(f"hd95_{name}" for name in SCORED_REGIONS),
    "thesis_pooled_dice",
    "mean_iou",
)


def _check_pair(pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    if tuple(pred.shape) != tuple(label.shape):
        raise ValueError(f"pred shape {tuple(pred.shape)} and label shape {tuple(label.shape)} must be equal.")
    if len(pred.shape) < 3 or pred.shape[1] != len(REGIONS):
        raise ValueError(
            f"pred must have shape (B, 3, *spatial) with channels {', '.join(REGIONS)}, got shape {tuple(pred.shape)}."
        )
    return as_mask(pred, "pred"), as_mask(label, "label")


def scored_regions(
    pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Binarised regions TC, WT, ET followed by the subregions NCR, ED: the :data:`SCORED_REGIONS` as channels.

    Args:
        pred: binarised prediction (B, 3, *spatial), channels TC, WT, ET (bool or 0/1, numpy or torch).
        label: binary label of the same shape.

    Returns:
        ``(pred, label)`` as numpy bool arrays of shape (B, 5, *spatial), channels in the order of
        :data:`~raagr2_monai.constants.SCORED_REGIONS`.

    Raises:
        ValueError: on mismatched shapes, a channel count other than 3, or non-binary input.

    Example:
        >>> p, y = scored_regions(np.array([[[1], [1], [0]]]), np.array([[[1], [1], [1]]]))
        >>> p[0, :, 0].astype(int).tolist(), y[0, :, 0].astype(int).tolist()  # TC, WT, ET, NCR, ED
        ([1, 1, 0, 1, 0], [1, 1, 1, 0, 0])
    """
    p, g = _check_pair(pred, label)
    extra = [SUBREGIONS.index(name) for name in SCORED_REGIONS[len(REGIONS) :]]
    sub_p = regions_to_subregions(p, dim=1)
    sub_g = regions_to_subregions(g, dim=1)
    return (
        np.concatenate([p, sub_p[:, extra]], axis=1),
        np.concatenate([g, sub_g[:, extra]], axis=1),
    )


def dice_hd95(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
    convention: str | Convention = "brats",
    max_hd95: float | None = None,
) -> tuple[float, float]:
    """Dice and HD95 of one binary mask pair (one region of one subject) under a convention.

    Args:
        pred: binary mask (*spatial), numpy or torch.
        label: binary mask of the same shape.
        spacing: voxel size per spatial dimension (mm); None = 1.
        convention: ``"brats"`` (official, default) or ``"thesis"``; see :mod:`.conventions`.
        max_hd95: HD95 of a miss (one side empty, or no overlap under ``"brats"``); None = the convention's value
            (373 for ``"brats"``, the volume diagonal for ``"thesis"``).

    Returns:
        ``(dice, hd95)`` as floats (NaN for both-empty under ``"brats"``).

    Raises:
        ValueError: on mismatched shapes, non-binary input, a bad ``spacing`` or an unknown convention.

    Example:
        >>> y = np.zeros((8, 8), bool); y[2:4, 2:4] = True
        >>> dice_hd95(y, y), dice_hd95(np.zeros_like(y), y), dice_hd95(np.zeros_like(y), np.zeros_like(y))
        ((1.0, 0.0), (0.0, 373.0), (nan, nan))
        >>> dice_hd95(np.zeros_like(y), np.zeros_like(y), convention="thesis")
        (1.0, 0.0)
    """
    p = as_mask(pred, "pred")
    g = as_mask(label, "label")
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} and label shape {g.shape} must be equal.")
    if spacing is not None and len(spacing) != p.ndim:
        raise ValueError(f"spacing {tuple(spacing)} must give one value per spatial dimension of shape {p.shape}.")
    rules = get_convention(convention)
    miss = float(max_hd95) if max_hd95 is not None else rules.miss_value(p.shape, spacing)
    p_size, g_size = int(p.sum()), int(g.sum())
    if p_size == 0 and g_size == 0:
        return rules.both_empty_dice, rules.both_empty_hd95
    if p_size == 0 or g_size == 0:
        return 0.0, miss
    overlap = int(np.count_nonzero(p & g))
    dice = 2.0 * overlap / (p_size + g_size)
    if overlap == 0 and rules.no_overlap_is_miss:
        return dice, miss
    return dice, hd95(p, g, spacing, pooled=rules.pooled_hd95)


def brats_metrics(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
    max_hd95: float | None = None,
    convention: str | Convention = "brats",
) -> dict[str, np.ndarray]:
    """Per-subject Dice and HD95 for the regions TC, WT, ET and the subregions NCR, ED (ET is shared).

    Args:
        pred: binarised prediction (B, 3, *spatial), channels TC, WT, ET (bool or 0/1, numpy or torch).
        label: binary label of the same shape.
        spacing: voxel size per spatial dimension (e.g. the NIfTI pixdim, in mm), shared by the batch; None = 1.
        max_hd95: HD95 of a miss; None = the convention's value (373 for ``"brats"``, the volume diagonal in
            physical units for ``"thesis"``).
        convention: ``"brats"`` (official, default) or ``"thesis"``; see the module docstring.

    Returns:
        ``{"dice_TC", "dice_WT", "dice_ET", "dice_NCR", "dice_ED", "hd95_TC", ..., "hd95_ED"}``, each a float64
        numpy array of shape (B,); NaN where both sides are empty under ``"brats"``.

    Raises:
        ValueError: on mismatched shapes, a channel count other than 3, non-binary input, a ``spacing`` whose
            length is not the number of spatial dimensions, or an unknown convention.

    Example:
        >>> y = torch.zeros(1, 3, 8, 8, 8); y[:, :, 2:6, 2:6, 2:6] = 1
        >>> m = brats_metrics(y, y)
        >>> float(m["dice_TC"][0]), float(m["hd95_WT"][0]), float(m["dice_NCR"][0])  # NCR empty in both
        (1.0, 0.0, nan)
        >>> float(brats_metrics(y, y, convention="thesis")["dice_NCR"][0])
        1.0
    """
    p, g = scored_regions(pred, label)
    if spacing is not None and len(spacing) != p.ndim - 2:
        raise ValueError(
            f"spacing {tuple(spacing)} must give one value per spatial dimension of shape {tuple(p.shape[2:])}."
        )
    rules = get_convention(convention)
    scores = np.array(
        [
            [dice_hd95(p[b, c], g[b, c], spacing, rules, max_hd95) for c in range(len(SCORED_REGIONS))]
            for b in range(p.shape[0])
        ],
        dtype=np.float64,
    ).reshape(p.shape[0], len(SCORED_REGIONS), 2)
    result = {f"dice_{name}": scores[:, i, 0] for i, name in enumerate(SCORED_REGIONS)}
    result.update({f"hd95_{name}": scores[:, i, 1] for i, name in enumerate(SCORED_REGIONS)})
    return result


def pooled_dice(pred_prob: torch.Tensor, label: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Thesis-style pooled soft Dice: every channel and voxel of the whole batch in one sum.

    ``(2 * sum(p * y) + smooth) / (sum(p) + sum(y) + smooth)`` over all elements (the Keras ``dice_coef`` the thesis
    reported as "Dice 0.985"). Large or background-like channels dominate the sums, so it is NOT comparable to the
    per-region BraTS Dice of :func:`brats_metrics`; keep it only as a labelled comparison column.

    Args:
        pred_prob: soft (or binary) predictions, any shape, dtype and device.
        label: binary label of the same shape, on any device.
        smooth: additive smoothing of numerator and denominator.

    Returns:
        a float32 scalar CPU tensor (computed on the CPU, in float32).

    Raises:
        ValueError: on mismatched shapes.

    Example:
        >>> p = torch.tensor([[0.5, 1.0]]); y = torch.tensor([[1.0, 1.0]])
        >>> round(float(pooled_dice(p, y, smooth=0.0)), 4)  # 2 * 1.5 / (1.5 + 2)
        0.8571
    """
    if pred_prob.shape != label.shape:
        raise ValueError(
            f"pooled_dice: pred_prob shape {tuple(pred_prob.shape)} and label shape {tuple(label.shape)} must be equal."
        )
    p = on_cpu(pred_prob).float()
    y = on_cpu(label).float()
    return (2.0 * (p * y).sum() + smooth) / (p.sum() + y.sum() + smooth)


def mean_iou(pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-subject mean over TC, WT, ET of the intersection over union of binarised predictions (thesis comparison).

    IoU of a channel = |P and G| / |P or G| over the subject's volume, 1 when both are empty (the ``"thesis"``
    convention, as the thesis computed it); the three IoUs are averaged with equal weight.

    Args:
        pred: binarised prediction (B, 3, *spatial), channels TC, WT, ET.
        label: binary label of the same shape.

    Returns:
        float32 CPU tensor of shape (B,).

    Raises:
        ValueError: on mismatched shapes, a channel count other than 3, or non-binary input.

    Example:
        >>> y = torch.zeros(1, 3, 4); y[:, :, :2] = 1
        >>> p = torch.zeros(1, 3, 4); p[:, :, :1] = 1
        >>> float(mean_iou(p, y)[0])
        0.5
    """
    p, g = _check_pair(pred, label)
    axes = tuple(range(2, p.ndim))
    intersection = np.count_nonzero(p & g, axis=axes).astype(np.float64)
    union = np.count_nonzero(p | g, axis=axes).astype(np.float64)
    iou = np.divide(intersection, union, out=np.ones_like(union), where=union > 0)
    return torch.from_numpy(iou.mean(axis=1)).float()
