"""Ignite handlers that prune a network inside a MONAI training run and keep the pruning in force (SPEC §4).

- :class:`PruneHandler`: prunes the trainer's network when the trainer starts (magnitude, SNIP or DepGraph), rebinds
  the optimizer to the pruned parameters (DepGraph replaces them), keeps masks in force after every optimizer step,
  optionally recalibrates BatchNorm, and logs sparsity, parameters and FLOPs.
- :class:`MaskHandler`: keeps given masks (a :class:`MaskSet` or its saved file) in force while training, e.g. when a
  magnitude- or SNIP-pruned bundle is trained again.

Masks are re-applied by a step post-hook on the optimizer (:meth:`MaskSet.attach`) rather than at
``ITERATION_COMPLETED``: MONAI's SupervisedTrainer does step before ``ITERATION_COMPLETED``, but with gradient
accumulation it steps only every few iterations, and the hook fires exactly after each step whatever the engine.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Union

import torch
from ignite.engine import Engine, Events
from torch import nn

from raagr2_monai.networks import count_flops

from .methods import METHODS, PruneResult, prune
from .unstructured import MaskSet, check_ratio, recalibrate_bn
from .unstructured import check_scope

__all__ = ["PruneHandler", "MaskHandler", "load_masks", "pruning_report", "rebind_optimizer"]

logger = logging.getLogger(__name__)


def _unwrap(network: nn.Module) -> nn.Module:
    if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        raise ValueError(
            "Cannot prune a DistributedDataParallel/DataParallel-wrapped network: its buckets hold the old "
            "parameters. Prune on one process, then train the pruned bundle with multi_gpu_train.json."
        )
    return network


def rebind_optimizer(optimizer: torch.optim.Optimizer, network: nn.Module, names: Dict[int, str]) -> int:
    """Point ``optimizer``'s parameter groups at ``network``'s current parameters, matched by name.

    Structured pruning replaces parameter tensors by smaller ones; an optimizer built before it would go on updating
    the old tensors, which the network no longer uses. The state of replaced parameters (Adam moments of the old
    shape) is dropped; the optimizer object, its hyper-parameters and anything that references it (an LR scheduler)
    are kept.

    Args:
        optimizer: the optimizer built on ``network`` before pruning.
        network: the pruned network.
        names: ``id(parameter) -> name`` recorded from ``network.named_parameters()`` before pruning.

    Returns:
        The number of parameters replaced.

    Raises:
        ValueError: when the optimizer holds a parameter that was not the network's, or one the pruning removed.
    """
    current = dict(network.named_parameters())
    replaced = 0
    for group in optimizer.param_groups:
        params = []
        for param in group["params"]:
            name = names.get(id(param))
            if name is None or name not in current:
                raise ValueError(
                    "The optimizer holds a parameter that is not one of the pruned network's "
                    f"({'unknown' if name is None else name!r}); build the optimizer on the network being pruned."
                )
            new = current[name]
            if new is not param:
                optimizer.state.pop(param, None)
                replaced += 1
            params.append(new)
        group["params"] = params
    return replaced


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


def _metrics(report: Dict[str, Any]) -> Dict[str, float]:
    metrics = {
        "pruning_params": float(report["params_after"]),
        "pruning_param_reduction": float(report["param_reduction"]),
        "pruning_flops": float(report["flops_after"]),
    }
    if report["sparsity"] is not None:
        metrics["pruning_sparsity"] = float(report["sparsity"])
    return metrics


class PruneHandler:
    """Prune the trainer's network at ``Events.STARTED`` and keep it pruned while it is fine-tuned.

    At start (once per handler, so a resumed or repeated ``run()`` does not prune twice): record the parameter names,
    prune with :func:`raagr2_monai.pruning.prune`, rebind the optimizer to the new parameters
    (:func:`rebind_optimizer`; DepGraph replaces them), attach the masks to the optimizer (mask methods), recalibrate
    BatchNorm if asked, and put ``pruning_params``, ``pruning_param_reduction``, ``pruning_flops`` and
    ``pruning_sparsity`` into ``engine.state.metrics`` (refreshed every epoch, so StatsHandler and MLflow log them; the
    sparsity is measured on the network, showing that fine-tuning keeps it). ``result`` and ``report`` keep what was
    done. Attach it before handlers that load a checkpoint of the pruned model at start (``TrainingCheckpoint``).

    Args:
        method: ``magnitude``, ``snip`` or ``depgraph``.
        ratio: strictly between 0 and 1.
        scope: ``global`` or ``uniform``.
        loss_function: SNIP's ``loss(prediction, label)``; the trainer's ``loss_function`` when omitted.
        roi_size: spatial size of DepGraph's tracing input and of the FLOP count.
        snip_batches: batches of the training loader SNIP scores on.
        bn_recalibration_batches: if positive, re-estimate BatchNorm statistics on this many training batches after
            pruning (for a pruned model used without fine-tuning).
        network: the network to prune; the engine's ``network`` when omitted.
        optimizer: its optimizer; the engine's ``optimizer`` when omitted (``None`` on an engine without one).
        data: batches for SNIP and recalibration; the engine's ``data_loader`` when omitted.

    Raises:
        ValueError: at construction, for an unknown method or scope, a ratio outside (0, 1), or a bad batch count.

    Example::

        >>> handler = PruneHandler("depgraph", 0.2, roi_size=(96, 96))
        >>> handler.attach(trainer)
        >>> trainer.run()
        >>> handler.report["params_after"] < handler.report["params_before"]
        True
    """

    def __init__(
        self,
        method: str,
        ratio: float,
        scope: str = "global",
        loss_function: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
        roi_size: Sequence[int] = (32, 32),
        snip_batches: int = 4,
        bn_recalibration_batches: int = 0,
        network: Optional[nn.Module] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        data: Optional[Iterable[Any]] = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"Unknown pruning method {method!r}; valid methods: {', '.join(METHODS)}.")
        self.method = method
        self.ratio = check_ratio(ratio)
        self.scope = check_scope(scope)
        counts = (("snip_batches", snip_batches, 1), ("bn_recalibration_batches", bn_recalibration_batches, 0))
        for name, value, least in counts:
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}; got {value!r}.")
        self.loss_function = loss_function
        self.roi_size = tuple(int(s) for s in roi_size)
        self.snip_batches = snip_batches
        self.bn_recalibration_batches = bn_recalibration_batches
        self.network = network
        self.optimizer = optimizer
        self.data = data
        self.result: Optional[PruneResult] = None
        self.report: Optional[Dict[str, Any]] = None
        self._hook: Any = None
        self._network: Optional[nn.Module] = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.log_metrics)

    def __call__(self, engine: Engine) -> None:
        if self.result is None:
            self.prune(
                self.network if self.network is not None else engine.network,
                self.optimizer if self.optimizer is not None else getattr(engine, "optimizer", None),
                self.data if self.data is not None else getattr(engine, "data_loader", None),
                self.loss_function if self.loss_function is not None else getattr(engine, "loss_function", None),
            )
        self.log_metrics(engine)

    def prune(
        self,
        network: nn.Module,
        optimizer: Optional[torch.optim.Optimizer] = None,
        data: Optional[Iterable[Any]] = None,
        loss_function: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    ) -> PruneResult:
        """Prune ``network`` in place (what happens at ``STARTED``); usable without an engine.

        Raises:
            ValueError: for a wrapped (DDP) network, or SNIP/recalibration without ``data``/``loss_function``.
        """
        network = _unwrap(network)
        if self.result is not None:
            raise RuntimeError("This PruneHandler has already pruned its network; make a new one to prune again.")
        needs_data = self.method == "snip" or self.bn_recalibration_batches > 0
        if needs_data and data is None:
            raise ValueError("SNIP and BatchNorm recalibration need training batches (data); none were given.")
        names = {id(param): name for name, param in network.named_parameters()}
        param = next(network.parameters())
        shape = (1, int(network.in_channels), *self.roi_size)
        flops_before = count_flops(network, shape)
        result = prune(
            network,
            self.method,
            self.ratio,
            example_inputs=torch.zeros(shape, device=param.device),
            data=itertools.islice(data, self.snip_batches) if self.method == "snip" else None,
            loss_fn=loss_function,
            scope=self.scope,
        )
        if optimizer is not None:
            replaced = rebind_optimizer(optimizer, network, names)
            if replaced:
                logger.info("Pruning replaced %d parameter tensors; the optimizer now updates the new ones", replaced)
            if result.masks is not None:
                self._hook = result.masks.attach(network, optimizer)
        if self.bn_recalibration_batches > 0:
            used = recalibrate_bn(network, data, self.bn_recalibration_batches)
            logger.info("Recalibrated BatchNorm statistics on %d batches", used)
        self.result = result
        self._network = network
        self.report = pruning_report(result, network, shape, flops_before)
        self.report["scope"] = self.scope
        logger.info(
            "Pruned by %s at ratio %.3g (%s): %s %.4f; parameters %d -> %d; FLOPs at %s %d -> %d",
            self.method,
            self.ratio,
            self.scope,
            self.report["achieved_kind"],
            self.report["achieved"],
            self.report["params_before"],
            self.report["params_after"],
            list(shape),
            self.report["flops_before"],
            self.report["flops_after"],
        )
        return result

    def log_metrics(self, engine: Engine) -> None:
        """Put the pruning figures into ``engine.state.metrics``; the sparsity is measured on the network now."""
        if self.report is None or self._network is None:
            return
        metrics = _metrics(self.report)
        if self.result is not None and self.result.masks is not None:
            metrics["pruning_sparsity"] = self.result.masks.sparsity(self._network)
        engine.state.metrics.update(metrics)

    def detach_masks(self) -> None:
        """Stop re-applying the masks after optimizer steps."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


