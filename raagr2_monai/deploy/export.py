"""Export a RAAGR2-Net to ONNX and OpenVINO IR, with a parity check against eager PyTorch that fails the export.

The export traces the network (``torch.onnx.export``, opset 17, batch, height and width left free), converts the
ONNX graph to OpenVINO IR (fp32: ``compress_to_fp16=False``), then runs every exported model through its backend
(:mod:`raagr2_monai.deploy.backends`) on random inputs of several shapes, non-square among them, and compares with
the network itself.

The parity check measures every fp32 output against the exact one, the network evaluated in fp64, on the
probabilities (the sigmoid of the logits the networks return), and lets an export be as far from it as the tolerance
(1e-4), or :data:`FP32_ERROR_FACTOR` times as far as eager
PyTorch's own fp32 output is, whichever is larger. A fixed tolerance alone refuses correct exports of some networks:
BatchNorm layers whose running variance is small (channels that barely vary on the data the statistics came from)
multiply the rounding errors of their input by ``|gamma| / sqrt(running_var + eps)``, 20 and more, layer after layer,
so that eager PyTorch itself is then 1.5e-4 from the exact probabilities, and ONNX Runtime and OpenVINO, which fold
BatchNorm into the convolution weights and sum in another order, 0.9-2.2e-4 (``tools/export_parity.py``; the largest
differences lie at probabilities 0.3-0.6, where the sigmoid is steepest, not on large logits). Measured against the
exact output, such an export is as accurate as eager PyTorch and passes, while a wrong one (other weights, a missing
layer, swapped axes) is orders of magnitude further off and still fails, as does a drift of 1e-3.

Everything is written into a temporary folder beside the target first; only when every format passes are the files
moved into place (each by ``os.rename``, the export record last), so a failed export leaves nothing behind and an
interrupted one leaves no record that vouches for the wrong files.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from raagr2_monai.utils import parse_sequence, unwrap

from .backends import OnnxRuntimeBackend, OpenVINOBackend
from .fingerprint import file_sha256
from .record import ExportRecord, record_path
from .source import History, ModelSource, read_bundle, source_of

__all__ = [
    "FORMATS",
    "DEFAULT_OPSET",
    "PARITY_SHAPES",
    "PARITY_TOLERANCE",
    "FP32_ERROR_FACTOR",
    "ExportParityError",
    "check_formats",
    "export_network",
    "export_bundle",
]

PathLike = Union[str, os.PathLike]

#: Export formats: ONNX (``model.onnx``) and OpenVINO IR (``model.xml`` + ``model.bin``).
FORMATS = ("onnx", "openvino")
#: The ONNX opset exported.
DEFAULT_OPSET = 17
#: ``(batch, height, width)`` of the parity inputs, multiples of 16 (non-square ones catch swapped axes).
PARITY_SHAPES: Tuple[Tuple[int, int, int], ...] = ((2, 64, 64), (1, 96, 64), (3, 48, 80))
#: Largest absolute difference from the exact (fp64) probabilities an export may have, unless eager PyTorch's own
#: fp32 output is further from them (:data:`FP32_ERROR_FACTOR`).
PARITY_TOLERANCE = 1e-4
#: How many times further from the exact (fp64) probabilities than eager PyTorch's fp32 an export may be: another
#: summation order and BatchNorm folded into the weights give errors of the same size, not a multiple of ten.
FP32_ERROR_FACTOR = 4.0

_INPUT, _OUTPUT = "image", "pred"
_DYNAMIC_AXES = {_INPUT: {0: "batch", 2: "height", 3: "width"}, _OUTPUT: {0: "batch", 2: "height", 3: "width"}}
#: Files of each format, the main one (which the record is named after) first.
_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}
_BACKEND_CLASS = {"onnx": OnnxRuntimeBackend, "openvino": OpenVINOBackend}


class ExportParityError(RuntimeError):
    """An exported model whose outputs differ from eager PyTorch's by more than the tolerance."""


def check_formats(formats: Any) -> List[str]:
    """The export formats in ``formats`` (``"onnx,openvino"``, a sequence, or one name), each once.

    Raises:
        ValueError: none given, or an unknown one; the message lists the valid formats.

    Example::

        >>> check_formats("openvino,onnx,onnx")
        ['openvino', 'onnx']
    """
    names = list(dict.fromkeys(parse_sequence(formats, "formats")))
    if not names:
        raise ValueError(f"formats: give at least one of {', '.join(FORMATS)}.")
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise ValueError(f"Unknown export format(s) {listed}; valid formats: {', '.join(FORMATS)}.")
    return names


