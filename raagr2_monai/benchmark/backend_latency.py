"""Latency of each model behind each inference backend (eager PyTorch, ONNX Runtime, OpenVINO), measured in one run
and stated as the speed-up over the baseline's eager PyTorch latency of that same run.

The exported backends run what :func:`raagr2_monai.deploy.export_network` writes (the same export, with its parity
check, as ``raagr2 export``), here into a temporary folder, so that any network can be measured, bundle or not.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from raagr2_monai.deploy import OnnxRuntimeBackend, OpenVINOBackend, TorchBackend, cpu_bf16, cpu_name, export_network
from raagr2_monai.utils import retain_freed_memory

from .benchmark_settings import BenchmarkSettings, check_runnable, runnable_backends, split_backend
from .measure import BASELINE, META_KEY, latency

__all__ = ["add_backend_latencies", "backend_latencies"]

_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino"}


def _runner(model: nn.Module, name: str, folder: Path, threads: Optional[int]) -> nn.Module:
    backend, precision = split_backend(name)
    if backend == "torch":
        return TorchBackend(model.cpu().eval(), threads=threads)
    written = export_network(model, folder, formats=_FORMAT[backend])
    path = written["onnx" if backend == "onnxruntime" else "openvino"]
    return (OnnxRuntimeBackend(path, threads) if backend == "onnxruntime"
            else OpenVINOBackend(path, threads, precision))


def backend_latencies(
    models: Mapping[str, nn.Module], settings: BenchmarkSettings, baseline: str = BASELINE
) -> Dict[str, Dict[str, Any]]:
    """Latency of every model behind every backend, on the CPU, one model and backend after another.

    Args:
        models: model name -> network; must include ``baseline``.
        settings: what to measure, as read (:meth:`BenchmarkSettings.check`, or built with sequences): its
            ``backends``, among ``torch``, ``onnxruntime``, ``openvino``, ``openvino-bf16``
            (:func:`~.benchmark_settings.check_backends`; ``torch`` is always measured); ``size``, the in-plane input
            size; ``batches``, the batch sizes; ``repeats`` timed runs per figure after ``warmup`` untimed ones;
            ``threads``, the intra-op CPU threads of every backend (``None``: each runtime's default; the torch
            backend sets ``torch.set_num_threads`` for the process, and the previous count is restored at the end).
        baseline: the reference model's name.

    Returns:
        ``{name: {"latency_ms": {backend: {batch: {"median", "p25", "p75", "per_slice_ms"}}},
        "speedup_vs_baseline_torch": {backend: {batch: baseline torch median / this median}}}}``.

    Raises:
        ValueError: an unknown backend, a precision the CPU cannot compute in, or no ``baseline`` among the models.
        raagr2_monai.deploy.ExportParityError: an exported model differs from eager PyTorch.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> rows = backend_latencies({"baseline": get_network("baseline")},
        ...                          BenchmarkSettings(size=32, batches=(1,), repeats=1, warmup=0))
        >>> list(rows["baseline"]["latency_ms"]), rows["baseline"]["speedup_vs_baseline_torch"]["torch"]["1"]
        (['torch'], 1.0)
    """
    chosen = check_runnable(settings.backends or ())
    if baseline not in models:
        raise ValueError(f"backend_latencies needs the reference model {baseline!r} among the models.")
    torch_threads = torch.get_num_threads()
    # timed as benchmark_models times: large freed activations kept for the next pass
    retain_freed_memory()
    rows: Dict[str, Dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="raagr2-backends-") as tmp:
            for name, model in models.items():
                figures: Dict[str, Dict[str, Any]] = {}
                for backend in chosen:
                    runner = _runner(model, backend, Path(tmp) / name / backend, settings.threads)
                    shape = (runner.in_channels, settings.size, settings.size)
                    figures[backend] = {
                        str(b): latency(runner, (b, *shape), settings.warmup, settings.repeats, torch.device("cpu"))
                        for b in settings.batches
                    }
                rows[name] = {"latency_ms": figures}
    finally:
        torch.set_num_threads(torch_threads)
    reference = rows[baseline]["latency_ms"]["torch"]
    for row in rows.values():
        row["speedup_vs_baseline_torch"] = {
            backend: {b: reference[b]["median"] / spread["median"] for b, spread in per_batch.items()}
            for backend, per_batch in row["latency_ms"].items()
        }
    return rows


def add_backend_latencies(
    result: Dict[str, Any], models: Mapping[str, nn.Module], settings: BenchmarkSettings
) -> None:
    """Time ``models`` behind the ``settings``' backends (:func:`backend_latencies`) and add the figures to a
    :func:`~raagr2_monai.benchmark.benchmark_models` result, in place: each row gets ``backends``, and
    ``_meta["backends"]`` says what was measured and how.

    Each model the result timed is exported and timed here too; a row timed as another (``timed_as``: mask-pruned
    and fine-tuned copies of one structure, with ``share_structure``) gets that model's figures.

    Args:
        result: the result to complete; it has a row for every model.
        models: model name -> network; must include ``baseline``, the reference of the speed-ups.
        settings: its ``backends``, ``size``, ``batches``, ``repeats``, ``warmup`` and ``threads``, as in
            :func:`backend_latencies`.

    A backend this CPU cannot run (``openvino-bf16`` without a bfloat16 unit) is left out, and
    ``_meta["backends"]["skipped"]`` says why; ``_meta["backends"]["cpu"]`` names the CPU.

    Raises:
        ValueError: an unknown backend, or no ``baseline`` among the models.
        raagr2_monai.deploy.ExportParityError: an exported model differs from eager PyTorch.
    """
    chosen, skipped = runnable_backends(settings.backends or ())
    groups: Dict[str, List[str]] = {}
    for name in models:
        groups.setdefault(result[name]["timed_as"], []).append(name)
    timed = backend_latencies({first: models[first] for first in groups}, replace(settings, backends=chosen))
    for first, names in groups.items():
        for name in names:
            result[name]["backends"] = copy.deepcopy(timed[first])
    result[META_KEY]["backends"] = {
        "backends": list(chosen),
        "skipped": skipped,
        "cpu": cpu_name(),
        "cpu_bf16": cpu_bf16(),
        "batches": [int(b) for b in settings.batches],
        "threads": settings.threads,
        "method": "each model exported (raagr2_monai.deploy.export_network, parity-checked in fp32) and timed on the "
        "CPU like latency_ms, a row timed as another (timed_as) with that model's figures, in one run with the baseline's "
        "eager PyTorch; speed-up = the baseline's eager PyTorch median / this median, same batch",
    }
