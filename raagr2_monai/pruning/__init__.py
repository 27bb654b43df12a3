"""Pruning of RAAGR2-Net (SPEC §4): magnitude and SNIP masks (:mod:`.unstructured`), DepGraph channel pruning
(:mod:`.structured`), one entry point for all three (:mod:`.methods`), persistence of pruned networks
(:mod:`.persist`), Ignite handlers (:mod:`.handlers`) and pruned bundles (:mod:`.bundle`).
"""

from __future__ import annotations

from .bundle import check_prune_settings, prepare_output_dir, pruned_network_def, run_pruning, write_pruned_bundle
from .handlers import MaskHandler, PruneHandler, load_masks, pruning_report, rebind_optimizer
from .methods import METHODS, PruneResult, prune
from .persist import HISTORY_FORMAT, build_pruned_network, load_pruned, read_history, save_pruned
from .structured import (
    SeparableConvPruner,
    build_dependency_graph,
    default_example_inputs,
    depgraph_prune,
    depgraph_setup,
)
from .unstructured import (
    MaskSet,
    check_ratio,
    from_sparse_state_dict,
    magnitude_masks,
    masks_from_scores,
    prunable_weights,
    recalibrate_bn,
    serialized_nbytes,
    snip_masks,
    snip_scores,
    to_sparse_state_dict,
)

__all__ = [
    "METHODS",
    "PruneResult",
    "prune",
    "MaskSet",
    "check_ratio",
    "prunable_weights",
    "magnitude_masks",
    "snip_scores",
    "snip_masks",
    "masks_from_scores",
    "recalibrate_bn",
    "to_sparse_state_dict",
    "from_sparse_state_dict",
    "serialized_nbytes",
    "SeparableConvPruner",
    "depgraph_setup",
    "default_example_inputs",
    "build_dependency_graph",
    "depgraph_prune",
    "HISTORY_FORMAT",
    "save_pruned",
    "read_history",
    "build_pruned_network",
    "load_pruned",
    "PruneHandler",
    "MaskHandler",
    "load_masks",
    "pruning_report",
    "rebind_optimizer",
    "check_prune_settings",
    "prepare_output_dir",
    "run_pruning",
    "pruned_network_def",
    "write_pruned_bundle",
]
