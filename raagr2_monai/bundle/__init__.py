"""MONAI bundles of the RAAGR2-Net variants: their configs, generated once for all four (:mod:`.configs`,
:mod:`.generate`, :mod:`.docs`), the functions the configs call while they run (:mod:`.runtime`), and pruned bundles
(:mod:`.pruned`)."""

from .pruned import check_prune_settings, prepare_output_dir, pruned_network_def, run_pruning, write_pruned_bundle
from .runtime import (
    checked,
    config_files_from_argv,
    find_bundle_root,
    handlers_for_rank,
    load_weights,
    log_mlflow_artifacts,
    record_run,
)

__all__ = [
    "checked",
    "config_files_from_argv",
    "find_bundle_root",
    "handlers_for_rank",
    "load_weights",
    "log_mlflow_artifacts",
    "record_run",
    "check_prune_settings",
    "prepare_output_dir",
    "pruned_network_def",
    "run_pruning",
    "write_pruned_bundle",
]
