"""BraTS label maps and the network's regions, in both directions (SPEC §2).

Raw labels (BraTS 2018-2021): 0 background, 1 NCR/NET, 2 edema, 4 enhancing tumour. The network predicts the nested
regions TC = {1, 4}, WT = {1, 2, 4}, ET = {4} (MONAI's ``ConvertToMultiChannelBasedOnBratsClasses`` order); reports
also use the disjoint subregions NCR = TC - ET, ED = WT - TC and ET. A label map written back to disk nests the
regions: ET -> 4, else TC -> 1, else WT -> 2, else 0.

The functions take and return torch tensors; a MetaTensor keeps its metadata.
"""

from __future__ import annotations

import torch
from monai.utils import convert_to_dst_type, convert_to_tensor

from raagr2_monai.constants import REGIONS

__all__ = [
    "binarise",
    "labelmap_to_regions",
    "regions_to_labelmap",
    "nest_regions",
    "regions_to_subregions",
    "labelmap_to_subregions",
]


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
        threshold: a channel counts where its value is at or above this (:func:`binarise`).

    Returns:
        (1, *spatial) uint8 label map; a MetaTensor input keeps its metadata.

    Raises:
        ValueError: when the input does not have three leading channels.

    Example::

        >>> regions_to_labelmap(torch.tensor([[0.0, 0.9, 0.1, 0.8], [0.0, 1.0, 0.7, 0.9], [0.0, 0.2, 0.0, 0.6]]))
        tensor([[0, 1, 2, 4]], dtype=torch.uint8)
    """
    tc, wt, et = binarise(_three_channels(regions, 0), threshold)
    labelmap = torch.zeros_like(tc, dtype=torch.uint8)
    labelmap[wt] = 2
    labelmap[tc] = 1
    labelmap[et] = 4
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
    subregions = torch.stack([lab == 1, lab == 2, lab == 4])
    return convert_to_dst_type(subregions, dst=labelmap, dtype=torch.float32)[0]