class MaskHandler:
    """Keep masks in force while an engine trains: re-apply them after every optimizer step from ``STARTED`` on.

    Args:
        masks: a :class:`MaskSet`, or the file its :meth:`MaskSet.state_dict` was saved to (loaded with
            ``torch.load(..., weights_only=True)``).
        network: the network; the engine's ``network`` when omitted (a DDP wrapper is unwrapped: masks are named
            as the bare network's parameters).
        optimizer: the optimizer; the engine's ``optimizer`` when omitted.

    Raises:
        FileNotFoundError: when ``masks`` is a path that does not exist.
        ValueError: when the file holds no masks.

    Example::

        >>> MaskHandler("bundles/baseline/pruned/magnitude-20/models/masks.pt").attach(trainer)
    """

    def __init__(
        self,
        masks: Union[MaskSet, str, os.PathLike],
        network: Optional[nn.Module] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
    ) -> None:
        self.masks = masks if isinstance(masks, MaskSet) else load_masks(masks)
        self.network = network
        self.optimizer = optimizer
        self._hook: Any = None
        self._network: Optional[nn.Module] = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.log_metrics)

    def __call__(self, engine: Engine) -> None:
        if self._hook is None:
            network = self.network if self.network is not None else engine.network
            if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
                network = network.module
            optimizer = self.optimizer if self.optimizer is not None else engine.optimizer
            self._hook = self.masks.attach(network, optimizer)
            self._network = network
        self.log_metrics(engine)

    def log_metrics(self, engine: Engine) -> None:
        """``engine.state.metrics["pruning_sparsity"]``: the masked fraction of the weights, measured now."""
        if self._network is not None:
            engine.state.metrics["pruning_sparsity"] = self.masks.sparsity(self._network)


def load_masks(path: Union[str, os.PathLike]) -> MaskSet:
    """Read a :class:`MaskSet` saved with ``torch.save(masks.state_dict(), path)``.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a dict of boolean tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Mask file {path} does not exist.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not state or not all(
        isinstance(v, torch.Tensor) and v.dtype == torch.bool for v in state.values()
    ):
        raise ValueError(f"{path} holds no masks: expected a dict of parameter name -> boolean tensor.")
    return MaskSet.from_state_dict(state)
