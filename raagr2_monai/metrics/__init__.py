"""BraTS metrics as plain functions on arrays: global Dice and HD95 (:mod:`.functional`, :mod:`.surface`), lesion-wise
scores (:mod:`.lesionwise`), every metric of one subject from two label maps (:mod:`.subject`), the named scoring
conventions (:mod:`.conventions`) and their tables (:mod:`.table`); all of them score on the CPU, whatever device their
inputs come on (:func:`~.masks.on_cpu`). The Ignite handlers that compute them during evaluation are in
:mod:`raagr2_monai.handlers`."""

from .conventions import BRATS_HD95_PENALTY, CONVENTIONS, Convention, get_convention
from .functional import METRIC_COLUMNS, brats_metrics, dice_hd95, mean_iou, pooled_dice, scored_regions
from .lesionwise import (
    LESIONWISE_COLUMNS,
    LESIONWISE_PRESETS,
    LESIONWISE_STATS,
    MATCHINGS,
    LesionwiseResult,
    LesionwiseSettings,
    gt_lesions,
    lesionwise_metrics,
    lesionwise_region,
)
from .masks import as_mask, bounding_box, check_spacing, on_cpu
from .subject import SUBJECT_COLUMNS, lesionwise_options, score_subject
from .surface import hd95, mask_border, surface_distances
from .table import subject_mean_dice, summarise, write_metrics_csv
from .uncertainty import (
    DEFAULT_MARGIN,
    auroc,
    binary_entropy,
    entropy_map,
    failure_prediction,
    reliability,
    reliability_counts,
    reliability_from_counts,
    spearman,
    study_uncertainty,
)

__all__ = [
    "DEFAULT_MARGIN",
    "auroc",
    "binary_entropy",
    "entropy_map",
    "failure_prediction",
    "reliability",
    "reliability_counts",
    "reliability_from_counts",
    "spearman",
    "study_uncertainty",
    "BRATS_HD95_PENALTY",
    "CONVENTIONS",
    "Convention",
    "get_convention",
    "METRIC_COLUMNS",
    "brats_metrics",
    "dice_hd95",
    "mean_iou",
    "pooled_dice",
    "scored_regions",
    "LESIONWISE_COLUMNS",
    "LESIONWISE_PRESETS",
    "LESIONWISE_STATS",
    "MATCHINGS",
    "LesionwiseResult",
    "LesionwiseSettings",
    "gt_lesions",
    "lesionwise_metrics",
    "lesionwise_region",
    "on_cpu",
    "as_mask",
    "bounding_box",
    "check_spacing",
    "SUBJECT_COLUMNS",
    "lesionwise_options",
    "score_subject",
    "hd95",
    "mask_border",
    "surface_distances",
    "subject_mean_dice",
    "summarise",
    "write_metrics_csv",
]
