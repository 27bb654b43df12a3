"""What a bundle's configs call while they run: the workflows' checks (:mod:`.checks`), run records
(:mod:`.records`) and process ranks (:mod:`.ranks`), pruning runs and the pruned bundles they write (:mod:`.pruned`,
with its README from :mod:`.readme`), and a bundle folder loaded as a network (:mod:`.load`).

Configs name these by dotted path (``raagr2_monai.bundle.checked``), so that a bundle carries no Python of its own;
``load_weights`` is :func:`raagr2_monai.networks.load_weights`, named here for the configs.
Nothing here imports the generator that writes the configs (:mod:`raagr2_monai.generator`), which sits above.
"""

from raagr2_monai.networks import load_weights

from .checks import (
    check_loader_weights,
    check_overrides,
    check_validation_settings,
    checked,
    config_files_from_argv,
    find_bundle_root,
)
from .load import (
    build_bundle_network,
    bundle_name,
    bundle_workflow,
    load_bundle_network,
    load_teacher,
    run_bundle_workflow,
)
from .pruned import (
    check_prune_settings,
    prepare_output_dir,
    pruned_bundle_dir,
    pruned_network_def,
    pruning_run_settings,
    run_pruning,
    write_pruned_bundle,
)
from .ranks import check_rank_share, end_distributed, handlers_for_rank, is_rank_zero, local_rank, start_distributed
from .records import complete_mlflow_run, record_run, run_name, run_settings, tracking_uri

__all__ = [
    "checked",
    "check_loader_weights",
    "complete_mlflow_run",
    "check_overrides",
    "check_rank_share",
    "check_validation_settings",
    "config_files_from_argv",
    "start_distributed",
    "end_distributed",
    "find_bundle_root",
    "handlers_for_rank",
    "local_rank",
    "is_rank_zero",
    "load_weights",
    "record_run",
    "run_settings",
    "run_name",
    "tracking_uri",
    "check_prune_settings",
    "prepare_output_dir",
    "pruned_bundle_dir",
    "pruning_run_settings",
    "pruned_network_def",
    "run_pruning",
    "write_pruned_bundle",
    "bundle_name",
    "bundle_workflow",
    "run_bundle_workflow",
    "build_bundle_network",
    "load_bundle_network",
    "load_teacher",
]
