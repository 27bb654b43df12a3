"""BraTS data, one concern per module: where cases are (:mod:`.layouts`), one check of their files
(:mod:`.validation`), patient-level splits and datalists (:mod:`.split`), where a workflow's cases come from
(:mod:`.sources`), label maps and regions (:mod:`.labels`), the MONAI transform chains (:mod:`.transforms`), the
compact on-disk study cache (:mod:`.cache`) and a synthetic BraTS-like set (:mod:`.synthetic`)."""

from . import transforms
from .cache import (
    CACHE_ENV_VAR,
    CACHE_FORMAT,
    CacheSummary,
    CompactStudyd,
    ExpandStudyd,
    StudyCacheDataset,
    cache_entry_mb,
    cache_split,
    default_cache_dir,
    fill_cache,
    study_key,
)
from .chains import check_roi_size, parse_roi_size
from .labels import labelmap_to_regions, labelmap_to_subregions, regions_to_labelmap, regions_to_subregions
from .layouts import find_cases
from .sources import check_data_source, inference_cases, load_split, resolve_dataset_dir
from .split import DEFAULT_SPLIT, build_datalist, parse_split, split_cases, write_datalist
from .synthetic import DEFAULT_CASES, DEFAULT_SHAPE, default_dataset_dir, ensure_synthetic, generate, make_case
from .validation import BraTSDataError, Problem, case_problems, check_case, check_cases

__all__ = [
    "transforms",
    "check_roi_size",
    "parse_roi_size",
    "CACHE_ENV_VAR",
    "CACHE_FORMAT",
    "CacheSummary",
    "CompactStudyd",
    "ExpandStudyd",
    "StudyCacheDataset",
    "cache_entry_mb",
    "cache_split",
    "default_cache_dir",
    "fill_cache",
    "study_key",
    "labelmap_to_regions",
    "labelmap_to_subregions",
    "regions_to_labelmap",
    "regions_to_subregions",
    "find_cases",
    "check_data_source",
    "inference_cases",
    "load_split",
    "resolve_dataset_dir",
    "DEFAULT_SPLIT",
    "build_datalist",
    "parse_split",
    "split_cases",
    "write_datalist",
    "DEFAULT_CASES",
    "DEFAULT_SHAPE",
    "default_dataset_dir",
    "ensure_synthetic",
    "generate",
    "make_case",
    "BraTSDataError",
    "Problem",
    "case_problems",
    "check_case",
    "check_cases",
]
