"""The device and the precision a network runs at, decided in one place.

Every path that runs a network (the bundle configs, ``raagr2 segment``, ``raagr2 benchmark``, the study, pruning,
export) asks :func:`resolve_device` which device a setting means and :func:`model_device` where a network lives;
:func:`autocast` is the mixed precision of every inference path, the same as MONAI's ``SupervisedEvaluator(amp=True,
amp_kwargs=amp_kwargs(device, precision))`` uses, so the bundle evaluator and ``raagr2 segment`` write the same label
map on a GPU when both are given the same ``precision`` setting (:func:`amp_dtype`: ``auto`` is bfloat16 on GPUs of
compute capability 8.0 and later, float16 before).

:func:`configure_backends` (cuDNN autotuning, TF32), :func:`prepare_network` (the device and the memory format) and
:class:`GradScalerHandler` (no loss scaling where the AMP dtype does not need it) are what a training on a GPU sets up
for throughput; on the CPU only the memory format applies (channels-last is faster there too), and the network
computes in float32 as before.

A device setting is ``None`` or ``"auto"`` (CUDA when this torch build and machine have it, else the CPU), or an
explicit ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or :class:`torch.device`. MONAI Label and the command line pass
plain strings; everything here accepts both.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Dict, List, Optional, Union

import torch
from torch import nn

__all__ = [
    "DeviceLike",
    "AMP_DTYPE",
    "PRECISIONS",
    "resolve_device",
    "is_cuda",
    "model_device",
    "check_precision",
    "amp_dtype",
    "use_amp",
    "amp_kwargs",
    "autocast",
    "needs_grad_scaler",
    "GradScalerHandler",
    "configure_backends",
    "uses_channels_last",
    "prepare_network",
    "distributed_backend",
    "ddp_device_ids",
]

DeviceLike = Union[str, torch.device, None]

#: The half precision of AMP before bfloat16: float16, for GPUs of compute capability below 8.0 and for
#: ``precision="fp16"`` (MONAI's engines autocast to float16 unless told otherwise).
AMP_DTYPE = torch.float16

#: The precision settings: ``auto`` (bfloat16 where the GPU computes it natively, else float16), ``bf16``, ``fp16``,
#: ``fp32`` (no autocast).
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Ampere and later have bfloat16 tensor cores; bfloat16 keeps float32's exponent range, so it needs no loss scaling
_BF16_CAPABILITY = (8, 0)
# measured on this project's 2-core AVX-512 CPU (tools/channels_last_cpu.py): see uses_channels_last
_CPU_CHANNELS_LAST = True


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


def is_cuda(device: DeviceLike = None) -> bool:
    """Whether a device setting means a GPU (resolved by :func:`resolve_device`, so a GPU the machine lacks is refused
    as everywhere else): for config values that only a GPU wants, such as a ``DataLoader``'s ``pin_memory`` or
    ``torch.optim.Adam(fused=...)``.

    Example::

        >>> is_cuda("cpu")
        False
    """
    return resolve_device(device).type == "cuda"


def check_precision(precision: Any) -> str:
    """A precision setting checked: one of :data:`PRECISIONS` (any case; ``None`` means ``auto``).

    Args:
        precision: ``"auto"``, ``"bf16"``, ``"fp16"``, ``"fp32"`` or ``None``.

    Returns:
        The setting in lower case.

    Raises:
        ValueError: anything else, in one line.

    Example::

        >>> check_precision("BF16"), check_precision(None)
        ('bf16', 'auto')
    """
    if precision is None:
        return "auto"
    text = precision.strip().lower() if isinstance(precision, str) else None
    if text not in PRECISIONS:
        raise ValueError(f"precision must be one of 'auto', 'bf16', 'fp16', 'fp32'; got {precision!r}.")
    return text


def amp_dtype(device: DeviceLike = None, precision: Any = "auto") -> torch.dtype:
    """The dtype autocast computes in for a precision setting on a device.

    ``auto`` is bfloat16 on CUDA GPUs of compute capability 8.0 and later (Ampere, Hopper, ...: bfloat16 tensor cores
    as fast as float16 ones, and float32's exponent range, so no loss scaling), float16 on older GPUs and elsewhere;
    ``bf16`` and ``fp16`` are what they say, ``fp32`` is float32 (no autocast: :func:`use_amp` is false).

    Args:
        device: the device (:func:`resolve_device`).
        precision: one of :data:`PRECISIONS`.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``torch.float32``.

    Raises:
        ValueError: an unknown precision or device.

    Example::

        >>> amp_dtype("cpu"), amp_dtype("cpu", "bf16")
        (torch.float16, torch.bfloat16)
    """
    chosen = check_precision(precision)
    if chosen != "auto":
        return _DTYPES[chosen]
    dev = resolve_device(device)
    if dev.type == "cuda" and tuple(torch.cuda.get_device_capability(dev)) >= _BF16_CAPABILITY:
        return torch.bfloat16
    return AMP_DTYPE


def use_amp(device: DeviceLike, amp: bool = True, precision: Any = "auto") -> bool:
    """Whether mixed precision applies: asked for, a half precision, and on CUDA (autocast on the CPU would be
    bfloat16, another result than the float32 every CPU path computes).

    Example::

        >>> use_amp("cpu", True)
        False
    """
    return bool(amp) and check_precision(precision) != "fp32" and resolve_device(device).type == "cuda"


def amp_kwargs(device: DeviceLike = None, precision: Any = "auto") -> Dict[str, Any]:
    """The ``amp_kwargs`` of MONAI's engines (``torch.autocast("cuda", **amp_kwargs)``): :func:`amp_dtype` stated,
    not left to their float16 default; ``fp32`` also says ``enabled=False``.

    With no arguments the device is the automatic one (CUDA when available), which is what every bundle config ran
    with before the precision became a setting.

    Example::

        >>> amp_kwargs("cpu")
        {'dtype': torch.float16}
        >>> amp_kwargs("cpu", "fp32")
        {'dtype': torch.float32, 'enabled': False}
    """
    dtype = amp_dtype(device, precision)
    if dtype == torch.float32:
        return {"dtype": dtype, "enabled": False}
    return {"dtype": dtype}


def autocast(device: DeviceLike, amp: bool = True, precision: Any = "auto") -> ContextManager:
    """The precision every inference path runs the network at: :func:`amp_dtype` autocast on CUDA when ``amp`` is
    set and ``precision`` is not ``fp32`` (as MONAI's ``SupervisedEvaluator(amp=True, amp_kwargs=amp_kwargs(device,
    precision))`` does), full precision otherwise.

    Example::

        >>> with autocast("cpu"):
        ...     torch.ones(2, 2).mm(torch.ones(2, 2)).dtype
        torch.float32
    """
    dev = resolve_device(device)
    if not use_amp(dev, amp, precision):
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=amp_dtype(dev, precision))


def needs_grad_scaler(device: DeviceLike, amp: bool = True, precision: Any = "auto") -> bool:
    """Whether a training at this precision needs loss scaling: float16 autocast only (its small exponent range
    flushes small gradients to zero); bfloat16 has float32's range.

    Example::

        >>> needs_grad_scaler("cpu", True, "fp16")
        False
    """
    return use_amp(device, amp, precision) and amp_dtype(device, precision) == torch.float16


class GradScalerHandler:
    """Ignite handler: the loss scaling of a MONAI trainer matched to its AMP dtype.

    MONAI's ``SupervisedTrainer(amp=True)`` makes a ``GradScaler`` whatever ``amp_kwargs`` says. bfloat16 needs no
    loss scaling, and the scaler's ``step`` reads its overflow check back to the host at every step (unless the
    optimizer is fused), so the GPU waits for Python each iteration. Where :func:`needs_grad_scaler` is false this
    handler replaces the trainer's scaler, as the run starts, by a disabled one (a pass-through: ``scale`` returns the
    loss, ``step`` calls ``optimizer.step()``); MONAI keeps autocasting, since its scaler is not ``None``. Where
    float16 is used the trainer's scaler stays.

    Args:
        device: the trainer's device.
        amp: the trainer's ``amp``.
        precision: the precision setting (:data:`PRECISIONS`).

    Example::

        {"_target_": "raagr2_monai.utils.GradScalerHandler", "device": "@device", "amp": "@amp",
         "precision": "@amp_precision"}
    """

    def __init__(self, device: DeviceLike = None, amp: bool = True, precision: Any = "auto") -> None:
        self.scaling = needs_grad_scaler(device, amp, precision)

    def attach(self, engine: Any) -> None:
        """Set the scaler of ``engine`` (a MONAI trainer) when its run starts."""
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._started)

    def _started(self, engine: Any) -> None:
        # Trainer.run() makes a new scaler just before the STARTED event; replace it there
        if not self.scaling and getattr(engine, "scaler", None) is not None:
            engine.scaler = torch.amp.GradScaler("cuda", enabled=False)


def _set_tf32(enabled: bool) -> None:
    mode = "tf32" if enabled else "ieee"
    # torch 2.9 and later: the fp32_precision settings; reading a legacy allow_tf32 flag after setting them is an
    # error, so the legacy flags are set only where the new ones do not exist
    if hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(torch.backends.cudnn, "conv"):
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
    else:  # pragma: no cover - older torch
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def configure_backends(device: DeviceLike = None, deterministic: Optional[bool] = None, tf32: bool = True
                       ) -> Dict[str, Any]:
    """Set cuDNN and the float32 matmuls up for throughput on CUDA; nothing on the CPU.

    On CUDA: cuDNN autotuning (``cudnn.benchmark``: the fastest algorithm of each convolution shape, timed on its first
    call; the network sees fixed-size crops, so it pays off after a few steps) unless determinism is kept, and TF32
    for float32 matmuls and convolutions (``tf32``; what autocast leaves in float32).

    Determinism: ``deterministic=None`` keeps what was asked for before: MONAI's ``set_determinism(seed=...)`` sets
    ``cudnn.deterministic`` (and ``torch.use_deterministic_algorithms`` may have been called); where either is set,
    cuDNN keeps deterministic algorithms and no autotuning (which may choose another algorithm in another run), so a
    seeded run stays bitwise reproducible on the same GPU. ``True`` asks for that; ``False`` lets cuDNN autotune
    and choose any algorithm (the seed still fixes the initial weights and the data order; runs agree closely, not
    bit for bit). The bundles' trainings call ``set_determinism`` first, so they choose with their ``deterministic``
    setting.

    Args:
        device: the device (:func:`resolve_device`).
        deterministic: ``None`` (keep what was asked before), ``True`` or ``False``.
        tf32: allow TF32 for float32 matmuls and convolutions on CUDA.

    Returns:
        The settings in force on CUDA (``cudnn_benchmark``, ``cudnn_deterministic``, ``tf32``), for a run record;
        ``{}`` on the CPU.

    Example::

        >>> configure_backends("cpu")
        {}
    """
    dev = resolve_device(device)
    if dev.type != "cuda":
        return {}
    if deterministic is None:
        deterministic = bool(torch.backends.cudnn.deterministic) or torch.are_deterministic_algorithms_enabled()
    keep = bool(deterministic)
    torch.backends.cudnn.deterministic = keep
    torch.backends.cudnn.benchmark = not keep
    _set_tf32(bool(tf32))
    return {"cudnn_benchmark": not keep, "cudnn_deterministic": keep, "tf32": bool(tf32)}


def uses_channels_last(device: DeviceLike = None) -> bool:
    """Whether networks run in the channels-last memory format (NHWC) on ``device``: yes, on CUDA and on the CPU.

    CUDA: cuDNN's tensor-core convolutions work in NHWC; in NCHW each half-precision convolution transposes its input
    and output around the kernel. The CPU: oneDNN's convolutions too, measured on this project's 2-core AVX-512 AMD
    EPYC machine (``tools/channels_last_cpu.py``, one process, the steps of both layouts interleaved, medians,
    2026-12-06, on a machine shared with other work, load average 1.5-5.7): a baseline training step (float32, Adam)
    took 0.81x the contiguous step's time at batch 16, 192x192, on one thread (13.4 s against 16.6 s) and 0.70-0.72x
    on two (in two of three runs; 1.04x in the third, under a load of 4 on the 2 cores), 0.88x / 0.81x at batch 8,
    96x96 (one / two threads; depthwise 0.89x), 0.82x at batch 8, 48x48; a 192x192 forward pass 0.83x. The result
    is the same function, computed in another order: float32 results differ in their last bits from the contiguous
    network's (``prepare_network(..., channels_last=False)`` keeps the former layout and results).

    Example::

        >>> uses_channels_last("cpu")
        True
    """
    return _CPU_CHANNELS_LAST if resolve_device(device).type == "cpu" else True


def prepare_network(network: nn.Module, device: DeviceLike = None, channels_last: Optional[bool] = None) -> nn.Module:
    """A network moved to ``device`` and, where it helps (:func:`uses_channels_last`), into the channels-last memory
    format; the same module, changed in place (shared kernels stay one tensor).

    Inputs need no conversion: a convolution whose weight is channels-last computes in channels-last whatever its
    input's layout, and the layout carries through the network. Checkpoints load either way (``load_state_dict``
    copies values into the parameters' own layout).

    Args:
        network: the network.
        device: the device (:func:`resolve_device`).
        channels_last: ``None`` (:func:`uses_channels_last`), ``True`` or ``False``.

    Returns:
        ``network``.

    Example::

        >>> net = prepare_network(nn.Conv2d(4, 8, 3), "cpu", channels_last=True)
        >>> net.weight.is_contiguous(memory_format=torch.channels_last)
        True
    """
    dev = resolve_device(device)
    network.to(dev)
    if uses_channels_last(dev) if channels_last is None else bool(channels_last):
        network.to(memory_format=torch.channels_last)
    return network


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