def _parity_inputs(source: ModelSource, shapes: Sequence[Sequence[int]], seed: int) -> List[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for shape in shapes:
        batch, height, width = (int(s) for s in shape)
        if batch < 1 or height % source.size_divisor or width % source.size_divisor or min(height, width) < 1:
            raise ValueError(
                f"Parity shape {tuple(shape)} must be (batch >= 1, H, W) with H and W positive multiples of "
                f"{source.size_divisor}."
            )
        inputs.append(torch.randn(batch, source.in_channels, height, width, generator=generator))
    return inputs


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int, dynamo: bool) -> int:
    """Write ``model`` as ONNX to ``path``; returns the opset of the file."""
    import onnx

    # The TorchScript exporter (deprecated since torch 2.9, still shipped) exports this network in seconds and at
    # opset 17 directly; the dynamo exporter needs about a minute on two cores and converts down from opset 18.
    if dynamo:
        free = torch.export.Dim.AUTO
        axes: Dict[str, Any] = {"dynamic_shapes": ({0: free, 2: free, 3: free},)}
    else:
        axes = {"dynamic_axes": _DYNAMIC_AXES}
    with warnings.catch_warnings():
        # the network's input check becomes a constant of the trace; the backends check inputs themselves
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[_INPUT],
            output_names=[_OUTPUT],
            opset_version=opset,
            do_constant_folding=True,
            dynamo=dynamo,
            **axes,
        )
    graph = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))


