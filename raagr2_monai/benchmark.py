"""What each model costs: parameters, size on disk, FLOPs, inference latency, peak memory, training step (issue 6).

:func:`benchmark_models` measures any set of networks in one run and states every figure also as a ratio against the
baseline measured in that same run; :func:`run_benchmark` builds the networks from variant names and bundle folders
(``raagr2 benchmark``), :func:`render` writes the result as a table, CSV or JSON.

How each figure is obtained (also recorded under the result's ``"_meta"`` key):

- ``params``: ``sum(p.numel() for p in model.parameters())``, each tensor once; ``nonzero_params``: the same count
  without the zero entries of the weight tensors (two dimensions or more; 1-D biases and norm parameters all count),
  so it is below ``params`` exactly for a mask-pruned model (and equals its ``PruneResult.params_after``).
- ``size_mb``: the state_dict as ``torch.save`` writes it, in MB (10^6 bytes). ``size_sparse_mb``: the compressed
  form of :func:`raagr2_monai.pruning.to_sparse_state_dict` (the size of a bundle's ``models/model_sparse.pt`` where
  there is one), of the weight tensors with more than 1/32 zeros (where the packed form is smaller); ``None`` for
  a model without such tensors.
- ``flops``: ``torch.utils.flop_counter.FlopCounterMode`` at batch 1 (convolutions, a multiply-add counts 2).
- ``latency_ms``: per batch size, wall time of one forward pass (``time.perf_counter``; eval mode, ``torch.no_grad``;
  ``torch.cuda.synchronize`` around each run on CUDA): median, 25th and 75th percentile over the timed runs, the
  warm-up runs excluded.
- ``peak_mem_mb``: on CUDA, ``torch.cuda.max_memory_allocated`` over one forward pass at the largest batch (weights,
  input, activations). On CPU, the peak resident set (``VmHWM``) of a separate process per model that runs that one
  forward pass: it includes the Python interpreter, the torch libraries, the weights, the input and the activations;
  nothing is subtracted. ``mem_before_forward_mb`` is the same process's resident set just before the forward pass;
  ``peak_since_start`` is true where the kernel's peak could not be reset then (no ``/proc/self/clear_refs``).
- ``train_step_ms``: forward + :class:`~raagr2_monai.losses.RAAGR2Loss` + backward + Adam step at the largest batch,
  median over the timed steps, on a copy of the model; ``train_images_per_s`` is the batch over that median.
- ``vs_baseline``: each figure divided by the baseline's (the compressed size by the baseline's dense size); for
  latency, the medians per batch size.

The JSON result is an object keyed by model name; the key ``"_meta"`` (model names may not start with ``_``) holds the
environment (device, CPU model, torch threads, versions), the settings and the descriptions above.
"""

from __future__ import annotations

import copy
import csv
import gc
import io
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

__all__ = [
    "BASELINE",
    "FORMATS",
    "META_KEY",
    "benchmark_command",
    "benchmark_models",
    "bundle_name",
    "check_format",
    "check_settings",
    "environment",
    "load_bundle_network",
    "render",
    "run_benchmark",
]

#: Name of the reference model; every ratio is against it.
BASELINE = "baseline"
#: Key of the run's environment, settings and method descriptions in the result (not a possible model name).
META_KEY = "_meta"
FORMATS = ("table", "csv", "json")

TIMER = "time.perf_counter"
FLOP_COUNTER = "torch.utils.flop_counter.FlopCounterMode"
_RATIO_KEYS = ("params", "nonzero_params", "size_mb", "flops", "peak_mem_mb", "train_step_ms", "train_images_per_s")

PathLike = Union[str, os.PathLike]


