"""Training throughput: slices per second, the FLOP/s a training step achieves and its share of the device's peak, and
the peak memory of a step, at a precision, a memory format and optionally compiled (``raagr2 benchmark
--throughput``; the GPU check's throughput table).

The step is the bundles' training step as a GPU runs it (:mod:`raagr2_monai.utils.device`): the network on the device
(:func:`~raagr2_monai.utils.prepare_network`, channels-last where asked), cuDNN set up by
:func:`~raagr2_monai.utils.configure_backends`, forward and :class:`~raagr2_monai.losses.RAAGR2Loss` under
:func:`~raagr2_monai.utils.autocast`, backward, and Adam (fused on CUDA), through a ``GradScaler`` that scales only for
float16 (:func:`~raagr2_monai.utils.needs_grad_scaler`). Steps are queued back to back, as a trainer that never reads
the loss back runs them: the device is synchronised once before and once after the timed steps, and each step is timed
by CUDA events on the GPU (``time.perf_counter`` on the CPU).

FLOPs: the forward pass's, counted by ``torch.utils.flop_counter.FlopCounterMode`` (:func:`~raagr2_monai.networks.
count_flops`, convolutions; a multiply-add counts 2), times the batch, times 3 for a training step (the backward pass
computes the gradients of the inputs and of the weights, each about a forward pass's work; the first layer's input
gradient, which is not needed, is counted too). The peak is the nominal dense (no 2:4 sparsity) tensor-core figure
of the GPU from its maker's datasheet (:data:`PEAK_TFLOPS`) for the precision computed in, or ``peak_tflops``.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from raagr2_monai.losses import RAAGR2Loss
from raagr2_monai.networks import count_flops
from raagr2_monai.utils import (
    DeviceLike,
    amp_dtype,
    as_flag,
    autocast,
    check_precision,
    configure_backends,
    needs_grad_scaler,
    prepare_network,
    resolve_device,
    use_amp,
    uses_channels_last,
)

from .measure import _check_int, _in_channels, _out_channels
from .memory import peak_memory_during

__all__ = [
    "PEAK_TFLOPS",
    "THROUGHPUT_METHOD",
    "check_channels_last",
    "check_compile",
    "peak_tflops_of",
    "training_throughput",
    "throughput_grid",
    "render_throughput",
]

#: Nominal dense peak TFLOP/s of known GPUs by the precision their tensor cores compute in (``tf32``: float32
#: convolutions and matmuls with TF32 allowed), from the makers' datasheets (without 2:4 sparsity; GeForce cards with
#: float32 accumulation, as PyTorch accumulates). The first pattern that matches ``torch.cuda.get_device_name`` wins.
PEAK_TFLOPS: Tuple[Tuple[str, Dict[str, float]], ...] = (
    (r"\bH100\b.*\bPCIe\b", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    (r"\bH[12]00\b.*\bNVL\b", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (r"\bG?H[12]00\b", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM, GH200
    (r"\bB200\b", {"bf16": 2250.0, "fp16": 2250.0, "tf32": 1125.0}),
    (r"\bA100\b", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (r"\bL40S\b", {"bf16": 362.05, "fp16": 362.05, "tf32": 183.0, "fp32": 91.6}),
    (r"\bL40\b", {"bf16": 181.05, "fp16": 181.05, "tf32": 90.5, "fp32": 90.5}),
    (r"\bL4\b", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    (r"\bA10\b", {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2}),
    (r"\bRTX 4090\b", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6}),
    (r"\bRTX 3090\b", {"bf16": 71.0, "fp16": 71.0, "tf32": 35.6, "fp32": 35.6}),
    (r"\bV100\b", {"fp16": 125.0, "fp32": 15.7}),
    (r"\bT4\b", {"fp16": 65.0, "fp32": 8.1}),
)

#: How the throughput figures are measured (recorded in ``raagr2 benchmark``'s ``_meta``).
THROUGHPUT_METHOD = (
    "training_throughput: zero_grad + forward + RAAGR2Loss under autocast + backward + Adam (fused on CUDA) through "
    "a GradScaler enabled for float16 only, on a copy of the model prepared for the device (channels-last as set), "
    "cuDNN autotuned; warm-up steps, then the timed steps queued back to back with one synchronisation after them "
    "(per-step CUDA events; time.perf_counter on the CPU); slices_per_s and achieved_tflops from the mean step; "
    "train FLOPs = 3 x FlopCounterMode forward FLOPs x batch; peak = nominal dense TFLOP/s of the GPU for the dtype "
    "computed in (or peak_tflops); peak_mem_mb: torch.cuda.max_memory_allocated over one step on CUDA, the process's "
    "peak resident set over one step on the CPU"
)


_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def peak_tflops_of(device_name: str, computed_in: str) -> Optional[float]:
    """The nominal dense peak of a GPU (:data:`PEAK_TFLOPS`), or ``None`` for a device not in the table.

    Args:
        device_name: ``torch.cuda.get_device_name(...)``.
        computed_in: ``bf16``, ``fp16``, ``tf32`` or ``fp32``.

    Example::

        >>> peak_tflops_of("NVIDIA H200", "bf16"), peak_tflops_of("NVIDIA A10G", "bf16")
        (989.4, None)
    """
    for pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name):
            return peaks.get(computed_in)
    return None


def check_channels_last(value: Any) -> Optional[bool]:
    """A channels-last setting: ``None``/``"auto"`` (:func:`~raagr2_monai.utils.uses_channels_last`), or a switch.

    Example::

        >>> check_channels_last("auto"), check_channels_last("true")
        (None, True)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    return as_flag(value, "channels_last")


