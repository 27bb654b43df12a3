"""Fingerprints that tie an exported model to what it was exported from: SHA-256 of a file, of a state_dict's
tensors and of a pruning history's steps.

The state_dict and history fingerprints hash content, not bytes on disk, so that a network exported from memory and
the same network saved in a bundle (``models/model.pt``, ``models/pruning_history.json``) give the same value.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping, Sequence, Union

import torch

__all__ = ["file_sha256", "state_dict_sha256", "history_sha256"]

PathLike = Union[str, os.PathLike]

_CHUNK = 1 << 20


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes, as hex.

    Example::

        >>> len(file_sha256(__file__))
        64
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state_dict's keys (sorted), dtypes, shapes and tensor bytes, as hex.

    Args:
        state: a state_dict (tensors on any device).

    Example::

        >>> a = state_dict_sha256(torch.nn.Linear(2, 2).state_dict())
        >>> a == state_dict_sha256(torch.nn.Linear(2, 2).state_dict())
        False
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # view as bytes: numpy has no bfloat16, and the bytes are what identify the weights
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def history_sha256(steps: Sequence[Sequence[Any]]) -> str:
    """SHA-256 of a pruning history's steps ``[[module name, is_out_channel_pruning, [indices]], ...]``, as hex.

    The steps are normalised as :func:`raagr2_monai.pruning.save_pruned` writes them, so the list torch-pruning
    returns and the history read back from its file hash alike.

    Example::

        >>> history_sha256([("encoder.0", True, (0, 2))]) == history_sha256([["encoder.0", True, [0, 2]]])
        True
    """
    normalised = [[str(name), bool(out), [int(i) for i in idxs]] for name, out, idxs in steps]
    return hashlib.sha256(json.dumps(normalised, separators=(",", ":")).encode()).hexdigest()
