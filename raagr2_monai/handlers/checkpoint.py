"""Ignite handlers that load and save weights.

- :class:`WeightsLoader`: load a plain state_dict into the network when the engine starts, with a clear error for a
  checkpoint of another variant.
- :class:`TrainingCheckpoint`: write the whole training state atomically after every epoch, and resume from it.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch import nn

from raagr2_monai.networks import load_weights
from raagr2_monai.utils import atomic_save, unwrap

__all__ = ["WeightsLoader", "TrainingCheckpoint"]

logger = logging.getLogger(__name__)


class WeightsLoader:
    """Load a plain state_dict into ``network`` when the engine starts (``torch.load(weights_only=True)``).

    Args:
        load_path: the checkpoint (``models/model.pt``).
        network: the network to load into.
        map_location: passed to ``torch.load``.

    Raises (at engine start):
        FileNotFoundError, raagr2_monai.networks.CheckpointMismatchError: see
        :func:`raagr2_monai.networks.load_weights`.
    """

    def __init__(self, load_path: str, network: nn.Module, map_location: Any = "cpu") -> None:
        self.load_path = load_path
        self.network = network
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        load_weights(self.network, self.load_path, self.map_location)
        logger.info("Loaded weights from %s", self.load_path)


class TrainingCheckpoint:
    """Save the training state after every epoch and resume from it after an interruption.

    The state (network, optimizer, LR scheduler, any other object with a ``state_dict``, and the epoch/iteration of
    the engine it is attached to, saved as ``"trainer"``) goes to one file, written to a temporary name and renamed.
    With ``resume=True`` an existing file is loaded when training starts, so a run killed in epoch 7 restarts at
    epoch 7 instead of 1. In a multi-process run every rank attaches it: all ranks load the same file on resume (so
    replicas and epoch counters agree), and only rank 0 writes it.

    Args:
        path: the checkpoint file, e.g. ``<output_dir>/last.pt``.
        save_dict: name -> object with ``state_dict``/``load_state_dict``.
        resume: load ``path`` at start when it exists.
    """

    def __init__(self, path: str, save_dict: Mapping[str, Any], resume: bool = False) -> None:
        self.path = path
        self.save_dict = dict(save_dict)
        self.resume = resume

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _objects(self) -> dict:
        return {k: (unwrap(v) if isinstance(v, nn.Module) else v) for k, v in self.save_dict.items()}

    def load(self, engine: Engine) -> None:
        if not (self.resume and os.path.isfile(self.path)):
            return
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        # the checkpoint's max_epochs is the interrupted run's; this run's setting wins
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self._objects(), checkpoint=state)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(
                f"Checkpoint {self.path} is at epoch {engine.state.epoch}, beyond this run's {max_epochs} epochs."
            )
        engine.state.max_epochs = max_epochs
        if engine.state.epoch == max_epochs:
            logger.warning("%s is at epoch %d, the last of this run: nothing is left to train (set more epochs to "
                           "train on)", self.path, engine.state.epoch)
        else:
            logger.info("Resumed from %s at epoch %d", self.path, engine.state.epoch)

    def save(self, engine: Engine) -> None:
        # every rank holds the same state (DDP keeps replicas in step); one writer is enough and avoids a race
        if idist.get_rank() == 0:
            atomic_save({k: v.state_dict() for k, v in self._objects().items()}, self.path)
