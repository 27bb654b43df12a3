"""Structured (channel) pruning of RAAGR2-Net with DepGraph through torch-pruning 1.6.1.

torch-pruning does not handle RAAGR2-Net out of the box; the three reproduced failures are met here:

1. The baseline ReASPP3's grouped 3x3 convolution with a channel multiplier (``groups = Ci``, ``Co = m Ci``) is
   mis-pruned. The network builds "grouped 3x3 + 1x1" as one module,
   :class:`~raagr2_monai.networks.blocks.SeparableConv`, and :class:`SeparableConvPruner` prunes it as a unit: an
   input channel ``j`` takes the grouped conv's filters ``j m .. j m + m - 1`` and the matching input columns of the
   1x1 with it; an output channel is a 1x1 filter and its BatchNorm channel.
2. The first encoder stage concatenates the network's raw input, which torch-pruning offsets wrongly: the stage is
   ignored (never pruned), as is the head.
3. Shared depthwise kernels are applied functionally: they are passed as ``unwrapped_parameters`` (dimension 0), so a
   kernel shared by several branches, or by an encoder stage and a decoder level, is pruned once and stays one
   tensor. (The Encoder-Decoder decoder applies its borrowed kernel per input part, which traces cleanly.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch_pruning as tp
from torch import nn

from raagr2_monai.networks.blocks import DepthwiseKernel, SeparableConv
from raagr2_monai.utils import model_device

__all__ = [
    "SeparableConvPruner",
    "DepGraphSetup",
    "depgraph_setup",
    "default_example_inputs",
    "build_dependency_graph",
    "depgraph_prune",
    "check_round_to",
    "GroupSparsity",
]


class SeparableConvPruner(tp.pruner.BasePruningFunc):
    """Prunes a :class:`SeparableConv`: input channels by whole groups, output channels through the 1x1 and BN."""

    TARGET_MODULES = (SeparableConv,)

    @staticmethod
    def _keep(n: int, idxs: Sequence[int]) -> List[int]:
        dropped = set(int(i) for i in idxs)
        return [i for i in range(n) if i not in dropped]

    def prune_out_channels(self, layer: SeparableConv, idxs: Sequence[int]) -> SeparableConv:
        keep = self._keep(layer.pointwise.out_channels, idxs)
        pointwise, norm = layer.pointwise, layer.norm
        pointwise.weight = self._prune_parameter_and_grad(pointwise.weight, keep, 0)
        if pointwise.bias is not None:
            pointwise.bias = self._prune_parameter_and_grad(pointwise.bias, keep, 0)
        pointwise.out_channels = len(keep)
        tp.prune_batchnorm_out_channels(norm, list(idxs))
        return layer

    def prune_in_channels(self, layer: SeparableConv, idxs: Sequence[int]) -> SeparableConv:
        grouped, pointwise = layer.grouped, layer.pointwise
        multiplier = grouped.out_channels // grouped.groups
        filters = [j * multiplier + k for j in idxs for k in range(multiplier)]
        keep = self._keep(grouped.out_channels, filters)
        grouped.weight = self._prune_parameter_and_grad(grouped.weight, keep, 0)
        if grouped.bias is not None:
            grouped.bias = self._prune_parameter_and_grad(grouped.bias, keep, 0)
        grouped.in_channels -= len(idxs)
        grouped.groups = grouped.in_channels
        grouped.out_channels = len(keep)
        pointwise.weight = self._prune_parameter_and_grad(pointwise.weight, keep, 1)
        pointwise.in_channels = len(keep)
        return layer

    def get_out_channels(self, layer: SeparableConv) -> int:
        return layer.pointwise.out_channels

    def get_in_channels(self, layer: SeparableConv) -> int:
        return layer.grouped.in_channels


@dataclass
class DepGraphSetup:
    """What torch-pruning needs to know about a RAAGR2-Net (see the module docstring)."""

    ignored_layers: List[nn.Module]
    unwrapped_parameters: List[Tuple[nn.Parameter, int]]
    customized_pruners: Dict[Any, tp.pruner.BasePruningFunc]


def depgraph_setup(model: nn.Module) -> DepGraphSetup:
    """Ignored layers (head, first encoder stage), shared kernels as unwrapped parameters, the stem pruner.

    Raises:
        ValueError: when ``model`` has no ``head`` or ``encoder`` (not a RAAGR2-Net).
    """
    if not hasattr(model, "head") or not hasattr(model, "encoder"):
        raise ValueError(f"{type(model).__name__} is not a RAAGR2-Net: it needs 'head' and 'encoder' attributes.")
    unwrapped: List[Tuple[nn.Parameter, int]] = []
    for module in model.modules():
        if isinstance(module, DepthwiseKernel):
            unwrapped.extend([(module.weight, 0), (module.bias, 0)])
    return DepGraphSetup(
        ignored_layers=[model.head, model.encoder[0]],
        unwrapped_parameters=unwrapped,
        customized_pruners={SeparableConv: SeparableConvPruner()},
    )


def default_example_inputs(model: nn.Module, size: int = 32) -> torch.Tensor:
    """Zeros of shape ``(1, model.in_channels, size, size)`` on the model's device, for tracing."""
    in_channels = getattr(model, "in_channels", None)
    if not isinstance(in_channels, int):
        raise ValueError(f"{type(model).__name__} has no integer 'in_channels'; pass example_inputs explicitly.")
    return torch.zeros(1, in_channels, size, size, device=model_device(model))


