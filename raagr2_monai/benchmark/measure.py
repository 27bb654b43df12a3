"""Measuring networks in one run: counts, size, FLOPs, latency, training step and peak memory, with every figure also
as a ratio against the baseline measured in that same run (:func:`benchmark_models`)."""

from __future__ import annotations

import contextlib
import copy
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from raagr2_monai.losses import RAAGR2Loss
from raagr2_monai.networks import count_flops, count_parameters, get_network, state_dict_mb
from raagr2_monai.pruning import serialized_nbytes, to_sparse_state_dict
from raagr2_monai.utils import environment, model_device, parse_sequence, resolve_device, retain_freed_memory

from .memory import CpuMemoryProbe, cuda_peak_memory

__all__ = [
    "BASELINE",
    "META_KEY",
    "FLOP_COUNTER",
    "TIMER",
    "benchmark_models",
    "check_settings",
    "latency",
    "structure_groups",
]

#: Name of the reference model; every ratio is against it.
BASELINE = "baseline"
#: Key of the run's environment, settings and method descriptions in the result (not a possible model name).
META_KEY = "_meta"

TIMER = "time.perf_counter"
FLOP_COUNTER = "torch.utils.flop_counter.FlopCounterMode"
_RATIO_KEYS = ("params", "nonzero_params", "size_mb", "flops", "peak_mem_mb", "train_step_ms", "train_images_per_s")


def structure_groups(models: Mapping[str, nn.Module]) -> Dict[str, List[str]]:
    """Models that do the same computation: same classes, same parameter and buffer names and shapes.

    Dense kernels do the same work whatever the weights' values, so a mask-pruned network (zeros in place) and a
    fine-tuned copy take the time and memory of the network they came from; only structured pruning changes them.

    Args:
        models: model name -> network.

    Returns:
        The first model of each structure (in the given order) -> every model of that structure, itself first.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> zeroed = get_network("depthwise")
        >>> _ = [p.data.zero_() for p in zeroed.parameters()]
        >>> structure_groups({"a": get_network("depthwise"), "b": get_network("paired"), "c": zeroed})
        {'a': ['a', 'c'], 'b': ['b']}
    """
    groups: Dict[Any, List[str]] = {}
    for name, model in models.items():
        key = (
            tuple(type(m).__name__ for m in model.modules()),
            tuple((k, tuple(v.shape)) for k, v in model.state_dict().items()),
        )
        groups.setdefault(key, []).append(name)
    return {names[0]: names for names in groups.values()}


def _check_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_settings(size: Any, batches: Any, repeats: Any, warmup: Any) -> Tuple[int, Tuple[int, ...], int, int]:
    """Validate the benchmark settings.

    Args:
        size: in-plane input size, a positive multiple of 16.
        batches: batch sizes: an int, ``"1,8"`` or a sequence of positive ints.
        repeats: timed runs per figure, at least 1.
        warmup: untimed runs before them, at least 0.

    Returns:
        ``(size, batches, repeats, warmup)`` with ``batches`` as a tuple without duplicates, in the given order.

    Raises:
        ValueError: naming the setting that is wrong.
    """
    size = _check_int(size, "size", 16)
    if size % 16:
        raise ValueError(f"size must be a multiple of 16 (four 2x2 poolings); got {size}.")
    if isinstance(batches, str):
        items: List[Any] = [int(b) if b.lstrip("-").isdigit() else b for b in parse_sequence(batches, "batch")]
    elif isinstance(batches, (list, tuple)):
        items = list(batches)
    else:
        items = [batches]
    if not items:
        raise ValueError("batch: give at least one batch size, e.g. 1,8.")
    checked = tuple(dict.fromkeys(_check_int(b, "every batch size", 1) for b in items))
    return size, checked, _check_int(repeats, "repeats", 1), _check_int(warmup, "warmup", 0)


def _in_channels(model: nn.Module) -> int:
    if isinstance(getattr(model, "in_channels", None), int):
        return model.in_channels
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"Cannot tell the input channels of {type(model).__name__}: no in_channels, no Conv2d.")
    return conv.in_channels


def _out_channels(model: nn.Module, in_channels: int) -> int:
    if isinstance(getattr(model, "out_channels", None), int):
        return model.out_channels
    with torch.no_grad():
        return int(model(torch.zeros(1, in_channels, 16, 16, device=model_device(model))).shape[1])


