"""One entry point for every pruning method: :func:`prune` dispatches to the methods in :data:`METHODS`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn

from raagr2_monai.networks import count_flops, count_parameters

from .mask_sets import MaskSet, check_ratio, check_scope, masks_from_scores
from .scores import SCORES
from .structured import check_round_to, default_example_inputs, depgraph_prune

__all__ = ["METHODS", "PruneResult", "check_method", "check_method_round_to", "prune", "pruning_report"]

#: Pruning methods by name: two unstructured (masks from the scores of the same name in
#: :data:`~raagr2_monai.pruning.scores.SCORES`), one structured (channels removed).
METHODS = ("magnitude", "snip", "depgraph")


def check_method(method: Any) -> str:
    """``method`` if it names one of :data:`METHODS` or a mask method of a score registered since
    (:func:`~raagr2_monai.pruning.register_score`).

    Raises:
        ValueError: naming the valid methods.
    """
    valid = (*SCORES, "depgraph")
    if not isinstance(method, str) or method not in valid:
        raise ValueError(f"Unknown pruning method {method!r}; valid methods: {', '.join(valid)}.")
    return method


def check_method_round_to(method: str, round_to: Any) -> Optional[int]:
    """``round_to`` if it suits ``method``: ``None`` for any method, an integer >= 1 for DepGraph only.

    Raises:
        ValueError: a bad ``round_to`` (:func:`~raagr2_monai.pruning.check_round_to`), or one given to a mask method.

    Example::

        >>> check_method_round_to("depgraph", 8), check_method_round_to("snip", None)
        (8, None)
    """
    if check_round_to(round_to) is not None and method != "depgraph":
        raise ValueError(f"round_to applies to DepGraph's channel counts; {method} zeroes weights, not channels.")
    return round_to


@dataclass
class PruneResult:
    """What :func:`prune` did.

    Attributes:
        method: the method's name.
        requested_ratio: the ratio asked for.
        params_before: parameters before pruning (each tensor once).
        params_after: parameters after pruning; for mask methods, those not masked.
        masks: the masks (magnitude, SNIP), else ``None``.
        history: the pruning history (DepGraph), else ``None``.
        flops_before: FLOPs at the example input's shape (DepGraph), else ``None``.
        flops_after: the same after pruning.
        sparsity: fraction of the prunable weights that are zero (mask methods), else ``None``.
    """

    method: str
    requested_ratio: float
    params_before: int
    params_after: int
    masks: Optional[MaskSet] = None
    history: Optional[List[List[Any]]] = field(default=None, repr=False)
    flops_before: Optional[int] = None
    flops_after: Optional[int] = None
    sparsity: Optional[float] = None

    @property
    def param_reduction(self) -> float:
        """Achieved fraction of parameters removed (zeroed, for mask methods) over the whole network."""
        return 1.0 - self.params_after / self.params_before


def prune(
    model: nn.Module,
    method: str,
    ratio: float,
    example_inputs: Optional[torch.Tensor] = None,
    data: Optional[Iterable[Any]] = None,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    scope: str = "global",
    round_to: Optional[int] = None,
) -> PruneResult:
    """Prune ``model`` in place.

    Args:
        model: a RAAGR2-Net variant (any network with conv layers and a ``head`` for the mask methods).
        method: ``magnitude`` (zero the smallest ``|w|``), ``snip`` (zero the smallest ``|w dL/dw|``) or
            ``depgraph`` (remove channels by group L2 magnitude).
        ratio: strictly between 0 and 1: the fraction of prunable weights to zero (mask methods) or torch-pruning's
            channel pruning ratio (DepGraph; the parameter reduction achieved differs and is reported).
        example_inputs: DepGraph's tracing input and FLOP-count shape; zeros ``(1, in_channels, 32, 32)`` by default.
        data: SNIP's ``(image, label)`` batches.
        loss_fn: SNIP's ``loss_fn(prediction, label)``.
        scope: ``global`` (one ranking over all layers) or ``uniform`` (each layer by ``ratio``).
        round_to: DepGraph only: keep each pruned layer's channel count a multiple of this
            (:func:`~raagr2_monai.pruning.depgraph_prune`); ``None``: any count.

    Returns:
        A :class:`PruneResult`; for mask methods, keep its ``masks`` in force while fine-tuning
        (``result.masks.attach(model, optimizer)``).

    Raises:
        ValueError: for an unknown method or scope, a ratio outside (0, 1), SNIP without ``data``/``loss_fn``, or a
            ``round_to`` that is not ``None`` or an integer >= 1, or given to a mask method.

    Example::

        result = prune(get_network("paired"), "depgraph", 0.2)
        round(result.param_reduction, 2) > 0
        # True
    """
    check_method(method)
    ratio = check_ratio(ratio)
    check_scope(scope)
    check_method_round_to(method, round_to)
    params_before = count_parameters(model)
    if method == "depgraph":
        inputs = default_example_inputs(model) if example_inputs is None else example_inputs
        shape = tuple(inputs.shape)
        flops_before = count_flops(model, shape)
        history = depgraph_prune(model, ratio, inputs, global_pruning=scope == "global", round_to=round_to)
        return PruneResult(
            method=method,
            requested_ratio=ratio,
            params_before=params_before,
            params_after=count_parameters(model),
            history=history,
            flops_before=flops_before,
            flops_after=count_flops(model, shape),
        )
    # a mask method: rank the weights by its registered score (SNIP's raises before any work without data/loss_fn)
    masks = masks_from_scores(SCORES[method](model, data, loss_fn), ratio, scope)
    masks.apply(model)
    return PruneResult(
        method=method,
        requested_ratio=ratio,
        params_before=params_before,
        params_after=params_before - sum(int((~mask).sum()) for mask in masks.masks.values()),
        masks=masks,
        sparsity=masks.sparsity(model),
    )


def pruning_report(
    result: PruneResult, network: nn.Module, flops_shape: Sequence[int], flops_before: Optional[int] = None
) -> Dict[str, Any]:
    """What a pruning did, as JSON-serialisable facts: method, requested and achieved ratio, parameters, FLOPs.

    Args:
        result: :func:`raagr2_monai.pruning.prune`'s result.
        network: the pruned network.
        flops_shape: the input shape FLOPs are counted at, ``(1, C, H, W)``.
        flops_before: FLOPs of the network before pruning; taken from ``result`` or, for mask methods (which leave
            the dense FLOPs unchanged), counted on ``network``.

    Returns:
        ``method``, ``requested_ratio``, ``achieved`` (what ``requested_ratio`` is compared with: ``sparsity`` for
        mask methods, ``param_reduction`` for DepGraph), ``sparsity`` (mask methods), ``param_reduction``,
        ``params_before``/``params_after`` (for mask methods, non-zero parameters after), ``flops_shape``,
        ``flops_before``/``flops_after`` (dense convolution FLOPs; masks do not lower them).
    """
    shape = [int(s) for s in flops_shape]
    flops_after = count_flops(network, tuple(shape))
    if flops_before is None:
        flops_before = result.flops_before if result.flops_before is not None else flops_after
    achieved = result.sparsity if result.masks is not None else result.param_reduction
    return {
        "method": result.method,
        "requested_ratio": result.requested_ratio,
        "achieved": achieved,
        "achieved_kind": "sparsity of the prunable weights" if result.masks is not None else "parameter reduction",
        "sparsity": result.sparsity,
        "param_reduction": result.param_reduction,
        "params_before": result.params_before,
        "params_after": result.params_after,
        "flops_shape": shape,
        "flops_before": int(flops_before),
        "flops_after": int(flops_after),
    }
