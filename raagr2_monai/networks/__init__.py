"""RAAGR2-Net and its weight-shared variants (:mod:`.raagr2net`, built from :mod:`.blocks`), a registry by name
(:mod:`.registry`), checkpoint loading (:mod:`.weights`) and size/cost counters (:mod:`.stats`)."""

from __future__ import annotations

from .blocks import (
    AttentionGate,
    DepthwiseKernel,
    ReASPP3,
    RecurrentBlock,
    RRCNNBlock,
    SeparableConv,
    SharedDepthwiseBlock,
    SharedReASPP3,
    UpConv,
)
from .raagr2net import (
    HEAD_PRIOR,
    DepthwiseSharedRAAGR2Net,
    EncoderDecoderSharedRAAGR2Net,
    PairedSharedRAAGR2Net,
    RAAGR2Net,
)
from .weights import CheckpointMismatchError, check_weights, load_weights, missing_weights
from .registry import NETWORKS, get_network, variant_of
from .sampling import (
    TTA_FLIPS,
    UNCERTAINTY_MODES,
    SampledProbabilities,
    batchnorm_in_eval,
    check_mc_dropout,
    check_uncertainty,
    dropout_layers,
    without_uncertainty,
)
from .stats import count_flops, count_parameters, parameters_per_part, state_dict_mb
from .variants import VARIANTS, Variant

__all__ = [
    "UNCERTAINTY_MODES",
    "TTA_FLIPS",
    "SampledProbabilities",
    "batchnorm_in_eval",
    "check_mc_dropout",
    "check_uncertainty",
    "dropout_layers",
    "without_uncertainty",
    "Variant",
    "VARIANTS",
    "AttentionGate",
    "DepthwiseKernel",
    "ReASPP3",
    "RecurrentBlock",
    "RRCNNBlock",
    "SeparableConv",
    "SharedDepthwiseBlock",
    "SharedReASPP3",
    "UpConv",
    "RAAGR2Net",
    "DepthwiseSharedRAAGR2Net",
    "PairedSharedRAAGR2Net",
    "EncoderDecoderSharedRAAGR2Net",
    "HEAD_PRIOR",
    "NETWORKS",
    "CheckpointMismatchError",
    "check_weights",
    "load_weights",
    "missing_weights",
    "get_network",
    "variant_of",
    "count_flops",
    "count_parameters",
    "parameters_per_part",
    "state_dict_mb",
]
