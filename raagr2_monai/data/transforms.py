"""BraTS transform chains (train / validation / inference / write-back) and the label conversions.

Datalist entries (SPEC §2) are dictionaries::

    {"case": "BraTS2021_00000",
     "image": [t1ce, t1, t2, flair],   # four 3D NIfTI paths in the network's channel order,
                                       # or one 4D NIfTI path whose 4th axis holds T1ce, T1, T2, FLAIR
                                       # (Medical Segmentation Decathlon / MONAI Label datastore style)
     "label": seg}                     # raw BraTS labels 0 / 1 / 2 / 4

Every chain starts with :func:`preprocessing_transforms`: checked loading, RAS orientation, 1 mm spacing, z-score
over brain voxels, and an in-plane crop or pad to ``roi_size`` centred on the brain (z kept whole). All its spatial
steps are invertible, so :func:`inference_postprocessing` maps a prediction back onto the input's own grid.

The functions are meant to be named from bundle configs, e.g.
``"$raagr2_monai.data.transforms.train_transforms(roi_size=@roi_size)"``.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, PathLike
from monai.data import MetaTensor, NibabelWriter
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    Invertd,
    LoadImaged,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ResizeWithPadOrCropd,
    SaveImaged,
    Spacingd,
    SqueezeDimd,
)


from raagr2_monai.utils import atomic_write

from .labels import labelmap_to_regions, regions_to_labelmap
from .validation import case_files, header_problems, image_channel_names, raise_first, voxel_problems

__all__ = [
    "ConvertToBraTSRegionsd",
    "RegionsToLabelMapd",
    "LoadBraTSd",
    "CaseNameToMetad",
    "AtomicNibabelWriter",
    "brats_case_name_formatter",
    "preprocessing_transforms",
    "train_transforms",
    "val_transforms",
    "inference_transforms",
    "inference_postprocessing",
]

IMAGE_KEY = "image"
LABEL_KEY = "label"
PRED_KEY = "pred"
CASE_KEY = "case"

# Modality suffixes of BraTS 2018-2021 (t1ce), BraTS 2023 (t1c, t1n, t2w, t2f) and nnU-Net style (_0000).
_MODALITY_SUFFIX = re.compile(r"[_-](t1ce|t1gd|t1c|t1n|t1|t2w|t2f|t2|flair|0000)$", re.IGNORECASE)


class ConvertToBraTSRegionsd(MapTransform):
    """Dictionary transform: raw BraTS label map -> float32 TC / WT / ET channels (:func:`labelmap_to_regions`).

    Float rather than MONAI's boolean output, because MONAI >= 1.5 ``DiceLoss(squared_pred=True)`` fails on bool.

    Example::

        >>> ConvertToBraTSRegionsd("label")({"label": torch.tensor([[[0, 4]]])})["label"].shape
        torch.Size([3, 1, 2])
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = labelmap_to_regions(d[key])
        return d