def _spread(times_ms: Sequence[float]) -> Dict[str, float]:
    p25, median, p75 = np.percentile(np.asarray(times_ms, dtype=np.float64), [25, 50, 75])
    return {"median": float(median), "p25": float(p25), "p75": float(p75)}


def _timed(run: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None]) -> List[float]:
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def latency(model: nn.Module, shape: Tuple[int, ...], warmup: int, repeats: int, device: torch.device) -> dict:
    """Wall time of one forward pass of ``model`` on a random input of ``shape`` (``time.perf_counter``, no_grad):
    median, p25 and p75 in ms over ``repeats`` runs after ``warmup``, and the median per slice."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        times = _timed(lambda: model(x), warmup, repeats, _sync_for(device))
    spread = _spread(times)
    spread["per_slice_ms"] = spread["median"] / shape[0]
    return spread


def _train_step(
    model: nn.Module, shape: Tuple[int, ...], out_channels: int, warmup: int, repeats: int, device: torch.device
) -> Tuple[float, float]:
    net = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = RAAGR2Loss()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to(device)
    target = (torch.rand((shape[0], out_channels, *shape[2:]), generator=generator) > 0.5).float().to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), target).backward()
        optimizer.step()

    median = _spread(_timed(step, warmup, repeats, _sync_for(device)))["median"]
    return median, shape[0] / (median / 1e3)


def _nonzero(model: nn.Module) -> int:
    # 1-D tensors (biases, norm shifts that start at zero) are never masked: counting their zeros would make every
    # fresh network look pruned; so the count equals PruneResult.params_after of a mask-pruned model
    return sum(int(torch.count_nonzero(p.detach())) if p.dim() >= 2 else p.numel() for p in model.parameters())


def _sparse_mb(model: nn.Module) -> Optional[float]:
    """Size of the compressed state_dict, or ``None`` when no weight tensor has enough zeros for it to pay."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    # the packed form costs one bit per entry, so it only shrinks tensors with more than 1/32 zeros; this also keeps
    # the rare exact zero of a random initialisation from making a dense network look pruned
    names = [
        k
        for k, v in state.items()
        if torch.is_floating_point(v) and v.dim() >= 2 and int((v == 0).sum()) * 32 > v.numel()
    ]
    return serialized_nbytes(to_sparse_state_dict(state, names)) / 1e6 if names else None


def _counts(model: nn.Module, size: int, sparse_mb: Optional[float]) -> Dict[str, Any]:
    """What a network holds: parameters, non-zero parameters, sizes, FLOPs."""
    params, nonzero = count_parameters(model), _nonzero(model)
    return {
        "params": params,
        "nonzero_params": nonzero,
        "size_mb": state_dict_mb(model),
        "size_sparse_mb": sparse_mb if sparse_mb is not None else (_sparse_mb(model) if nonzero < params else None),
        "flops": count_flops(model, (1, _in_channels(model), size, size)),
    }


def _timings(
    name: str,
    model: nn.Module,
    size: int,
    batches: Tuple[int, ...],
    repeats: int,
    warmup: int,
    device: torch.device,
    measure_memory: bool,
    memory_probe: Optional[CpuMemoryProbe],
    train_shape: Optional[Tuple[int, int, int, int]],
) -> Dict[str, Any]:
    """What a network costs to run: latency, peak memory (on the CPU through ``memory_probe``), training step."""
    in_channels = _in_channels(model)
    row: Dict[str, Any] = {}
    row["latency_ms"] = {
        str(b): latency(model, (b, in_channels, size, size), warmup, repeats, device) for b in batches
    }
    largest = (max(batches), in_channels, size, size)
    memory: Dict[str, Any] = {"peak_mem_mb": None, "mem_before_forward_mb": None}
    if measure_memory:
        memory = (
            cuda_peak_memory(model, largest, device)
            if memory_probe is None
            else memory_probe.measure(name, model, largest)
        )
    row.update(memory)
    row["train_step_ms"], row["train_images_per_s"] = None, None
    if train_shape is not None:
        out_channels = _out_channels(model, in_channels)
        row["train_step_ms"], row["train_images_per_s"] = _train_step(
            model, train_shape, out_channels, warmup, repeats, device
        )
    return row


def _ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    return None if value is None or not reference else value / reference


