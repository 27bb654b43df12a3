"""Loading a plain state_dict into a RAAGR2-Net, with a clear error for a checkpoint of another variant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from raagr2_monai.utils import unwrap

from .registry import NETWORKS

__all__ = ["CheckpointMismatchError", "check_weights", "load_weights", "missing_weights"]

PathLike = Union[str, os.PathLike]


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the network it is loaded into (another variant, a pruned model, ...)."""


def _command_writing(path: Path) -> Optional[str]:
    """The command that writes ``path`` when it is a bundle's ``models/model.pt``: the bundle's training run, or for
    a pruned bundle (``<bundle>/pruned/<method>-<percent>``, as ``prune.json`` names it) the pruning run of the bundle
    it came from; ``None`` for any other path."""
    if path.parent.name != "models":
        return None
    root = path.parent.parent
    source = root.parent.parent
    method, _, percent = root.name.rpartition("-")
    if root.parent.name == "pruned" and (source / "configs" / "prune.json").is_file() and percent.isdigit():
        configs = f"'{source / 'configs' / 'train.json'}','{source / 'configs' / 'prune.json'}'"
        return (
            f"prune the bundle first (python -m monai.bundle run pruning --config_file \"[{configs}]\" "
            f"--method {method} --ratio {int(percent) / 100:g})"
        )
    if (root / "configs" / "train.json").is_file():
        return (
            "train the bundle first (python -m monai.bundle run training "
            f"--config_file {root / 'configs' / 'train.json'})"
        )
    return None


def missing_weights(path: PathLike, setting: Optional[str] = "ckpt_path") -> FileNotFoundError:
    """The error for weights that do not exist, naming the command that writes them and the setting to change.

    Args:
        path: the missing checkpoint.
        setting: the config setting (or command-line option) that chose ``path``; ``None`` where the path is fixed
            (a bundle's ``models/model.pt``).

    Returns:
        The ``FileNotFoundError`` to raise.

    Example::

        >>> print(missing_weights("bundles/baseline/models/model.pt", "source_ckpt"))  # doctest: +NORMALIZE_WHITESPACE
        Checkpoint bundles/baseline/models/model.pt does not exist: train the bundle first
        (python -m monai.bundle run training --config_file bundles/baseline/configs/train.json),
        or set source_ckpt to a trained checkpoint.
    """
    command = _command_writing(Path(path))
    steps = ([command] if command else []) + ([f"set {setting} to a trained checkpoint"] if setting else [])
    advice = ", or ".join(steps)
    return FileNotFoundError(f"Checkpoint {path} does not exist" + (f": {advice}." if advice else "."))


def check_weights(path: PathLike, setting: Optional[str] = "ckpt_path") -> str:
    """Refuse weights that do not exist before a workflow loads any data (a step of ``prune.json``'s
    ``initialize``), with the message of :func:`missing_weights`.

    Args:
        path: the checkpoint.
        setting: the config setting that chose ``path``.

    Returns:
        ``path``, as a string.

    Raises:
        FileNotFoundError: ``path`` is not a file.
    """
    if not os.path.isfile(path):
        raise missing_weights(path, setting)
    return str(path)


def load_weights(
    network: nn.Module, path: str, map_location: Any = "cpu", setting: Optional[str] = "ckpt_path"
) -> nn.Module:
    """Load a plain state_dict (``torch.load(weights_only=True)``) into ``network``, strictly.

    Args:
        network: the network (a ``DistributedDataParallel`` wrapper is unwrapped).
        path: the checkpoint, a plain state_dict as the bundles write it.
        map_location: passed to ``torch.load``.
        setting: the config setting that chose ``path``, named by the error for a missing file (``source_ckpt``
            in ``prune.json``); ``None`` where the path is fixed.

    Returns:
        ``network``, with the weights loaded.

    Raises:
        FileNotFoundError: the checkpoint does not exist (:func:`missing_weights`).
        CheckpointMismatchError: the checkpoint was written by another architecture; the message names the variant
            it fits, where one does.
    """
    if not os.path.isfile(path):
        raise missing_weights(path, setting)
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
