"""Ignite handlers that prune a network inside a MONAI training run and keep the pruning in force.

- :class:`PruneHandler`: prunes the trainer's network when the trainer starts (magnitude, SNIP or DepGraph), rebinds
  the optimizer to the pruned parameters (DepGraph replaces them), keeps masks in force after every optimizer step,
  optionally recalibrates BatchNorm, and logs sparsity, parameters and FLOPs.
- :class:`MaskHandler`: keeps given masks (a :class:`MaskSet` or its saved file) in force while training, e.g. when a
  magnitude- or SNIP-pruned bundle is trained again.
- :class:`GroupSparsityHandler`: group-norm sparsity regularisation while training, so that DepGraph later removes
  channel groups the network has learnt to do without.

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
from monai.engines.utils import IterationEvents
from torch import nn

from raagr2_monai.networks import count_flops
from raagr2_monai.pruning import (
    GroupSparsity,
    MaskSet,
    PruneResult,
    check_method,
    check_method_round_to,
    check_ratio,
    check_scope,
    load_masks,
    padded_batches,
    prune,
    pruning_report,
    rebind_optimizer,
    recalibrate_bn,
)
from raagr2_monai.utils import is_wrapped, model_device, unwrap

__all__ = ["PruneHandler", "MaskHandler", "GroupSparsityHandler"]

logger = logging.getLogger(__name__)


def _refuse_wrapped(network: nn.Module) -> nn.Module:
    if is_wrapped(network):
        raise ValueError(
            "Cannot prune a DistributedDataParallel/DataParallel-wrapped network: its buckets hold the old "
            "parameters. Prune on one process, then train the pruned bundle with multi_gpu_train.json."
        )
    return network


class _KeepsPruning:
    """What both handlers share: set up once when the engine starts (a resumed or repeated ``run()`` does not set up
    twice), and publish the pruning figures in ``engine.state.metrics`` at start and after every epoch (so that
    StatsHandler and MLflow log them, measured on the network as it is then)."""

    def __init__(self, network: Optional[nn.Module], optimizer: Optional[torch.optim.Optimizer]) -> None:
        self.network = network
        self.optimizer = optimizer
        self._hook: Any = None
        self._network: Optional[nn.Module] = None
        self._done = False

    def attach(self, engine: Engine) -> None:
        """Set up at ``STARTED``, log the figures at ``STARTED`` and ``EPOCH_COMPLETED``."""
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.log_metrics)

    def __call__(self, engine: Engine) -> None:
        if not self._done:
            self.setup(engine)
            self._done = True
        self.log_metrics(engine)

    def setup(self, engine: Engine) -> None:
        raise NotImplementedError

    def _snip_data(self, data: Iterable[Any]) -> Iterable[Any]:
        batches = itertools.islice(data, self.snip_batches)
        return batches if self.snip_size is None else padded_batches(batches, self.snip_size)

    def metrics(self) -> Dict[str, float]:
        """The figures to publish; empty before :meth:`setup`."""
        raise NotImplementedError

    def _engine_network(self, engine: Engine) -> nn.Module:
        return self.network if self.network is not None else engine.network

    def _engine_optimizer(self, engine: Engine) -> Optional[torch.optim.Optimizer]:
        return self.optimizer if self.optimizer is not None else getattr(engine, "optimizer", None)

    def log_metrics(self, engine: Engine) -> None:
        """Put the figures into ``engine.state.metrics``."""
        engine.state.metrics.update(self.metrics())

    def detach_masks(self) -> None:
        """Stop re-applying the masks after optimizer steps."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