def _ratios(row: Mapping[str, Any], base: Mapping[str, Any]) -> Dict[str, Any]:
    ratios: Dict[str, Any] = {key: _ratio(row[key], base[key]) for key in _RATIO_KEYS}
    ratios["size_sparse_mb"] = _ratio(row["size_sparse_mb"], base["size_mb"])
    ratios["latency_ms"] = {
        b: _ratio(spread["median"], base["latency_ms"][b]["median"]) for b, spread in row["latency_ms"].items()
    }
    return ratios


def _methods(
    device: torch.device,
    size: int,
    batches: Tuple[int, ...],
    repeats: int,
    warmup: int,
    train_shape: Optional[Tuple[int, ...]],
    share_structure: bool,
) -> Dict[str, str]:
    largest = max(batches)
    memory = (
        f"torch.cuda.max_memory_allocated over one forward pass at batch {largest} (weights, input, activations)"
        if device.type == "cuda"
        else f"peak resident set (VmHWM) of a separate process over one forward pass at batch {largest}: Python "
        "interpreter, torch libraries, weights, input and activations, nothing subtracted; one process measures the "
        "models in turn, its peak reset and the memory freed by the previous model released (malloc_trim) before each"
    )
    return {
        "params": "sum(p.numel() for p in model.parameters()), each tensor once",
        "nonzero_params": "params less the zero entries of tensors with 2 or more dimensions (1-D tensors all count)",
        "size_mb": "state_dict as torch.save writes it, MB = 10^6 bytes",
        "size_sparse_mb": "raagr2_monai.pruning.to_sparse_state_dict as torch.save writes it (a bundle's "
        "models/model_sparse.pt file size where present), packing the weight tensors with more than 1/32 zeros; "
        "null where there are none",
        "flops": f"{FLOP_COUNTER} at (1, C, {size}, {size}): convolutions and matmuls, a multiply-add = 2 FLOPs",
        "latency_ms": f"{TIMER}, one forward pass per run, eval mode, torch.no_grad"
        + (", torch.cuda.synchronize after each run" if device.type == "cuda" else "")
        + f"; median, p25, p75 of {repeats} timed runs after {warmup} warm-up runs; per_slice_ms = median / batch",
        "peak_mem_mb": memory,
        "train_step_ms": f"{TIMER}: zero_grad + forward + RAAGR2Loss + backward + Adam step on an input of shape "
        f"{list(train_shape) if train_shape else None}, median of {repeats} steps after {warmup} warm-up steps, on a "
        "copy of the model",
        "timed_as": "the model whose latency, memory and training step a row reports: itself, or with "
        + ("structure sharing on, the first model of the same structure (same modules, parameter and buffer shapes; "
           "dense kernels take the same time whatever the weights' values, so mask-pruned and fine-tuned copies "
           "are timed once)" if share_structure else "structure sharing off, always itself"),
        "vs_baseline": "figure / the baseline's figure from this run (size_sparse_mb / the baseline's size_mb; "
        "latency_ms: medians)",
    }