def _split(value: Any, what: str) -> List[str]:
    """``"a,b"``, ``("a", "b")`` (as Fire parses ``a,b``) or ``None`` -> ``["a", "b"]``."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = [str(item).strip() for item in items]
    if any(not item for item in out) and len(out) > 1:
        raise ValueError(f"{what}: empty entry in {value!r}.")
    return [item for item in out if item]


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
        items: List[Any] = [int(b) if b.lstrip("-").isdigit() else b for b in _split(batches, "batch")]
    elif isinstance(batches, (list, tuple)):
        items = list(batches)
    else:
        items = [batches]
    if not items:
        raise ValueError("batch: give at least one batch size, e.g. 1,8.")
    checked = tuple(dict.fromkeys(_check_int(b, "every batch size", 1) for b in items))
    return size, checked, _check_int(repeats, "repeats", 1), _check_int(warmup, "warmup", 0)


def _is_bundle(folder: Path) -> bool:
    return (folder / "configs" / "inference.json").is_file()


def bundle_name(bundle_dir: PathLike) -> str:
    """A bundle's name: its path relative to the folder holding its outermost enclosing bundle.

    ``bundles/baseline`` is ``baseline`` and ``bundles/baseline/pruned/depgraph-20`` (a bundle inside the baseline
    bundle) is ``baseline/pruned/depgraph-20``, whatever the working directory.

    Example::

        >>> bundle_name("bundles/depthwise")
        'depthwise'
    """
    path = Path(bundle_dir).resolve()
    top = path
    for parent in path.parents:
        if _is_bundle(parent):
            top = parent
    return path.relative_to(top.parent).as_posix()


def _check_bundle(bundle_dir: PathLike) -> Path:
    root = Path(bundle_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Bundle folder {root} does not exist.")
    if not _is_bundle(root):
        raise FileNotFoundError(f"{root} is not a bundle: {root / 'configs' / 'inference.json'} is missing.")
    return root


def load_bundle_network(bundle_dir: PathLike) -> nn.Module:
    """Build a bundle's network from its ``configs/inference.json`` and load ``models/model.pt`` if it exists.

    The network is the config's ``network_def``, parsed by ``monai.bundle.ConfigParser`` with ``bundle_root`` set to
    the folder (so a pruned bundle's ``network_def`` finds its ``models/pruning_history.json``). Weights are read by
    :func:`raagr2_monai.bundle.load_weights` (``weights_only=True``, strict); without ``models/model.pt`` the network
    keeps its initial weights, which is all that size, FLOPs and timings need.

    Args:
        bundle_dir: the bundle folder.

    Returns:
        The network on the CPU, in train mode.

    Raises:
        FileNotFoundError: the folder or its ``configs/inference.json`` does not exist.
        ValueError: the config has no ``network_def`` or it is not a ``torch.nn.Module``.
        raagr2_monai.bundle.CheckpointMismatchError: ``models/model.pt`` does not fit the network.

    Example::

        >>> net = load_bundle_network("bundles/depthwise")
        >>> type(net).__name__
        'DepthwiseSharedRAAGR2Net'
    """
    from monai.bundle import ConfigParser

    from raagr2_monai.networks import load_weights

    root = _check_bundle(bundle_dir)
    config = root / "configs" / "inference.json"
    parser = ConfigParser()
    parser.read_config(str(config))
    if "network_def" not in parser:
        raise ValueError(f"{config} defines no 'network_def'.")
    parser["bundle_root"] = str(root.resolve())
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, nn.Module):
        raise ValueError(f"'network_def' of {config} is a {type(network).__name__}, not a torch.nn.Module.")
    weights = root / "models" / "model.pt"
    if weights.is_file():
        load_weights(network, str(weights))
    return network


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: Optional[Union[str, torch.device]] = None) -> Dict[str, Any]:
    """Where a benchmark ran: device and its name, CPU model and counts, torch threads, platform, package versions.

    Example::

        >>> environment("cpu")["torch_threads"] == torch.get_num_threads()
        True
    """
    from raagr2_monai.utils import versions

    dev = torch.device(device) if device is not None else _default_device()
    found: Dict[str, Any] = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_model(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "versions": versions(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):
        # other processes on the machine distort timings: the load says how much
        found["load_average_1m"] = round(os.getloadavg()[0], 2)
    if hasattr(os, "sched_getaffinity"):
        found["usable_cpus"] = len(os.sched_getaffinity(0))
    if dev.type == "cuda":
        found["cuda"] = torch.version.cuda
    return found


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.no_grad():
        return int(model(torch.zeros(1, in_channels, 16, 16, device=device)).shape[1])


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


def _latency(model: nn.Module, shape: Tuple[int, ...], warmup: int, repeats: int, device: torch.device) -> dict:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        times = _timed(lambda: model(x), warmup, repeats, _sync_for(device))
    spread = _spread(times)
    spread["per_slice_ms"] = spread["median"] / shape[0]
    return spread


def _train_step(
    model: nn.Module, shape: Tuple[int, ...], out_channels: int, warmup: int, repeats: int, device: torch.device
) -> Tuple[float, float]:
    from raagr2_monai.losses import RAAGR2Loss

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


def _proc_status_mb(field: str) -> Optional[float]:
    """A ``/proc/self/status`` memory field (kB) in MB, or ``None`` where there is no procfs."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set (``VmHWM``) of this process; ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    # ru_maxrss is KiB on Linux and bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


def _child_peak_memory(model: nn.Module, shape: Tuple[int, ...], threads: int) -> Dict[str, Any]:
    """Run in a fresh process: one forward pass at ``shape``; its peak resident memory."""
    torch.set_num_threads(threads)
    model.eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    gc.collect()
    before = _proc_status_mb("VmRSS")
    reset = _reset_peak_rss()
    with torch.no_grad():
        model(x)
    return {"peak_mem_mb": _peak_rss_mb(), "mem_before_forward_mb": before, "peak_since_start": not reset}


def _cpu_peak_memory(name: str, model: nn.Module, shape: Tuple[int, ...]) -> Dict[str, Any]:
    # a copy goes to the child: passing tensors to a process moves their storage to shared memory, which must not
    # happen to the caller's model; the child maps that memory, so its resident set counts the weights once
    shared = copy.deepcopy(model).cpu()
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_child_peak_memory, shared, shape, torch.get_num_threads()).result()
    except BrokenProcessPool as err:
        raise RuntimeError(
            f"The process measuring the memory of {name!r} died: out of memory, or a calling script whose top level "
            "is not guarded by `if __name__ == '__main__':` (multiprocessing 'spawn' imports it again). "
            "Pass measure_memory=False to skip the measurement."
        ) from err


