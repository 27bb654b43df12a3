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
    cpu_bf16,
    cpu_name,
    export_network,
    exported_precision,
)
from raagr2_monai.utils import retain_freed_memory

from .measure import BASELINE, META_KEY, latency

__all__ = ["add_backend_latencies", "backend_latencies", "check_backends", "check_runnable", "runnable_backends"]

_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino"}


def _parts(name: str) -> Tuple[str, str]:
    backend, _, precision = name.partition("-")
    return backend, precision or "fp32"


def check_backends(backends: Sequence[str]) -> Tuple[str, ...]:
    """The backends to measure, torch first (the reference of every speed-up), each once.

    A backend computing in another precision than fp32 is named ``<backend>-<precision>``: ``openvino-bf16``
    (:func:`raagr2_monai.deploy.exported_precision`).

    Raises:
        ValueError: an unknown backend or precision.
    """
    for name in backends:
        backend, precision = _parts(name)
        check_backend(backend)
        if precision not in ("fp32", "bf16") or (backend == "torch" and precision != "fp32"):
            raise ValueError(
                f"Unknown benchmark backend {name!r}: a backend computes in fp32 (its name alone), or OpenVINO in "
                "bf16 ('openvino-bf16')."
            )
    ordered = ["torch"] + [b for b in BACKENDS if b != "torch" and b in backends]
    return tuple(ordered + [b for b in dict.fromkeys(backends) if b not in ordered])


def runnable_backends(backends: Sequence[str]) -> Tuple[Tuple[str, ...], Dict[str, str]]:
    """The backends of :func:`check_backends` this CPU can run, and why each other one is left out.

    Returns:
        ``(backends, {name: reason})``: ``openvino-bf16`` is left out on a CPU without a bfloat16 unit.
    """
    runnable, skipped = [], {}
    for name in check_backends(backends):
        try:
            if name != "torch":
                exported_precision(*_parts(name))
        except ValueError as err:
            skipped[name] = str(err)
            continue
        runnable.append(name)
    return tuple(runnable), skipped


def check_runnable(backends: Sequence[str]) -> Tuple[str, ...]:
    """:func:`check_backends`, refusing a backend this CPU cannot run (``openvino-bf16`` without a bfloat16 unit).

    Raises:
        ValueError: an unknown backend or precision, or one this CPU cannot compute in.
    """
    chosen, unrunnable = runnable_backends(backends)
    if unrunnable:
        raise ValueError(" ".join(unrunnable.values()))
    return chosen


def _runner(model: nn.Module, name: str, folder: Path, threads: Optional[int]) -> nn.Module:
    backend, precision = _parts(name)
    if backend == "torch":
        return TorchBackend(model.cpu().eval(), threads=threads)
    written = export_network(model, folder, formats=_FORMAT[backend])
    path = written["onnx" if backend == "onnxruntime" else "openvino"]
    return (OnnxRuntimeBackend(path, threads) if backend == "onnxruntime"
            else OpenVINOBackend(path, threads, precision))


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
        backends: among ``torch``, ``onnxruntime``, ``openvino``, ``openvino-bf16`` (:func:`check_backends`);
            ``torch`` is always measured.
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
        ValueError: an unknown backend, a precision the CPU cannot compute in, or no ``baseline`` among the models.
        raagr2_monai.deploy.ExportParityError: an exported model differs from eager PyTorch.
    """
    chosen = check_runnable(backends)
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

    A backend this CPU cannot run (``openvino-bf16`` without a bfloat16 unit) is left out, and
    ``_meta["backends"]["skipped"]`` says why; ``_meta["backends"]["cpu"]`` names the CPU.

    Raises:
        ValueError: an unknown backend, or no ``baseline`` among the models.
        raagr2_monai.deploy.ExportParityError: an exported model differs from eager PyTorch.
    """
    chosen, skipped = runnable_backends(backends)
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
        "skipped": skipped,
        "cpu": cpu_name(),
        "cpu_bf16": cpu_bf16(),
        "batches": [int(b) for b in batches],
        "threads": threads,
        "method": "each model exported (raagr2_monai.deploy.export_network, parity-checked in fp32) and timed on the "
        "CPU like latency_ms, a row timed as another (timed_as) with that model's figures, in one run with the baseline's "
        "eager PyTorch; speed-up = the baseline's eager PyTorch median / this median, same batch",
    }