def benchmark_models(
    models: Mapping[str, nn.Module],
    size: int = 192,
    batches: Union[int, str, Sequence[int]] = (1, 8),
    repeats: int = 10,
    warmup: int = 2,
    device: Optional[Union[str, torch.device]] = None,
    measure_memory: bool = True,
    train_step: bool = True,
    sparse_sizes: Optional[Mapping[str, float]] = None,
    baseline: str = BASELINE,
    train_shape: Optional[Sequence[int]] = None,
    share_structure: bool = False,
    progress: Optional[Callable[[List[Tuple[str, List[str]]]], Iterable[Tuple[str, List[str]]]]] = None,
) -> Dict[str, Any]:
    """Measure every model in one run and state each figure as a ratio against the baseline of that run.

    The models are moved to ``device`` and left in eval mode; training steps and the memory process work on copies,
    so the weights are not changed. Models are measured one after another, in the given order.

    Args:
        models: model name -> network (input ``(B, C, size, size)``); names may not start with ``_``.
        size: in-plane input size, a multiple of 16.
        batches: batch sizes of the latency figures; memory and the training step use the largest.
        repeats: timed runs per figure.
        warmup: untimed runs before them.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available.
        measure_memory: measure ``peak_mem_mb``. On CPU this starts a process (multiprocessing ``spawn``,
            :class:`~raagr2_monai.benchmark.memory.CpuMemoryProbe`) that measures the models one after another and
            imports the caller's main module again: call from a ``__main__``-guarded script.
        train_step: measure ``train_step_ms`` and ``train_images_per_s``.
        train_shape: input shape ``(B, C, H, W)`` of the training step; the largest batch at ``size`` by default.
        sparse_sizes: model name -> compressed size in MB to report (e.g. a saved file's); models not in it that hold
            zero weights get the size of their :func:`~raagr2_monai.pruning.to_sparse_state_dict` form.
        baseline: the name of the reference model; when absent, a fresh ``baseline`` RAAGR2-Net with the channels of
            the first model is added (first) and ``_meta["baseline_added"]`` says so.
        share_structure: time each structure once (:func:`structure_groups`): models of the same structure as an
            earlier one get its latency, memory and training step, and ``timed_as`` names it.
        progress: wraps the ``(name, names of the same structure)`` pairs, in the order they are measured (one per
            model without ``share_structure``), e.g. in a progress bar (:func:`raagr2_monai.utils.progress_bar`); the
            added baseline included.

    Returns:
        ``{name: {"params", "nonzero_params", "size_mb", "size_sparse_mb", "flops",
        "latency_ms": {"1": {"median", "p25", "p75", "per_slice_ms"}, ...}, "peak_mem_mb", "mem_before_forward_mb",
        "train_step_ms", "train_images_per_s", "timed_as", "vs_baseline": {...}}, ..., "_meta": {...}}``; figures that
        were not measured are ``None``.

    Raises:
        ValueError: for bad settings (see :func:`check_settings`), no models, a bad model name, or CUDA asked for
            where there is none.

    Example::

        >>> result = benchmark_models({"depthwise": get_network("depthwise")}, size=32, batches=1, repeats=1,
        ...                           warmup=0, measure_memory=False, train_step=False)
        >>> round(result["depthwise"]["vs_baseline"]["params"], 3)
        0.566
    """
    size, batches, repeats, warmup = check_settings(size, batches, repeats, warmup)
    if not models:
        raise ValueError("benchmark_models: no models given.")
    for name, model in models.items():
        if not isinstance(name, str) or not name or name.startswith("_"):
            raise ValueError(f"Model names must be non-empty strings not starting with '_'; got {name!r}.")
        if not isinstance(model, nn.Module):
            raise ValueError(f"Model {name!r} is a {type(model).__name__}, not a torch.nn.Module.")
    dev = resolve_device(device)
    added = baseline not in models
    if added:
        channels = _in_channels(next(iter(models.values())))
        reference = get_network(
            "baseline", in_channels=channels, out_channels=_out_channels(next(iter(models.values())), channels)
        )
        models = {baseline: reference, **models}
    sparse_sizes = dict(sparse_sizes or {})
    # timed as a long-running process runs: large freed activations kept for the next pass (recorded in _meta)
    retain_freed_memory()
    env = environment(dev)
    shape = None
    if train_step:
        shape = tuple(int(d) for d in train_shape) if train_shape is not None else None
        shape = shape or (max(batches), _in_channels(next(iter(models.values()))), size, size)
    groups = structure_groups(models) if share_structure else {name: [name] for name in models}
    result: Dict[str, Any] = {}
    on_cpu = measure_memory and dev.type != "cuda"
    with CpuMemoryProbe() if on_cpu else contextlib.nullcontext() as probe:
        for first, names in (progress(list(groups.items())) if progress is not None else groups.items()):
            models[first].to(dev).eval()
            timed = _timings(first, models[first], size, batches, repeats, warmup, dev, measure_memory, probe,
                             shape)
            for name in names:
                models[name].to(dev).eval()
                result[name] = {**_counts(models[name], size, sparse_sizes.get(name)), **copy.deepcopy(timed),
                                "timed_as": first}
    result = {name: result[name] for name in models}
    for row in result.values():
        row["vs_baseline"] = _ratios(row, result[baseline])
    if hasattr(os, "getloadavg"):
        env["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    result[META_KEY] = {
        "environment": env,
        "settings": {
            "size": size,
            "batches": list(batches),
            "repeats": repeats,
            "warmup": warmup,
            "device": str(dev),
            "train_shape": list(shape) if shape else None,
            "share_structure": share_structure,
        },
        "baseline": baseline,
        "baseline_added": added,
        "timer": TIMER,
        "flop_counter": FLOP_COUNTER,
        "methods": _methods(dev, size, batches, repeats, warmup, shape, share_structure),
    }
    return result
