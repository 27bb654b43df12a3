"""``raagr2 benchmark``: variants and bundle folders measured in one run, rendered, printed or written."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

from torch import nn

from raagr2_monai.bundle.load import bundle_name, check_bundle, load_bundle_network
from raagr2_monai.networks import NETWORKS, get_network
from raagr2_monai.utils import atomic_write_text, parse_sequence, progress_bar

from .backend_latency import add_backend_latencies
from .benchmark_settings import BenchmarkSettings
from .measure import BASELINE, META_KEY, benchmark_models
from .render import check_format, model_rows, render
from .training import THROUGHPUT_METHOD, training_throughput

__all__ = ["run_benchmark", "benchmark_command"]


def run_benchmark(
    variants: Union[str, Sequence[str], None] = None,
    bundles: Union[str, Sequence[str], None] = None,
    settings: BenchmarkSettings = BenchmarkSettings(),
) -> Dict[str, Any]:
    """Benchmark variants (fresh networks, 3 output channels) and bundle folders in one run (``raagr2 benchmark``).

    Everything is checked before anything is measured; on a terminal, a progress bar on stderr counts the models
    measured (with the time left). A variant is named by its name, a bundle by
    :func:`~raagr2_monai.bundle.load.bundle_name`; each result row also gets ``source`` (what was built) and
    ``weights`` (the loaded ``models/model.pt``, or ``None``). A bundle's ``models/model_sparse.pt`` gives its
    ``size_sparse_mb``.

    With ``backends`` in the settings, every model is also timed behind those inference backends on the CPU
    (:func:`~raagr2_monai.benchmark.backend_latency.backend_latencies`): each row gets ``backends`` with the latencies
    and the speed-ups over the baseline's eager PyTorch of this run; ``openvino-bf16`` on a CPU without a bfloat16
    unit is refused. With ``throughput``, the training throughput of every model at each of ``train_batches``
    (:func:`~raagr2_monai.benchmark.training.training_throughput`: slices per second, achieved TFLOP/s, share of the
    device's peak, peak memory of a step): each row gets ``throughput`` keyed by batch size, and ``_meta`` the
    settings.

    Args:
        variants: comma-separated names or a sequence (``baseline``, ``depthwise``, ``paired``, ``encdec``); with
            neither variants nor bundles, all four.
        bundles: comma-separated bundle folders or a sequence.
        settings: what to measure and how (:class:`~.benchmark_settings.BenchmarkSettings`; the rest as in
            :func:`benchmark_models`).

    Returns:
        The :func:`benchmark_models` result.

    Raises:
        ValueError: an unknown variant, bad settings (:meth:`~.benchmark_settings.BenchmarkSettings.check`), or two
            models with the same name.
        FileNotFoundError: a bundle folder, or its ``configs/inference.json``, does not exist.

    Example::

        >>> settings = BenchmarkSettings(size=32, batches=1, repeats=1, warmup=0, measure_memory=False,
        ...                              train_step=False)
        >>> result = run_benchmark("depthwise", "bundles/paired", settings)
        >>> sorted(k for k in result if not k.startswith("_"))
        ['baseline', 'depthwise', 'paired']
    """
    s = settings.check()
    names, folders = parse_sequence(variants, "variants"), parse_sequence(bundles, "bundles")
    if not names and not folders:
        names = list(NETWORKS)
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        raise ValueError(f"Unknown variant(s) {', '.join(map(repr, unknown))}; valid names: {', '.join(NETWORKS)}.")
    roots = [check_bundle(folder) for folder in folders]
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
    result = benchmark_models(
        models, s.size, s.batches, s.repeats, s.warmup, s.device, s.measure_memory, s.train_step,
        sparse_sizes=sparse, progress=lambda pairs: progress_bar(pairs, "benchmark", unit="model"),
    )
    for name, row in result.items():
        if name != META_KEY:
            row["source"] = sources.get(name, "variant baseline (fresh network, added as the reference)")
            row["weights"] = weights.get(name)
    if s.backends or s.throughput:
        if BASELINE not in models:
            models = {BASELINE: get_network(BASELINE, out_channels=3), **models}
    if s.backends:
        add_backend_latencies(result, models, s)
    if s.throughput:
        for name, row in model_rows(result).items():
            row["throughput"] = {
                str(b): training_throughput(models[name], b, s.size, s.device, s.precision, s.channels_last,
                                            s.compile, s.repeats, s.warmup, s.peak_tflops, s.measure_memory,
                                            forward_flops=row["flops"])
                for b in s.train_batches
            }
        result[META_KEY]["throughput"] = {
            "batches": list(s.train_batches), "precision": s.precision, "channels_last": s.channels_last,
            "compile": s.compile, "peak_tflops": s.peak_tflops, "method": THROUGHPUT_METHOD,
        }
    return result


def benchmark_command(
    variants: Union[str, Sequence[str], None] = None,
    bundles: Union[str, Sequence[str], None] = None,
    settings: BenchmarkSettings = BenchmarkSettings(),
    format: str = "table",
    output: Optional[str] = None,
) -> str:
    """``raagr2 benchmark``: run :func:`run_benchmark`, render it, and print it or write it to ``output``.

    Args:
        variants: the variants, as in :func:`run_benchmark`.
        bundles: the bundle folders, as in :func:`run_benchmark`.
        settings: what to measure and how (:class:`~.benchmark_settings.BenchmarkSettings`); figures switched off
            (``measure_memory``, ``train_step``) are left empty.
        format: ``table``, ``csv`` or ``json`` (:func:`render`).
        output: write to this file (atomically: a temporary name, then renamed) instead of returning the text.

    Returns:
        The rendered text, or with ``output`` a line naming the file.

    Example::

        benchmark_command("depthwise", settings=BenchmarkSettings(size=32, batches="1,2"), format="csv")
    """
    check_format(format)
    result = run_benchmark(variants, bundles, settings)
    text = render(result, format)
    if not output:
        return text
    atomic_write_text(output, text if text.endswith("\n") else text + "\n")
    return f"wrote {output} ({len(model_rows(result))} models, {format})"
