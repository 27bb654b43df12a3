"""Save and rebuild structurally pruned networks: a plain state_dict plus the pruning history.

A channel-pruned RAAGR2-Net cannot be rebuilt from its class alone, and whole models are never unpickled. The
history (``[[module name, is_out_channel_pruning, [indices]], ...]`` from torch-pruning) is stored as JSON together
with the variant and channel counts; rebuilding replays it on a freshly built base network:
``get_network`` -> ``DependencyGraph().build_dependency`` -> ``load_pruning_history`` -> ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from raagr2_monai.networks import get_network, variant_of
from raagr2_monai.utils import atomic_save, atomic_write_text

from .structured import build_dependency_graph

__all__ = ["HISTORY_FORMAT", "save_pruned", "read_history", "build_pruned_network", "load_pruned"]

HISTORY_FORMAT = "raagr2_monai.pruning_history/1"

PathLike = Union[str, os.PathLike]
History = List[List[Any]]


def save_pruned(
    directory: PathLike,
    model: nn.Module,
    history: History,
    meta: Optional[Mapping[str, Any]] = None,
    model_name: str = "model.pt",
    history_name: str = "pruning_history.json",
) -> Tuple[Path, Path]:
    """Write a pruned network's state_dict and its pruning history (each to a temporary name, then renamed).

    Args:
        directory: output folder (created if missing).
        model: the pruned RAAGR2-Net.
        history: its pruning history (:func:`raagr2_monai.pruning.structured.depgraph_prune`'s return value).
        meta: extra JSON-serialisable facts kept with the history (method, ratio, parameter counts, ...).
        model_name: file name of the state_dict.
        history_name: file name of the history JSON.

    Returns:
        The state_dict path and the history path.

    Example::

        weights, history_file = save_pruned("pruned", net, result.history, {"ratio": 0.2})
        net2 = load_pruned("baseline", weights, history_file)
    """
    directory = Path(directory)
    document = {
        "format": HISTORY_FORMAT,
        "variant": variant_of(model),
        "in_channels": int(model.in_channels),
        "out_channels": int(model.out_channels),
        "history": [[str(name), bool(out), [int(i) for i in idxs]] for name, out, idxs in history],
        "meta": dict(meta or {}),
    }
    text = json.dumps(document, indent=1)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    model_path, history_path = directory / model_name, directory / history_name
    atomic_save(state, model_path)
    atomic_write_text(history_path, text)
    return model_path, history_path


def read_history(path: PathLike) -> Dict[str, Any]:
    """Read and check a history file written by :func:`save_pruned`.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when it is not valid JSON in the expected format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Pruning history {path} does not exist.")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"Pruning history {path} is not valid JSON: {err}.") from None
    if not isinstance(document, dict) or document.get("format") != HISTORY_FORMAT:
        raise ValueError(f"{path} is not a pruning history (expected 'format': '{HISTORY_FORMAT}').")
    history = document.get("history")
    if not isinstance(history, list) or not all(
        isinstance(step, list) and len(step) == 3 and isinstance(step[0], str) and isinstance(step[2], list)
        for step in history
    ):
        raise ValueError(f"{path}: 'history' must be a list of [module name, is_out_channel_pruning, [indices]].")
    return document


def build_pruned_network(
    variant: str,
    history: Union[PathLike, History],
    in_channels: int = 4,
    out_channels: int = 3,
    dropout: float = 0.2,
) -> nn.Module:
    """Build a network with the pruned structure; its weights are loaded afterwards (e.g. by MONAI's CheckpointLoader).

    Args:
        variant: ``baseline``, ``depthwise``, ``paired`` or ``encdec``.
        history: a history file from :func:`save_pruned`, or the history list itself.
        in_channels: input channels of the base network.
        out_channels: output channels of the base network.
        dropout: dropout probability of the base network's dropout layers (pruning keeps them; the history does not
            depend on it). MONAI Label's epistemic scoring sets ``network_def["dropout"]`` on the bundle it samples.

    Returns:
        The pruned network, in train mode, with the base network's (pruned) initial weights.

    Raises:
        ValueError: for an unknown variant, a malformed history, or a history file recorded for another variant or
            other channel counts.

    Example::

        net = build_pruned_network("paired", "pruned/pruning_history.json")
    """
    if isinstance(history, (str, os.PathLike)):
        document = read_history(history)
        recorded = (document.get("variant"), document.get("in_channels"), document.get("out_channels"))
        if recorded != (variant, in_channels, out_channels):
            raise ValueError(
                f"Pruning history {history} was recorded for variant={recorded[0]!r}, in_channels={recorded[1]}, "
                f"out_channels={recorded[2]}; asked to rebuild variant={variant!r}, in_channels={in_channels}, "
                f"out_channels={out_channels}."
            )
        steps = document["history"]
    else:
        steps = [list(step) for step in history]
    net = get_network(variant, in_channels=in_channels, out_channels=out_channels, dropout=dropout)
    graph = build_dependency_graph(net)
    try:
        graph.load_pruning_history(steps)
    except (AttributeError, IndexError, AssertionError) as err:
        raise ValueError(f"The pruning history does not fit a {variant!r} network: {err!r}.") from None
    return net


def load_pruned(
    variant: str,
    state_dict_path: PathLike,
    history_path: PathLike,
    in_channels: int = 4,
    out_channels: int = 3,
) -> nn.Module:
    """Rebuild a pruned network and load its weights (``torch.load(..., weights_only=True)``, ``strict=True``).

    Args:
        variant: the network variant.
        state_dict_path: a plain state_dict, or a checkpoint dict holding it under ``"model"``.
        history_path: the history file from :func:`save_pruned`.
        in_channels: input channels of the base network.
        out_channels: output channels of the base network.

    Raises:
        FileNotFoundError: when a file is missing.
        ValueError: as :func:`build_pruned_network`, or when the weights do not match the pruned structure.
    """
    state_dict_path = Path(state_dict_path)
    if not state_dict_path.is_file():
        raise FileNotFoundError(f"Pruned weights {state_dict_path} do not exist.")
    net = build_pruned_network(variant, history_path, in_channels, out_channels)
    state = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and set(state) == {"model"}:
        state = state["model"]
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"Weights {state_dict_path} do not fit the pruned {variant!r} network: {err}") from None
    return net