def check_compile(value: Any) -> Union[bool, str]:
    """A ``torch.compile`` setting: off (``False``), ``True`` (the ``inductor`` backend) or a backend's name.

    Raises:
        ValueError: a name ``torch.compile`` does not know.

    Example::

        >>> check_compile("false"), check_compile(True), check_compile("eager")
        (False, 'inductor', 'eager')
    """
    if isinstance(value, bool) or str(value).strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return "inductor" if as_flag(value, "compile") else False
    name = str(value).strip()
    known = torch._dynamo.list_backends(exclude_tags=())
    if name not in known:
        raise ValueError(f"compile must be true, false or a torch.compile backend ({', '.join(known)}); got {value!r}.")
    return name


def _spread(times_ms: Sequence[float]) -> Dict[str, float]:
    p25, median, p75 = np.percentile(np.asarray(times_ms, dtype=np.float64), [25, 50, 75])
    return {"median": float(median), "p25": float(p25), "p75": float(p75)}


def _training_step(net: nn.Module, x: torch.Tensor, target: torch.Tensor, device: torch.device, precision: str,
                   compiled: Union[bool, str]) -> Callable[[], torch.Tensor]:
    """One training step as a bundle's trainer runs it on ``device``; returns the detached loss, not read back."""
    cuda = device.type == "cuda"
    # fused Adam: one kernel for every parameter, and it takes the scaler's overflow check on the device
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True if cuda else None)
    scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(device, True, precision))
    loss_fn = RAAGR2Loss()
    forward = torch.compile(net, backend=compiled) if compiled else net

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, True, precision):
            loss = loss_fn(forward(x), target).mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return step


def _timed_steps(step: Callable[[], torch.Tensor], warmup: int, repeats: int, device: torch.device
                 ) -> Tuple[List[float], float, torch.Tensor]:
    """Per-step milliseconds, the wall milliseconds of all timed steps, and the last loss."""
    cuda = device.type == "cuda"
    loss = None
    for _ in range(warmup):
        loss = step()
    if cuda:
        torch.cuda.synchronize(device)
        stream = torch.cuda.current_stream(device)  # the device's, whichever GPU is the current one
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    times: List[float] = []
    start = time.perf_counter()
    for i in range(repeats):
        if cuda:
            events[i][0].record(stream)
            loss = step()
            events[i][1].record(stream)
        else:
            begin = time.perf_counter()
            loss = step()
            times.append((time.perf_counter() - begin) * 1e3)
    if cuda:
        torch.cuda.synchronize(device)  # the one wait of the timed steps
        times = [begin.elapsed_time(end) for begin, end in events]
    wall = (time.perf_counter() - start) * 1e3
    return times, wall, loss


