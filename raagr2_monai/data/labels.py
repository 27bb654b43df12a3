"""BraTS label maps and the network's regions, in both directions, in every label convention.

Raw labels differ by data (:data:`~raagr2_monai.constants.LABEL_CONVENTIONS`): BraTS 2018-2021 uses 1 NCR/NET,
2 edema, 4 enhancing tumour; BraTS 2023+ 1, 2, 3; the Medical Segmentation Decathlon 1 edema, 2 non-enhancing,
3 enhancing. The network predicts the nested regions TC = {NCR, ET}, WT = {NCR, ED, ET}, ET (MONAI's
``ConvertToMultiChannelBasedOnBratsClasses`` order); reports also use the disjoint subregions NCR = TC - ET,
ED = WT - TC and ET. A label map written back to disk nests the regions: ET, else TC -> NCR, else WT -> ED, else 0,
each as its convention writes it.

The functions take and return torch tensors; a MetaTensor keeps its metadata.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

import numpy as np
import torch
from monai.utils import convert_to_dst_type, convert_to_tensor

from raagr2_monai.constants import DEFAULT_CONVENTION, LABEL_CONVENTIONS, REGIONS, LabelConvention

__all__ = [
    "get_label_convention",
    "conventions_fitting",
    "binarise",
    "labelmap_to_regions",
    "regions_to_labelmap",
    "nest_regions",
    "regions_to_subregions",
    "labelmap_to_subregions",
]


ConventionLike = Union[str, LabelConvention]


def get_label_convention(convention: Optional[ConventionLike] = None) -> LabelConvention:
    """A label convention by name (``brats2021``, ``brats2023``, ``msd``); ``None`` = the default (``brats2021``).

    Raises:
        ValueError: an unknown name, listing the valid ones.

    Example::

        >>> get_label_convention("brats2023").et
        3
    """
    if isinstance(convention, LabelConvention):
        return convention
    name = DEFAULT_CONVENTION if convention is None else convention
    try:
        return LABEL_CONVENTIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown label convention {convention!r}; valid: {', '.join(LABEL_CONVENTIONS)}."
        ) from None


def conventions_fitting(values: Iterable[float]) -> list:
    """The names of the conventions whose label values include all of ``values``.

    Example::

        >>> conventions_fitting([0, 2, 4]), conventions_fitting([0, 3]), conventions_fitting([5])
        (['brats2021'], ['brats2023', 'msd'], [])
    """
    found = set(np.asarray(list(values), dtype=float).tolist())
    return [name for name, c in LABEL_CONVENTIONS.items() if found <= set(map(float, c.values))]


def binarise(values: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The one threshold rule of the package: a region is present where its probability is at or above
    ``threshold`` (MONAI's ``AsDiscrete`` rule). Booleans are returned as they are.

    Example::

        >>> binarise(torch.tensor([0.2, 0.5, 0.9])).tolist()
        [False, True, True]
    """
    return values if values.dtype == torch.bool else values >= threshold


def _channel_first_label(labelmap: torch.Tensor) -> torch.Tensor:
    if labelmap.ndim < 2 or labelmap.shape[0] != 1:
        raise ValueError(f"Expected a channel-first label map of shape (1, *spatial), got {tuple(labelmap.shape)}.")
    return convert_to_tensor(labelmap, track_meta=False)[0]


def _three_channels(regions: torch.Tensor, dim: int) -> torch.Tensor:
    if regions.ndim < 2 or regions.shape[dim] != 3:
        raise ValueError(
            f"Expected channels {', '.join(REGIONS)} along dimension {dim}, got shape {tuple(regions.shape)}."
        )
    return convert_to_tensor(regions, track_meta=False)