class RegionsToLabelMapd(MapTransform):
    """Dictionary transform: TC / WT / ET -> uint8 BraTS label map 0 / 1 / 2 / 4 (:func:`regions_to_labelmap`).

    Args:
        keys: keys of the (3, *spatial) region tensors.
        threshold: a channel counts where its value is above this.
        allow_missing_keys: don't raise when a key is missing.

    Example::

        >>> RegionsToLabelMapd("pred")({"pred": torch.ones(3, 2, 2)})["pred"].unique()
        tensor([4], dtype=torch.uint8)
    """

    def __init__(self, keys: KeysCollection, threshold: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = regions_to_labelmap(d[key], self.threshold)
        return d


class LoadBraTSd(MapTransform):
    """Load a BraTS case channel-first, checked by :mod:`raagr2_monai.data.validation` (the first problem raises).

    The headers are checked before any voxel is read (file count, dimensions, shapes, grids), so that a mismatch is
    reported instead of an obscure stacking error; then ``LoadImaged`` (nibabel, four files stacked as channels or
    one 4D file) and ``EnsureChannelFirstd``; then the voxels are checked on the loaded tensors (NaN or infinite
    values naming the file, and the channel of a 4D file; an image zero everywhere; label values outside
    0 / 1 / 2 / 4). The voxel check needs the file names that loading replaces by tensors, hence one transform.

    Args:
        image_key: key of the image entry.
        label_key: key of the label entry, or None to load the image only.

    Raises:
        KeyError: the entry lacks the image or the label.
        FileNotFoundError: a file does not exist.
        raagr2_monai.data.validation.BraTSDataError: any other problem, naming the case, the file and the problem.

    Example::

        d = LoadBraTSd()({"case": "c", "image": "c.nii.gz", "label": "c_seg.nii.gz"})
        d["image"].shape, d["label"].shape  # (4, 240, 240, 155), (1, 240, 240, 155)
    """

    def __init__(self, image_key: str = IMAGE_KEY, label_key: str | None = LABEL_KEY) -> None:
        keys = [image_key] if label_key is None else [image_key, label_key]
        super().__init__(keys)
        self.image_key = image_key
        self.label_key = label_key
        self.loader = Compose(
            [LoadImaged(keys, reader="NibabelReader", image_only=True), EnsureChannelFirstd(keys)]
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            if key not in d:
                case = f" of case {d[CASE_KEY]!r}" if CASE_KEY in d else ""
                raise KeyError(f"Datalist entry{case} has no {key!r}: {sorted(map(str, d))}.")
        entry = {"image": d[self.image_key]}
        if self.label_key is not None:
            entry["label"] = d[self.label_key]
        if CASE_KEY in d:
            entry["case"] = d[CASE_KEY]
        raise_first(header_problems(entry))
        paths, label_path = case_files(entry)
        case = str(d.get(CASE_KEY) or os.path.basename(paths[0]))
        d[self.image_key] = paths if len(paths) > 1 else paths[0]
        d = self.loader(d)
        images = list(zip(image_channel_names(paths), d[self.image_key]))
        label = (label_path, d[self.label_key]) if self.label_key is not None else None
        raise_first(voxel_problems(case, images, label))
        return d


class CaseNameToMetad(MapTransform):
    """Copy the datalist's case id into a tensor's metadata, where :func:`brats_case_name_formatter` reads it.

    Args:
        keys: keys of the MetaTensors to tag.
        case_key: key of the case id in the data dictionary; nothing is copied when it is absent.
        allow_missing_keys: don't raise when a key is missing.

    Example::

        >>> CaseNameToMetad("pred")({"case": "c1", "pred": MetaTensor(torch.zeros(1))})["pred"].meta["case"]
        'c1'
    """

    def __init__(self, keys: KeysCollection, case_key: str = CASE_KEY, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.case_key = case_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.case_key not in d:
            return d
        for key in self.key_iterator(d):
            if not isinstance(d[key], MetaTensor):
                raise TypeError(f"{key!r} must be a MetaTensor to carry the case id, got {type(d[key]).__name__}.")
            d[key].meta[self.case_key] = str(d[self.case_key])
        return d


def brats_case_name_formatter(metadict: Mapping[str, Any] | None, saver: Any) -> dict[str, Any]:
    """``SaveImaged`` name formatter: the subject is the case id, so the file is ``<case>_<postfix><ext>``.

    The case id is ``metadict["case"]`` (see :class:`CaseNameToMetad`), else the source file's name without its
    extension and modality suffix (``BraTS2021_00000_t1ce.nii.gz`` -> ``BraTS2021_00000``).

    Args:
        metadict: the saved tensor's metadata.
        saver: the calling ``SaveImage`` (unused; part of MONAI's formatter signature).

    Returns:
        Keyword arguments for ``FolderLayout.filename``.

    Raises:
        ValueError: when the metadata names neither a case nor a source file.

    Example::

        >>> brats_case_name_formatter({"filename_or_obj": "/d/c7/c7_t1ce.nii.gz"}, None)
        {'subject': 'c7.nii.gz', 'idx': None}
    """
    metadict = metadict or {}
    case = metadict.get(CASE_KEY)
    if not case:
        source = metadict.get("filename_or_obj")
        if not source:
            raise ValueError("Cannot name the output file: its metadata has neither a 'case' nor a source file name.")
        name = os.path.basename(os.fspath(source))
        name = re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE)
        case = _MODALITY_SUFFIX.sub("", name)
    # FolderLayout strips one extension; giving it ours keeps dots inside case ids intact.
    return {"subject": f"{case}.nii.gz", "idx": None}


class AtomicNibabelWriter(NibabelWriter):
    """``NibabelWriter`` that writes to a hidden temporary file beside the target, then renames it into place.

    A reader never sees a half-written segmentation, and an interrupted run leaves no truncated ``*_seg.nii.gz``.

    Example::

        SaveImaged("pred", writer=AtomicNibabelWriter)
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        target = os.fspath(filename)
        # nibabel picks the format and compression from the extension, so the temporary name keeps it
        ext = ".nii.gz" if target.endswith(".nii.gz") else os.path.splitext(target)[1]
        atomic_write(target, lambda tmp: super(AtomicNibabelWriter, self).write(tmp, verbose=False, **obj_kwargs), ext)
        if verbose:
            logging.getLogger(self.__class__.__name__).info(f"writing: {target}")


def _in_plane_size(roi_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(int(s) for s in roi_size)
    if len(size) != 2 or any(s <= 0 or s % 16 for s in size):
        raise ValueError(
            "roi_size must be two positive in-plane sizes divisible by 16 (the networks pool four times), "
            f"got {roi_size}."
        )
    return size  # type: ignore[return-value]


def _brain_columns(image: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Foreground selector for ``CropForegroundd``: the brain's (x, y) footprint repeated over all z.

    The bounding box then spans the whole z axis, so only the in-plane axes get cropped.
    """
    if isinstance(image, torch.Tensor):
        return (image > 0).any(dim=-1, keepdim=True).expand_as(image)
    return np.broadcast_to((image > 0).any(axis=-1, keepdims=True), image.shape)


def preprocessing_transforms(roi_size: Sequence[int] = (192, 192), with_label: bool = True) -> Compose:
    """The deterministic chain every other chain starts with.

    ``LoadBraTSd`` (checked loading) -> ``Orientationd`` RAS -> ``Spacingd`` 1 mm (bilinear image, nearest label; a
    no-op on BraTS) -> ``CropForegroundd`` to the brain's in-plane box, z whole -> ``NormalizeIntensityd`` z-score
    per channel over nonzero (brain) voxels -> ``ResizeWithPadOrCropd`` to ``roi_size`` in-plane (centred crop or
    symmetric zero pad) -> label to float32 TC / WT / ET. The spatial steps are invertible (``Invertd``).

    Args:
        roi_size: in-plane (H, W), each divisible by 16.
        with_label: load and convert the label too.

    Returns:
        Image (4, H, W, Z) float32 and, with the label, label (3, H, W, Z) float32.

    Raises:
        ValueError: for a bad ``roi_size``.

    Example::

        preprocessing_transforms((32, 32))({"image": [t1ce, t1, t2, flair], "label": seg})["image"].shape
        # torch.Size([4, 32, 32, 155])
    """
    height, width = _in_plane_size(roi_size)
    keys = [IMAGE_KEY, LABEL_KEY] if with_label else [IMAGE_KEY]
    steps: list[Any] = [
        LoadBraTSd(IMAGE_KEY, LABEL_KEY if with_label else None),
        Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys, pixdim=(1.0, 1.0, 1.0), mode=("bilinear", "nearest")[: len(keys)]),
        CropForegroundd(
            keys, source_key=IMAGE_KEY, select_fn=_brain_columns, start_coord_key=None, end_coord_key=None
        ),
        # Between the two crops: the statistics cover the whole brain, whatever part roi_size keeps.
        NormalizeIntensityd(IMAGE_KEY, nonzero=True, channel_wise=True),
        ResizeWithPadOrCropd(keys, spatial_size=(height, width, -1)),
        EnsureTyped(IMAGE_KEY, dtype=torch.float32),
    ]
    if with_label:
        steps.append(ConvertToBraTSRegionsd(LABEL_KEY))
    return Compose(steps)


def train_transforms(
    roi_size: Sequence[int] = (192, 192), tumour_fraction: float = 0.5, num_samples: int = 4
) -> Compose:
    """Training chain: preprocessing, then ``num_samples`` random axial slices per volume, flips and intensity jitter.

    Slices are drawn by ``RandCropByPosNegLabeld`` with a (H, W, 1) window: a share ``tumour_fraction`` of them is
    centred on a tumour voxel (so it contains tumour whenever the case has any), the rest on a brain voxel outside
    the tumour. Then random flips along both in-plane axes, ``RandScaleIntensityd`` and ``RandShiftIntensityd``
    (0.1 each).

    Args:
        roi_size: in-plane (H, W), each divisible by 16.
        tumour_fraction: share of slices centred on tumour, in [0, 1].
        num_samples: slices drawn per volume.

    Returns:
        A chain giving a list of ``num_samples`` dictionaries with image (4, H, W) and label (3, H, W) float32
        plain tensors.

    Raises:
        ValueError: for a bad ``roi_size``, ``tumour_fraction`` or ``num_samples``.

    Example::

        samples = train_transforms((32, 32), num_samples=2)(entry)
        samples[0]["image"].shape, samples[0]["label"].shape
        # (torch.Size([4, 32, 32]), torch.Size([3, 32, 32]))
    """
    if not 0.0 <= tumour_fraction <= 1.0:
        raise ValueError(f"tumour_fraction must lie in [0, 1], got {tumour_fraction}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    height, width = _in_plane_size(roi_size)
    keys = [IMAGE_KEY, LABEL_KEY]
    return Compose(
        [
            *preprocessing_transforms((height, width), with_label=True).transforms,
            RandCropByPosNegLabeld(
                keys,
                label_key=LABEL_KEY,
                spatial_size=(height, width, 1),
                pos=tumour_fraction,
                neg=1.0 - tumour_fraction,
                num_samples=num_samples,
                image_key=IMAGE_KEY,
                image_threshold=0.0,
            ),
            SqueezeDimd(keys, dim=3),
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandScaleIntensityd(IMAGE_KEY, factors=0.1, prob=1.0),
            RandShiftIntensityd(IMAGE_KEY, offsets=0.1, prob=1.0),
            EnsureTyped(keys, dtype=torch.float32, track_meta=False),
        ]
    )


def val_transforms(roi_size: Sequence[int] = (192, 192)) -> Compose:
    """Validation chain: whole volumes for a ``SliceInferer`` over axial slices.

    Args:
        roi_size: in-plane (H, W), each divisible by 16.

    Returns:
        Image (4, H, W, Z) and label (3, H, W, Z), float32 MetaTensors.

    Example::

        val_transforms((32, 32))(entry)["label"].shape
        # torch.Size([3, 32, 32, 155])
    """
    return preprocessing_transforms(roi_size, with_label=True)


def inference_transforms(roi_size: Sequence[int] = (192, 192)) -> Compose:
    """Inference chain: the image alone, whole volume, its metadata and applied operations kept for ``Invertd``.

    Args:
        roi_size: in-plane (H, W), each divisible by 16.

    Returns:
        Image (4, H, W, Z) float32 MetaTensor.

    Example::

        pre = inference_transforms((32, 32))
        post = inference_postprocessing(pre, "out")
    """
    return preprocessing_transforms(roi_size, with_label=False)


def inference_postprocessing(preprocessing: Compose, output_dir: PathLike, threshold: float = 0.5) -> Compose:
    """Write-back chain: a (3, H, W, Z) TC / WT / ET prediction -> ``<output_dir>/<case>_seg.nii.gz``.

    ``Invertd`` maps ``pred`` through the inverse of ``preprocessing`` onto the input's own grid (shape and affine);
    the regions are thresholded and turned into the BraTS label map 0 / 1 / 2 / 4 (uint8), and ``SaveImaged`` writes
    one file per case, no sub-folders, atomically (:class:`AtomicNibabelWriter`). ``<case>`` is the datalist's
    ``case`` if present, else the first image file's name without its modality suffix.

    Args:
        preprocessing: the chain that produced the network input (e.g. :func:`inference_transforms`).
        output_dir: folder for the segmentations (created when missing).
        threshold: a region counts where its probability is above this.

    Returns:
        A chain over decollated dictionaries holding ``image`` (as preprocessed) and ``pred``.

    Example::

        pre = inference_transforms((32, 32))
        d = pre(entry)
        d["pred"] = torch.sigmoid(network_output)
        inference_postprocessing(pre, "out")(d)  # writes out/<case>_seg.nii.gz
    """
    return Compose(
        [
            # A network's output may arrive as a plain tensor; Invertd only takes the image's history onto a MetaTensor.
            EnsureTyped(PRED_KEY, track_meta=True),
            Invertd(PRED_KEY, transform=preprocessing, orig_keys=IMAGE_KEY, nearest_interp=False, to_tensor=True),
            RegionsToLabelMapd(PRED_KEY, threshold=threshold),
            CaseNameToMetad(PRED_KEY),
            SaveImaged(
                PRED_KEY,
                output_dir=os.fspath(output_dir),
                output_postfix="seg",
                output_ext=".nii.gz",
                output_dtype=np.uint8,
                resample=False,
                separate_folder=False,
                print_log=False,
                writer=AtomicNibabelWriter,
                output_name_formatter=brats_case_name_formatter,
            ),
        ]
    )