def training_throughput(
    model: nn.Module,
    batch: int = 16,
    size: int = 192,
    device: DeviceLike = None,
    precision: str = "auto",
    channels_last: Optional[bool] = None,
    compile: Union[bool, str] = False,
    repeats: int = 10,
    warmup: int = 3,
    peak_tflops: Optional[float] = None,
    measure_memory: bool = True,
    deterministic: Optional[bool] = False,
    forward_flops: Optional[int] = None,
) -> Dict[str, Any]:
    """Time training steps of ``model`` (a copy: its weights are not changed) on random slices, and what they achieve.

    Args:
        model: the network, input ``(B, C, size, size)``.
        batch: slices per step.
        size: in-plane size, a multiple of 16.
        device: where it trains (:func:`~raagr2_monai.utils.resolve_device`).
        precision: ``auto``, ``bf16``, ``fp16`` or ``fp32`` (:func:`~raagr2_monai.utils.amp_dtype`; on the CPU the
            step is float32 whatever the setting, as every CPU path is).
        channels_last: the memory format; ``None``: :func:`~raagr2_monai.utils.uses_channels_last`.
        compile: ``torch.compile`` the network: ``False``, ``True`` (inductor) or a backend's name.
        repeats: timed steps.
        warmup: untimed steps before them (cuDNN's autotuning and compilation happen there).
        peak_tflops: the device's peak in TFLOP/s; ``None``: :data:`PEAK_TFLOPS` by the device's name (no figure
            for a device not in it, nor for the CPU).
        measure_memory: measure the peak memory of one more step (:func:`~.memory.peak_memory_during`).
        deterministic: cuDNN determinism (:func:`~raagr2_monai.utils.configure_backends`); ``False``: autotuned.
        forward_flops: the forward pass's FLOPs at batch 1, if already counted.

    Returns:
        ``{"batch", "size", "precision", "dtype", "channels_last", "compile", "backends", "step_ms": {"mean",
        "median", "p25", "p75"}, "slices_per_s", "train_flops", "achieved_tflops", "peak_tflops", "peak_source",
        "peak_fraction", "peak_mem_mb", "peak_mem_kind", "loss"}``; ``slices_per_s`` and ``achieved_tflops`` from
        the mean step (the wall time of the timed steps over their number), figures not measured ``None``.

    Raises:
        ValueError: a bad precision, batch, size, compile setting or device.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> row = training_throughput(get_network("depthwise"), batch=2, size=32, device="cpu", repeats=1,
        ...                           warmup=0, measure_memory=False)
        >>> row["dtype"], row["slices_per_s"] > 0, row["peak_fraction"]
        ('float32', True, None)
    """
    precision = check_precision(precision)
    batch, size = _check_int(batch, "batch", 1), _check_int(size, "size", 16)
    repeats, warmup = _check_int(repeats, "repeats", 1), _check_int(warmup, "warmup", 0)
    if size % 16:
        raise ValueError(f"size must be a multiple of 16 (four 2x2 poolings); got {size}.")
    compiled = check_compile(compile)
    dev = resolve_device(device)
    backends = configure_backends(dev, deterministic)
    layout = uses_channels_last(dev) if channels_last is None else bool(channels_last)
    dtype = amp_dtype(dev, precision) if use_amp(dev, True, precision) else torch.float32
    in_channels = _in_channels(model)
    out_channels = _out_channels(model, in_channels)
    if forward_flops is None:  # on a CPU copy: no batch-1 shapes for cuDNN to autotune on the device
        forward_flops = count_flops(copy.deepcopy(model).cpu(), (1, in_channels, size, size))
    net = prepare_network(copy.deepcopy(model), dev, layout).train()
    generator = torch.Generator().manual_seed(0)
    # the batch arrives in the data loader's layout (NCHW); a channels-last network converts it in its first layer
    x = torch.randn((batch, in_channels, size, size), generator=generator).to(dev)
    target = (torch.rand((batch, out_channels, size, size), generator=generator) > 0.5).float().to(dev)
    step = _training_step(net, x, target, dev, precision, compiled)
    times, wall, loss = _timed_steps(step, warmup, repeats, dev)
    memory: Dict[str, Any] = {"peak_mem_mb": None, "peak_mem_kind": None}
    if measure_memory:
        figures = peak_memory_during(step, dev)
        memory = {"peak_mem_mb": figures["peak_mem_mb"], "peak_mem_kind": figures["peak_mem_kind"]}
    mean_s = wall / repeats / 1e3
    train_flops = 3 * forward_flops * batch
    computed_in = _DTYPE_NAMES[dtype] if dtype != torch.float32 or not backends.get("tf32") else "tf32"
    peak, source = (float(peak_tflops), "given") if peak_tflops is not None else (None, None)
    if peak is None and dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = peak_tflops_of(name, computed_in)
        source = f"{name}, {computed_in} (PEAK_TFLOPS)" if peak is not None else None
    achieved = train_flops / mean_s / 1e12
    return {
        "batch": batch,
        "size": size,
        "precision": precision,
        "dtype": str(dtype).replace("torch.", ""),
        "channels_last": layout,
        "compile": compiled,
        "backends": backends,
        "step_ms": {"mean": wall / repeats, **_spread(times)},
        "slices_per_s": batch / mean_s,
        "train_flops": train_flops,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "peak_source": source,
        "peak_fraction": achieved / peak if peak else None,
        **memory,
        "loss": float(loss),  # after the timed steps: the one read back
    }


