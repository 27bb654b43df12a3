"""Pruning of RAAGR2-Net: masks and how they are made from scores (:mod:`.mask_sets`), the magnitude and SNIP scores and
their registry (:mod:`.scores`), bit-packed sparse storage of masked weights (:mod:`.storage`), BatchNorm
recalibration after pruning (:mod:`.batchnorm`), DepGraph channel pruning (:mod:`.structured`), one entry point for all
three methods with its report (:mod:`.methods`), persistence of pruned networks (:mod:`.persist`) and the optimizer
after pruning (:mod:`.optimizer`).

The Ignite handlers that prune inside a training run are in :mod:`raagr2_monai.handlers`; pruned bundles are written by
:mod:`raagr2_monai.bundle.pruned`.
"""

from __future__ import annotations

from .batchnorm import recalibrate_bn
from .mask_sets import MaskSet, check_ratio, check_scope, load_masks, masks_from_scores, prunable_weights
from .methods import METHODS, PruneResult, check_method, check_method_round_to, prune, pruning_report
from .optimizer import rebind_optimizer
from .persist import HISTORY_FORMAT, build_pruned_network, load_pruned, read_history, save_pruned
from .scores import (
    SCORES,
    magnitude_masks,
    magnitude_scores,
    padded_batches,
    register_score,
    snip_masks,
    snip_scores,
)
from .storage import from_sparse_state_dict, serialized_nbytes, to_sparse_state_dict
from .structured import (
    GroupSparsity,
    SeparableConvPruner,
    build_dependency_graph,
    check_round_to,
    default_example_inputs,
    depgraph_prune,
    depgraph_setup,
)

__all__ = [
    "METHODS",
    "PruneResult",
    "check_method",
    "check_method_round_to",
    "prune",
    "pruning_report",
    "rebind_optimizer",
    "MaskSet",
    "check_ratio",
    "check_scope",
    "load_masks",
    "prunable_weights",
    "SCORES",
    "register_score",
    "magnitude_scores",
    "magnitude_masks",
    "snip_scores",
    "padded_batches",
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
    "GroupSparsity",
    "check_round_to",
    "HISTORY_FORMAT",
    "save_pruned",
    "read_history",
    "build_pruned_network",
    "load_pruned",
]
