"""The device and the precision a network runs at, decided in one place.

Every path that runs a network (the bundle configs, ``raagr2 segment``, ``raagr2 benchmark``, the study, pruning,
export) asks :func:`resolve_device` which device a setting means and :func:`model_device` where a network lives;
:func:`autocast` is the mixed precision of every inference path, the same as MONAI's ``SupervisedEvaluator(amp=True)``
uses, so the bundle evaluator and ``raagr2 segment`` write the same label map on a GPU.

A device setting is ``None`` or ``"auto"`` (CUDA when this torch build and machine have it, else the CPU), or an
explicit ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or :class:`torch.device`. MONAI Label and the command line pass
plain strings; everything here accepts both.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Dict, List, Optional, Union

import torch
from torch import nn

__all__ = [
    "DeviceLike",
    "AMP_DTYPE",
    "resolve_device",
    "model_device",
    "use_amp",
    "amp_kwargs",
    "autocast",
    "distributed_backend",
    "ddp_device_ids",
]

DeviceLike = Union[str, torch.device, None]

#: The half precision of AMP: MONAI's engines autocast to float16 on CUDA unless told otherwise, and every path here
#: must compute what the bundle's evaluator computes.
AMP_DTYPE = torch.float16


def resolve_device(device: DeviceLike = None, index: Optional[int] = None) -> torch.device:
    """The device a setting means: explicit, or CUDA when available, else the CPU.

    Args:
        device: ``None`` or ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:<i>"`` or a
            :class:`torch.device`.
        index: the CUDA device to take when ``device`` names CUDA without an index (or is automatic and CUDA is
            there); a torchrun process passes its ``LOCAL_RANK``. Ignored on the CPU.

    Returns:
        The :class:`torch.device`.

    Raises:
        ValueError: a string that names no device, a kind other than CPU and CUDA, CUDA where this machine has none,
            or a CUDA index it does not have.

    Example::

        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device(torch.device("cpu"), index=1)
        device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:<index>' or 'auto'; got {device!r}.") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(dev)!r}: only 'cpu' and 'cuda' are supported.")
    if dev.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r}: CUDA is not available on this machine; use 'cpu'.")
    if dev.index is None and index is not None:
        dev = torch.device("cuda", int(index))
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(dev)!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    return dev


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


def use_amp(device: DeviceLike, amp: bool = True) -> bool:
    """Whether mixed precision applies: asked for, and on CUDA (autocast on the CPU would be bfloat16, another result).

    Example::

        >>> use_amp("cpu", True)
        False
    """
    return bool(amp) and resolve_device(device).type == "cuda"


def amp_kwargs() -> Dict[str, torch.dtype]:
    """The ``amp_kwargs`` of MONAI's engines: :data:`AMP_DTYPE` stated, not left to their default."""
    return {"dtype": AMP_DTYPE}


def autocast(device: DeviceLike, amp: bool = True) -> ContextManager:
    """The precision every inference path runs the network at: float16 autocast on CUDA when ``amp`` is set (as
    MONAI's ``SupervisedEvaluator(amp=True, amp_kwargs=amp_kwargs())`` does), full precision otherwise.

    Example::

        >>> with autocast("cpu"):
        ...     torch.ones(2, 2).mm(torch.ones(2, 2)).dtype
        torch.float32
    """
    dev = resolve_device(device)
    if not use_amp(dev, amp):
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=AMP_DTYPE)


def distributed_backend(device: DeviceLike) -> str:
    """The ``torch.distributed`` backend for processes on ``device``: NCCL between GPUs, gloo between CPUs.

    Example::

        >>> distributed_backend("cpu")
        'gloo'
    """
    return "nccl" if resolve_device(device).type == "cuda" else "gloo"


def ddp_device_ids(device: DeviceLike) -> Optional[List[torch.device]]:
    """``DistributedDataParallel``'s ``device_ids``: the one GPU of this process (the current one where ``device``
    names no index), ``None`` on the CPU.

    Example::

        >>> ddp_device_ids("cpu") is None
        True
    """
    dev = resolve_device(device)
    if dev.type != "cuda":
        return None
    return [dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())]
