"""Latency of each model behind each inference backend (eager PyTorch, ONNX Runtime, OpenVINO), measured in one run
and stated as the speed-up over the baseline's eager PyTorch latency of that same run.

The exported backends run what :func:`raagr2_monai.deploy.export_network` writes (the same export, with its parity
check, as ``raagr2 export``), here into a temporary folder, so that any network can be measured, bundle or not.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from raagr2_monai.deploy import (
    BACKENDS,
    OnnxRuntimeBackend,
    OpenVINOBackend,
    TorchBackend,
    check_backend,
    export_network,
)
from raagr2_monai.utils import retain_freed_memory

from .measure import BASELINE, META_KEY, latency

__all__ = ["add_backend_latencies", "backend_latencies", "check_backends"]

_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino"}


def check_backends(backends: Sequence[str]) -> Tuple[str, ...]:
    """The backends to measure, torch first (the reference of every speed-up), each once.

    Raises:
        ValueError: an unknown backend.
    """
    for backend in backends:
        check_backend(backend)
    return tuple(b for b in BACKENDS if b == "torch" or b in backends)


def _runner(model: nn.Module, backend: str, folder: Path, threads: Optional[int]) -> nn.Module:
    if backend == "torch":
        return TorchBackend(model.cpu().eval(), threads=threads)
    written = export_network(model, folder, formats=_FORMAT[backend])
    path = written["onnx" if backend == "onnxruntime" else "openvino"]
    return OnnxRuntimeBackend(path, threads) if backend == "onnxruntime" else OpenVINOBackend(path, threads)


def backend_latencies(
    models: Mapping[str, nn.Module],
    backends: Sequence[str],
    size: int,
    batches: Sequence[int],
    repeats: int,
    warmup: int,
    threads: Optional[int] = None,
    baseline: str = BASELINE,
) -> Dict[str, Dict[str, Any]]:
    """Latency of every model behind every backend, on the CPU, one model and backend after another.

    Args:
        models: model name -> network; must include ``baseline``.
        backends: among ``torch``, ``onnxruntime``, ``openvino``; ``torch`` is always measured.
        size: in-plane input size (a multiple of 16).
        batches: batch sizes.
        repeats: timed runs per figure; ``warmup``: untimed runs before them.
        threads: intra-op CPU threads of every backend (``None``: each runtime's default). The torch backend sets
            ``torch.set_num_threads`` for the process; the previous count is restored at the end.
        baseline: the reference model's name.

    Returns:
        ``{name: {"latency_ms": {backend: {batch: {"median", "p25", "p75", "per_slice_ms"}}},
        "speedup_vs_baseline_torch": {backend: {batch: baseline torch median / this median}}}}``.

    Raises:
        ValueError: an unknown backend, or no ``baseline`` among the models.
        raagr2_monai.deploy.ExportParityError: an exported model differs from eager PyTorch.
    """
    chosen = check_backends(backends)
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
                    runner = _runner(model, backend, Path(tmp) / name / backend, threads)
                    channels = runner.in_channels
                    figures[backend] = {
                        str(b): latency(runner, (b, channels, size, size), warmup, repeats, torch.device("cpu"))
                        for b in batches
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
    result: Dict[str, Any],
    models: Mapping[str, nn.Module],
    backends: Sequence[str],
    size: int,
    batches: Sequence[int],
    repeats: int,
    warmup: int,
    threads: Optional[int] = None,
) -> None:
    """Time ``models`` behind ``backends`` (:func:`backend_latencies`) and add the figures to a
    :func:`~raagr2_monai.benchmark.benchmark_models` result, in place: each row gets ``backends``, and
    ``_meta["backends"]`` says what was measured and how.

    Each model the result timed is exported and timed here too; a row timed as another (``timed_as``: mask-pruned
    and fine-tuned copies of one structure, with ``share_structure``) gets that model's figures.

    Args:
        result: the result to complete; it has a row for every model.
        models: model name -> network; must include ``baseline``, the reference of the speed-ups.
        backends, size, batches, repeats, warmup, threads: as in :func:`backend_latencies`.

    Raises:
        ValueError: an unknown backend, or no ``baseline`` among the models.
        raagr2_monai.deploy.ExportParityError: an exported model differs from eager PyTorch.
    """
    chosen = check_backends(backends)
    groups: Dict[str, List[str]] = {}
    for name in models:
        groups.setdefault(result[name]["timed_as"], []).append(name)
    timed = backend_latencies({first: models[first] for first in groups}, chosen, size, batches, repeats, warmup,
                              threads)
    for first, names in groups.items():
        for name in names:
            result[name]["backends"] = copy.deepcopy(timed[first])
    result[META_KEY]["backends"] = {
        "backends": list(chosen),
        "batches": [int(b) for b in batches],
        "threads": threads,
        "method": "each model exported (raagr2_monai.deploy.export_network, parity-checked) and timed on the CPU like "
        "latency_ms, a row timed as another (timed_as) with that model's figures, in one run with the baseline's "
        "eager PyTorch; speed-up = the baseline's eager PyTorch median / this median, same batch",
    }
