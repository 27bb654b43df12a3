"""An Ignite handler that records a training run's curves to a JSON file."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ignite.engine import Engine, Events
from monai.handlers import from_engine

from raagr2_monai.utils import atomic_write_json

__all__ = ["EpochHistory", "CURVES", "iteration_loss"]

PathLike = Union[str, os.PathLike]

#: The per-epoch figures of an entry that are curves (what trackers log by epoch): the mean training loss, the
#: validation Dice (mean and per region, as the bundles' evaluators name them) and the learning rate.
CURVES = ("train_loss", "val_mean_dice", "val_dice_tc", "val_dice_wt", "val_dice_et", "lr")


def iteration_loss(output: Any) -> float:
    """The loss of a MONAI trainer's iteration output (a decollated list of items that each carry ``loss``)."""
    return float(from_engine(["loss"], first=True)(output))


class EpochHistory:
    """Ignite handler recording a training run's curves: per epoch the mean training loss, the validation metrics,
    the learning rate and the wall time, and per iteration ``[iteration, epoch as a fraction, loss]``; written to
    ``path`` (JSON) after every epoch and validation.

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
        self._losses: List[float] = []
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
        self._losses = []
        self._epoch_start = time.perf_counter()
        # the rate the epoch trains with: a schedule stepped at the epoch's end has already moved on by then
        self._lr = None if self.optimizer is None else float(self.optimizer.param_groups[0]["lr"])

    def _iteration(self, engine: Engine) -> None:
        loss = iteration_loss(engine.state.output)
        self._losses.append(loss)
        self.iterations.append([int(engine.state.iteration), engine.state.iteration / engine.state.epoch_length, loss])

    def _epoch_completed(self, engine: Engine) -> None:
        entry: Dict[str, Any] = {
            "epoch": int(engine.state.epoch),
            "train_loss": sum(self._losses) / len(self._losses) if self._losses else math.nan,
            "iterations": len(self._losses),
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
