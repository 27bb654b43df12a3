"""BraTS data: find, check and split cases (:mod:`.brats`); the MONAI transform chains (:mod:`.transforms`);
a synthetic BraTS-like set (:mod:`.synthetic`)."""

from . import transforms
from .brats import (
    CHANNELS,
    DEFAULT_SPLIT,
    GRADES,
    LABEL_SUFFIX,
    LABEL_VALUES,
    SECTIONS,
    BraTSDataError,
    Problem,
    build_datalist,
    check_cases,
    check_data_source,
    find_cases,
    inference_cases,
    load_split,
    resolve_dataset_dir,
    split_cases,
    write_datalist,
)
from .synthetic import DEFAULT_CASES, DEFAULT_SHAPE, default_dataset_dir, ensure_synthetic, generate, make_case
