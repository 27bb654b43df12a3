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
import uuid
from typing import Any, Hashable, Mapping, Sequence

import nibabel as nib
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
from monai.utils import convert_to_dst_type, convert_to_tensor

# CHANNELS: the network's input order, also the order assumed inside a single 4-channel file (SPEC §2).
from .brats import CHANNELS, LABEL_VALUES, same_grid

__all__ = [
    "REGIONS",
    "SUBREGIONS",
    "labelmap_to_regions",
    "regions_to_labelmap",
    "regions_to_subregions",
    "labelmap_to_subregions",
    "ConvertToBraTSRegionsd",
    "RegionsToLabelMapd",
    "check_brats_files",
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

#: Network output channels.
REGIONS = ("TC", "WT", "ET")
#: Disjoint subregions used for reporting.
SUBREGIONS = ("NCR", "ED", "ET")

IMAGE_KEY = "image"
LABEL_KEY = "label"
PRED_KEY = "pred"
CASE_KEY = "case"

# Modality suffixes of BraTS 2018-2021 (t1ce), BraTS 2023 (t1c, t1n, t2w, t2f) and nnU-Net style (_0000).
_MODALITY_SUFFIX = re.compile(r"[_-](t1ce|t1gd|t1c|t1n|t1|t2w|t2f|t2|flair|0000)$", re.IGNORECASE)


def _channel_first_label(labelmap: torch.Tensor) -> torch.Tensor:
    if labelmap.ndim < 2 or labelmap.shape[0] != 1:
        raise ValueError(f"Expected a channel-first label map of shape (1, *spatial), got {tuple(labelmap.shape)}.")
    return convert_to_tensor(labelmap, track_meta=False)[0]


def _three_channels(regions: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    if regions.ndim < 2 or regions.shape[0] != 3:
        raise ValueError(f"Expected channels {', '.join(names)} in a tensor (3, *spatial), got {tuple(regions.shape)}.")
    return convert_to_tensor(regions, track_meta=False)


def labelmap_to_regions(labelmap: torch.Tensor) -> torch.Tensor:
    """Raw BraTS labels -> overlapping regions TC = {1, 4}, WT = {1, 2, 4}, ET = {4}.

    Args:
        labelmap: (1, *spatial) raw labels 0 / 1 / 2 / 4.

    Returns:
        (3, *spatial) float32 in the order TC, WT, ET; a MetaTensor input keeps its metadata.

    Raises:
        ValueError: when the input has no single leading channel.

    Example::

        >>> labelmap_to_regions(torch.tensor([[0, 1, 2, 4]]))
        tensor([[0., 1., 0., 1.],
                [0., 1., 1., 1.],
                [0., 0., 0., 1.]])
    """
    lab = _channel_first_label(labelmap)
    regions = torch.stack([(lab == 1) | (lab == 4), (lab == 1) | (lab == 2) | (lab == 4), lab == 4])
    return convert_to_dst_type(regions, dst=labelmap, dtype=torch.float32)[0]


def regions_to_labelmap(regions: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """TC / WT / ET probabilities or masks -> BraTS label map: ET -> 4, else TC -> 1, else WT -> 2, else 0.

    Args:
        regions: (3, *spatial) in the order TC, WT, ET.
        threshold: a channel counts where its value is above this.

    Returns:
        (1, *spatial) uint8 label map; a MetaTensor input keeps its metadata.

    Raises:
        ValueError: when the input does not have three leading channels.

    Example::

        >>> regions_to_labelmap(torch.tensor([[0.0, 0.9, 0.1, 0.8], [0.0, 1.0, 0.7, 0.9], [0.0, 0.2, 0.0, 0.6]]))
        tensor([[0, 1, 2, 4]], dtype=torch.uint8)
    """
    tc, wt, et = _three_channels(regions, REGIONS) > threshold
    labelmap = torch.zeros_like(tc, dtype=torch.uint8)
    labelmap[wt] = 2
    labelmap[tc] = 1
    labelmap[et] = 4
    return convert_to_dst_type(labelmap[None], dst=regions, dtype=torch.uint8)[0]


def regions_to_subregions(regions: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """TC / WT / ET -> disjoint NCR = TC - ET, ED = WT - TC, ET, for per-subregion metrics.

    Args:
        regions: (3, *spatial) in the order TC, WT, ET.
        threshold: a channel counts where its value is above this.

    Returns:
        (3, *spatial) float32 in the order NCR, ED, ET.

    Raises:
        ValueError: when the input does not have three leading channels.

    Example::

        >>> regions_to_subregions(torch.tensor([[0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]]))
        tensor([[0., 1., 0., 0.],
                [0., 0., 1., 0.],
                [0., 0., 0., 1.]])
    """
    tc, wt, et = _three_channels(regions, REGIONS) > threshold
    subregions = torch.stack([tc & ~et, wt & ~tc, et])
    return convert_to_dst_type(subregions, dst=regions, dtype=torch.float32)[0]


def labelmap_to_subregions(labelmap: torch.Tensor) -> torch.Tensor:
    """Raw BraTS labels -> disjoint NCR (1), ED (2), ET (4) masks.

    Args:
        labelmap: (1, *spatial) raw labels 0 / 1 / 2 / 4.

    Returns:
        (3, *spatial) float32 in the order NCR, ED, ET.

    Raises:
        ValueError: when the input has no single leading channel.

    Example::

        >>> labelmap_to_subregions(torch.tensor([[0, 1, 2, 4]]))[:, 1:]
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
    """
    lab = _channel_first_label(labelmap)
    return convert_to_dst_type(torch.stack([lab == 1, lab == 2, lab == 4]), dst=labelmap, dtype=torch.float32)[0]


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


def _open_nifti(path: PathLike, what: str) -> nib.spatialimages.SpatialImage:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return nib.load(path)
    except Exception as err:  # nibabel raises many types for unreadable files; all mean the same to the user
        raise ValueError(f"{what} file {path} is not a readable NIfTI image: {err}") from err


def check_brats_files(image: PathLike | Sequence[PathLike], label: PathLike | None = None) -> str | list[str]:
    """Check a case's files from their headers alone, before any voxel is read.

    Catches what ``LoadImaged`` would otherwise turn into obscure stacking errors or silently wrong data: a wrong
    number of modalities, modalities of different shapes or grids, a label on another grid.

    Args:
        image: four 3D NIfTI paths (T1ce, T1, T2, FLAIR), or one 4D NIfTI path with those four channels last.
        label: optional label NIfTI path (3D, or 4D with a single last channel).

    Returns:
        The image entry normalised for ``LoadImaged``: a list of four paths, or one path.

    Raises:
        FileNotFoundError: a file is missing (named).
        ValueError: wrong channel count, mismatched shapes or affines, unreadable file (each naming the files).

    Example::

        >>> check_brats_files(["c_t1ce.nii.gz", "c_t1.nii.gz", "c_t2.nii.gz", "c_flair.nii.gz"], "c_seg.nii.gz")
        ['c_t1ce.nii.gz', 'c_t1.nii.gz', 'c_t2.nii.gz', 'c_flair.nii.gz']
    """
    paths = [os.fspath(image)] if isinstance(image, (str, os.PathLike)) else [os.fspath(p) for p in image]
    if len(paths) == 1:
        single = _open_nifti(paths[0], "Image")
        if len(single.shape) != 4 or single.shape[3] != len(CHANNELS):
            raise ValueError(
                f"Image file {paths[0]} has shape {single.shape}; a single image file must be 4D with "
                f"{len(CHANNELS)} channels last ({', '.join(CHANNELS)}), or give four 3D files instead."
            )
        spatial_shape, affine, normalised = tuple(single.shape[:3]), single.affine, paths[0]
    elif len(paths) == len(CHANNELS):
        headers = [_open_nifti(p, f"Image ({m})") for p, m in zip(paths, CHANNELS)]
        for path, header in zip(paths, headers):
            if len(header.shape) != 3:
                raise ValueError(f"Image file {path} has shape {header.shape}; each modality file must be 3D.")
        shapes = [tuple(h.shape) for h in headers]
        if len(set(shapes)) != 1:
            listing = ", ".join(f"{p} {s}" for p, s in zip(paths, shapes))
            raise ValueError(f"Modality files differ in shape: {listing}.")
        for path, header in zip(paths[1:], headers[1:]):
            if not same_grid(header.affine, headers[0].affine):
                raise ValueError(
                    f"Modality files lie on different grids: the affine of {path} differs from that of {paths[0]}."
                )
        spatial_shape, affine, normalised = shapes[0], headers[0].affine, paths
    else:
        raise ValueError(
            f"Expected {len(CHANNELS)} image files ({', '.join(CHANNELS)}) or one 4-channel file, "
            f"got {len(paths)}: {paths}."
        )
    if label is not None:
        label_path = os.fspath(label)
        seg = _open_nifti(label_path, "Label")
        if not (len(seg.shape) == 3 or (len(seg.shape) == 4 and seg.shape[3] == 1)):
            raise ValueError(f"Label file {label_path} has shape {seg.shape}; expected a 3D label map.")
        if tuple(seg.shape[:3]) != spatial_shape:
            raise ValueError(
                f"Label file {label_path} has spatial shape {tuple(seg.shape[:3])}, "
                f"the image {spatial_shape} ({paths[0]})."
            )
        if not same_grid(seg.affine, affine):
            raise ValueError(f"Label file {label_path} lies on a different grid (affine) than the image {paths[0]}.")
    return normalised


class LoadBraTSd(MapTransform):
    """Load a BraTS case channel-first, with every input check in one place.

    Before reading voxels it runs :func:`check_brats_files` (counts, shapes, grids); then ``LoadImaged`` (nibabel,
    four files stacked as channels or one 4D file) and ``EnsureChannelFirstd``; then it checks the voxels: no NaN or
    infinite value (naming the file, and the channel of a 4D file), a nonzero image, label values within 0 / 1 / 2 / 4.
    The checks and the loading share one transform because a shape mismatch must be caught before ``LoadImaged``
    stacks the files, and the voxel checks need the file names that loading replaces by tensors.

    Args:
        image_key: key of the image entry.
        label_key: key of the label entry, or None to load the image only.

    Raises:
        KeyError: the entry lacks the image or the label.
        FileNotFoundError / ValueError: bad input, see :func:`check_brats_files` and above.

    Example::

        >>> d = LoadBraTSd()({"case": "c", "image": "c.nii.gz", "label": "c_seg.nii.gz"})
        >>> d["image"].shape, d["label"].shape
        (torch.Size([4, 240, 240, 155]), torch.Size([1, 240, 240, 155]))
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
        case = f" of case {d[CASE_KEY]!r}" if CASE_KEY in d else ""
        for key in self.keys:
            if key not in d:
                raise KeyError(f"Datalist entry{case} has no {key!r}: {sorted(map(str, d))}.")
        label_path = None if self.label_key is None else os.fspath(d[self.label_key])
        d[self.image_key] = check_brats_files(d[self.image_key], label_path)
        files = d[self.image_key]
        d = self.loader(d)
        image = d[self.image_key]
        for channel, modality in enumerate(CHANNELS):
            bad = int((~torch.isfinite(image[channel])).sum())
            if bad:
                source = files[channel] if isinstance(files, list) else f"{files} (channel {channel}, {modality})"
                raise ValueError(f"Image file {source} has {bad} NaN or infinite voxels.")
        if not bool((image != 0).any()):
            source = files[0] if isinstance(files, list) else files
            raise ValueError(f"Image{case} ({source}) is zero everywhere: no brain to centre the crop on.")
        if label_path is not None:
            label = d[self.label_key]
            if not bool(torch.isfinite(label).all()):
                raise ValueError(f"Label file {label_path} has NaN or infinite voxels.")
            values = {int(v) if float(v).is_integer() else v for v in torch.unique(label).tolist()}
            unexpected = sorted(values - set(LABEL_VALUES))
            if unexpected:
                raise ValueError(
                    f"Label file {label_path} has values {unexpected} outside the BraTS labels {list(LABEL_VALUES)} "
                    "(BraTS 2023 marks ET with 3: remap it to 4 first)."
                )
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

        >>> SaveImaged("pred", writer=AtomicNibabelWriter)  # doctest: +SKIP
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        target = os.fspath(filename)
        directory, name = os.path.split(target)
        stem, ext = (name[: -len(".nii.gz")], ".nii.gz") if name.endswith(".nii.gz") else os.path.splitext(name)
        # nibabel picks the format and compression from the extension, so the temporary name keeps it.
        temporary = os.path.join(directory, f".{stem}.{uuid.uuid4().hex}{ext}")
        try:
            super().write(temporary, verbose=False, **obj_kwargs)
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
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

        >>> preprocessing_transforms((32, 32))({"image": [t1ce, t1, t2, flair], "label": seg})["image"].shape
        torch.Size([4, 32, 32, 155])
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

        >>> samples = train_transforms((32, 32), num_samples=2)(entry)
        >>> samples[0]["image"].shape, samples[0]["label"].shape
        (torch.Size([4, 32, 32]), torch.Size([3, 32, 32]))
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

        >>> val_transforms((32, 32))(entry)["label"].shape
        torch.Size([3, 32, 32, 155])
    """
    return preprocessing_transforms(roi_size, with_label=True)


def inference_transforms(roi_size: Sequence[int] = (192, 192)) -> Compose:
    """Inference chain: the image alone, whole volume, its metadata and applied operations kept for ``Invertd``.

    Args:
        roi_size: in-plane (H, W), each divisible by 16.

    Returns:
        Image (4, H, W, Z) float32 MetaTensor.

    Example::

        >>> pre = inference_transforms((32, 32))
        >>> post = inference_postprocessing(pre, "out")
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

        >>> pre = inference_transforms((32, 32))
        >>> d = pre(entry)
        >>> d["pred"] = torch.sigmoid(network_output)
        >>> inference_postprocessing(pre, "out")(d)  # writes out/<case>_seg.nii.gz
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
