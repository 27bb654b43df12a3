"""A :func:`~raagr2_monai.benchmark.measure.benchmark_models` result as text: an aligned table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, List, Mapping, Optional

from .measure import META_KEY

__all__ = ["FORMATS", "check_format", "render", "model_rows"]

FORMATS = ("table", "csv", "json")


def check_format(format: str) -> str:
    """Raise ``ValueError`` unless ``format`` is one of :data:`FORMATS`."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    return format


def render(result: Mapping[str, Any], format: str = "table") -> str:
    """Write a :func:`~raagr2_monai.benchmark.measure.benchmark_models` result as text.

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


def model_rows(result: Mapping[str, Any]) -> Dict[str, Mapping[str, Any]]:
    """The result's rows by model name, without ``"_meta"``."""
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
    meta, models = result[META_KEY], model_rows(result)
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
        + _backend_table(result)
        + _throughput_table(result)
    )


def _throughput_table(result: Mapping[str, Any]) -> List[str]:
    """Training throughput per batch size (if measured): step time, slices per second, TFLOP/s, share of the peak."""
    meta, models = result[META_KEY], model_rows(result)
    if "throughput" not in meta:
        return []
    batches = meta["throughput"]["batches"]
    header = ["model", "dtype", "NHWC"]
    for b in batches:
        header += [f"b{b} step ms", f"b{b} slices/s", f"b{b} TFLOP/s", f"b{b} of peak", f"b{b} peak MB"]
    rows = []
    for name, row in models.items():
        figures = [row["throughput"][str(b)] for b in batches]
        cells = [name, figures[0]["dtype"], "yes" if figures[0]["channels_last"] else "no"]
        for f in figures:
            share = f["peak_fraction"]
            cells += [f"{f['step_ms']['mean']:.1f}", f"{f['slices_per_s']:.1f}", f"{f['achieved_tflops']:.2f}",
                      "-" if share is None else f"{100 * share:.1f} %", _fmt(f["peak_mem_mb"], ".0f")]
        rows.append(cells)
    settings = meta["throughput"]
    peak = next((f["peak_source"] for row in models.values() for f in row["throughput"].values() if f["peak_source"]),
                None)
    if settings["peak_tflops"] is not None:
        peak = f"{settings['peak_tflops']} TFLOP/s, given"
    return [
        "",
        f"Training throughput (precision {settings['precision']}, compile {settings['compile'] or 'off'}; peak: "
        f"{peak or 'unknown for this device, not reported'}): {settings['method']}.",
    ] + _aligned(header, rows)


def _backend_table(result: Mapping[str, Any]) -> List[str]:
    """Latency behind each inference backend, with the speed-up over the baseline's eager PyTorch (if measured)."""
    meta, models = result[META_KEY], model_rows(result)
    if "backends" not in meta:
        return []
    chosen, batches = meta["backends"]["backends"], meta["backends"]["batches"]
    threads = meta["backends"]["threads"]
    header = ["model"] + [f"{backend} b{b} ms (speed-up)" for backend in chosen for b in batches]
    rows = []
    for name, row in models.items():
        figures = row["backends"]
        rows.append(
            [name]
            + [
                f"{figures['latency_ms'][backend][str(b)]['median']:.1f} "
                f"({figures['speedup_vs_baseline_torch'][backend][str(b)]:.2f}x)"
                for backend in chosen
                for b in batches
            ]
        )
    return [
        "",
        f"By inference backend, CPU, {threads or 'default'} threads: median ms per forward pass; speed-up = "
        f"{meta['baseline']!r} eager PyTorch median / this, same run, same batch:",
    ] + _aligned(header, rows)


#: The throughput figures of a CSV row, per batch size.
_THROUGHPUT_COLUMNS = ("dtype", "channels_last", "step_ms_mean", "step_ms_median", "slices_per_s", "achieved_tflops",
                       "peak_tflops", "peak_fraction", "peak_mem_mb")


def _throughput_value(figures: Mapping[str, Any], column: str) -> Any:
    if column.startswith("step_ms_"):
        return figures["step_ms"][column[len("step_ms_"):]]
    return figures[column]


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
    backends = meta.get("backends", {"backends": [], "batches": []})
    by_backend = [(backend, str(b)) for backend in backends["backends"] for b in backends["batches"]]
    trained = [str(b) for b in meta.get("throughput", {"batches": []})["batches"]]
    columns = (
        ["model"] + figures + [f"latency_b{b}_{stat}_ms" for b, stat in latency] + tail
        + [f"vs_baseline_{k}" for k in ratios] + [f"vs_baseline_latency_b{b}" for b in batches]
        + [f"{backend}_b{b}_median_ms" for backend, b in by_backend]
        + [f"{backend}_b{b}_speedup_vs_baseline_torch" for backend, b in by_backend]
        + [f"throughput_b{b}_{figure}" for b in trained for figure in _THROUGHPUT_COLUMNS]
        + list(context)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for name, row in model_rows(result).items():
        r = row["vs_baseline"]
        writer.writerow(
            [name] + [row[k] for k in figures] + [row["latency_ms"][b][stat] for b, stat in latency]
            + [row[k] for k in tail] + [r[k] for k in ratios] + [r["latency_ms"][str(b)] for b in batches]
            + [row["backends"]["latency_ms"][backend][b]["median"] for backend, b in by_backend]
            + [row["backends"]["speedup_vs_baseline_torch"][backend][b] for backend, b in by_backend]
            + [_throughput_value(row["throughput"][b], figure) for b in trained for figure in _THROUGHPUT_COLUMNS]
            + list(context.values())
        )
    return buffer.getvalue()