def labelmap_to_regions(labelmap: torch.Tensor, convention: Optional[ConventionLike] = None) -> torch.Tensor:
    """Raw labels -> overlapping regions TC = {NCR, ET}, WT = {NCR, ED, ET}, ET (BraTS 2018-2021: {1, 4}, {1, 2, 4},
    {4}).

    Args:
        labelmap: (1, *spatial) raw labels.
        convention: the labels' convention (:func:`get_label_convention`).

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
    c = get_label_convention(convention)
    lab = _channel_first_label(labelmap)
    ncr, ed, et = lab == c.ncr, lab == c.ed, lab == c.et
    regions = torch.stack([ncr | et, ncr | ed | et, et])
    return convert_to_dst_type(regions, dst=labelmap, dtype=torch.float32)[0]


def regions_to_labelmap(
    regions: torch.Tensor, threshold: float = 0.5, convention: Optional[ConventionLike] = None
) -> torch.Tensor:
    """TC / WT / ET probabilities or masks -> label map: ET, else TC -> NCR, else WT -> ED, else 0 (BraTS 2018-2021:
    4, 1, 2).

    Args:
        regions: (3, *spatial) in the order TC, WT, ET.
        threshold: a channel counts where its value is at or above this (:func:`binarise`).
        convention: the convention to write the labels in (:func:`get_label_convention`).

    Returns:
        (1, *spatial) uint8 label map; a MetaTensor input keeps its metadata.

    Raises:
        ValueError: when the input does not have three leading channels.

    Example::

        >>> regions_to_labelmap(torch.tensor([[0.0, 0.9, 0.1, 0.8], [0.0, 1.0, 0.7, 0.9], [0.0, 0.2, 0.0, 0.6]]))
        tensor([[0, 1, 2, 4]], dtype=torch.uint8)
    """
    c = get_label_convention(convention)
    tc, wt, et = binarise(_three_channels(regions, 0), threshold)
    labelmap = torch.zeros_like(tc, dtype=torch.uint8)
    labelmap[wt] = c.ed
    labelmap[tc] = c.ncr
    labelmap[et] = c.et
    return convert_to_dst_type(labelmap[None], dst=regions, dtype=torch.uint8)[0]


def nest_regions(regions: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binarised TC / WT / ET as the written label map has them: ET inside TC inside WT.

    A multi-label network may predict ET outside its TC, or TC outside its WT; the label map written to disk
    (:func:`regions_to_labelmap`) nests them (ET counts as TC and WT, TC as WT). Scoring these regions scores what a
    user receives.

    Args:
        regions: (3, *spatial) probabilities or masks, TC, WT, ET.
        threshold: see :func:`binarise`.

    Returns:
        (3, *spatial) float32 0/1, TC = TC or ET, WT = WT or TC or ET, ET; a MetaTensor keeps its metadata.

    Example::

        >>> nest_regions(torch.tensor([[0.0, 0.9], [0.0, 0.1], [0.8, 0.0]])).tolist()  # ET alone, TC outside WT
        [[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]
    """
    return labelmap_to_regions(regions_to_labelmap(regions, threshold))


def regions_to_subregions(regions: torch.Tensor, threshold: float = 0.5, dim: int = 0) -> torch.Tensor:
    """TC / WT / ET -> the disjoint subregions NCR = TC - ET, ED = WT - TC, ET.

    A voxel predicted ET but not TC (inconsistent, but possible for a multi-label network) counts as ET only.

    Args:
        regions: TC, WT, ET along dimension ``dim`` (``(3, *spatial)``, or ``(B, 3, *spatial)`` with ``dim=1``):
            probabilities, 0/1 masks or booleans.
        threshold: a channel counts where its value is at or above this (:func:`binarise`).
        dim: the channel dimension.

    Returns:
        NCR, ED, ET along ``dim``, with the input's shape and dtype (0/1 values).

    Raises:
        ValueError: when the input does not have three channels along ``dim``.

    Example::

        >>> regions_to_subregions(torch.tensor([[0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]]))
        tensor([[0, 1, 0, 0],
                [0, 0, 1, 0],
                [0, 0, 0, 1]])
    """
    tc, wt, et = binarise(_three_channels(regions, dim), threshold).unbind(dim)
    subregions = torch.stack([tc & ~et, wt & ~tc, et], dim=dim)
    return convert_to_dst_type(subregions, dst=regions, dtype=regions.dtype)[0]


def labelmap_to_subregions(labelmap: torch.Tensor, convention: Optional[ConventionLike] = None) -> torch.Tensor:
    """Raw labels -> disjoint NCR, ED, ET masks (BraTS 2018-2021: 1, 2, 4).

    Args:
        labelmap: (1, *spatial) raw labels.
        convention: the labels' convention (:func:`get_label_convention`).

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
    c = get_label_convention(convention)
    lab = _channel_first_label(labelmap)
    subregions = torch.stack([lab == c.ncr, lab == c.ed, lab == c.et])
    return convert_to_dst_type(subregions, dst=labelmap, dtype=torch.float32)[0]

