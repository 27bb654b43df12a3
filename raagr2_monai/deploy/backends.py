"""Inference backends: eager PyTorch, ONNX Runtime and OpenVINO behind one callable.

Each backend is a ``torch.nn.Module`` that takes a float32 tensor ``(B, C, H, W)`` and returns the network's
``(B, out_channels, H, W)`` logits on the input's device, so it serves as the ``network`` of MONAI's
``SliceInferer`` / ``SlidingWindowInferer`` and of a ``SupervisedEvaluator`` (``.eval()`` and ``.to()`` work; the ONNX
Runtime and OpenVINO backends compute on the CPU whatever the device). The whole batch goes to the runtime in one
call, so the inferer's ``sw_batch_size`` is used by every backend. :func:`load_backend` builds one for a bundle and
refuses exported files that do not belong to it.
"""

from __future__ import annotations

import abc
import functools
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from raagr2_monai.bundle import checked
from raagr2_monai.utils import DeviceLike, check_precision, prepare_network, unwrap

from .record import check_against_bundle, read_record
from .source import read_bundle

__all__ = [
    "BACKENDS",
    "EXPORTED_FILES",
    "InferenceBackend",
    "TorchBackend",
    "OnnxRuntimeBackend",
    "OpenVINOBackend",
    "check_backend",
    "cpu_bf16",
    "cpu_name",
    "exported_precision",
    "load_backend",
    "inference_network",
]

PathLike = Union[str, os.PathLike]

#: Backend names accepted by :func:`load_backend`.
BACKENDS = ("torch", "onnxruntime", "openvino")