def build_dependency_graph(model: nn.Module, example_inputs: Optional[torch.Tensor] = None) -> tp.DependencyGraph:
    """Prepare ``model`` and trace its torch-pruning dependency graph (used to replay a pruning history).

    The model's train/eval mode is restored after tracing.
    """
    setup = depgraph_setup(model)
    inputs = default_example_inputs(model) if example_inputs is None else example_inputs
    was_training = model.training
    try:
        return tp.DependencyGraph().build_dependency(
            model,
            example_inputs=inputs,
            unwrapped_parameters=setup.unwrapped_parameters,
            customized_pruners=setup.customized_pruners,
        )
    finally:
        model.train(was_training)


def check_round_to(round_to: Any) -> Optional[int]:
    """Validate DepGraph's channel multiple: ``None`` (any count) or an integer >= 1.

    Raises:
        ValueError: for anything else (0, negatives, floats, booleans, strings).

    Example::

        >>> check_round_to(8), check_round_to(None)
        (8, None)
    """
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ValueError(f"round_to must be null or an integer >= 1 (a channel multiple such as 8); got {round_to!r}.")
    return round_to


def depgraph_prune(
    model: nn.Module,
    ratio: float,
    example_inputs: Optional[torch.Tensor] = None,
    global_pruning: bool = True,
    round_to: Optional[int] = None,
) -> List[List[Union[str, bool, List[int]]]]:
    """Remove channels by group L2 magnitude (DepGraph), in place.

    Args:
        model: a RAAGR2-Net variant; modified in place.
        ratio: torch-pruning's channel pruning ratio, strictly between 0 and 1 (callers validate it).
        example_inputs: tracing input; zeros ``(1, in_channels, 32, 32)`` by default.
        global_pruning: rank all groups together (``True``) or prune each group by ``ratio``.
        round_to: keep every pruned group's channel count a multiple of this (torch-pruning's ``round_to``), or
            ``None`` for any count. CPU runtimes lay channels out in blocks of 8 (AVX2) or 16 (AVX-512): with counts
            such as 13 or 27 OpenVINO falls back to slower kernels and copies every concatenation
            (``ref`` Concat), so 8 makes the same network faster where it is deployed.

    Returns:
        The pruning history ``[[module name, is_out_channel_pruning, [indices]], ...]`` (JSON-serialisable).

    Raises:
        ValueError: a bad ``round_to``.
    """
    check_round_to(round_to)
    setup = depgraph_setup(model)
    inputs = default_example_inputs(model) if example_inputs is None else example_inputs
    was_training = model.training
    try:
        pruner = tp.pruner.BasePruner(
            model,
            inputs,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            global_pruning=global_pruning,
            ignored_layers=setup.ignored_layers,
            unwrapped_parameters=setup.unwrapped_parameters,
            customized_pruners=setup.customized_pruners,
            round_to=round_to,
        )
        pruner.step()
    finally:
        model.train(was_training)
    return [[str(name), bool(out), [int(i) for i in idxs]] for name, out, idxs in pruner.pruning_history()]


class GroupSparsity:
    """Group-norm sparsity regularisation before DepGraph (torch-pruning's ``GroupNormPruner``, Fang et al. 2023):
    after each backward pass, every group's gradients get ``weight * gamma * w``, where ``gamma`` grows from 1 for
    the group with the largest L2 norm to ``alpha`` for the smallest. Training so pushes whole channel groups
    towards zero, and :func:`depgraph_prune`'s magnitude criterion, the same group L2 norm, then removes what the
    network has learnt to do without.

    The groups are those DepGraph prunes (head and first encoder stage ignored, shared kernels as unwrapped
    parameters, see the module docstring); channels of a :class:`SeparableConv` are regularised through the layers
    that read them (torch-pruning knows plain convolutions and BatchNorm only).

    Args:
        model: a RAAGR2-Net variant (pruned or not), traced once here.
        weight: the regularisation coefficient (torch-pruning's ``reg``), > 0.
        example_inputs: tracing input; zeros ``(1, in_channels, 32, 32)`` by default.
        alpha: torch-pruning's scaling range ``[1, alpha]`` of ``gamma``.

    Example::

        sparsity = GroupSparsity(net, weight=5e-4)
        loss.backward()
        sparsity.regularize()
        optimizer.step()
    """

    def __init__(self, model: nn.Module, weight: float, example_inputs: Optional[torch.Tensor] = None,
                 alpha: float = 2**4) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ValueError(f"The group sparsity weight must be a number > 0; got {weight!r}.")
        setup = depgraph_setup(model)
        inputs = default_example_inputs(model) if example_inputs is None else example_inputs
        was_training = model.training
        try:
            self.pruner = tp.pruner.GroupNormPruner(
                model,
                inputs,
                importance=tp.importance.GroupMagnitudeImportance(p=2),
                reg=float(weight),
                global_pruning=True,
                ignored_layers=setup.ignored_layers,
                unwrapped_parameters=setup.unwrapped_parameters,
                customized_pruners=setup.customized_pruners,
            )
        finally:
            model.train(was_training)
        self.model = model
        self.weight = float(weight)
        self.alpha = alpha

    def regularize(self, grad_scale: float = 1.0) -> None:
        """Add the regularisation gradients; call between ``backward()`` and the optimizer's step.

        Args:
            grad_scale: the factor the gradients carry (a float16 ``GradScaler``'s scale), so that the term keeps its
                weight against the loss's.
        """
        self.pruner.reg = self.weight * grad_scale
        self.pruner.regularize(self.model, alpha=self.alpha)