class PruneHandler(_KeepsPruning):
    """Prune the trainer's network at ``Events.STARTED`` and keep it pruned while it is fine-tuned.

    At start (once per handler): record the parameter names, prune with :func:`raagr2_monai.pruning.prune`, rebind the
    optimizer to the new parameters (:func:`raagr2_monai.pruning.rebind_optimizer`; DepGraph replaces them), attach the
    masks to the optimizer (mask methods), recalibrate BatchNorm if asked, and put ``pruning_params``,
    ``pruning_param_reduction``, ``pruning_flops`` and ``pruning_sparsity`` into ``engine.state.metrics`` (refreshed
    every epoch; the sparsity is measured on the network, showing that fine-tuning keeps it). ``result`` and
    ``report`` keep what was done. Attach it before handlers that load a checkpoint of the pruned model at start
    (``TrainingCheckpoint``).

    Args:
        method: ``magnitude``, ``snip`` or ``depgraph``.
        ratio: strictly between 0 and 1.
        scope: ``global`` or ``uniform``.
        loss_function: SNIP's ``loss(prediction, label)``; the trainer's ``loss_function`` when omitted.
        roi_size: spatial size of DepGraph's tracing input and of the FLOP count.
        snip_batches: batches of the training loader SNIP scores on.
        snip_size: in-plane size SNIP's batches are zero-padded to (:func:`raagr2_monai.pruning.padded_batches`), so
            that on small training crops every weight, the deepest dilated taps included, sees data; ``None``: as
            loaded.
        bn_recalibration_batches: if positive, re-estimate BatchNorm statistics on this many training batches after
            pruning (for a pruned model used without fine-tuning).
        round_to: DepGraph only: keep each pruned layer's channel count a multiple of this (8 suits CPU runtimes,
            :func:`raagr2_monai.pruning.depgraph_prune`); ``None``: any count.
        network: the network to prune; the engine's ``network`` when omitted.
        optimizer: its optimizer; the engine's ``optimizer`` when omitted (``None`` on an engine without one).
        data: batches for SNIP and recalibration; the engine's ``data_loader`` when omitted.

    Raises:
        ValueError: at construction, for an unknown method or scope, a ratio outside (0, 1), a bad batch count, or a
            bad ``round_to`` (or one given to a mask method).

    Example::

        handler = PruneHandler("depgraph", 0.2, roi_size=(96, 96))
        handler.attach(trainer)
        trainer.run()
        assert handler.report["params_after"] < handler.report["params_before"]
    """

    def __init__(
        self,
        method: str,
        ratio: float,
        scope: str = "global",
        loss_function: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
        roi_size: Sequence[int] = (32, 32),
        snip_batches: int = 4,
        snip_size: Optional[Sequence[int]] = None,
        bn_recalibration_batches: int = 0,
        round_to: Optional[int] = None,
        network: Optional[nn.Module] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        data: Optional[Iterable[Any]] = None,
    ) -> None:
        super().__init__(network, optimizer)
        self.method = check_method(method)
        self.ratio = check_ratio(ratio)
        self.scope = check_scope(scope)
        counts = (("snip_batches", snip_batches, 1), ("bn_recalibration_batches", bn_recalibration_batches, 0))
        for name, value, least in counts:
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}; got {value!r}.")
        self.loss_function = loss_function
        self.roi_size = tuple(int(s) for s in roi_size)
        self.snip_batches = snip_batches
        self.snip_size = None if snip_size is None else tuple(int(s) for s in snip_size)
        self.bn_recalibration_batches = bn_recalibration_batches
        self.round_to = check_method_round_to(self.method, round_to)
        self.data = data
        self.result: Optional[PruneResult] = None
        self.report: Optional[Dict[str, Any]] = None

    def setup(self, engine: Engine) -> None:
        self.prune(
            self._engine_network(engine),
            self._engine_optimizer(engine),
            self.data if self.data is not None else getattr(engine, "data_loader", None),
            self.loss_function if self.loss_function is not None else getattr(engine, "loss_function", None),
        )

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
            RuntimeError: when this handler has already pruned.
        """
        network = _refuse_wrapped(network)
        if self.result is not None:
            raise RuntimeError("This PruneHandler has already pruned its network; make a new one to prune again.")
        needs_data = self.method == "snip" or self.bn_recalibration_batches > 0
        if needs_data and data is None:
            raise ValueError("SNIP and BatchNorm recalibration need training batches (data); none were given.")
        names = {id(param): name for name, param in network.named_parameters()}
        shape = (1, int(network.in_channels), *self.roi_size)
        flops_before = count_flops(network, shape)
        result = prune(
            network,
            self.method,
            self.ratio,
            example_inputs=torch.zeros(shape, device=model_device(network)),
            data=self._snip_data(data) if self.method == "snip" else None,
            loss_fn=loss_function,
            scope=self.scope,
            round_to=self.round_to,
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
        self._done = True
        self.report = pruning_report(result, network, shape, flops_before)
        self.report["scope"] = self.scope
        if self.method == "depgraph":
            self.report["round_to"] = self.round_to
        if self.method == "snip":
            self.report["snip_size"] = None if self.snip_size is None else list(self.snip_size)
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

    def metrics(self) -> Dict[str, float]:
        if self.report is None or self._network is None:
            return {}
        figures = {
            "pruning_params": float(self.report["params_after"]),
            "pruning_param_reduction": float(self.report["param_reduction"]),
            "pruning_flops": float(self.report["flops_after"]),
        }
        if self.result is not None and self.result.masks is not None:
            figures["pruning_sparsity"] = self.result.masks.sparsity(self._network)
        return figures


class MaskHandler(_KeepsPruning):
    """Keep masks in force while an engine trains: re-apply them after every optimizer step from ``STARTED`` on.

    Args:
        masks: a :class:`~raagr2_monai.pruning.MaskSet`, or the file its ``state_dict()`` was saved to (loaded with
            ``torch.load(..., weights_only=True)``).
        network: the network; the engine's ``network`` when omitted (a DDP wrapper is unwrapped: masks are named
            as the bare network's parameters).
        optimizer: the optimizer; the engine's ``optimizer`` when omitted.

    Raises:
        FileNotFoundError: when ``masks`` is a path that does not exist.
        ValueError: when the file holds no masks.

    Example::

        MaskHandler("bundles/baseline/pruned/magnitude-20/models/masks.pt").attach(trainer)
    """

    def __init__(
        self,
        masks: Union[MaskSet, str, os.PathLike],
        network: Optional[nn.Module] = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
    ) -> None:
        super().__init__(network, optimizer)
        self.masks = masks if isinstance(masks, MaskSet) else load_masks(masks)

    def setup(self, engine: Engine) -> None:
        network = unwrap(self._engine_network(engine))
        self._hook = self.masks.attach(network, self._engine_optimizer(engine))
        self._network = network

    def metrics(self) -> Dict[str, float]:
        """``pruning_sparsity``: the masked fraction of the weights, measured now."""
        return {} if self._network is None else {"pruning_sparsity": self.masks.sparsity(self._network)}


class GroupSparsityHandler:
    """Train with group-norm sparsity regularisation (:class:`~raagr2_monai.pruning.GroupSparsity`): built on the
    engine's network at ``STARTED`` (after a :class:`PruneHandler` attached before it has pruned), applied at MONAI's
    ``IterationEvents.BACKWARD_COMPLETED``, between the backward pass and the optimizer's step. A weight of 0 attaches
    nothing, so that a config can always list the handler.

    Args:
        weight: the regularisation coefficient (0: off).
        roi_size: spatial size of the tracing input.
        network: the network; the engine's ``network`` when omitted (a DDP wrapper is unwrapped: every process adds
            the same term to the same all-reduced gradients).

    Raises:
        ValueError: a negative or non-numeric weight.

    Example::

        GroupSparsityHandler(5e-4, roi_size=(96, 96)).attach(trainer)
    """

    def __init__(self, weight: float = 0.0, roi_size: Sequence[int] = (32, 32),
                 network: Optional[nn.Module] = None) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"group_sparsity must be a number >= 0 (0: off); got {weight!r}.")
        self.weight = float(weight)
        self.roi_size = tuple(int(s) for s in roi_size)
        self.network = network
        self.sparsity: Optional[GroupSparsity] = None

    def attach(self, engine: Engine) -> None:
        """Build at ``STARTED`` and regularise after every backward pass; nothing at weight 0."""
        if self.weight == 0:
            return
        engine.add_event_handler(Events.STARTED, self.setup)
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self.regularize)

    def setup(self, engine: Engine) -> None:
        network = unwrap(self.network if self.network is not None else engine.network)
        shape = (1, int(network.in_channels), *self.roi_size)
        self.sparsity = GroupSparsity(network, self.weight, torch.zeros(shape, device=model_device(network)))
        logger.info("Group-norm sparsity regularisation at weight %g", self.weight)

    def regularize(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        scaled = bool(getattr(engine, "amp", False)) and scaler is not None and scaler.is_enabled()
        self.sparsity.regularize(scaler.get_scale() if scaled else 1.0)
