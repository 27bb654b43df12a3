"""The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (a network's device: :mod:`.device`)."""

from __future__ import annotations

from torch import nn

__all__ = ["unwrap", "is_wrapped"]

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

