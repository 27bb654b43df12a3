"""Deployment of RAAGR2-Net: export to ONNX and OpenVINO IR with a parity check (:mod:`.export`), the record that
ties an export to its bundle (:mod:`.record`, :mod:`.source`, :mod:`.fingerprint`), inference backends usable as the
network of MONAI's inferers (:mod:`.backends`), the slice inferer that skips windows without brain
(:mod:`.inferer`), a bundle's inference timed by stage (:mod:`.segment`, ``raagr2
segment``) and the ``raagr2 export`` command (:mod:`.export_cli`)."""

from __future__ import annotations

from .backends import (
    BACKENDS,
    EXPORTED_FILES,
    InferenceBackend,
    OnnxRuntimeBackend,
    OpenVINOBackend,
    TorchBackend,
    check_backend,
    cpu_bf16,
    cpu_name,
    exported_precision,
    inference_network,
    load_backend,
)
from .export_cli import export_command
from .export import (
    DEFAULT_OPSET,
    FORMATS,
    FP32_ERROR_FACTOR,
    PARITY_SHAPES,
    PARITY_TOLERANCE,
    ExportParityError,
    check_formats,
    export_bundle,
    export_network,
)
from .fingerprint import file_sha256, history_sha256, state_dict_sha256
from .inferer import BrainSliceInferer, SkipEmptyWindows, check_sampled_network
from .record import RECORD_FORMAT, ExportMismatchError, ExportRecord, check_against_bundle, read_record, record_path
from .segment import Segmenter, SegmentSettings, StudyTiming, median_timing, segment_command
from .source import BundleModel, ModelSource, read_bundle, source_of

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
    "export_command",
    "FORMATS",
    "DEFAULT_OPSET",
    "PARITY_SHAPES",
    "PARITY_TOLERANCE",
    "FP32_ERROR_FACTOR",
    "ExportParityError",
    "check_formats",
    "export_network",
    "export_bundle",
    "BrainSliceInferer",
    "SkipEmptyWindows",
    "check_sampled_network",
    "file_sha256",
    "state_dict_sha256",
    "history_sha256",
    "RECORD_FORMAT",
    "ExportMismatchError",
    "ExportRecord",
    "record_path",
    "read_record",
    "check_against_bundle",
    "ModelSource",
    "BundleModel",
    "source_of",
    "read_bundle",
    "Segmenter",
    "SegmentSettings",
    "StudyTiming",
    "median_timing",
    "segment_command",
]