#: The exported model each runtime reads, under the bundle's ``models/``.
EXPORTED_FILES = {"onnxruntime": "model.onnx", "openvino": "model.xml"}


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`.

    Raises:
        ValueError: naming the valid backends.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}.")
    return backend


@functools.lru_cache(maxsize=None)
def _cpu_property(name: str) -> object:
    import openvino as ov

    return ov.Core().get_property("CPU", name)


def cpu_bf16() -> bool:
    """Whether this CPU computes in bfloat16 (AVX512-BF16 or AMX), as OpenVINO detects it (its ``BF16`` capability):
    where it does not, a bf16 precision hint would be emulated or ignored, not faster."""
    return "BF16" in _cpu_property("OPTIMIZATION_CAPABILITIES")


def cpu_name() -> str:
    """The CPU's name as OpenVINO reports it (e.g. ``AMD EPYC``), for records of what was measured where."""
    return str(_cpu_property("FULL_DEVICE_NAME")).strip()


def exported_precision(backend: str, precision: Optional[str] = "auto") -> str:
    """The precision an exported backend computes in, for a precision setting (the bundles' ``amp_precision``).

    ``auto`` (or ``None``) is bf16 behind OpenVINO on a CPU that computes in it (:func:`cpu_bf16`), else fp32; ONNX
    Runtime computes in fp32 only. On a 2-core AMD EPYC with AVX512-BF16, OpenVINO in bf16 ran the baseline at batch 1,
    192x192, in 54 ms against 92 ms in fp32, its thresholded outputs agreeing with fp32's on 99.986 % of pixels.

    Args:
        backend: ``onnxruntime`` or ``openvino``.
        precision: ``auto``, ``bf16``, ``fp32`` or ``None``.

    Returns:
        ``bf16`` or ``fp32``.

    Raises:
        ValueError: ``fp16``, or ``bf16`` where the backend or the CPU cannot compute in it; the message names the CPU.
    """
    setting = check_precision(precision)
    bf16 = backend == "openvino" and cpu_bf16()
    if setting == "auto":
        return "bf16" if bf16 else "fp32"
    if setting == "fp32" or (setting == "bf16" and bf16):
        return setting
    if backend != "openvino":
        raise ValueError(f"the {backend} backend computes in fp32 only; got precision {setting!r}.")
    if setting == "fp16":
        raise ValueError("the openvino backend computes in bf16 or fp32 on a CPU; got precision 'fp16'.")
    raise ValueError(
        f"precision bf16 needs a CPU with a bfloat16 unit (AVX512-BF16 or AMX); this CPU ({cpu_name()}) has none: "
        "use fp32 or auto."
    )


def _check_threads(threads: Optional[int]) -> Optional[int]:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1 (or None for the runtime's default); got {threads!r}.")
    return threads


class InferenceBackend(nn.Module):
    """Common part of the backends: the input check and the conversion to and from the runtime.

    Args:
        in_channels: channels the model takes.
        out_channels: channels it returns.
        size_divisor: H and W must be multiples of it.
        threads: intra-op CPU threads; ``None`` keeps the runtime's default.
    """

    name = ""
    #: what the runtime computes in (the torch backend: its network's parameters' dtype, autocast aside)
    precision = "fp32"

    def __init__(self, in_channels: int, out_channels: int, size_divisor: int, threads: Optional[int]) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.size_divisor = int(size_divisor)
        self.threads = _check_threads(threads)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, H, W)`` with H and W multiples of the divisor.

        An exported graph has the check of the eager network traced away, and a runtime would fail on such an input
        with a message about some inner node, or not at all.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"The {self.name} backend expects input of shape (B, {self.in_channels}, H, W); got {list(x.shape)}."
            )
        if x.shape[2] % self.size_divisor or x.shape[3] % self.size_divisor:
            raise ValueError(
                f"The {self.name} backend needs H and W to be multiples of {self.size_divisor}; got {list(x.shape)}."
            )

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, threads={self.threads}, "
                f"precision={self.precision}")


class TorchBackend(InferenceBackend):
    """Eager PyTorch, optionally in channels-last memory format.

    Args:
        network: a RAAGR2-Net (a DDP wrapper is unwrapped); used as is, so move it to the device wanted first.
        threads: sets ``torch.set_num_threads`` (process-wide: every torch computation of the process then uses it).
        channels_last: convert the network and each input to ``torch.channels_last`` (often faster on CPUs).

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> backend = TorchBackend(get_network("baseline").eval())
        >>> backend(torch.zeros(1, 4, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    name = "torch"

    def __init__(self, network: nn.Module, threads: Optional[int] = None, channels_last: bool = False) -> None:
        model = unwrap(network)
        super().__init__(model.in_channels, model.out_channels, model.size_divisor, threads)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self.channels_last = bool(channels_last)
        self.network = model.to(memory_format=torch.channels_last) if self.channels_last else model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return self.network(x).contiguous()


class _ExportedBackend(InferenceBackend):
    """A backend that runs an exported model on numpy arrays, on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on ``x``; returns float32 logits on ``x``'s device."""
        self.check_input(x)
        array = np.ascontiguousarray(torch.as_tensor(x).detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.run(array)).to(x.device)

    @abc.abstractmethod
    def run(self, array: np.ndarray) -> np.ndarray:
        """Run the runtime on a contiguous float32 array; returns an array the runtime no longer uses."""


class OnnxRuntimeBackend(_ExportedBackend):
    """An exported ``model.onnx`` run by ONNX Runtime's CPU execution provider.

    Args:
        path: the ONNX file; its export record (``model.onnx.json``) must lie beside it and match it.
        threads: ``intra_op_num_threads`` of the session (``inter_op_num_threads`` is 1: the graph runs sequentially).

    Raises:
        FileNotFoundError, raagr2_monai.deploy.ExportMismatchError: as :func:`~raagr2_monai.deploy.read_record`.

    Example::

        backend = OnnxRuntimeBackend("bundles/baseline/models/model.onnx", threads=2)
        logits = backend(torch.rand(8, 4, 192, 192))
    """

    name = "onnxruntime"

    def __init__(self, path: PathLike, threads: Optional[int] = None) -> None:
        import onnxruntime

        record = read_record(path, "onnx")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if _check_threads(threads) is not None:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        image, prediction = session.get_inputs()[0], session.get_outputs()[0]
        # the graph's own channel counts: what load_backend compares with the bundle
        super().__init__(image.shape[1], prediction.shape[1], record.source.size_divisor, threads)
        self.path = Path(path)
        self.record = record
        self.session = session
        self.input_name = image.name

    def run(self, array: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: array})[0]


class OpenVINOBackend(_ExportedBackend):
    """An exported OpenVINO IR (``model.xml`` + ``model.bin``) compiled for the CPU in fp32 or bf16, for each input
    shape it meets.

    The exported graph leaves the batch, height and width free; OpenVINO's CPU kernels for a graph of fixed shape are
    much faster (the quick study's hybrid model, batch 1, 192x192, 2 threads, interleaved runs: 14.6 ms in bf16 and
    25.8 ms in fp32 against 27.5 and 35.4 ms with free dimensions; leaving only the batch free kept the slow kernels).
    So the model is compiled for each input shape when first met (about 0.6 s), and the last :data:`SHAPES_KEPT`
    compilations are kept: sliding windows meet two or three shapes in all, whole slices two or three per study.

    The precision is always set (OpenVINO's ``INFERENCE_PRECISION_HINT``): left to itself, OpenVINO infers in bf16 on
    CPUs with bf16 or AMX units, and the label map would depend on the machine unnoticed. Call the backend from one
    thread at a time.

    Args:
        path: the ``.xml`` file; its ``.bin`` and its export record (``model.xml.json``) must lie beside it and match.
        threads: ``INFERENCE_NUM_THREADS`` of the compiled model (one stream, latency hint).
        precision: ``fp32`` (default), ``bf16``, or ``auto`` (bf16 where the CPU computes in it:
            :func:`exported_precision`); the one used is :attr:`precision`. Inputs and outputs stay float32.

    Raises:
        FileNotFoundError, raagr2_monai.deploy.ExportMismatchError: as :func:`~raagr2_monai.deploy.read_record`.

    Example::

        backend = OpenVINOBackend("bundles/baseline/models/model.xml", threads=2)
        logits = backend(torch.rand(8, 4, 192, 192))
    """

    name = "openvino"
    #: Compiled input shapes kept (least recently used dropped first).
    SHAPES_KEPT = 4

    def __init__(self, path: PathLike, threads: Optional[int] = None, precision: Optional[str] = "fp32") -> None:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        record = read_record(path, "openvino")
        self.precision = exported_precision("openvino", precision)
        self._config = {
            hints.inference_precision: ov.Type.bf16 if self.precision == "bf16" else ov.Type.f32,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.num_streams: 1,
        }
        if _check_threads(threads) is not None:
            self._config[props.inference_num_threads] = threads
        self._core = ov.Core()
        self._model = self._core.read_model(str(path))
        channels = [port.get_partial_shape()[1].get_length() for port in (self._model.inputs[0], self._model.outputs[0])]
        super().__init__(channels[0], channels[1], record.source.size_divisor, threads)
        self.path = Path(path)
        self.record = record
        self._compiled: "OrderedDict[Tuple[int, ...], Any]" = OrderedDict()

    @property
    def shapes(self) -> List[Tuple[int, ...]]:
        """The input shapes compiled and kept, least recently used first."""
        return list(self._compiled)

    def _compile(self, shape: Sequence[int]) -> Tuple[Any, Any]:
        """The compiled model and its infer request for inputs of ``shape``, compiled now if not kept."""
        key = tuple(int(s) for s in shape)
        if key in self._compiled:
            self._compiled.move_to_end(key)
        else:
            import openvino as ov

            model = self._model.clone()
            model.reshape({model.inputs[0]: ov.PartialShape(list(key))})
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._compiled[key] = (compiled, compiled.create_infer_request())
            while len(self._compiled) > self.SHAPES_KEPT:
                self._compiled.popitem(last=False)
        return self._compiled[key]

    def compiled_for(self, shape: Sequence[int]) -> Any:
        """The model compiled for inputs of ``shape`` (an ``openvino.CompiledModel``), compiled now if not kept."""
        return self._compile(shape)[0]

    def run(self, array: np.ndarray) -> np.ndarray:
        request = self._compile(array.shape)[1]
        request.infer({0: array})
        # the output tensor is the request's own buffer, overwritten by the next call
        return request.get_output_tensor(0).data.copy()


def load_backend(
    bundle_dir: PathLike,
    backend: str = "torch",
    threads: Optional[int] = None,
    channels_last: bool = False,
    precision: Optional[str] = "fp32",
) -> InferenceBackend:
    """A bundle's network behind the chosen backend, on the CPU, ready for ``SliceInferer``.

    ``torch`` builds the network from ``configs/inference.json`` and loads ``models/model.pt``. ``onnxruntime`` and
    ``openvino`` read ``models/model.onnx`` / ``models/model.xml`` (written by
    :func:`raagr2_monai.deploy.export_bundle`) and check them against the bundle: the files must match their export record, and the exported graph's input and
    output channels, the pruning history and the weights must be the bundle's.

    Args:
        bundle_dir: the bundle folder.
        backend: ``torch``, ``onnxruntime`` or ``openvino``.
        threads: intra-op CPU threads (for ``torch``, process-wide); ``None`` keeps the runtime's default.
        channels_last: ``torch`` only: run in channels-last memory format.
        precision: what an exported backend computes in (:func:`exported_precision`: ``fp32``, ``bf16`` or ``auto``);
            the ``torch`` backend runs its network as it is (the bundles' engines autocast it on CUDA).

    Returns:
        An :class:`InferenceBackend`.

    Raises:
        ValueError: an unknown backend, bad ``threads``, ``channels_last`` with another backend than ``torch``, or a
            precision the backend or the CPU cannot compute in.
        FileNotFoundError: the bundle, its weights, or the exported model or its record is missing.
        raagr2_monai.deploy.ExportMismatchError: the exported model does not belong to the bundle; the message names
            the exported file and the bundle file it disagrees with.

    Example::

        network = load_backend("bundles/baseline", "onnxruntime", threads=2)
        inferer = BrainSliceInferer(roi_size=(192, 192), sw_batch_size=8)  # applies the sigmoid
        probabilities = inferer(image, network)
    """
    check_backend(backend)
    _check_threads(threads)
    if channels_last and backend != "torch":
        raise ValueError(f"channels_last applies to the torch backend only, not to {backend!r}.")
    if backend != "torch":
        exported_precision(backend, precision)  # refused before any file is read
    bundle = read_bundle(bundle_dir)
    if backend == "torch":
        return TorchBackend(bundle.network, threads=threads, channels_last=channels_last)
    artifact = bundle.root / "models" / EXPORTED_FILES[backend]
    runtime = (OnnxRuntimeBackend(artifact, threads) if backend == "onnxruntime"
               else OpenVINOBackend(artifact, threads, precision))
    check_against_bundle(artifact, runtime.record, bundle, runtime.in_channels, runtime.out_channels)
    return runtime


def inference_network(
    network: nn.Module,
    backend: str = "torch",
    bundle_dir: Optional[PathLike] = None,
    device: DeviceLike = None,
    channels_last: Optional[bool] = None,
    threads: Optional[int] = None,
    precision: Optional[str] = "auto",
) -> nn.Module:
    """What an inference config's evaluator runs (its ``network``): the bundle's own network where ``backend`` is
    ``torch``, else its exported model behind that runtime.

    Args:
        network: the config's ``network_def``, used by the ``torch`` backend: prepared for ``device`` and
            ``channels_last`` (:func:`raagr2_monai.utils.prepare_network`), with ``threads`` intra-op threads
            (process-wide) when given.
        backend: ``torch``, ``onnxruntime`` or ``openvino``.
        bundle_dir: the bundle, whose exported model another backend loads (:func:`load_backend`, through
            :func:`raagr2_monai.bundle.checked`: a missing or mismatched export ends a command-line run in one line).
        device, channels_last: for ``torch``.
        threads: intra-op CPU threads; ``None`` keeps the runtime's default.
        precision: what an exported backend computes in (:func:`exported_precision`).

    Returns:
        The module the evaluator calls.
    """
    if backend == "torch":
        if threads:
            torch.set_num_threads(int(threads))
        return prepare_network(network, device, channels_last)
    return checked(load_backend, bundle_dir, backend, threads, precision=precision)
