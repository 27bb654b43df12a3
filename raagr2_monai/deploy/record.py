"""The export record: a JSON file beside each exported model (``model.onnx.json``, ``model.xml.json``) that says what
it was exported from and how, so that loading can refuse an exported model that does not belong to its bundle.

A record holds the SHA-256 of every file of the exported model (``model.onnx``; ``model.xml`` and ``model.bin``), the
:class:`~raagr2_monai.deploy.source.ModelSource` (variant, channels, fingerprints of the weights and of the pruning
history), the opset, the exporter, the parity figures and the versions of the packages involved. It is written after
the model's files, so a model whose files were replaced without a new record is detected by the file hashes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

from raagr2_monai.utils import atomic_write_json, package_version, versions

from .fingerprint import file_sha256
from .source import BundleModel, ModelSource

__all__ = [
    "RECORD_FORMAT",
    "ExportMismatchError",
    "ExportRecord",
    "record_path",
    "read_record",
    "check_against_bundle",
    "export_versions",
]

#: 2: the exported networks return logits (2026-12-07); an export of format 1 ends in the sigmoid and is refused, since
#: the inferer now applies the sigmoid itself.
RECORD_FORMAT = "raagr2_monai.export/2"

PathLike = Union[str, os.PathLike]

#: Packages whose versions an export record states besides :func:`raagr2_monai.utils.versions`'.
_EXPORT_PACKAGES = ("onnx", "onnxruntime", "openvino", "onnxscript")
#: The export format of an exported model's main file, by suffix.
_FORMAT_OF_SUFFIX = {".onnx": "onnx", ".xml": "openvino"}


class ExportMismatchError(ValueError):
    """An exported model that does not belong to the bundle (or record) it is loaded with."""


def export_versions() -> Dict[str, str]:
    """:func:`raagr2_monai.utils.versions` plus the installed ONNX / ONNX Runtime / OpenVINO versions."""
    found = versions()
    for name in _EXPORT_PACKAGES:
        version = package_version(name)
        if version is not None:
            found[name] = version
    return found


def record_path(artifact: PathLike) -> Path:
    """The record of an exported model: ``model.onnx`` -> ``model.onnx.json``, ``model.xml`` -> ``model.xml.json``.

    Example::

        >>> record_path("bundle/models/model.xml").as_posix()
        'bundle/models/model.xml.json'
    """
    path = Path(artifact)
    return path.with_name(path.name + ".json")


@dataclass
class ExportRecord:
    """What an export record says.

    Attributes:
        format: ``onnx`` or ``openvino``.
        files: SHA-256 of each file of the exported model, by file name (files lie beside the record).
        source: what it was exported from.
        opset: the ONNX opset of the graph (OpenVINO IR is converted from it).
        exporter: ``torchscript`` or ``dynamo`` (``torch.onnx.export``'s two exporters).
        input_name: the graph's input.
        output_name: the graph's output.
        dynamic_axes: the axes left free, by tensor name.
        parity: ``tolerance``, the input ``shapes``, the ``max_abs_diff`` against eager PyTorch, the
            ``max_abs_error`` against the exact (fp64) output, eager PyTorch's own ``eager_fp32_error`` and the
            ``limit`` the error was held to (:func:`~raagr2_monai.deploy.export_network`).
        versions: package versions at export time.
    """

    format: str
    files: Dict[str, str]
    source: ModelSource
    opset: int
    exporter: str
    input_name: str
    output_name: str
    dynamic_axes: Dict[str, Dict[int, str]]
    parity: Dict[str, Any]
    versions: Dict[str, str] = field(default_factory=export_versions)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document written to the record file."""
        return {
            "format": RECORD_FORMAT,
            "model_format": self.format,
            "files": dict(self.files),
            "source": self.source.to_dict(),
            "opset": self.opset,
            "exporter": self.exporter,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "dynamic_axes": {name: {str(k): v for k, v in axes.items()} for name, axes in self.dynamic_axes.items()},
            "parity": dict(self.parity),
            "versions": dict(self.versions),
        }

    def write(self, path: PathLike) -> Path:
        """Write the record to ``path`` atomically."""
        return atomic_write_json(path, self.to_dict())


def read_record(artifact: PathLike, model_format: Optional[str] = None) -> ExportRecord:
    """Read the record of an exported model and check that the model's files are those it was written for.

    Args:
        artifact: the exported model's main file (``model.onnx``, ``model.xml``).
        model_format: the format expected (``onnx``, ``openvino``); ``None`` accepts either.

    Returns:
        The :class:`ExportRecord`.

    Raises:
        FileNotFoundError: the model or its record is missing.
        ExportMismatchError: the record is malformed, is for another format, or a file's SHA-256 differs from the
            recorded one (a file replaced or half-copied after the export); the message names the model and the
            record.
    """
    artifact = Path(artifact)
    path = record_path(artifact)
    # the exported files lie in <bundle>/models/: the command that (re)writes them names that bundle
    formats = model_format or _FORMAT_OF_SUFFIX.get(artifact.suffix, "onnx,openvino")
    export = f"raagr2 export {artifact.parent.parent} --formats {formats}"
    if not artifact.is_file():
        raise FileNotFoundError(f"Exported model {artifact} does not exist: export the bundle first ({export}).")
    if not path.is_file():
        raise FileNotFoundError(
            f"{artifact} has no export record {path}: it was not written by raagr2 export (or the export was "
            f"interrupted); export the bundle again ({export})."
        )
    try:
        document = json.loads(path.read_text())
        if document.get("format") == "raagr2_monai.export/1":
            raise ExportMismatchError(
                f"{artifact} was exported before the networks returned logits (its record {path} is of format "
                f"raagr2_monai.export/1): its outputs are probabilities, which the inferer would pass through the "
                f"sigmoid again; export the bundle again ({export})."
            )
        if document.get("format") != RECORD_FORMAT:
            raise ValueError(f"'format' is {document.get('format')!r}, not {RECORD_FORMAT!r}")
        record = ExportRecord(
            format=str(document["model_format"]),
            files={str(k): str(v) for k, v in document["files"].items()},
            source=ModelSource.from_dict(document["source"]),
            opset=int(document["opset"]),
            exporter=str(document["exporter"]),
            input_name=str(document["input_name"]),
            output_name=str(document["output_name"]),
            dynamic_axes={
                name: {int(k): str(v) for k, v in axes.items()} for name, axes in document["dynamic_axes"].items()
            },
            parity=dict(document["parity"]),
            versions=dict(document["versions"]),
        )
    except ExportMismatchError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ExportMismatchError(f"Export record {path} of {artifact} is not valid: {err}.") from None
    if model_format is not None and record.format != model_format:
        raise ExportMismatchError(
            f"Export record {path} describes a {record.format!r} model, but {artifact} is loaded as {model_format!r}."
        )
    if artifact.name not in record.files:
        raise ExportMismatchError(f"Export record {path} does not list {artifact.name}; it belongs to another model.")
    for name, digest in record.files.items():
        file = artifact.parent / name
        if not file.is_file():
            raise FileNotFoundError(f"{file}, part of the exported model {artifact} (record {path}), is missing.")
        if file_sha256(file) != digest:
            raise ExportMismatchError(
                f"{file} is not the file exported with record {path} (SHA-256 differs): it was replaced or damaged "
                "after the export; export the bundle again."
            )
    return record


def check_against_bundle(
    artifact: PathLike, record: ExportRecord, bundle: BundleModel, in_channels: int, out_channels: int
) -> None:
    """Refuse an exported model that does not fit the bundle it is loaded for.

    Args:
        artifact: the exported model's main file.
        record: its record (:func:`read_record`).
        bundle: the bundle (:func:`~raagr2_monai.deploy.source.read_bundle`).
        in_channels: input channels of the exported graph, as the runtime reads them.
        out_channels: output channels of the exported graph, as the runtime reads them.

    Raises:
        ExportMismatchError: other input or output channels than the bundle's network, another pruning history (or
            one where the bundle has none, or none where it has one), or other weights; the message names the
            exported model and the bundle file it disagrees with.
    """
    source = bundle.source
    pairs = (("input", in_channels, source.in_channels), ("output", out_channels, source.out_channels))
    for what, exported, expected in pairs:
        if exported != expected:
            raise ExportMismatchError(
                f"{artifact} has {exported} {what} channels but the network of {bundle.config} has {expected}: it was "
                f"exported from another model; export {bundle.root} again."
            )
    if record.source.history_sha256 != source.history_sha256:
        if source.history_sha256 is None:
            detail = f"was exported from a DepGraph-pruned network, but {bundle.config} builds an unpruned one"
        elif record.source.history_sha256 is None:
            detail = (
                f"was exported from an unpruned network, but the bundle replays the pruning history {bundle.history}"
            )
        else:
            detail = (
                f"was exported with another pruning history ({record.source.history_file or 'given as steps'}) than "
                f"the bundle's {bundle.history}"
            )
        raise ExportMismatchError(f"{artifact} {detail}; export {bundle.root} again.")
    if record.source.weights_sha256 != source.weights_sha256:
        raise ExportMismatchError(
            f"{artifact} was exported from other weights than {bundle.weights} (state_dict SHA-256 differs); export "
            f"{bundle.root} again."
        )
