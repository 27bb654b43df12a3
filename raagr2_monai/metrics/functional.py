"""BraTS-style per-subject region metrics, and the thesis-style pooled Dice kept apart (SPEC §3).

All metrics are computed per subject on the 3D volume (the 2D network's slices stacked back), on binarised
predictions and labels of shape (B, 3, H, W, D) whose channels are the BraTS regions TC, WT, ET (the order of MONAI's
``ConvertToMultiChannelBasedOnBratsClasses``). The disjoint subregions NCR = TC - ET, ED = WT - TC and ET are derived
with :func:`raagr2_monai.data.labels.regions_to_subregions` and scored the same way.

Dice and HD95 come from MONAI's ``compute_dice`` and ``compute_hausdorff_distance(percentile=95)`` with
``include_background=True``: MONAI would otherwise drop channel 0, which here is TC, not a background. HD95 is the
symmetric 95th-percentile Hausdorff distance between the region surfaces, in the units of ``spacing`` (voxels when
``spacing`` is None).

Empty regions are scored with the BraTS challenge convention, so that no subject is silently dropped from a mean:

=====================================  ======  ==========================================================
case                                   Dice    HD95
=====================================  ======  ==========================================================
label and prediction both empty        1       0
exactly one of them empty              0       ``max_hd95``: by default the diagonal of the volume in
                                               physical units, ``sqrt(sum((n_i * spacing_i) ** 2))``, which
                                               is 373.13 mm for a BraTS volume of 240 x 240 x 155 at 1 mm,
                                               the value the BraTS challenge uses
=====================================  ======  ==========================================================

The thesis's headline Dice is a different quantity: all output channels and voxels of a batch pooled into one soft
Dice (:func:`pooled_dice`). Channels that are mostly background, or large and easy, dominate the pooled sums, so the
figure is far higher than, and not comparable to, the per-region BraTS Dice; it is reported only as the labelled
column ``thesis_pooled_dice``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.metrics import compute_dice, compute_hausdorff_distance

from raagr2_monai.constants import REGIONS, SCORED_REGIONS
from raagr2_monai.data.labels import regions_to_subregions

__all__ = ["METRIC_COLUMNS", "brats_metrics", "pooled_dice", "mean_iou"]

#: The per-subject columns an evaluation writes: Dice and HD95 per scored region, then the two thesis-comparison
#: figures.
METRIC_COLUMNS: tuple[str, ...] = (
    *(f"dice_{name}" for name in SCORED_REGIONS),
    *(f"hd95_{name}" for name in SCORED_REGIONS),
    "thesis_pooled_dice",
    "mean_iou",
)


def _check_regions(x: torch.Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[1] != 3:
        raise ValueError(
            f"{name} must have shape (B, 3, *spatial) with channels TC, WT, ET, got shape {tuple(x.shape)}."
        )


def _as_binary(x: torch.Tensor, name: str) -> torch.Tensor:
    # plain tensors: MetaTensor's metadata tracking only slows the many elementwise operations below
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    if x.dtype != torch.bool and not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(
            f"{name} must be binary (0/1 or bool); binarise probabilities first, e.g. with "
            "monai.transforms.AsDiscrete(threshold=0.5)."
        )
    return x.bool()


def _check_pair(pred: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != label.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} and label shape {tuple(label.shape)} must be equal.")
    _check_regions(pred, "pred")
    return _as_binary(pred, "pred"), _as_binary(label, "label")


def _volume_diagonal(spatial_shape: Sequence[int], spacing: Sequence[float] | None) -> float:
    steps = spacing if spacing is not None else [1.0] * len(spatial_shape)
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(spatial_shape, steps)))


def _hd95(pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float] | None, max_hd95: float) -> torch.Tensor:
    """HD95 per (subject, channel) with the BraTS empty-case convention; MONAI is only called on non-empty pairs."""
    batch, channels = pred.shape[:2]
    out = torch.empty(batch, channels, dtype=torch.float32)
    pred_any = pred.flatten(2).any(dim=2)
    label_any = label.flatten(2).any(dim=2)
    for b in range(batch):
        for c in range(channels):
            if not pred_any[b, c] and not label_any[b, c]:
                out[b, c] = 0.0
            elif pred_any[b, c] != label_any[b, c]:
                out[b, c] = max_hd95
            else:
                out[b, c] = compute_hausdorff_distance(
                    pred[b : b + 1, c : c + 1].float(),
                    label[b : b + 1, c : c + 1].float(),
                    include_background=True,
                    percentile=95,
                    spacing=list(spacing) if spacing is not None else None,
                )[0, 0].cpu()
    return out


def brats_metrics(
    pred: torch.Tensor,
    label: torch.Tensor,
    spacing: Sequence[float] | None = None,
    max_hd95: float | None = None,
) -> dict[str, torch.Tensor]:
    """Per-subject Dice and HD95 for the regions TC, WT, ET and the subregions NCR, ED (ET is shared).

    Args:
        pred: binarised prediction (B, 3, H, W, D), channels TC, WT, ET (bool or 0/1).
        label: binary label of the same shape.
        spacing: voxel size per spatial dimension (e.g. the NIfTI pixdim, in mm), shared by the batch; None = 1.
        max_hd95: HD95 given when exactly one of prediction and label is empty; None = the volume diagonal in
            physical units (373.13 for 240 x 240 x 155 at 1 mm, see the module docstring).

    Returns:
        ``{"dice_TC", "dice_WT", "dice_ET", "dice_NCR", "dice_ED", "hd95_TC", ..., "hd95_ED"}``, each a float32
        CPU tensor of shape (B,).

    Raises:
        ValueError: on mismatched shapes, a channel count other than 3, non-binary input, or a ``spacing`` whose
            length is not the number of spatial dimensions.

    Example:
        >>> y = torch.zeros(1, 3, 8, 8, 8); y[:, :, 2:6, 2:6, 2:6] = 1
        >>> m = brats_metrics(y, y)
        >>> float(m["dice_TC"][0]), float(m["hd95_WT"][0]), float(m["dice_NCR"][0])  # NCR empty in both
        (1.0, 0.0, 1.0)
    """
    pred_b, label_b = _check_pair(pred, label)
    spatial_shape = tuple(pred.shape[2:])
    if spacing is not None and len(spacing) != len(spatial_shape):
        raise ValueError(
            f"spacing {tuple(spacing)} must give one value per spatial dimension of shape {spatial_shape}."
        )
    limit = float(max_hd95) if max_hd95 is not None else _volume_diagonal(spatial_shape, spacing)
    pred_all = torch.cat([pred_b, regions_to_subregions(pred_b, dim=1)[:, :2]], dim=1)
    label_all = torch.cat([label_b, regions_to_subregions(label_b, dim=1)[:, :2]], dim=1)
    # ignore_empty=False gives the BraTS convention for Dice directly: 1 when both are empty, 0 when only one is
    dice = compute_dice(pred_all.float(), label_all.float(), include_background=True, ignore_empty=False)
    dice = dice.float().cpu()
    hd95 = _hd95(pred_all, label_all, spacing, limit)
    result: dict[str, torch.Tensor] = {f"dice_{name}": dice[:, i] for i, name in enumerate(SCORED_REGIONS)}
    result.update({f"hd95_{name}": hd95[:, i] for i, name in enumerate(SCORED_REGIONS)})
    return result


def pooled_dice(pred_prob: torch.Tensor, label: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Thesis-style pooled soft Dice: every channel and voxel of the whole batch in one sum.

    ``(2 * sum(p * y) + smooth) / (sum(p) + sum(y) + smooth)`` over all elements (the Keras ``dice_coef`` the thesis
    reported as "Dice 0.985"). Large or background-like channels dominate the sums, so it is NOT comparable to the
    per-region BraTS Dice of :func:`brats_metrics`; keep it only as a labelled comparison column.

    Args:
        pred_prob: soft (or binary) predictions, any shape.
        label: binary label of the same shape.
        smooth: additive smoothing of numerator and denominator.

    Returns:
        a float32 scalar tensor.

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
    p = (pred_prob.as_tensor() if isinstance(pred_prob, MetaTensor) else pred_prob).float()
    y = (label.as_tensor() if isinstance(label, MetaTensor) else label).float()
    return (2.0 * (p * y).sum() + smooth) / (p.sum() + y.sum() + smooth)


def mean_iou(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per-subject mean over TC, WT, ET of the intersection over union of binarised predictions.

    IoU of a channel = |P and G| / |P or G| over the subject's volume, 1 when both are empty (the Dice convention of
    :func:`brats_metrics`); the three IoUs are averaged with equal weight.

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
    pred_b, label_b = _check_pair(pred, label)
    intersection = (pred_b & label_b).flatten(2).sum(dim=2).float()
    union = (pred_b | label_b).flatten(2).sum(dim=2).float()
    iou = torch.where(union > 0, intersection / union.clamp_min(1.0), torch.ones_like(union))
    return iou.mean(dim=1).cpu()