def _cuda_peak_memory(model: nn.Module, shape: Tuple[int, ...], device: torch.device) -> Dict[str, Any]:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) / 1e6
    with torch.no_grad():
        model(x)
    torch.cuda.synchronize(device)
    return {"peak_mem_mb": torch.cuda.max_memory_allocated(device) / 1e6, "mem_before_forward_mb": before}


def _nonzero(model: nn.Module) -> int:
    # 1-D tensors (biases, norm shifts that start at zero) are never masked: counting their zeros would make every
    # fresh network look pruned; so the count equals PruneResult.params_after of a mask-pruned model
    return sum(int(torch.count_nonzero(p.detach())) if p.dim() >= 2 else p.numel() for p in model.parameters())


def _sparse_mb(model: nn.Module) -> Optional[float]:
    """Size of the compressed state_dict, or ``None`` when no weight tensor has enough zeros for it to pay."""
    from raagr2_monai.pruning import serialized_nbytes, to_sparse_state_dict

    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    # the packed form costs one bit per entry, so it only shrinks tensors with more than 1/32 zeros; this also keeps
    # the rare exact zero of a random initialisation from making a dense network look pruned
    names = [
        k
        for k, v in state.items()
        if torch.is_floating_point(v) and v.dim() >= 2 and int((v == 0).sum()) * 32 > v.numel()
    ]
    return serialized_nbytes(to_sparse_state_dict(state, names)) / 1e6 if names else None


