"""The thesis loss: a weighted sum of binary cross-entropy and soft Dice, on the networks' logits.

``loss = lambda_bce * BCE + (1 - lambda_bce) * DiceLoss`` (thesis eq. 7, ``lambda_bce = 0.5``), optionally with the
border weight map of the original RAAGR2-Net applied to both terms.

MONAI's ``DiceCELoss`` is deliberately not used: with several channels its cross-entropy term is a softmax over the
channels, whereas TC/WT/ET are overlapping multi-label outputs that need a per-channel binary cross-entropy.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from raagr2_monai.utils import model_device

__all__ = ["DistillationLoss", "RAAGR2Loss", "border_weight_map", "distilled_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def border_weight_map(target: torch.Tensor, kernel_size: int = 11) -> torch.Tensor:
    """Border weights of the original RAAGR2-Net, per sample and channel.

    ``w = 1 + 2 * [0.005 < avg_pool(target) < 0.995]``: voxels whose ``kernel_size`` neighbourhood holds both
    foreground and background (the region borders) weigh 3, all others 1. The map is then rescaled to mean 1 over the
    spatial dimensions of each sample and channel, so that the weighted losses keep the scale of the unweighted ones.
    The average ignores the padding (Keras ``padding="same"`` semantics, as in the original code), so the image edge
    is not mistaken for a border.

    Args:
        target: binary target, shape (B, C, H, W) or (B, C, H, W, D).
        kernel_size: odd side length of the averaging window (a cube for 3D targets).

    Returns:
        float32 weights of the target's shape, mean 1 over the spatial dimensions of each (sample, channel).

    Raises:
        ValueError: if ``target`` is not 4D/5D or ``kernel_size`` is not a positive odd integer.

    Example:
        >>> t = torch.zeros(1, 1, 32, 32); t[..., 8:24, 8:24] = 1
        >>> w = border_weight_map(t)
        >>> float(w.mean())  # doctest: +ELLIPSIS
        1.0...
    """
    if target.ndim not in (4, 5):
        raise ValueError(f"border_weight_map expects a (B, C, H, W[, D]) target, got shape {tuple(target.shape)}.")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"border_weight_map needs a positive odd kernel_size, got {kernel_size}.")
    pool = F.avg_pool2d if target.ndim == 4 else F.avg_pool3d
    # explicit zero padding and a pooled mask of valid voxels: the same as count_include_pad=False, but also valid
    # when a spatial size is below kernel_size (e.g. a thin 3D volume), which avg_pool's own padding refuses
    pad = [kernel_size // 2] * (2 * (target.ndim - 2))
    valid = torch.ones_like(target[:1, :1], dtype=torch.float32)
    local_sum = pool(F.pad(target.float(), pad), kernel_size=kernel_size, stride=1)
    local_mean = local_sum / pool(F.pad(valid, pad), kernel_size=kernel_size, stride=1)
    weights = 1.0 + 2.0 * ((local_mean > 0.005) & (local_mean < 0.995)).float()
    spatial = tuple(range(2, target.ndim))
    return weights / weights.mean(dim=spatial, keepdim=True)


class RAAGR2Loss(nn.Module):
    """``lambda_bce * BCE + (1 - lambda_bce) * soft Dice loss`` on logits (the networks' outputs).

    Both terms are computed per channel and then reduced over channels:

    - BCE of channel c: the (weighted) mean of the voxel-wise binary cross-entropy over batch and spatial dimensions,
      computed from the logits (``binary_cross_entropy_with_logits``: exact where the sigmoid saturates, with no
      clamping);
    - Dice loss of channel c: ``1 - (2 * sum(w * p * y) + smooth) / (sum(w * p) + sum(w * y) + smooth)`` on the
      probabilities ``p = sigmoid(logits)``, with the sums pooled over the whole batch and all spatial positions of
      that channel (the thesis style: one Dice per channel per batch, not one per sample), so a slice without any
      tumour does not count as a perfect or a failed sample.

    Without border weights ``w = 1`` and both terms are the plain ones; with ``border_weights=True`` the map of
    :func:`border_weight_map` weighs both the BCE and the Dice sums (a simplification of the original RAAGR2-Net,
    which used a logit-space weighted BCE and squared weights in the Dice).

    The computation runs in float32 with autocast disabled: the sums of the Dice lose precision in half precision.
    Targets may be soft (in [0, 1], e.g. a teacher's probabilities, :class:`DistillationLoss`).

    Argument order is ``forward(input, target)``: prediction first, as in every PyTorch/MONAI loss. The thesis's
    training scripts passed (prediction, target) swapped; this class does not reproduce that error.

    Args:
        lambda_bce: weight of the BCE term, in [0, 1]; the Dice term gets ``1 - lambda_bce``.
        border_weights: weigh both terms with the border map of the original RAAGR2-Net.
        smooth: additive smoothing of the Dice numerator and denominator.
        kernel_size: window of the border map (odd).
        reduction: ``"mean"`` or ``"sum"`` over channels, or ``"none"`` for the per-channel losses, shape (C,).

    Raises:
        ValueError: on an out-of-range ``lambda_bce``, an unknown ``reduction``, a bad ``kernel_size``, or (in
            ``forward``) mismatched shapes or wrong dimensionality.

    Example:
        >>> loss = RAAGR2Loss(lambda_bce=0.5)
        >>> logits = torch.zeros(2, 3, 16, 16); y = torch.ones(2, 3, 16, 16)
        >>> round(float(loss(logits, y)), 4)  # each channel: 0.5 * ln 2 + 0.5 * (1 - (2*256 + 1) / (768 + 1))
        0.513
    """

    def __init__(
        self,
        lambda_bce: float = 0.5,
        border_weights: bool = False,
        smooth: float = 1.0,
        kernel_size: int = 11,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if not 0.0 <= lambda_bce <= 1.0:
            raise ValueError(f"RAAGR2Loss: lambda_bce must lie in [0, 1], got {lambda_bce}.")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"RAAGR2Loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"RAAGR2Loss: kernel_size must be a positive odd integer, got {kernel_size}.")
        if smooth < 0:
            raise ValueError(f"RAAGR2Loss: need smooth >= 0, got smooth={smooth}.")
        self.lambda_bce = lambda_bce
        self.border_weights = border_weights
        self.smooth = smooth
        self.kernel_size = kernel_size
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            input: logits, shape (B, C, H, W) or (B, C, H, W, D).
            target: binary (or soft) target of the same shape.

        Returns:
            float32 scalar (``"mean"``/``"sum"``) or per-channel losses of shape (C,) (``"none"``).

        Raises:
            ValueError: if the shapes differ or are not 4D/5D.
        """
        if input.shape != target.shape:
            raise ValueError(
                f"RAAGR2Loss: input (prediction) shape {tuple(input.shape)} and target shape "
                f"{tuple(target.shape)} must be equal."
            )
        if input.ndim not in (4, 5):
            raise ValueError(
                f"RAAGR2Loss expects (B, C, H, W) or (B, C, H, W, D) tensors, got shape {tuple(input.shape)}."
            )
        with torch.autocast(device_type=input.device.type, enabled=False):
            logits = input.float()
            prob = torch.sigmoid(logits)
            tgt = target.float()
            reduce_dims = [0, *range(2, prob.ndim)]
            weights = border_weight_map(tgt, self.kernel_size) if self.border_weights else torch.ones_like(prob)
            bce_map = F.binary_cross_entropy_with_logits(logits, tgt, reduction="none")
            bce = (weights * bce_map).sum(dim=reduce_dims) / weights.sum(dim=reduce_dims)
            intersection = (weights * prob * tgt).sum(dim=reduce_dims)
            denominator = (weights * prob).sum(dim=reduce_dims) + (weights * tgt).sum(dim=reduce_dims)
            dice_loss = 1.0 - (2.0 * intersection + self.smooth) / (denominator + self.smooth)
            per_channel = self.lambda_bce * bce + (1.0 - self.lambda_bce) * dice_loss
        if self.reduction == "mean":
            return per_channel.mean()
        if self.reduction == "sum":
            return per_channel.sum()
        return per_channel


class DistillationLoss(nn.Module):
    """Knowledge distillation for a slimmed network: ``(1 - weight) * loss(pred, label) + weight * loss(pred, teacher)``
    where ``teacher`` is the frozen teacher network's prediction on the same input (Hinton et al., 2015, with the
    task's own loss with the teacher's sigmoid probabilities as soft targets).

    The loss is called as any loss is, ``(prediction, label)``, so MONAI's ``SupervisedTrainer`` runs it unchanged: a
    forward pre-hook on the student records each input, and the teacher sees that same batch. The teacher is put in
    eval mode, has its gradients switched off and is moved to the input's device on first use.

    Args:
        loss: the supervised loss ``loss(logits, target)`` (e.g. :class:`RAAGR2Loss`), also used against the
            teacher's probabilities.
        teacher: the trained teacher network (e.g. the baseline the student was pruned from or is compared with).
        student: the network being trained; its forward passes are observed, never changed.
        weight: share of the teacher term, in [0, 1] (0: the plain loss).

    Raises:
        ValueError: ``weight`` outside [0, 1]; at call time, no student forward pass recorded or an input whose batch
            does not match the prediction's.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> student, teacher = get_network("depthwise"), get_network("baseline")
        >>> kd = DistillationLoss(RAAGR2Loss(), teacher, student, weight=0.5)
        >>> x = torch.randn(2, 4, 32, 32); y = (torch.rand(2, 3, 32, 32) > 0.5).float()
        >>> bool(kd(student(x), y) > 0)
        True
        >>> kd.remove()  # detach the hook when done
    """

    def __init__(
        self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], teacher: nn.Module, student: nn.Module,
        weight: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0.0 <= float(weight) <= 1.0:
            raise ValueError(f"DistillationLoss: weight must lie in [0, 1]; got {weight}.")
        self.loss = loss
        self.weight = float(weight)
        # a plain attribute list keeps the teacher out of this module's parameters and state_dict
        self._teacher = [teacher.eval().requires_grad_(False)]
        self._input: Optional[torch.Tensor] = None
        self._hook = student.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: Tuple[Any, ...]) -> None:
        self._input = args[0] if args else None

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher network."""
        return self._teacher[0]

    def remove(self) -> None:
        """Stop observing the student."""
        self._hook.remove()

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The distillation loss of ``input`` (the student's prediction on the last recorded batch).

        Args:
            input: the student's logits.
            target: the labels.

        Returns:
            The weighted sum of the two losses.
        """
        supervised = self.loss(input, target)
        if self.weight == 0.0:
            return supervised
        if self._input is None or self._input.shape[0] != input.shape[0]:
            raise ValueError(
                "DistillationLoss: no student input of this batch was recorded; pass the student network that "
                "produced the prediction."
            )
        teacher = self.teacher
        if model_device(teacher) != self._input.device:
            teacher.to(self._input.device)
        with torch.no_grad():
            soft = torch.sigmoid(teacher(self._input).float())
        return (1.0 - self.weight) * supervised + self.weight * self.loss(input, soft)


def distilled_loss(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    teacher: Optional[nn.Module],
    student: nn.Module,
    weight: float = 0.5,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss`` with knowledge distillation from ``teacher`` (:class:`DistillationLoss`), or ``loss`` itself where
    there is no teacher: what a pruning run's trainer minimises (``teacher_bundle`` null or a bundle).

    Example::

        >>> plain = RAAGR2Loss()
        >>> distilled_loss(plain, None, nn.Identity()) is plain
        True
    """
    return loss if teacher is None else DistillationLoss(loss, teacher, student, weight)