def throughput_grid(
    models: Mapping[str, nn.Module],
    batches: Sequence[int] = (16,),
    size: int = 192,
    device: DeviceLike = None,
    settings: Sequence[Mapping[str, Any]] = ({},),
    progress: Optional[Callable[[str], None]] = None,
    **common: Any,
) -> List[Dict[str, Any]]:
    """:func:`training_throughput` of every model at every batch size under every setting, one row each.

    Args:
        models: name -> network.
        batches: the batch sizes.
        size: in-plane size.
        device: the device.
        settings: the keyword arguments of :func:`training_throughput` that vary (``precision``, ``channels_last``,
            ``compile``, ``deterministic``), one mapping per setting; a ``label`` key names the setting in the table.
        progress: called with a line before each measurement.
        common: keyword arguments of every measurement (``repeats``, ``warmup``, ``peak_tflops``, ...).

    Returns:
        The rows, each :func:`training_throughput`'s figures with ``model`` and ``label``.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> rows = throughput_grid({"depthwise": get_network("depthwise")}, (2,), 32, "cpu",
        ...                        [{"channels_last": False}, {"channels_last": True}], repeats=1, warmup=0,
        ...                        measure_memory=False)
        >>> [row["channels_last"] for row in rows]
        [False, True]
    """
    rows = []
    for name, model in models.items():
        flops = count_flops(copy.deepcopy(model).cpu(), (1, _in_channels(model), size, size))
        for setting in settings:
            options = {k: v for k, v in setting.items() if k != "label"}
            for batch in batches:
                if progress is not None:
                    progress(f"{name} b{batch} {setting.get('label', options)}")
                row = training_throughput(model, batch, size, device, forward_flops=flops, **{**common, **options})
                rows.append({"model": name, "label": setting.get("label", ""), **row})
    return rows


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_throughput(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of :func:`throughput_grid` as an aligned table (one line per measurement).

    Example::

        >>> print(render_throughput([]))
        no measurements
    """
    if not rows:
        return "no measurements"
    header = ["model", "setting", "batch", "dtype", "NHWC", "compile", "step ms median [p25, p75]", "mean ms",
              "slices/s", "TFLOP/s", "of peak", "peak MB"]
    lines = []
    for row in rows:
        ms = row["step_ms"]
        lines.append([
            row.get("model", ""), row.get("label", "") or "-", str(row["batch"]), row["dtype"],
            "yes" if row["channels_last"] else "no", str(row["compile"] or "no"),
            f"{ms['median']:.1f} [{ms['p25']:.1f}, {ms['p75']:.1f}]", f"{ms['mean']:.1f}",
            f"{row['slices_per_s']:.1f}", f"{row['achieved_tflops']:.2f}",
            _fmt(None if row["peak_fraction"] is None else 100 * row["peak_fraction"], ".1f") + (
                " %" if row["peak_fraction"] is not None else ""),
            _fmt(row["peak_mem_mb"], ".0f"),
        ])
    widths = [max(len(c) for c in column) for column in zip(header, *lines)]
    text = ["  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])
            for cells in [header] + lines]
    return "\n".join(text)
