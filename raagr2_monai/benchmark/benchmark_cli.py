"""``raagr2 benchmark``: variants and bundle folders measured in one run, rendered, printed or written."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

from torch import nn

from raagr2_monai.bundle.load import bundle_name, check_bundle, load_bundle_network
from raagr2_monai.networks import NETWORKS, get_network
from raagr2_monai.utils import atomic_write_text, check_precision, parse_sequence, progress_bar

from .backend_latency import add_backend_latencies, check_runnable
from .measure import BASELINE, META_KEY, benchmark_models, check_settings
from .render import check_format, model_rows, render
from .training import THROUGHPUT_METHOD, check_channels_last, check_compile, training_throughput

__all__ = ["run_benchmark", "benchmark_command"]


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
    backends: Union[str, Sequence[str], None] = None,
    threads: Optional[int] = None,
    throughput: bool = False,
    train_batches: Union[int, str, Sequence[int]] = (16,),
    precision: str = "auto",
    channels_last: Union[bool, str, None] = None,
    compile: Union[bool, str] = False,
    peak_tflops: Optional[float] = None,
) -> Dict[str, Any]:
    """Benchmark variants (fresh networks, 3 output channels) and bundle folders in one run (``raagr2 benchmark``).

    Everything is checked before anything is measured; on a terminal, a progress bar on stderr counts the models
    measured (with the time left). A variant is named by its name, a bundle by
    :func:`~raagr2_monai.bundle.load.bundle_name`; each result row also gets ``source`` (what was built) and
    ``weights`` (the loaded ``models/model.pt``, or ``None``). A bundle's ``models/model_sparse.pt`` gives its
    ``size_sparse_mb``.

    Args:
        variants: comma-separated names or a sequence (``baseline``, ``depthwise``, ``paired``, ``encdec``); with
            neither variants nor bundles, all four.
        bundles: comma-separated bundle folders or a sequence.
        size, batches, repeats, warmup, device, measure_memory, train_step: as in :func:`benchmark_models`.
        backends: also time every model behind these inference backends (``torch``, ``onnxruntime``,
            ``openvino``, ``openvino-bf16``; :func:`~raagr2_monai.benchmark.backend_latency.backend_latencies`), on the
            CPU: each row gets ``backends`` with the latencies and the speed-ups over the baseline's eager PyTorch of
            this run. ``openvino-bf16`` on a CPU without a bfloat16 unit is refused.
        threads: CPU threads of the backends (``None``: each runtime's default).
        throughput: also measure the training throughput of every model at each of ``train_batches``
            (:func:`~raagr2_monai.benchmark.training.training_throughput`: slices per second, achieved TFLOP/s, share
            of the device's peak, peak memory of a step): each row gets ``throughput`` keyed by batch size, and
            ``_meta`` the settings.
        train_batches: the batch sizes of the throughput figures.
        precision: their precision (``auto``, ``bf16``, ``fp16``, ``fp32``; the CPU computes in float32).
        channels_last: their memory format (``None``/``auto``: channels-last on CUDA only).
        compile: ``torch.compile`` the networks for them (``False``, ``True`` or a backend's name).
        peak_tflops: the device's peak TFLOP/s (default: the table of known GPUs; none for others or the CPU).

    Returns:
        The :func:`benchmark_models` result.

    Raises:
        ValueError: an unknown variant, bad settings, or two models with the same name.
        FileNotFoundError: a bundle folder, or its ``configs/inference.json``, does not exist.

    Example::

        >>> result = run_benchmark("depthwise", "bundles/paired", size=32, batches=1, repeats=1, warmup=0,
        ...                        measure_memory=False, train_step=False)
        >>> sorted(k for k in result if not k.startswith("_"))
        ['baseline', 'depthwise', 'paired']
    """
    settings = check_settings(size, batches, repeats, warmup)
    chosen = check_runnable(parse_sequence(backends, "backends")) if backends else ()
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer; got {threads!r}.")
    if throughput:
        precision, layout = check_precision(precision), check_channels_last(channels_last)
        compiled = check_compile(compile)
        train_batches = check_settings(size, train_batches, repeats, warmup)[1]
        if peak_tflops is not None and (isinstance(peak_tflops, bool) or not isinstance(peak_tflops, (int, float))
                                        or peak_tflops <= 0):
            raise ValueError(f"peak_tflops must be a positive number; got {peak_tflops!r}.")
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
    size, batch_sizes, repeats, warmup = settings
    result = benchmark_models(
        models, size, batch_sizes, repeats, warmup, device, measure_memory, train_step, sparse_sizes=sparse,
        progress=lambda pairs: progress_bar(pairs, "benchmark", unit="model"),
    )
    for name, row in result.items():
        if name != META_KEY:
            row["source"] = sources.get(name, "variant baseline (fresh network, added as the reference)")
            row["weights"] = weights.get(name)
    if chosen or throughput:
        if BASELINE not in models:
            models = {BASELINE: get_network(BASELINE, out_channels=3), **models}
    if chosen:
        add_backend_latencies(result, models, chosen, size, batch_sizes, repeats, warmup, threads)
    if throughput:
        for name, row in model_rows(result).items():
            row["throughput"] = {
                str(b): training_throughput(models[name], b, size, device, precision, layout, compiled, repeats, warmup,
                                            peak_tflops, measure_memory, forward_flops=row["flops"])
                for b in train_batches
            }
        result[META_KEY]["throughput"] = {
            "batches": list(train_batches), "precision": precision, "channels_last": layout, "compile": compiled,
            "peak_tflops": peak_tflops, "method": THROUGHPUT_METHOD,
        }
    return result


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
    backends: Union[str, Sequence[str], None] = None,
    threads: Optional[int] = None,
    throughput: bool = False,
    train_batch: Union[int, str, Sequence[int]] = (16,),
    precision: str = "auto",
    channels_last: Union[bool, str, None] = None,
    compile: Union[bool, str] = False,
    peak_tflops: Optional[float] = None,
) -> str:
    """``raagr2 benchmark``: run :func:`run_benchmark`, render it, and print it or write it to ``output``.

    ``memory`` and ``train`` switch the peak-memory and training-step measurements on or off (their figures are then
    empty); ``backends`` and ``threads`` add the latency behind each inference backend; ``throughput`` adds the
    training throughput at each ``train_batch`` (with ``precision``, ``channels_last``, ``compile``,
    ``peak_tflops``); the other arguments are those of :func:`run_benchmark` and :func:`render`.

    Returns:
        The rendered text, or with ``output`` a line naming the file (written to a temporary name, then renamed).
    """
    check_format(format)
    result = run_benchmark(variants, bundles, size, batch, repeats, warmup, device, memory, train, backends, threads,
                           throughput, train_batch, precision, channels_last, compile, peak_tflops)
    text = render(result, format)
    if not output:
        return text
    atomic_write_text(output, text if text.endswith("\n") else text + "\n")
    return f"wrote {output} ({len(model_rows(result))} models, {format})"
