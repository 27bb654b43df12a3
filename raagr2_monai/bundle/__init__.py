"""MONAI bundles of the RAAGR2-Net variants: their configs (generated once for all four) and run-time helpers."""

from .runtime import (
    CheckpointMismatchError,
    atomic_save,
    atomic_write_text,
    checked,
    config_files_from_argv,
    find_bundle_root,
    handlers_for_rank,
    load_weights,
    log_mlflow_artifacts,
    record_run,
    versions,
)

__all__ = [
    "CheckpointMismatchError",
    "atomic_save",
    "atomic_write_text",
    "checked",
    "config_files_from_argv",
    "find_bundle_root",
    "handlers_for_rank",
    "load_weights",
    "log_mlflow_artifacts",
    "record_run",
    "versions",
]