def _measure(
    name: str,
    model: nn.Module,
    size: int,
    batches: Tuple[int, ...],
    repeats: int,
    warmup: int,
    device: torch.device,
    measure_memory: bool,
    train_step: bool,
    sparse_mb: Optional[float],
) -> Dict[str, Any]:
    from raagr2_monai.networks import count_flops, count_parameters, state_dict_mb

    in_channels = _in_channels(model)
    params, nonzero = count_parameters(model), _nonzero(model)
    row: Dict[str, Any] = {
        "params": params,
        "nonzero_params": nonzero,
        "size_mb": state_dict_mb(model),
        "size_sparse_mb": sparse_mb if sparse_mb is not None else (_sparse_mb(model) if nonzero < params else None),
    }
    model.to(device).eval()
    row["flops"] = count_flops(model, (1, in_channels, size, size))
    row["latency_ms"] = {
        str(b): _latency(model, (b, in_channels, size, size), warmup, repeats, device) for b in batches
    }
    largest = (max(batches), in_channels, size, size)
    memory: Dict[str, Any] = {"peak_mem_mb": None, "mem_before_forward_mb": None}
    if measure_memory:
        memory = (
            _cuda_peak_memory(model, largest, device)
            if device.type == "cuda"
            else _cpu_peak_memory(name, model, largest)
        )
    row.update(memory)
    row["train_step_ms"], row["train_images_per_s"] = None, None
    if train_step:
        out_channels = _out_channels(model, in_channels)
        row["train_step_ms"], row["train_images_per_s"] = _train_step(
            model, largest, out_channels, warmup, repeats, device
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


def _methods(device: torch.device, size: int, batches: Tuple[int, ...], repeats: int, warmup: int) -> Dict[str, str]:
    largest = max(batches)
    memory = (
        f"torch.cuda.max_memory_allocated over one forward pass at batch {largest} (weights, input, activations)"
        if device.type == "cuda"
        else f"peak resident set (VmHWM) of a separate process per model over one forward pass at batch {largest}: "
        "Python interpreter, torch libraries, weights, input and activations, nothing subtracted"
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
        "train_step_ms": f"{TIMER}: zero_grad + forward + RAAGR2Loss + backward + Adam step at batch {largest}, "
        f"median of {repeats} steps after {warmup} warm-up steps, on a copy of the model",
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
        measure_memory: measure ``peak_mem_mb``. On CPU this starts one process per model with multiprocessing
            ``spawn``, which imports the caller's main module again: call from a ``__main__``-guarded script.
        train_step: measure ``train_step_ms`` and ``train_images_per_s``.
        sparse_sizes: model name -> compressed size in MB to report (e.g. a saved file's); models not in it that hold
            zero weights get the size of their :func:`~raagr2_monai.pruning.to_sparse_state_dict` form.
        baseline: the name of the reference model; when absent, a fresh ``baseline`` RAAGR2-Net with the channels of
            the first model is added (first) and ``_meta["baseline_added"]`` says so.

    Returns:
        ``{name: {"params", "nonzero_params", "size_mb", "size_sparse_mb", "flops",
        "latency_ms": {"1": {"median", "p25", "p75", "per_slice_ms"}, ...}, "peak_mem_mb", "mem_before_forward_mb",
        "train_step_ms", "train_images_per_s", "vs_baseline": {...}}, ..., "_meta": {...}}``; figures that were not
        measured are ``None``.

    Raises:
        ValueError: for bad settings (see :func:`check_settings`), no models, a bad model name, or CUDA asked for
            where there is none.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> result = benchmark_models({"depthwise": get_network("depthwise")}, size=32, batches=(1,), repeats=2)
        >>> round(result["depthwise"]["vs_baseline"]["params"], 3)
        0.566
    """
    from raagr2_monai.networks import get_network

    size, batches, repeats, warmup = check_settings(size, batches, repeats, warmup)
    if not models:
        raise ValueError("benchmark_models: no models given.")
    for name, model in models.items():
        if not isinstance(name, str) or not name or name.startswith("_"):
            raise ValueError(f"Model names must be non-empty strings not starting with '_'; got {name!r}.")
        if not isinstance(model, nn.Module):
            raise ValueError(f"Model {name!r} is a {type(model).__name__}, not a torch.nn.Module.")
    dev = torch.device(device) if device is not None else _default_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {dev} was asked for, but this torch build or machine has no CUDA.")
    added = baseline not in models
    if added:
        channels = _in_channels(next(iter(models.values())))
        reference = get_network(
            "baseline", in_channels=channels, out_channels=_out_channels(next(iter(models.values())), channels)
        )
        models = {baseline: reference, **models}
    sparse_sizes = dict(sparse_sizes or {})
    env = environment(dev)
    result: Dict[str, Any] = {
        name: _measure(
            name, model, size, batches, repeats, warmup, dev, measure_memory, train_step, sparse_sizes.get(name)
        )
        for name, model in models.items()
    }
    for row in result.values():
        row["vs_baseline"] = _ratios(row, result[baseline])
    if hasattr(os, "getloadavg"):
        env["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    result[META_KEY] = {
        "environment": env,
        "settings": {"size": size, "batches": list(batches), "repeats": repeats, "warmup": warmup, "device": str(dev)},
        "baseline": baseline,
        "baseline_added": added,
        "timer": TIMER,
        "flop_counter": FLOP_COUNTER,
        "methods": _methods(dev, size, batches, repeats, warmup),
    }
    return result


def run_benchmark(
    variants: Union[str, Sequence[str], None] = None,
    bundles: Union[str, Sequence[str], None] = None,
    size: int = 192,
    batches: Union[int, str, Sequence[int]] = (1, 8),
    repeats: int = 10,
    warmup: int = 2,
    device: Optional[str] = None,
    measure_memory: bool = True,
    train_step: bool = True,
) -> Dict[str, Any]:
    """Benchmark variants (fresh networks, 3 output channels) and bundle folders in one run (``raagr2 benchmark``).

    Everything is checked before anything is measured. A variant is named by its name, a bundle by
    :func:`bundle_name`; each result row also gets ``source`` (what was built) and ``weights`` (the loaded
    ``models/model.pt``, or ``None``). A bundle's ``models/model_sparse.pt`` gives its ``size_sparse_mb``.

    Args:
        variants: comma-separated names or a sequence (``baseline``, ``depthwise``, ``paired``, ``encdec``); with
            neither variants nor bundles, all four.
        bundles: comma-separated bundle folders or a sequence.
        size, batches, repeats, warmup, device, measure_memory, train_step: as in :func:`benchmark_models`.

    Returns:
        The :func:`benchmark_models` result.

    Raises:
        ValueError: an unknown variant, bad settings, or two models with the same name.
        FileNotFoundError: a bundle folder, or its ``configs/inference.json``, does not exist.

    Example::

        >>> result = run_benchmark("depthwise", "bundles/paired", size=32, batches=1, repeats=2)
        >>> sorted(k for k in result if not k.startswith("_"))
        ['baseline', 'depthwise', 'paired']
    """
    from raagr2_monai.networks import NETWORKS, get_network

    settings = check_settings(size, batches, repeats, warmup)
    names, folders = _split(variants, "variants"), _split(bundles, "bundles")
    if not names and not folders:
        names = list(NETWORKS)
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        raise ValueError(f"Unknown variant(s) {', '.join(map(repr, unknown))}; valid names: {', '.join(NETWORKS)}.")
    roots = [_check_bundle(folder) for folder in folders]
    sources = {name: f"variant {name} (fresh network, out_channels=3)" for name in names}
    for root in roots:
        name = bundle_name(root)
        if name in sources:
            raise ValueError(
                f"Two models are named {name!r} ({sources[name]} and bundle {root}); benchmark one of them."
            )
        sources[name] = f"bundle {root}"
    models: Dict[str, nn.Module] = {name: get_network(name, out_channels=3) for name in names}
    weights: Dict[str, Optional[str]] = dict.fromkeys(names)
    sparse: Dict[str, float] = {}
    for root in roots:
        name = bundle_name(root)
        models[name] = load_bundle_network(root)
        checkpoint, packed = root / "models" / "model.pt", root / "models" / "model_sparse.pt"
        weights[name] = str(checkpoint) if checkpoint.is_file() else None
        if packed.is_file():
            sparse[name] = packed.stat().st_size / 1e6
    size, batch_sizes, repeats, warmup = settings
    result = benchmark_models(
        models, size, batch_sizes, repeats, warmup, device, measure_memory, train_step, sparse_sizes=sparse
    )
    for name, row in result.items():
        if name != META_KEY:
            row["source"] = sources.get(name, "variant baseline (fresh network, added as the reference)")
            row["weights"] = weights.get(name)
    return result


def _models(result: Mapping[str, Any]) -> Dict[str, Mapping[str, Any]]:
    return {name: row for name, row in result.items() if name != META_KEY}


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _header(meta: Mapping[str, Any]) -> List[str]:
    env, settings, methods = meta["environment"], meta["settings"], meta["methods"]
    load = (
        f", load average {env['load_average_1m']} before and {env['load_average_1m_after']} after"
        if "load_average_1m_after" in env
        else ""
    )
    lines = [
        f"RAAGR2-Net benchmark on {env['device']} ({env['device_name']}; {env['logical_cpus']} logical CPUs), "
        f"torch {env['versions']['torch']}, {env['torch_threads']} torch threads, input (B, C, {settings['size']}, "
        f"{settings['size']}), started {env['timestamp']}{load}.",
        f"latency: {methods['latency_ms']}.",
        f"train step: {methods['train_step_ms']}.",
        f"FLOPs: {methods['flops']}. Sizes: {methods['size_mb']}; sparse: {methods['size_sparse_mb']}.",
        f"peak memory: {methods['peak_mem_mb']}.",
    ]
    if meta["baseline_added"]:
        lines.append(f"The baseline was not among the models: a fresh {meta['baseline']!r} was added as the reference.")
    return lines


def _aligned(header: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]

    def line(cells: List[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    return [line(header)] + [line(r) for r in rows]


def _table(result: Mapping[str, Any]) -> str:
    meta, models = result[META_KEY], _models(result)
    batches = meta["settings"]["batches"]
    largest = max(batches)
    header = ["model", "params", "nonzero", "MB", "sparse MB", "GFLOPs"]
    header += [f"b{b} ms median [p25, p75]" for b in batches]
    header += [f"peak MB (b{largest})", f"train ms (b{largest})", "train img/s"]
    rows = []
    for name, row in models.items():
        latency = [
            f"{row['latency_ms'][str(b)]['median']:.1f} [{row['latency_ms'][str(b)]['p25']:.1f}, "
            f"{row['latency_ms'][str(b)]['p75']:.1f}]"
            for b in batches
        ]
        rows.append(
            [name, f"{row['params']:,}", f"{row['nonzero_params']:,}", f"{row['size_mb']:.2f}",
             _fmt(row["size_sparse_mb"], ".2f"), f"{row['flops'] / 1e9:.3f}"]
            + latency
            + [_fmt(row["peak_mem_mb"], ".0f"), _fmt(row["train_step_ms"], ".1f")]
            + [_fmt(row["train_images_per_s"], ".2f")]
        )
    ratio_header = ["model", "params", "nonzero", "MB", "sparse MB", "FLOPs"] + [f"b{b} ms" for b in batches]
    ratio_header += ["peak MB", "train ms", "train img/s"]
    ratio_rows = []
    for name, row in models.items():
        r = row["vs_baseline"]
        ratio_rows.append(
            [name] + [_fmt(r[k], ".3f") for k in ("params", "nonzero_params", "size_mb", "size_sparse_mb", "flops")]
            + [_fmt(r["latency_ms"][str(b)], ".3f") for b in batches]
            + [_fmt(r[k], ".3f") for k in ("peak_mem_mb", "train_step_ms", "train_images_per_s")]
        )
    return "\n".join(
        _header(meta)
        + [""]
        + _aligned(header, rows)
        + ["", f"Ratios against {meta['baseline']!r} from this run (sparse MB against its dense MB):"]
        + _aligned(ratio_header, ratio_rows)
    )


def _csv(result: Mapping[str, Any]) -> str:
    meta = result[META_KEY]
    env, batches = meta["environment"], meta["settings"]["batches"]
    figures = ["params", "nonzero_params", "size_mb", "size_sparse_mb", "flops"]
    latency = [(str(b), stat) for b in batches for stat in ("median", "p25", "p75")]
    tail = ["peak_mem_mb", "mem_before_forward_mb", "train_step_ms", "train_images_per_s"]
    ratios = ["params", "nonzero_params", "size_mb", "size_sparse_mb", "flops", "peak_mem_mb", "train_step_ms",
              "train_images_per_s"]
    context = {
        "device": env["device"], "device_name": env["device_name"], "torch": env["versions"]["torch"],
        "torch_threads": env["torch_threads"], "size": meta["settings"]["size"], "repeats": meta["settings"]["repeats"],
        "warmup": meta["settings"]["warmup"], "timer": meta["timer"], "flop_counter": meta["flop_counter"],
    }
    columns = (
        ["model"] + figures + [f"latency_b{b}_{stat}_ms" for b, stat in latency] + tail
        + [f"vs_baseline_{k}" for k in ratios] + [f"vs_baseline_latency_b{b}" for b in batches] + list(context)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for name, row in _models(result).items():
        r = row["vs_baseline"]
        writer.writerow(
            [name] + [row[k] for k in figures] + [row["latency_ms"][b][stat] for b, stat in latency]
            + [row[k] for k in tail] + [r[k] for k in ratios] + [r["latency_ms"][str(b)] for b in batches]
            + list(context.values())
        )
    return buffer.getvalue()


def render(result: Mapping[str, Any], format: str = "table") -> str:
    """Write a :func:`benchmark_models` result as text.

    Args:
        result: the result.
        format: ``table`` (aligned text under header lines naming the timer, counters and environment, then the
            ratios), ``csv`` (one row per model; the environment and the timer in columns of every row) or ``json``
            (the result itself: keyed by model name, plus ``"_meta"``).

    Raises:
        ValueError: for an unknown format.
    """
    check_format(format)
    if format == "json":
        return json.dumps(result, indent=2)
    return _csv(result) if format == "csv" else _table(result)


def check_format(format: str) -> str:
    """Raise ``ValueError`` unless ``format`` is one of :data:`FORMATS`."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    return format


def benchmark_command(
    variants: Union[str, Sequence[str], None] = None,
    bundles: Union[str, Sequence[str], None] = None,
    size: int = 192,
    batch: Union[int, str, Sequence[int]] = (1, 8),
    repeats: int = 10,
    warmup: int = 2,
    format: str = "table",
    output: Optional[str] = None,
    device: Optional[str] = None,
    memory: bool = True,
    train: bool = True,
) -> str:
    """``raagr2 benchmark``: run :func:`run_benchmark`, render it, and print it or write it to ``output``.

    ``memory`` and ``train`` switch the peak-memory and training-step measurements on or off (their figures are then
    empty); the other arguments are those of :func:`run_benchmark` and :func:`render`.

    Returns:
        The rendered text, or with ``output`` a line naming the file (written to a temporary name, then renamed).
    """
    from raagr2_monai.utils import atomic_write_text

    check_format(format)
    result = run_benchmark(variants, bundles, size, batch, repeats, warmup, device, memory, train)
    text = render(result, format)
    if not output:
        return text
    atomic_write_text(output, text if text.endswith("\n") else text + "\n")
    return f"wrote {output} ({len(_models(result))} models, {format})"
