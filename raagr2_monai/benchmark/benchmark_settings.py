"""What one benchmark run measures and how (:class:`BenchmarkSettings`, checked at once by
:meth:`~BenchmarkSettings.check`), and the inference backends a run can time on this CPU (:func:`check_backends`,
:func:`runnable_backends`, :func:`check_runnable`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Sequence, Tuple, Union

from raagr2_monai.deploy import BACKENDS, check_backend, exported_precision
from raagr2_monai.utils import check_precision, parse_sequence, resolve_device

from .measure import check_settings
from .training import check_channels_last, check_compile

__all__ = ["BenchmarkSettings", "check_backends", "check_runnable", "runnable_backends", "split_backend"]


def split_backend(name: str) -> Tuple[str, str]:
    """A benchmark backend's runtime and the precision it computes in (``openvino-bf16``: OpenVINO in bf16).

    Example::

        >>> split_backend("openvino-bf16"), split_backend("onnxruntime")
        (('openvino', 'bf16'), ('onnxruntime', 'fp32'))
    """
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
        backend, precision = split_backend(name)
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
                exported_precision(*split_backend(name))
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


@dataclass(frozen=True)
class BenchmarkSettings:
    """How ``raagr2 benchmark`` measures its models: everything but which models and how the result is written,
    passed whole from the command line to :func:`~raagr2_monai.benchmark.benchmark_command` and checked at once by
    :meth:`check`. The values may be as a command line gives them (``"1,8"``, ``"true"``); :meth:`check` returns them
    read.

    Attributes:
        size: in-plane size of the input slices (a multiple of 16).
        batches: batch sizes of the latency figures (an int, ``"1,8"`` or a sequence); memory and the training step
            use the largest.
        repeats: timed runs per figure (median, p25, p75).
        warmup: untimed runs before them.
        device: ``cpu``, ``cuda`` or ``cuda:<index>`` (``None``: CUDA when available).
        measure_memory: measure the peak memory (on the CPU, in a process of its own).
        train_step: measure the training step.
        backends: also time every model behind these inference backends on the CPU (``torch``, ``onnxruntime``,
            ``openvino``, ``openvino-bf16``; comma-separated or a sequence), with the speed-up over the baseline's
            eager PyTorch of the same run.
        threads: intra-op CPU threads of the backends (``None``: each runtime's default).
        throughput: also measure the training throughput at each of ``train_batches``
            (:func:`~raagr2_monai.benchmark.training_throughput`).
        train_batches: the batch sizes of the throughput figures.
        precision: their precision (``auto``, ``bf16``, ``fp16``, ``fp32``; the CPU computes in float32).
        channels_last: their memory format (``None``/``auto``: channels-last on CUDA only).
        compile: ``torch.compile`` the networks for them (``False``, ``True`` or a backend's name).
        peak_tflops: the device's peak TFLOP/s (``None``: the table of known GPUs; none for others or the CPU).

    Example::

        >>> settings = BenchmarkSettings(size=32, batches="1,2", backends="openvino,torch").check()
        >>> settings.batches, settings.backends
        ((1, 2), ('torch', 'openvino'))
    """

    size: int = 192
    batches: Union[int, str, Sequence[int]] = (1, 8)
    repeats: int = 10
    warmup: int = 2
    device: Optional[str] = None
    measure_memory: bool = True
    train_step: bool = True
    backends: Union[str, Sequence[str], None] = None
    threads: Optional[int] = None
    throughput: bool = False
    train_batches: Union[int, str, Sequence[int]] = (16,)
    precision: str = "auto"
    channels_last: Union[bool, str, None] = None
    compile: Union[bool, str] = False
    peak_tflops: Optional[float] = None

    def check(self) -> BenchmarkSettings:
        """Check every setting before anything is built or measured.

        Returns:
            The settings read: ``batches`` (and with ``throughput``, ``train_batches``) a tuple of distinct batch
            sizes, ``backends`` the runnable backends in measuring order (:func:`check_runnable`; empty: none), and
            with ``throughput`` the precision, ``channels_last`` (``None``, ``True`` or ``False``) and ``compile``
            (``False`` or a backend's name) as measured.

        Raises:
            ValueError: a bad size, batch size, ``repeats``, ``warmup``, backend, ``threads`` or device; with
                ``throughput``, a bad precision, ``channels_last``, ``compile``, throughput batch size or
                ``peak_tflops``.
        """
        size, batches, repeats, warmup = check_settings(self.size, self.batches, self.repeats, self.warmup)
        backends = check_runnable(parse_sequence(self.backends, "backends")) if self.backends else ()
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer; got {self.threads!r}.")
        if self.device is not None:
            resolve_device(self.device)  # a device this machine lacks is refused before a network is built
        checked = replace(self, size=size, batches=batches, repeats=repeats, warmup=warmup, backends=backends)
        if not self.throughput:
            return checked
        precision, layout = check_precision(self.precision), check_channels_last(self.channels_last)
        compiled = check_compile(self.compile)
        train_batches = check_settings(size, self.train_batches, repeats, warmup)[1]
        peak = self.peak_tflops
        if peak is not None and (isinstance(peak, bool) or not isinstance(peak, (int, float)) or peak <= 0):
            raise ValueError(f"peak_tflops must be a positive number; got {peak!r}.")
        return replace(checked, train_batches=train_batches, precision=precision, channels_last=layout,
                       compile=compiled)
