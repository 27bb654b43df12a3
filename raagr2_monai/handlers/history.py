"""An Ignite handler that records a training run's curves to a JSON file, and reading a trainer's loss without making
the GPU wait for the host.

A loss read back to the host (``float(loss)``, ``loss.item()``) blocks Python until the GPU has finished the step,
so the next step's kernels cannot be queued behind it: per iteration, that is a stall per step. Here the loss stays a
tensor where the trainer's output holds one (:func:`output_loss`; MONAI's trainers hold it with ``decollate=False``),
:class:`EpochHistory` reads an epoch's losses back once, at its end, and a progress bar shows the latest loss the GPU
has already finished (:class:`LossReader`).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from ignite.engine import Engine, Events

from raagr2_monai.utils import DeviceLike, atomic_write_json, is_cuda

__all__ = ["EpochHistory", "CURVES", "LossReader", "iteration_loss", "log_every", "output_loss"]

PathLike = Union[str, os.PathLike]

#: The per-epoch figures of an entry that are curves (what trackers log by epoch): the mean training loss, the
#: validation Dice (mean and per region, as the bundles' evaluators name them) and the learning rate.
CURVES = ("train_loss", "val_mean_dice", "val_dice_tc", "val_dice_wt", "val_dice_et", "lr")


def output_loss(output: Any) -> Union[torch.Tensor, float, None]:
    """The loss of a trainer's iteration output, as a detached tensor where the output holds a tensor: an
    ``output_transform`` (e.g. of MONAI's ``StatsHandler``) that reads nothing back from the GPU itself.

    MONAI's ``SupervisedTrainer`` outputs ``{"loss": tensor, ...}`` with ``decollate=False``; with ``decollate=True``
    (its default) a list of items that each carry ``loss`` as a float, which the decollation already read back from
    the device at every iteration: the float is returned then. A bare tensor or number (an engine whose step returns
    the loss) is taken as the loss.

    Args:
        output: ``engine.state.output``.

    Returns:
        The loss (a detached tensor or a float), or ``None`` when the output carries none.

    Example::

        >>> output_loss({"loss": torch.tensor(0.5, requires_grad=True)}).requires_grad
        False
        >>> output_loss([{"loss": 0.25, "pred": None}])
        0.25
    """
    if isinstance(output, Mapping):
        loss = output.get("loss")
    elif isinstance(output, Sequence) and not isinstance(output, str) and output and isinstance(output[0], Mapping):
        loss = output[0].get("loss")  # decollated: every item carries the same loss
    else:
        loss = output
    if isinstance(loss, torch.Tensor):
        return loss.detach()
    return float(loss) if isinstance(loss, numbers.Real) else None


def iteration_loss(output: Any) -> float:
    """The loss of a trainer's iteration output as a float (read back from the device: a host synchronisation).

    Example::

        >>> iteration_loss([{"loss": torch.tensor(0.5)}])
        0.5
    """
    loss = output_loss(output)
    if loss is None:
        raise ValueError("The iteration output carries no loss.")
    return float(loss)


def log_every(every: Optional[int] = None, device: DeviceLike = None) -> Callable[[Any, int], bool]:
    """An Ignite event filter: true at every ``every``-th iteration. As MONAI's ``StatsHandler(iteration_log=...)``
    it logs (and reads the loss back from the device) at those iterations only.

    Args:
        every: the interval, in iterations (1: every iteration); ``None``: 20 on CUDA, where reading the loss makes
            the host wait for the GPU, else 1.
        device: the training device, for ``every`` ``None``.

    Returns:
        ``filter(engine, iteration) -> bool``.

    Example::

        >>> [i for i in range(1, 11) if log_every(4)(None, i)]
        [4, 8]
        >>> [i for i in range(1, 4) if log_every(None, "cpu")(None, i)]
        [1, 2, 3]
    """
    if every is None:
        every = 20 if is_cuda(device) else 1
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"log_every needs a whole number of iterations >= 1; got {every!r}.")
    return lambda engine, iteration: iteration % every == 0


class LossReader:
    """The latest loss value known on the host, kept without ever waiting for the device.

    A CPU loss (or a float) is read at once. A GPU loss is copied to pinned host memory asynchronously, one copy at a
    time, with a CUDA event behind it; the value is taken once the event has completed, at a later :meth:`push`. The
    value shown therefore lags the step under way by the few steps the GPU is behind.

    Example::

        >>> reader = LossReader()
        >>> reader.push(torch.tensor(0.5))
        0.5
    """

    def __init__(self) -> None:
        self.value: Optional[float] = None
        self._pending: Optional[Tuple[torch.Tensor, Any]] = None

    def push(self, loss: Union[torch.Tensor, float, None]) -> Optional[float]:
        """Offer this iteration's loss; returns the latest value known (``None`` before the first one arrives)."""
        if isinstance(loss, torch.Tensor) and loss.device.type == "cuda":
            self._poll()
            if self._pending is None:
                host = loss.detach().to("cpu", non_blocking=True)  # into pinned memory: no wait
                done = torch.cuda.Event()
                done.record(torch.cuda.current_stream(loss.device))
                self._pending = (host, done)
        elif loss is not None:
            self.value = float(loss)
        return self.value

    def _poll(self) -> None:
        if self._pending is not None and self._pending[1].query():
            self.value = float(self._pending[0])
            self._pending = None


def _as_floats(losses: List[Union[torch.Tensor, float]]) -> List[float]:
    """The losses as floats, the tensors among them read back from their device in one copy."""
    tensors = [loss for loss in losses if isinstance(loss, torch.Tensor)]
    if not tensors:
        return [float(loss) for loss in losses]
    read = iter(torch.stack([t.reshape(()).to(tensors[0].device) for t in tensors]).cpu().tolist())
    return [next(read) if isinstance(loss, torch.Tensor) else float(loss) for loss in losses]


class EpochHistory:
    """Ignite handler recording a training run's curves: per epoch the mean training loss, the validation metrics,
    the learning rate and the wall time, and per iteration ``[iteration, epoch as a fraction, loss]``; written to
    ``path`` (JSON) after every epoch and validation.

    The iterations' losses are kept as they come (:func:`output_loss`: tensors on the device where the trainer's output
    holds tensors) and read back to the host once per epoch, at its end, so recording them costs a GPU training no
    wait per step.

    A resumed training (``TrainingCheckpoint``) keeps the entries of the epochs it does not redo.

    Args:
        path: the JSON file.
        evaluator: the validation engine whose metrics are recorded with the epoch they follow.
        optimizer: the optimizer whose learning rate is recorded (the one each epoch starts with).
    """

    def __init__(self, path: PathLike, evaluator: Optional[Engine] = None, optimizer: Any = None) -> None:
        self.path = Path(path)
        self.evaluator = evaluator
        self.optimizer = optimizer
        self.epochs: List[Dict[str, Any]] = []
        self.iterations: List[List[float]] = []
        self.validation_only: Optional[Dict[str, float]] = None
        self._pending: Dict[str, float] = {}
        self._losses: List[Union[torch.Tensor, float]] = []
        self._steps: List[Tuple[int, float]] = []
        self._epoch_start = 0.0
        self._lr: Optional[float] = None
        self._trainer: Optional[Engine] = None

    def attach(self, trainer: Engine) -> None:
        """Attach to the trainer (after its checkpoint handler, so that a resumed epoch is known at start)."""
        self._trainer = trainer
        trainer.add_event_handler(Events.STARTED, self._started)
        trainer.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._validated)

    def _started(self, engine: Engine) -> None:
        if self.path.is_file():
            old = json.loads(self.path.read_text())
            self.epochs = [e for e in old.get("epochs", []) if e.get("epoch", 0) <= engine.state.epoch]
            self.iterations = [i for i in old.get("iterations", []) if i[0] <= engine.state.iteration]

    def _epoch_started(self, engine: Engine) -> None:
        self._losses, self._steps = [], []
        self._epoch_start = time.perf_counter()
        # the rate the epoch trains with: a schedule stepped at the epoch's end has already moved on by then
        self._lr = None if self.optimizer is None else float(self.optimizer.param_groups[0]["lr"])

    def _iteration(self, engine: Engine) -> None:
        loss = output_loss(engine.state.output)
        if loss is None:
            return
        self._losses.append(loss)
        self._steps.append((int(engine.state.iteration), engine.state.iteration / engine.state.epoch_length))

    def _epoch_completed(self, engine: Engine) -> None:
        losses = _as_floats(self._losses)  # the epoch's one read back from the device
        self.iterations.extend([iteration, fraction, loss] for (iteration, fraction), loss in zip(self._steps, losses))
        self._losses, self._steps = [], []
        entry: Dict[str, Any] = {
            "epoch": int(engine.state.epoch),
            "train_loss": sum(losses) / len(losses) if losses else math.nan,
            "iterations": len(losses),
            "seconds": time.perf_counter() - self._epoch_start,
        }
        if self._lr is not None:
            entry["lr"] = self._lr
        # the ValidationHandler ran before this handler at the same event: its metrics belong to this epoch
        entry.update(self._pending)
        self._pending = {}
        self.epochs = [e for e in self.epochs if e["epoch"] != entry["epoch"]] + [entry]
        self.write()

    def _validated(self, engine: Engine) -> None:
        metrics = {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, (int, float))}
        if self._trainer is None or self._trainer.state.epoch == 0:
            # validation without training: a pruned model that is not fine-tuned
            self.validation_only = metrics
            self.write()
        else:
            self._pending = metrics

    def write(self) -> None:
        """Write the history file atomically."""
        doc = {"epochs": self.epochs, "iterations": self.iterations, "validation_only": self.validation_only}
        atomic_write_json(self.path, doc)
