"""Loading a plain state_dict into a RAAGR2-Net, with a clear error for a checkpoint of another variant."""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from raagr2_monai.utils import unwrap

from .registry import NETWORKS

__all__ = ["CheckpointMismatchError", "load_weights"]


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the network it is loaded into (another variant, a pruned model, ...)."""


def load_weights(network: nn.Module, path: str, map_location: Any = "cpu") -> nn.Module:
    """Load a plain state_dict (``torch.load(weights_only=True)``) into ``network``, strictly.

    Args:
        network: the network (a ``DistributedDataParallel`` wrapper is unwrapped).
        path: the checkpoint, a plain state_dict as the bundles write it.
        map_location: passed to ``torch.load``.

    Returns:
        ``network``, with the weights loaded.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        CheckpointMismatchError: the checkpoint was written by another architecture; the message names the variant
            it fits, where one does.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist: train the bundle first or set ckpt_path.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointMismatchError(f"Checkpoint {path} cannot be read as a plain state_dict: {err}") from err
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    model = unwrap(network)
    expected = model.state_dict()
    mismatched = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if set(state) != set(expected) or mismatched:
        keys = set(state)
        matches = [
            name
            for name, cls in NETWORKS.items()
            if set(cls(in_channels=model.in_channels, out_channels=model.out_channels).state_dict()) == keys
        ]
        what = f"it fits the {matches[0]!r} variant" if matches else "it fits none of the RAAGR2-Net variants"
        detail = (
            f"{len(keys - set(expected))} unexpected and {len(set(expected) - keys)} missing keys, "
            f"{len(mismatched)} shape mismatches"
        )
        raise CheckpointMismatchError(
            f"Checkpoint {path} does not fit {type(model).__name__} ({detail}); {what}. "
            "Use the bundle of the variant that wrote it (or the pruned bundle, for a pruned model)."
        )
    model.load_state_dict(state, strict=True)
    return network
