"""Small facts about a network that several parts of the package need: its device, and the module inside a
``DistributedDataParallel`` / ``DataParallel`` wrapper."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["model_device", "unwrap", "is_wrapped"]

_WRAPPERS = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def is_wrapped(model: nn.Module) -> bool:
    """Whether ``model`` is a ``DistributedDataParallel`` or ``DataParallel`` wrapper."""
    return isinstance(model, _WRAPPERS)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel``/``DataParallel`` wrapper, or ``model`` itself.

    Example::

        >>> net = nn.Linear(2, 2)
        >>> unwrap(net) is net
        True
    """
    return model.module if is_wrapped(model) else model


def model_device(model: nn.Module) -> torch.device:
    """The device of a network's first parameter (or buffer); the CPU for a network without either.

    Example::

        >>> model_device(nn.Linear(2, 2))
        device(type='cpu')
    """
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
