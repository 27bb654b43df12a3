"""The package's own dictionary transforms for BraTS cases; MONAI's do the rest. The chains built from them are in
:mod:`raagr2_monai.data.chains`, and bundle configs name these classes by dotted path
(``raagr2_monai.data.transforms.LoadBraTSd``).

Datalist entries are dictionaries::

    {"case": "BraTS2021_00000",
     "image": [t1ce, t1, t2, flair],   # four 3D NIfTI paths in the network's channel order,
                                       # or one 4D NIfTI path whose 4th axis holds T1ce, T1, T2, FLAIR
                                       # (Medical Segmentation Decathlon / MONAI Label datastore style)
     "label": seg}                     # raw BraTS labels 0 / 1 / 2 / 4
"""

from __future__ import annotations

import os
from typing import Any, Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, MapTransform, Spacingd

from raagr2_monai.constants import DEFAULT_CONVENTION, MONTE_CARLO_SAMPLE

from .labels import labelmap_to_regions, nest_regions, regions_to_labelmap
from .validation import (
    case_files,
    file_channels,
    header_problems,
    image_channel_names,
    raise_first,
    voxel_problems,
)

__all__ = [
    "IMAGE_KEY",
    "LABEL_KEY",
    "PRED_KEY",
    "CASE_KEY",
    "CONVENTION_KEY",
    "LoadBraTSd",
    "ConvertToBraTSRegionsd",
    "RegionsToLabelMapd",
    "bernoulli_channels",
    "NestRegionsd",
    "CaseNameToMetad",
    "SpacingKeepPathsd",
    "brain_columns",
]

IMAGE_KEY = "image"
LABEL_KEY = "label"
PRED_KEY = "pred"
CASE_KEY = "case"
#: The datalist key naming a case's label convention (``raagr2_monai.constants.LABEL_CONVENTIONS``).
CONVENTION_KEY = "label_convention"


def _convention(d: Mapping[Hashable, Any], forced: str | None, key: str) -> str | None:
    """The label convention of one case: the one forced by the transform's setting, else (``None`` or ``"input"``,
    the configs' word for it) the case's own."""
    return forced if forced not in (None, "input") else d.get(key)


