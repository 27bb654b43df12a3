"""The transform chains of training, validation, evaluation and inference, written once as config specs.

Each chain is a list of ``{"_target_": ...}`` transforms in MONAI's config syntax (the model zoo's style), whose
settings are references to config ids (``@roi_size``, ``@threshold``, ...). The bundle generator puts these specs
into the JSON configs as they are, so a single argument can be overridden from the command line
(``--preprocessing#transforms#2#pixdim "[1.0,1.0,1.0]"``) or by MONAI Label; the Python builders below
(:func:`train_transforms`, :func:`inference_transforms`, ...) instantiate the very same specs with values for those
ids. One definition, two uses.

The data path of every prediction, whoever asks:

- preprocessing (:func:`preprocessing_spec`): checked loading -> RAS -> 1 mm -> crop in-plane to the brain's
  bounding box (z whole; nothing of the brain is cut) -> z-score over brain voxels -> pad in-plane to at least
  ``roi_size`` and to a multiple of 16. ``roi_size`` is the training crop, not a field of view: validation,
  evaluation and inference see whole slices and slide ``roi_size`` windows over them (``SliceInferer``).
- compact (``compact=True``, training and validation): the same preprocessing ends in ``CompactStudyd`` (float16
  image, one uint8 label map) instead of float32 and regions; ``StudyCacheDataset`` caches the study on disk up to
  there (:mod:`raagr2_monai.data.cache`), and ``ExpandStudyd`` gives float32 and TC / WT / ET back after it: the whole
  volume for validation, only the cropped slices for training.
- write-back (:func:`writeback_spec`): the prediction is moved to the CPU in float32, inverted onto the input's own
  grid (shape, affine, orientation), thresholded (:func:`~raagr2_monai.data.labels.binarise`), nested into the label
  map 0/1/2/4 and written; evaluation scores that same label map.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

from monai.bundle import ConfigParser
from monai.transforms import Compose

from raagr2_monai.utils import parse_sequence

from .transforms import CASE_KEY, IMAGE_KEY, LABEL_KEY, PRED_KEY

__all__ = [
    "check_roi_size",
    "negated_switch",
    "preprocessing_spec",
    "train_spec",
    "validation_spec",
    "validation_postprocessing_spec",
    "writeback_spec",
    "slice_inferer_spec",
    "build",
    "preprocessing_transforms",
    "train_transforms",
    "val_transforms",
    "inference_transforms",
    "inference_postprocessing",
]

_TRANSFORMS = "raagr2_monai.data.transforms"
_CACHE = "raagr2_monai.data.cache"

#: ``compact`` of the specs: a bool, or a reference to a config id (``"@compact"``) that switches it at run time.
Compact = Union[bool, str]
_WRITING = "raagr2_monai.data.writing"


def check_roi_size(roi_size: Sequence[int]) -> List[int]:
    """``roi_size`` as a list if it is two positive in-plane sizes divisible by 16 (the networks pool four times).

    Raises:
        ValueError: naming the setting and what it must be.

    Example::

        >>> check_roi_size((96, 96))
        [96, 96]
    """
    try:
        size = [int(s) for s in roi_size]
    except (TypeError, ValueError):
        size = []
    if len(size) != 2 or any(s <= 0 or s % 16 for s in size):
        raise ValueError(
            "roi_size must be two positive in-plane sizes divisible by 16 (the networks pool four times), "
            f"got {roi_size}."
        )
    return size


def parse_roi_size(value: Any) -> List[int]:
    """``roi_size`` as a command line gives it (``96``, ``"96,96"``, ``(96, 96)``): one size for both in-plane axes,
    or two, checked by :func:`check_roi_size`.

    Raises:
        ValueError: naming the setting and what it must be.

    Example::

        >>> parse_roi_size("96"), parse_roi_size("128,96")
        ([96, 96], [128, 96])
    """
    sizes = parse_sequence(value, "roi_size", int)
    return check_roi_size(sizes * 2 if len(sizes) == 1 else sizes)


def _compose(transforms: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"_target_": "Compose", "transforms": transforms}


def negated_switch(compact: str) -> Dict[str, str]:
    """The config id a chain built with the switch ``compact`` (a reference, ``"@compact"``) also needs: its negation,
    ``not_<name>``, which disables the compact path's transforms where the switch is off.

    Example::

        >>> negated_switch("@compact")
        {'not_compact': "$not raagr2_monai.utils.as_flag(@compact, 'compact')"}
    """
    name = compact[1:]
    # as_flag: the command line passes `--compact false` as the text 'false'
    return {f"not_{name}": f"$not raagr2_monai.utils.as_flag({compact}, {name!r})"}


def _switched(transform: Dict[str, Any], compact: Compact, on: bool) -> List[Dict[str, Any]]:
    """``transform`` where it belongs to the ``compact`` path (``on``) or to the float32 one (not ``on``): kept or left
    out for a bool; for a reference, kept with ``_disabled_`` bound to it (MONAI reads "true" and "false" there as
    booleans) or to its negation (:func:`negated_switch`), so that the one config id chooses."""
    if isinstance(compact, bool):
        return [transform] if compact == on else []
    if not compact.startswith("@"):
        raise ValueError(f"compact must be a bool or a config reference such as '@compact', got {compact!r}.")
    return [{**transform, "_disabled_": f"@not_{compact[1:]}" if on else compact}]


def preprocessing_spec(with_label: bool = True, compact: Compact = False) -> Dict[str, Any]:
    """The deterministic chain every other chain starts with (references ``@roi_size``).

    ``LoadBraTSd`` (checked loading) -> ``Orientationd`` RAS -> ``SpacingKeepPathsd`` 1 mm (bilinear image, nearest
    label)
    -> ``CropForegroundd`` to the brain's in-plane box, z whole -> ``NormalizeIntensityd`` z-score per channel over
    non-zero (brain) voxels -> ``SpatialPadd`` in-plane to at least ``roi_size`` -> ``DivisiblePadd`` in-plane to a
    multiple of 16 -> image float32 -> label to float32 TC / WT / ET. Every spatial step is invertible.

    With ``compact`` the chain ends in ``CompactStudyd`` instead of the last two steps: float16 image and the raw
    label map as uint8, what ``StudyCacheDataset`` stores; ``ExpandStudyd`` gives float32 and regions back.

    Args:
        with_label: load and convert the label too.
        compact: end in ``CompactStudyd``; or a config reference (``"@compact"``) to a switch that chooses at run
            time (both endings are in the spec, each with ``_disabled_`` bound to the switch).

    Returns:
        A ``Compose`` spec giving image (4, H, W, Z) and, with the label, label (3, H, W, Z); compact: image float16
        and label (1, H, W, Z) uint8.

    Example::

        >>> [t["_target_"].rsplit(".", 1)[-1] for t in preprocessing_spec(compact=True)["transforms"][-2:]]
        ['DivisiblePadd', 'CompactStudyd']
    """
    keys = [IMAGE_KEY, LABEL_KEY] if with_label else [IMAGE_KEY]
    transforms: List[Dict[str, Any]] = [
        {"_target_": f"{_TRANSFORMS}.LoadBraTSd", "image_key": IMAGE_KEY, "label_key": LABEL_KEY if with_label else None},
        {"_target_": "Orientationd", "keys": keys, "axcodes": "RAS", "labels": [["L", "R"], ["P", "A"], ["I", "S"]]},
        {
            "_target_": f"{_TRANSFORMS}.SpacingKeepPathsd",
            "keys": keys,
            "pixdim": [1.0, 1.0, 1.0],
            "mode": ["bilinear", "nearest"][: len(keys)],
        },
        {
            "_target_": "CropForegroundd",
            "keys": keys,
            "source_key": IMAGE_KEY,
            "select_fn": {"_target_": f"{_TRANSFORMS}.brain_columns", "_mode_": "callable"},
            "start_coord_key": None,
            "end_coord_key": None,
        },
        # after the crop, which keeps every brain voxel: the statistics are the whole brain's
        {"_target_": "NormalizeIntensityd", "keys": IMAGE_KEY, "nonzero": True, "channel_wise": True},
        {"_target_": "SpatialPadd", "keys": keys, "spatial_size": "$list(@roi_size) + [-1]"},
        {"_target_": "DivisiblePadd", "keys": keys, "k": [16, 16, 1]},
    ]
    label_key = LABEL_KEY if with_label else None
    transforms += _switched(
        {"_target_": f"{_CACHE}.CompactStudyd", "image_key": IMAGE_KEY, "label_key": label_key}, compact, on=True
    )
    transforms += _switched(
        {"_target_": "EnsureTyped", "keys": IMAGE_KEY, "dtype": "float32"}, compact, on=False
    )
    if with_label:
        transforms += _switched(
            {"_target_": f"{_TRANSFORMS}.ConvertToBraTSRegionsd", "keys": LABEL_KEY}, compact, on=False
        )
    return _compose(transforms)


def _expand(compact: Compact) -> List[Dict[str, Any]]:
    """``ExpandStudyd`` where the chain is compact: float32 image and TC / WT / ET regions again."""
    return _switched(
        {"_target_": f"{_CACHE}.ExpandStudyd", "image_key": IMAGE_KEY, "label_key": LABEL_KEY}, compact, on=True
    )


def train_spec(compact: Compact = False) -> Dict[str, Any]:
    """Training chain: preprocessing, then ``@num_samples`` random axial ``@roi_size`` slices per volume, flips and
    intensity jitter.

    Slices are drawn by ``RandCropByPosNegLabeld`` with a (H, W, 1) window: a share ``@tumour_fraction`` of them is
    centred on a tumour voxel (so it contains tumour whenever the case has any), the rest on a brain voxel outside
    the tumour. Then random flips along both in-plane axes, ``RandScaleIntensityd`` and ``RandShiftIntensityd``
    (0.1 each).

    With ``compact`` (see :func:`preprocessing_spec`) the slices are cut from the compact study and only they are
    expanded (``ExpandStudyd``), before the intensity jitter. The sampling is the same: ``RandCropByPosNegLabeld``
    takes a voxel as tumour where any label channel but the first of several is non-zero, which is WT for the TC /
    WT / ET regions and the non-zero labels, WT again, for the one-channel label map.

    Args:
        compact: as for :func:`preprocessing_spec`.

    Returns:
        A ``Compose`` spec giving a list of ``@num_samples`` dictionaries with image (4, H, W) and label (3, H, W)
        float32 plain tensors.
    """
    keys = [IMAGE_KEY, LABEL_KEY]
    spec = preprocessing_spec(with_label=True, compact=compact)
    spec["transforms"] += [
        {
            "_target_": "RandCropByPosNegLabeld",
            "keys": keys,
            "label_key": LABEL_KEY,
            "spatial_size": "$list(@roi_size) + [1]",
            "pos": "@tumour_fraction",
            "neg": "$1.0 - @tumour_fraction",
            "num_samples": "@num_samples",
            "image_key": IMAGE_KEY,
            "image_threshold": 0.0,
        },
        {"_target_": "SqueezeDimd", "keys": keys, "dim": 3},
        *_expand(compact),
        {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 0},
        {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 1},
        {"_target_": "RandScaleIntensityd", "keys": IMAGE_KEY, "factors": 0.1, "prob": 1.0},
        {"_target_": "RandShiftIntensityd", "keys": IMAGE_KEY, "offsets": 0.1, "prob": 1.0},
        {"_target_": "EnsureTyped", "keys": keys, "dtype": "float32", "track_meta": False},
    ]
    return spec


def validation_spec(compact: Compact = False) -> Dict[str, Any]:
    """Validation chain: whole volumes with their labels, image (4, H, W, Z) and label (3, H, W, Z) float32.

    With ``compact`` it is the compact preprocessing, which ``StudyCacheDataset`` caches, then ``ExpandStudyd``.

    Args:
        compact: as for :func:`preprocessing_spec`.

    Example::

        >>> [t["_target_"].rsplit(".", 1)[-1] for t in validation_spec(compact=True)["transforms"][-2:]]
        ['CompactStudyd', 'ExpandStudyd']
    """
    spec = preprocessing_spec(with_label=True, compact=compact)
    spec["transforms"] += _expand(compact)
    return spec


def validation_postprocessing_spec() -> Dict[str, Any]:
    """Validation on the working grid: the prediction thresholded at ``@threshold`` and nested as the written label
    map nests it (``NestRegionsd``), then prediction and label split into ``pred_tc``, ``label_tc``, ... for the
    per-region Dice."""
    return _compose(
        [
            {"_target_": f"{_TRANSFORMS}.NestRegionsd", "keys": PRED_KEY, "threshold": "@threshold"},
            {"_target_": "SplitDimd", "keys": [PRED_KEY, LABEL_KEY], "dim": 0, "output_postfixes": ["tc", "wt", "et"]},
        ]
    )


def writeback_spec(
    preprocessing: str = "@preprocessing",
    keep_probabilities: Union[bool, str] = False,
    output_dir: str = "@output_dir",
    output_labels: bool = True,
) -> Dict[str, Any]:
    """Write-back chain: a (3, H, W, Z) TC / WT / ET prediction -> ``<output_dir>/<case>_@output_postfix.nii.gz``.

    ``EnsureTyped`` takes ``pred`` to the CPU in float32 whatever device and precision the network ran at, so the
    inverse resampling is computed the same way by every path (the bundle's evaluator, ``raagr2 segment``, MONAI
    Label) and the files and metrics that follow never meet a GPU tensor.
    ``Invertd`` maps ``pred`` through the inverse of the preprocessing onto the input's own grid (shape, affine,
    orientation); ``RegionsToLabelMapd`` thresholds it at ``@threshold`` and nests it into the BraTS label map
    0 / 1 / 2 / 4 (uint8); ``SaveImaged`` writes one file per case, atomically, and logs where it went. ``<case>`` is
    the datalist's ``case`` if present, else the first image file's name without its modality suffix.

    Args:
        preprocessing: reference to the chain that produced the network input.
        keep_probabilities: keep the inverted probabilities as ``pred_prob`` (evaluation's thesis-style pooled Dice
            is computed on soft predictions; an uncertainty map is computed from them on the input's grid); or a
            reference to a boolean config id (``"@without_uncertainty"``) that leaves them out where it is true (the
            copy's ``_disabled_``), so that nothing is copied where nothing reads them.
        output_dir: reference to the folder the label maps go to.
        output_labels: write in the convention ``@output_labels`` names (``"input"``: each case's own); when
            ``False``, always in each case's own (evaluation scores the map against the case's seg file).

    Returns:
        A ``Compose`` spec over decollated dictionaries holding ``image`` (as preprocessed) and ``pred``.
    """
    transforms: List[Dict[str, Any]] = [
        # a network's output may arrive as a plain tensor; Invertd only takes the image's history onto a MetaTensor
        {"_target_": "EnsureTyped", "keys": PRED_KEY, "track_meta": True, "device": "cpu", "dtype": "float32"},
        {
            "_target_": "Invertd",
            "keys": PRED_KEY,
            "transform": preprocessing,
            "orig_keys": IMAGE_KEY,
            "nearest_interp": False,
            "to_tensor": True,
        },
    ]
    if isinstance(keep_probabilities, str):
        if not keep_probabilities.startswith("@"):
            raise ValueError(f"keep_probabilities must be a bool or a config reference such as '@without_uncertainty', "
                             f"got {keep_probabilities!r}.")
        transforms.append({"_target_": "CopyItemsd", "_disabled_": keep_probabilities, "keys": PRED_KEY,
                           "names": "pred_prob"})
    elif keep_probabilities:
        transforms.append({"_target_": "CopyItemsd", "keys": PRED_KEY, "names": "pred_prob"})
    transforms += [
        {
            "_target_": f"{_TRANSFORMS}.RegionsToLabelMapd",
            "keys": PRED_KEY,
            "threshold": "@threshold",
            "convention": "@output_labels" if output_labels else None,
        },
        {"_target_": f"{_TRANSFORMS}.CaseNameToMetad", "keys": PRED_KEY, "case_key": CASE_KEY},
        {
            "_target_": "SaveImaged",
            "keys": PRED_KEY,
            "output_dir": output_dir,
            "output_postfix": "@output_postfix",
            "output_ext": ".nii.gz",
            "output_dtype": "uint8",
            "resample": False,
            "separate_folder": False,
            "print_log": True,
            "savepath_in_metadict": True,
            "writer": f"{_WRITING}.AtomicNibabelWriter",
            "output_name_formatter": {"_target_": f"{_WRITING}.brats_case_name_formatter", "_mode_": "callable"},
        },
    ]
    return _compose(transforms)


def slice_inferer_spec() -> Dict[str, Any]:
    """A ``SliceInferer`` that slides ``@roi_size`` windows over every axial slice (``@overlap``, ``@blend_mode``,
    ``@sw_batch_size`` windows per network call)."""
    return {
        "_target_": "SliceInferer",
        "roi_size": "@roi_size",
        "spatial_dim": 2,
        "sw_batch_size": "@sw_batch_size",
        "overlap": "@overlap",
        "mode": "@blend_mode",
    }


def build(spec: Dict[str, Any], **values: Any) -> Any:
    """Instantiate a spec with values for the ids it references (``roi_size=[96, 96]``, ``threshold=0.5``, ...).

    Example::

        >>> build(slice_inferer_spec(), roi_size=[96, 96], sw_batch_size=4, overlap=0.25, blend_mode="gaussian").roi_size
        [96, 96]
    """
    # raagr2_monai for the expressions of a spec whose `compact` is a reference (`_switched`)
    parser = ConfigParser({"_spec": spec, **values}, globals={"raagr2_monai": "raagr2_monai"})
    return parser.get_parsed_content("_spec")


def preprocessing_transforms(
    roi_size: Sequence[int] = (192, 192), with_label: bool = True, compact: bool = False
) -> Compose:
    """:func:`preprocessing_spec` instantiated.

    Raises:
        ValueError: for a bad ``roi_size``.
    """
    return build(preprocessing_spec(with_label, compact), roi_size=check_roi_size(roi_size))


def train_transforms(
    roi_size: Sequence[int] = (192, 192), tumour_fraction: float = 0.5, num_samples: int = 4, compact: bool = False
) -> Compose:
    """:func:`train_spec` instantiated; ``compact`` for a ``StudyCacheDataset``.

    Example::

        chain = train_transforms((96, 96), compact=True)
        dataset = StudyCacheDataset(entries, chain, "/scratch/cache")  # caches up to CompactStudyd

    Raises:
        ValueError: for a bad ``roi_size``, ``tumour_fraction`` or ``num_samples``.
    """
    if not 0.0 <= tumour_fraction <= 1.0:
        raise ValueError(f"tumour_fraction must lie in [0, 1], got {tumour_fraction}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    return build(
        train_spec(compact),
        roi_size=check_roi_size(roi_size),
        tumour_fraction=tumour_fraction,
        num_samples=num_samples,
    )


def val_transforms(roi_size: Sequence[int] = (192, 192), compact: bool = False) -> Compose:
    """:func:`validation_spec` instantiated: whole volumes with their labels (image (4, H, W, Z), label
    (3, H, W, Z)); ``compact`` for a ``StudyCacheDataset``.

    Raises:
        ValueError: for a bad ``roi_size``.
    """
    return build(validation_spec(compact), roi_size=check_roi_size(roi_size))


def inference_transforms(roi_size: Sequence[int] = (192, 192)) -> Compose:
    """Inference chain: the image alone, whole volume, its applied operations kept for ``Invertd``."""
    return preprocessing_transforms(roi_size, with_label=False)


def inference_postprocessing(
    preprocessing: Compose,
    output_dir: str,
    threshold: float = 0.5,
    output_postfix: str = "pred",
    output_labels: str = "input",
) -> Compose:
    """:func:`writeback_spec` instantiated: writes ``<output_dir>/<case>_<output_postfix>.nii.gz`` with labels in
    ``output_labels`` (a convention name, or ``"input"`` for each case's own)."""
    return build(
        writeback_spec(), preprocessing=preprocessing, output_dir=str(output_dir), threshold=threshold,
        output_postfix=output_postfix, output_labels=output_labels,
    )