def _export_openvino(onnx_path: Path, xml_path: Path) -> None:
    import openvino as ov

    # Core.read_model runs the ONNX frontend directly: the same graph as ov.convert_model, without the model
    # conversion tool's pipeline (seconds) and its telemetry. fp16 compression is save_model's default; it would
    # break fp32 parity.
    ov.save_model(ov.Core().read_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def _max_abs_diff(outputs: Sequence[torch.Tensor], references: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference between the probabilities of paired outputs (logits; infinite when a shape
    differs), in fp64: what the label maps are thresholded from."""
    worst = 0.0
    for out, reference in zip(outputs, references):
        if out.shape != reference.shape:
            return float("inf")
        worst = max(worst, float((torch.sigmoid(out.double()) - torch.sigmoid(reference.double())).abs().max()))
    return worst


def _exact_outputs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The network's outputs computed in fp64: the reference that fp32 rounding errors are measured against."""
    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        return [exact(x.double()) for x in inputs]


def export_network(
    network: nn.Module,
    directory: PathLike,
    formats: Any = FORMATS,
    history: Union[PathLike, History, None] = None,
    weights_file: Optional[PathLike] = None,
    opset: int = DEFAULT_OPSET,
    parity_shapes: Sequence[Sequence[int]] = PARITY_SHAPES,
    tolerance: float = PARITY_TOLERANCE,
    dynamo: bool = False,
    seed: int = 0,
) -> Dict[str, Path]:
    """Export a network to ONNX and/or OpenVINO IR in ``directory``, with a parity check against eager PyTorch.

    Writes ``model.onnx`` and/or ``model.xml`` + ``model.bin``, each with its export record (``model.onnx.json``,
    ``model.xml.json``; :mod:`raagr2_monai.deploy.record`). The network is copied to the CPU in eval mode; the
    caller's network is not changed.

    Args:
        network: a RAAGR2-Net variant; mask-pruned and DepGraph-pruned networks included.
        directory: where to write (created if missing); a bundle's ``models/`` folder.
        formats: ``onnx``, ``openvino`` or both (``"onnx,openvino"``). OpenVINO IR is converted from the ONNX graph,
            which is not kept unless ``onnx`` is asked for too.
        history: the DepGraph pruning history the network was built with (its file or its steps), recorded so that
            loading can refuse the export for a bundle with another history.
        weights_file: the checkpoint the weights were loaded from, recorded for messages.
        opset: the ONNX opset.
        parity_shapes: ``(batch, H, W)`` of the random parity inputs; H and W multiples of 16.
        tolerance: the largest absolute difference from the exact (fp64) probabilities allowed; where eager
            PyTorch's own fp32 output is further from them, :data:`FP32_ERROR_FACTOR` times its distance is.
        dynamo: use ``torch.onnx.export``'s dynamo exporter instead of the TorchScript one (about a minute instead of
            seconds on two cores; exports opset 18 and converts it down to ``opset``).
        seed: seed of the parity inputs.

    Returns:
        The files written by role: ``onnx``, ``onnx_record``, ``openvino``, ``openvino_bin``, ``openvino_record``.

    Raises:
        ValueError: unknown formats, bad parity shapes, or a network that is not a RAAGR2-Net.
        ExportParityError: an exported model is further from the exact output than allowed; nothing is written.

    Example::

        paths = export_network(get_network("depthwise"), "exported", formats="onnx")
        sorted(p.name for p in paths.values())  # ['model.onnx', 'model.onnx.json']
    """
    names = check_formats(formats)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance!r}.")
    model = copy.deepcopy(unwrap(network)).cpu().float().eval()
    source = source_of(model, history, weights_file)
    inputs = _parity_inputs(source, parity_shapes, seed)
    with torch.no_grad():
        references = [model(x) for x in inputs]
    exact = _exact_outputs(model, inputs)
    eager_error = _max_abs_diff(references, exact)
    limit = max(float(tolerance), FP32_ERROR_FACTOR * eager_error)
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    shapes = [[int(s) for s in x.shape] for x in inputs]
    # one hidden folder beside the targets: the IR's .xml names its .bin, so both need their final names, and
    # os.replace stays within one file system
    with tempfile.TemporaryDirectory(dir=target, prefix=".export-") as tmp:
        staging = Path(tmp)
        actual_opset = _export_onnx(model, inputs[0], staging / _FILES["onnx"][0], opset, dynamo)
        if "openvino" in names:
            _export_openvino(staging / _FILES["onnx"][0], staging / _FILES["openvino"][0])
        for name in names:
            main = staging / _FILES[name][0]
            record = ExportRecord(
                format=name,
                files={file: file_sha256(staging / file) for file in _FILES[name]},
                source=source,
                opset=actual_opset,
                exporter="dynamo" if dynamo else "torchscript",
                input_name=_INPUT,
                output_name=_OUTPUT,
                dynamic_axes=_DYNAMIC_AXES,
                parity={"tolerance": tolerance, "shapes": shapes, "max_abs_diff": None, "max_abs_error": None,
                        "eager_fp32_error": eager_error, "limit": limit},
            )
            # written before the check too: the backend reads the record and checks the files against it
            record.write(record_path(main))
            # as many threads as eager PyTorch: more than the cores free would make a loaded machine crawl
            backend = _BACKEND_CLASS[name](main, torch.get_num_threads())
            outputs = [backend(x) for x in inputs]
            diff, error = _max_abs_diff(outputs, references), _max_abs_diff(outputs, exact)
            if not error <= limit:
                raise ExportParityError(
                    f"The {name} export of {source.network_class} differs from eager PyTorch by {diff:.3g} and from "
                    f"the exact (fp64) output by {error:.3g} (> {limit:.3g}: the tolerance {tolerance:g}, or "
                    f"{FP32_ERROR_FACTOR:g} times eager PyTorch's own fp32 error, {eager_error:.3g}, if larger) on "
                    f"inputs {shapes}; nothing was written to {target}."
                )
            record.parity.update(max_abs_diff=diff, max_abs_error=error)
            record.write(record_path(main))
        return _publish(staging, target, names)


def _publish(staging: Path, target: Path, names: Sequence[str]) -> Dict[str, Path]:
    """Move the checked files of each format from ``staging`` into ``target``, its record last."""
    written: Dict[str, Path] = {}
    for name in names:
        record = record_path(target / _FILES[name][0])
        # the old record goes first: between the renames no record vouches for a mix of old and new files
        if record.exists():
            record.unlink()
        for role, file in zip((name, f"{name}_bin"), _FILES[name]):
            os.replace(staging / file, target / file)
            written[role] = target / file
        os.replace(record_path(staging / _FILES[name][0]), record)
        written[f"{name}_record"] = record
    return written


def export_bundle(bundle_dir: PathLike, formats: Any = FORMATS, **kwargs: Any) -> Dict[str, Path]:
    """Export a bundle's trained network into its ``models/`` folder, beside ``model.pt``.

    The network is ``configs/inference.json``'s ``network_def`` (a DepGraph-pruned bundle's replays
    ``models/pruning_history.json``, which is recorded) with ``models/model.pt`` loaded.

    Args:
        bundle_dir: the bundle folder.
        formats: as :func:`export_network`.
        kwargs: passed to :func:`export_network` (``opset``, ``parity_shapes``, ``tolerance``, ``dynamo``, ``seed``).

    Returns:
        As :func:`export_network`.

    Raises:
        FileNotFoundError: not a bundle, or no ``models/model.pt``.
        ExportParityError: as :func:`export_network`.

    Example::

        export_bundle("bundles/baseline/pruned/depgraph-50", formats="onnx,openvino")
    """
    check_formats(formats)
    bundle = read_bundle(bundle_dir)
    return export_network(
        bundle.network, bundle.root / "models", formats, history=bundle.history, weights_file=bundle.weights, **kwargs
    )
