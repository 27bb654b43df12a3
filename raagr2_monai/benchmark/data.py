"""What the data path costs, before and after the compact on-disk cache: memory per study, time to build, training
throughput.

"before" is today's path: ``monai.data.CacheDataset(cache_rate=1.0)`` holding every preprocessed study in RAM as
float32 (the training set caches the deterministic part of :func:`~raagr2_monai.data.chains.train_transforms`, the
validation set :func:`~raagr2_monai.data.chains.val_transforms`: both are
:func:`~raagr2_monai.data.chains.preprocessing_transforms` with the label). "after" is
:class:`~raagr2_monai.data.cache.StudyCacheDataset` over the compact chains (float16 image, uint8 label map, on
disk). Each side runs in a fresh process (multiprocessing ``spawn``), so that neither counts the other's memory.

Counters: resident memory is ``VmRSS`` of ``/proc/self/status`` (after a garbage collection and ``malloc_trim``), the
epoch's peak ``VmHWM`` (reset by ``/proc/self/clear_refs`` before the epoch where the kernel allows), both of the
measuring process alone (not of ``DataLoader`` workers); times are wall-clock ``time.perf_counter``; MB are 10^6
bytes. CPU only.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch

from .memory import _proc_status_mb, _release_freed_memory, peak_memory_during

__all__ = ["benchmark_data", "format_data_benchmark"]

RSS_COUNTER = "VmRSS of /proc/self/status, after gc and malloc_trim"
PEAK_COUNTER = "VmHWM of /proc/self/status, reset before the epoch"
TIMER = "wall-clock time.perf_counter"


def _tensor_mb(item: Any) -> float:
    """Bytes of the tensors in a (nested) item, in MB."""
    if isinstance(item, torch.Tensor):
        return item.numel() * item.element_size() / 1e6
    if isinstance(item, Mapping):
        return sum(_tensor_mb(v) for v in item.values())
    if isinstance(item, (list, tuple)):
        return sum(_tensor_mb(v) for v in item)
    return 0.0


def _rss_mb() -> float:
    _release_freed_memory()
    return _proc_status_mb("VmRSS") or 0.0


def _epoch(dataset: Any, settings: Mapping[str, Any]) -> Dict[str, Any]:
    """One training epoch as the bundle's loader delivers it (``batch_size // num_samples`` studies, each giving
    ``num_samples`` slices, per batch): slices per second and the peak resident set."""
    from monai.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=max(1, settings["batch_size"] // settings["num_samples"]),
        shuffle=True,
        num_workers=settings["num_workers"],
    )
    counted = {"slices": 0, "seconds": 0.0}

    def run() -> None:
        start = time.perf_counter()
        for batch in loader:
            counted["slices"] += int(batch["image"].shape[0])
        counted["seconds"] = time.perf_counter() - start

    peak = peak_memory_during(run, torch.device("cpu"))
    slices, seconds = counted["slices"], counted["seconds"]
    return {
        "epoch_slices": slices,
        "epoch_s": seconds,
        "train_slices_per_s": slices / seconds if seconds > 0 else None,
        "epoch_peak_rss_mb": peak["peak_mem_mb"],
        "peak_since_start": peak["peak_since_start"],
    }


def _child(side: Callable[..., Dict[str, Any]], *args: Any) -> Dict[str, Any]:
    """Run in the measuring process: ``side`` with the caller's torch threads, seeded."""
    threads = args[-1]["threads"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return side(*args)


def _warm_up(chains: Sequence[Callable], entry: Mapping[str, Any]) -> None:
    """Run each chain once on one study, so that what loading first imports and allocates is not counted per study."""
    for chain in chains:
        chain(dict(entry))


def _side(study_mb: float, disk_mb: Optional[float], added_mb: float, seconds: float, studies: int,
          epoch: Dict[str, Any]) -> Dict[str, Any]:
    """One side's figures, per study."""
    return {
        "study_mb": study_mb,
        "disk_mb_per_study": disk_mb,
        "rss_mb_per_study": added_mb / studies,
        "build_s_per_study": seconds / studies,
        "build_studies_per_s": studies / seconds if seconds > 0 else None,
        **epoch,
    }


def _before(train: List[dict], validation: List[dict], settings: Mapping[str, Any]) -> Dict[str, Any]:
    """Today's path: ``CacheDataset(cache_rate=1.0)`` over the float32 chains."""
    from monai.data import CacheDataset

    from raagr2_monai.data.chains import train_transforms, val_transforms

    roi = settings["roi_size"]
    train_chain = train_transforms(roi, settings["tumour_fraction"], settings["num_samples"])
    val_chain = val_transforms(roi)
    _warm_up([train_chain, val_chain], train[0])
    rss, start = _rss_mb(), time.perf_counter()
    datasets = [
        CacheDataset(entries, chain, cache_rate=1.0, num_workers=settings["num_workers"], progress=False)
        for entries, chain in ((train, train_chain), (validation, val_chain))
        if entries
    ]
    seconds, added = time.perf_counter() - start, _rss_mb() - rss
    studies = len(train) + len(validation)
    # CacheDataset keeps its items in `_cache`; their tensors are what a study costs in RAM
    study_mb = sum(_tensor_mb(item) for dataset in datasets for item in dataset._cache) / studies
    return _side(study_mb, None, added, seconds, studies, _epoch(datasets[0], settings))


def _after(train: List[dict], validation: List[dict], settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The compact path: ``StudyCacheDataset`` on disk, built up front by ``fill_cache``."""
    from raagr2_monai.data.cache import StudyCacheDataset, cache_entry_mb, fill_cache
    from raagr2_monai.data.chains import train_transforms, val_transforms

    roi, cache_dir = settings["roi_size"], settings["cache_dir"]
    train_chain = train_transforms(roi, settings["tumour_fraction"], settings["num_samples"], compact=True)
    val_chain = val_transforms(roi, compact=True)
    _warm_up([train_chain, val_chain], train[0])
    rss, start = _rss_mb(), time.perf_counter()
    datasets = [
        StudyCacheDataset(entries, chain, cache_dir)
        for entries, chain in ((train, train_chain), (validation, val_chain))
        if entries
    ]
    for dataset in datasets:
        fill_cache(dataset, settings["num_workers"])
    seconds, added = time.perf_counter() - start, _rss_mb() - rss
    studies = len(train) + len(validation)
    study_mb = sum(_tensor_mb(d.cached(i)) for d in datasets for i in range(len(d))) / studies
    disk_mb = sum(cache_entry_mb(d) * len(d) for d in datasets) / studies
    return _side(study_mb, disk_mb, added, seconds, studies, _epoch(datasets[0], settings))


def _run_side(name: str, side: Callable[..., Dict[str, Any]], *args: Any) -> Dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_child, side, *args).result()
        except BrokenProcessPool as err:
            raise RuntimeError(
                f"The process measuring the {name!r} data path died: out of memory, or a calling script whose top "
                "level is not guarded by `if __name__ == '__main__':` (multiprocessing 'spawn' imports it again)."
            ) from err


def benchmark_data(
    data: Union[str, Sequence[Mapping[str, Any]]],
    roi_size: Sequence[int] = (192, 192),
    num_samples: int = 4,
    batch_size: int = 16,
    num_workers: int = 0,
    cache_dir: Optional[str] = None,
    tumour_fraction: float = 0.5,
    max_studies: Optional[int] = None,
) -> Dict[str, Any]:
    """Measure the data path before and after the compact cache, side by side, each in a fresh process.

    The studies are split as a bundle would use them: a quarter (at least one, when there are two or more) for
    validation, the rest for training. Each side builds its training and validation datasets (the resident memory
    they add, per study, and the time per study), then runs one training epoch (slices per second, peak resident
    memory). The "after" side also gives the cache's size on disk per study. ``study_mb`` is the bytes of the tensors
    a cached study holds (float32 image and regions before; float16 image and uint8 label map after).

    Args:
        data: a BraTS folder (any layout :func:`~raagr2_monai.data.find_cases` reads) or datalist entries.
        roi_size: the training crop, in-plane.
        num_samples: slices drawn per study.
        batch_size: slices per training batch (the loader takes ``batch_size // num_samples`` studies at a time).
        num_workers: ``DataLoader`` and cache-building workers (their memory is not counted).
        cache_dir: where the "after" cache goes (a temporary folder inside it, removed at the end; default the
            system's temporary folder): the disk it is on sets the reading speed.
        tumour_fraction: share of tumour-centred slices.
        max_studies: use only the first this many studies.

    Returns:
        ``{"studies", "train_studies", "validation_studies", "settings", "before", "after"}``; ``before`` and
        ``after`` each hold ``study_mb``, ``disk_mb_per_study`` (``None`` before), ``rss_mb_per_study``,
        ``build_s_per_study``, ``build_studies_per_s``, ``epoch_slices``, ``epoch_s``, ``train_slices_per_s``,
        ``epoch_peak_rss_mb`` and ``peak_since_start`` (the peak could not be reset before the epoch).

    Raises:
        ValueError: no studies, or a bad ``roi_size``, ``num_samples`` or ``batch_size``.
        RuntimeError: a measuring process died.

    Example::

        figures = benchmark_data("/data/BraTS2021", roi_size=(192, 192), max_studies=20)
        print(format_data_benchmark(figures))
    """
    from raagr2_monai.data import find_cases
    from raagr2_monai.data.chains import check_roi_size

    roi = check_roi_size(roi_size)
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be at least 1, got {num_samples} and {batch_size}.")
    entries = [dict(e) for e in (find_cases(data) if isinstance(data, (str, os.PathLike)) else data)]
    entries = entries[:max_studies] if max_studies is not None else entries
    if not entries:
        raise ValueError("benchmark_data needs at least one study.")
    n_val = max(1, len(entries) // 4) if len(entries) > 1 else 0
    train, validation = entries[: len(entries) - n_val], entries[len(entries) - n_val :]
    folder = tempfile.mkdtemp(prefix="raagr2-data-benchmark-", dir=cache_dir)
    settings = {
        "roi_size": roi,
        "num_samples": int(num_samples),
        "batch_size": int(batch_size),
        "num_workers": int(num_workers),
        "tumour_fraction": float(tumour_fraction),
        "cache_dir": folder,
        "threads": torch.get_num_threads(),
    }
    try:
        before = _run_side("before", _before, train, validation, settings)
        after = _run_side("after", _after, train, validation, settings)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "studies": len(entries),
        "train_studies": len(train),
        "validation_studies": len(validation),
        "settings": {k: v for k, v in settings.items() if k != "cache_dir"},
        "before": before,
        "after": after,
    }


def _cell(value: Optional[float], spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_data_benchmark(figures: Mapping[str, Any]) -> str:
    """A :func:`benchmark_data` result as an aligned side-by-side table, under lines naming the counters.

    Example::

        print(format_data_benchmark(benchmark_data("/data/BraTS2021", max_studies=20)))
    """
    s, before, after = figures["settings"], figures["before"], figures["after"]
    rows = [
        ("cached study, MB (tensor bytes)", "study_mb", ".2f"),
        ("cache on disk, MB per study", "disk_mb_per_study", ".2f"),
        ("RSS added per study, MB (VmRSS)", "rss_mb_per_study", ".2f"),
        ("build, s per study (perf_counter)", "build_s_per_study", ".3f"),
        ("build, studies per s", "build_studies_per_s", ".2f"),
        ("training epoch, slices", "epoch_slices", "d"),
        ("training, slices per s (perf_counter)", "train_slices_per_s", ".1f"),
        ("epoch peak RSS, MB (VmHWM)", "epoch_peak_rss_mb", ".1f"),
    ]
    head = ("", "before: CacheDataset, RAM", "after: StudyCacheDataset, disk")
    table = [head] + [(label, _cell(before[key], spec), _cell(after[key], spec)) for label, key, spec in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [
        f"Data path, {figures['studies']} studies ({figures['train_studies']} training, "
        f"{figures['validation_studies']} validation), roi {s['roi_size']}, {s['num_samples']} slices per study, "
        f"batch {s['batch_size']}, {s['num_workers']} workers, {s['threads']} torch threads; each side in its own "
        "process.",
        f"Memory: {RSS_COUNTER}; peak: {PEAK_COUNTER} (this process only, not its workers). Time: {TIMER}. "
        "MB = 10^6 bytes.",
    ]
    if before["peak_since_start"] or after["peak_since_start"]:
        lines.append("The peak could not be reset before the epoch: it covers the whole process.")
    lines.append("")
    for i, row in enumerate(table):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}")
        if i == 0:
            lines.append("-" * (sum(widths) + 4))
    return "\n".join(lines)


def data_command(
    data_dir: str,
    roi_size: int = 192,
    num_samples: int = 4,
    batch_size: int = 16,
    num_workers: int = 0,
    max_studies: Optional[int] = None,
    validation: bool = True,
    validation_studies: Optional[int] = None,
    variant: str = "baseline",
    weights: Optional[str] = None,
    cache_dir: Optional[str] = None,
    output: Optional[str] = None,
) -> str:
    """``raagr2 benchmark_data``: :func:`benchmark_data`, then (``validation``) the bundle's validation pass with
    windows and with whole slices (:func:`~.validation_time.time_validation`) on the same studies; the text printed, and
    with ``output`` both results as JSON (written atomically)."""
    from raagr2_monai.data import find_cases
    from raagr2_monai.utils import atomic_write_json, atomic_write_text

    from .validation_time import format_validation, time_validation

    figures = benchmark_data(data_dir, (roi_size, roi_size), num_samples, batch_size, num_workers, cache_dir,
                             max_studies=max_studies)
    parts, result = [format_data_benchmark(figures)], {"data": figures}
    if validation:
        entries = find_cases(data_dir)[:max_studies]
        with tempfile.TemporaryDirectory(prefix="raagr2-validation-", dir=cache_dir) as tmp:
            datalist = os.path.join(tmp, "datalist.json")
            atomic_write_text(datalist, json.dumps({"training": entries, "validation": entries}))
            result["validation"] = time_validation(datalist, variant, roi_size, validation_studies,
                                                   cache_dir=os.path.join(tmp, "cache"), weights=weights)
        parts.append(format_validation(result["validation"]))
    if output:
        atomic_write_json(output, result)
    return "\n\n".join(parts)
