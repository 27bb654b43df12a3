"""MONAI bundles of the RAAGR2-Net variants: their configs, generated once for all four (:mod:`.configs`,
:mod:`.generate`, :mod:`.docs`), the functions the configs call while they run (:mod:`.runtime`), pruned bundles
(:mod:`.pruned`), and a bundle folder loaded as a network (:mod:`.load`)."""

from .load import build_bundle_network, bundle_name, load_bundle_network
from .pruned import check_prune_settings, prepare_output_dir, pruned_network_def, run_pruning, write_pruned_bundle
from .runtime import (
    check_overrides,
    check_rank_share,
    check_validation_settings,
    checked,
    complete_mlflow_run,
    config_files_from_argv,
    end_distributed,
    find_bundle_root,
    handlers_for_rank,
    load_weights,
    record_run,
    start_distributed,
)

__all__ = [
    "checked",
    "complete_mlflow_run",
    "check_overrides",
    "check_rank_share",
    "check_validation_settings",
    "config_files_from_argv",
    "start_distributed",
    "end_distributed",
    "find_bundle_root",
    "handlers_for_rank",
    "load_weights",
    "record_run",
    "check_prune_settings",
    "prepare_output_dir",
    "pruned_network_def",
    "run_pruning",
    "write_pruned_bundle",
    "bundle_name",
    "build_bundle_network",
    "load_bundle_network",
]