class ConvertToBraTSRegionsd(MapTransform):
    """Dictionary transform: raw label map -> float32 TC / WT / ET channels (:func:`labelmap_to_regions`), in the
    case's label convention (``d["label_convention"]``; BraTS 2018-2021 when absent) or the one given.

    Float rather than MONAI's boolean output, because MONAI >= 1.5 ``DiceLoss(squared_pred=True)`` fails on bool.

    Args:
        keys: keys of the (1, *spatial) label maps.
        convention: the labels' convention for every case; ``None`` = each case's own.
        convention_key: where a case names its convention.
        allow_missing_keys: don't raise when a key is missing.

    Example::

        >>> ConvertToBraTSRegionsd("label")({"label": torch.tensor([[[0, 4]]])})["label"][:, 0, 1].tolist()
        [1.0, 1.0, 1.0]
        >>> ConvertToBraTSRegionsd("label")({"label": torch.tensor([[[0, 3]]]), "label_convention": "brats2023"})[
        ...     "label"][:, 0, 1].tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(
        self,
        keys: KeysCollection,
        convention: str | None = None,
        convention_key: str = CONVENTION_KEY,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.convention = convention
        self.convention_key = convention_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        convention = _convention(d, self.convention, self.convention_key)
        for key in self.key_iterator(d):
            d[key] = labelmap_to_regions(d[key], convention)
        return d


def bernoulli_channels(probabilities: Any) -> Any:
    """Region probabilities ``(C, *spatial)`` -> ``(2C, *spatial)``: the probabilities, then their complements, each
    region's two outcomes as channels (a tensor keeps its type and metadata).

    Example::

        >>> bernoulli_channels(torch.tensor([[0.25], [1.0]])).flatten().tolist()
        [0.25, 1.0, 0.75, 0.0]
    """
    if isinstance(probabilities, torch.Tensor):
        return torch.cat([probabilities, 1 - probabilities], dim=0)
    p = np.asarray(probabilities)
    return np.concatenate([p, 1 - p], axis=0)


class RegionsToLabelMapd(MapTransform):
    """Dictionary transform: TC / WT / ET -> uint8 label map (:func:`regions_to_labelmap`), written in the case's
    label convention (``d["label_convention"]``; BraTS 2018-2021's 0 / 1 / 2 / 4 when absent) or the one given.

    A prediction marked as one Monte-Carlo dropout sample (``meta[MONTE_CARLO_SAMPLE]``, see
    :class:`raagr2_monai.deploy.BrainSliceInferer`) stays probabilities, each region followed by its complement:
    ``(TC, WT, ET, 1 - TC, 1 - WT, 1 - ET)`` (:func:`bernoulli_channels`). MONAI Label's epistemic scoring averages
    such samples and sums ``-p ln p`` over the channels, which on these six channels is the sum of the three regions'
    binary entropies (:func:`raagr2_monai.metrics.entropy_map` of the mean probability); on a label map (values up to
    4) it would be meaningless, and on the three probabilities alone it would miss the ``1 - p`` terms (largest at
    ``p = 1/e``, not at 0.5).

    Args:
        keys: keys of the (3, *spatial) region tensors.
        threshold: a channel counts where its value is at or above this.
        convention: the convention to write every case in; ``None`` or ``"input"`` = each case's own.
        convention_key: where a case names its convention.
        allow_missing_keys: don't raise when a key is missing.

    Example::

        >>> RegionsToLabelMapd("pred")({"pred": torch.ones(3, 2, 2)})["pred"].unique()
        tensor([4], dtype=torch.uint8)
        >>> RegionsToLabelMapd("pred")({"pred": torch.ones(3, 2, 2), "label_convention": "msd"})["pred"].unique()
        tensor([3], dtype=torch.uint8)
    """

    def __init__(
        self,
        keys: KeysCollection,
        threshold: float = 0.5,
        convention: str | None = None,
        convention_key: str = CONVENTION_KEY,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.threshold = threshold
        self.convention = convention
        self.convention_key = convention_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        convention = _convention(d, self.convention, self.convention_key)
        for key in self.key_iterator(d):
            if getattr(d[key], "meta", {}).get(MONTE_CARLO_SAMPLE):
                d[key] = bernoulli_channels(d[key])
                continue
            d[key] = regions_to_labelmap(d[key], self.threshold, convention)
        return d


class NestRegionsd(MapTransform):
    """Dictionary transform: TC / WT / ET probabilities -> 0/1 regions nested as the written label map nests them
    (:func:`~raagr2_monai.data.labels.nest_regions`), so that validation scores what inference writes.

    Args:
        keys: keys of the (3, *spatial) region tensors.
        threshold: a channel counts where its value is at or above this.
        allow_missing_keys: don't raise when a key is missing.

    Example::

        >>> NestRegionsd("pred")({"pred": torch.tensor([[0.1], [0.2], [0.9]])})["pred"].flatten().tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, keys: KeysCollection, threshold: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = nest_regions(d[key], self.threshold)
        return d


class LoadBraTSd(MapTransform):
    """Load a BraTS case channel-first, checked by :mod:`raagr2_monai.data.validation` (the first problem raises).

    The headers are checked before any voxel is read (file count, dimensions, shapes, grids), so that a mismatch is
    reported instead of an obscure stacking error; then ``LoadImaged`` (nibabel, four files stacked as channels or
    one 4D file, whose channels are put in the network's order T1ce, T1, T2, FLAIR when ``d["channels"]`` says where
    they are) and ``EnsureChannelFirstd``; then the voxels are checked on the loaded tensors (NaN or infinite values
    naming the file, and the channel of a 4D file; an image zero everywhere; label values outside the case's label
    convention). The voxel check needs the file names that loading replaces by tensors, hence one transform.

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
        entry = {"image": d[self.image_key], "channels": d.get("channels")}
        if self.label_key is not None:
            entry["label"] = d[self.label_key]
        if CASE_KEY in d:
            entry["case"] = d[CASE_KEY]
        raise_first(header_problems(entry))
        paths, label_path = case_files(entry)
        case = str(d.get(CASE_KEY) or os.path.basename(paths[0]))
        d[self.image_key] = paths if len(paths) > 1 else paths[0]
        d = self.loader(d)
        channels = file_channels(entry) if len(paths) == 1 else None
        if channels is not None and channels != sorted(channels):
            d[self.image_key] = d[self.image_key][channels]
        images = list(zip(image_channel_names(paths, channels), d[self.image_key]))
        label = (label_path, d[self.label_key]) if self.label_key is not None else None
        raise_first(voxel_problems(case, images, label, d.get(CONVENTION_KEY, DEFAULT_CONVENTION)))
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


class SpacingKeepPathsd(Spacingd):
    """MONAI's ``Spacingd`` that leaves plain values under ``<key>_*`` names alone.

    monai 1.6.1's ``Spacingd`` takes every entry whose name starts with ``<key>_`` for a metadata dictionary of
    ``<key>`` and updates it, which fails on the file path MONAI Label passes as ``image_path`` ("'str' object has no
    attribute 'update'"). Such plain entries are set aside while resampling and put back unchanged; MONAI Label's
    writer needs ``image_path`` later. Arguments are ``Spacingd``'s.

    Example::

        >>> image = MetaTensor(torch.ones(1, 4, 4, 4))
        >>> out = SpacingKeepPathsd("image", pixdim=(2.0, 2.0, 2.0))({"image": image, "image_path": "c.nii.gz"})
        >>> tuple(out["image"].shape), out["image_path"]
        ((1, 2, 2, 2), 'c.nii.gz')
    """

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        d = dict(data)
        prefixes = tuple(f"{key}_" for key in self.keys)
        plain = {
            name: d.pop(name)
            for name in list(d)
            if isinstance(name, str) and name.startswith(prefixes) and not isinstance(d[name], Mapping)
        }
        out = super().__call__(d, lazy=lazy)
        out.update(plain)
        return out


def brain_columns(image: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Foreground selector for ``CropForegroundd``: the brain's (x, y) footprint repeated over all z.

    The bounding box then spans the whole z axis, so only the in-plane axes are cropped, and only to the brain: every
    voxel where any modality is positive stays.

    Example::

        >>> image = torch.zeros(1, 4, 4, 2); image[0, 1, 2, 0] = 1.0
        >>> brain_columns(image)[0, 1, 2].tolist()
        [True, True]
    """
    if isinstance(image, torch.Tensor):
        return (image > 0).any(dim=-1, keepdim=True).expand_as(image)
    return np.broadcast_to((image > 0).any(axis=-1, keepdims=True), image.shape)
