"""Lesion-wise Dice and HD95, lesion counts and detection scores per region (the BraTS 2023+ lesion-wise metrics).

A region's lesions are its connected components. Following the BraTS 2023 lesion-wise code
(``rachitsaluja/BraTS-2023-Metrics``, ``metrics.py``, the reference the challenge published with the metric):

1. **Ground-truth lesions.** The label is dilated ``gt_dilation`` times (structuring element of connectivity
   ``dilation_connectivity``); label components that fall into one component of the dilated label are one lesion
   (``get_GTseg_combinedByDilation``). That dilated component is the lesion's region of interest; the label itself is
   not changed. ``gt_dilation=0`` takes the label's components as they are.
2. **Matching.** ``"dilated_overlap"`` (BraTS 2023): a predicted component belongs to every lesion whose region of
   interest it touches, and a lesion's prediction is the union of its components. ``"bipartite"`` (``panoptica``'s
   ``MaxBipartiteMatching`` on Dice, as configured by ``brats-evaluation`` 0.0.10): one-to-one, maximising the summed
   Dice over pairs that overlap.
3. **Scores.** A matched lesion scores the Dice and HD95 of its prediction against it (HD95 pooled or not by the
   convention, see :mod:`.surface`; the 2023 code used DeepMind's ``compute_robust_hausdorff``, a surfel-weighted
   larger directed percentile); a missed lesion (FN) scores Dice 0 and HD95 ``max_hd95``; each predicted component that
   belongs to no lesion (FP) adds one more Dice 0 and HD95 ``max_hd95``. Lesion-wise Dice = sum / (lesions + FP),
   likewise HD95.
4. **Small lesions.** Lesions of volume (mm^3) at most ``min_lesion_volume`` are left out: neither counted nor scored
   (``metric_df['gt_lesion_vol'] > lesion_volume_thresh``); a predicted component touching one is not a false positive
   either. Predicted components are not filtered by size.
5. **Counts.** TP = detected lesions, FN = missed lesions, FP = unmatched predicted components; precision
   TP / (TP + FP), recall TP / (TP + FN), F1 2 TP / (2 TP + FP + FN), each NaN when its denominator is 0.

The seven settings travel together as a :class:`LesionwiseSettings`. Its defaults, and where each comes from:

- ``connectivity=None`` = full connectivity (26 in 3D): ``cc3d.connected_components(..., connectivity=26)`` in the
  2023 code; ``cc3d``'s default in ``panoptica``'s ``ConnectedComponentsInstanceApproximator``.
- ``gt_dilation=3`` and ``min_lesion_volume=50`` (mm^3): the 2023 code's ``BraTS-GLI`` parameters (also SSA and PED;
  MEN 1 and 50, MET 1 and 2): see :data:`LESIONWISE_PRESETS`.
- ``dilation_connectivity=2``: ``scipy.ndimage.generate_binary_structure(3, 2)`` in the 2023 code.
- ``matching="dilated_overlap"``: the 2023 code.
- HD95 of a miss: the convention's (``"brats"``: 373, as ``brats-evaluation``'s ``parse_mets_results`` pads FN and FP;
  the 2023 code used 374).

Empty cases: with no lesion and no false positive, Dice and HD95 follow the convention (``"brats"``: NaN as
``panoptica``'s ``no_instances_result``; ``"thesis"``: 1 and 0, which is also what the 2023 code gives).

``brats-evaluation`` 0.0.10 itself (``config_gli.yaml``) uses ``"bipartite"`` matching, no dilation and no size
threshold, and its ``lesionwise_dsc_mean`` averages the matched lesions only, without the FN/FP penalty; only its
``parse_mets_results`` (BraTS-METS) penalises them. Preset ``"brats-evaluation-gli"`` reproduces its matching and
counts; the lesion-wise Dice and HD95 here always carry the penalty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_dilation, generate_binary_structure, label as label_components
from scipy.optimize import linear_sum_assignment

from raagr2_monai.constants import SCORED_REGIONS

from .conventions import Convention, get_convention
from .functional import scored_regions
from .masks import as_mask, bounding_box, check_spacing
from .surface import hd95

__all__ = [
    "LESIONWISE_STATS",
    "LESIONWISE_COLUMNS",
    "LESIONWISE_PRESETS",
    "MATCHINGS",
    "LesionwiseResult",
    "LesionwiseSettings",
    "gt_lesions",
    "lesionwise_region",
    "lesionwise_metrics",
]

#: The per-region lesion-wise statistics, in column order.
LESIONWISE_STATS: tuple[str, ...] = ("dice", "hd95", "tp", "fp", "fn", "precision", "recall", "f1")
#: The per-subject lesion-wise columns: ``lesion_<stat>_<region>`` for each statistic, then each scored region.
LESIONWISE_COLUMNS: tuple[str, ...] = tuple(
    f"lesion_{stat}_{name}" for stat in LESIONWISE_STATS for name in SCORED_REGIONS
)
#: The ways of matching predicted components to ground-truth lesions.
MATCHINGS: tuple[str, ...] = ("dilated_overlap", "bipartite")
#: Parameter sets of the official evaluations: BraTS 2023 per challenge (``get_LesionWiseResults`` in
#: ``rachitsaluja/BraTS-2023-Metrics``), and the matching of ``brats-evaluation`` 0.0.10's ``config_gli.yaml``; a
#: preset's settings are ``LesionwiseSettings(**LESIONWISE_PRESETS[name])``.
LESIONWISE_PRESETS: dict[str, dict[str, Any]] = {
    "brats2023-gli": {"gt_dilation": 3, "min_lesion_volume": 50.0, "matching": "dilated_overlap"},
    "brats2023-ssa": {"gt_dilation": 3, "min_lesion_volume": 50.0, "matching": "dilated_overlap"},
    "brats2023-ped": {"gt_dilation": 3, "min_lesion_volume": 50.0, "matching": "dilated_overlap"},
    "brats2023-men": {"gt_dilation": 1, "min_lesion_volume": 50.0, "matching": "dilated_overlap"},
    "brats2023-met": {"gt_dilation": 1, "min_lesion_volume": 2.0, "matching": "dilated_overlap"},
    "brats-evaluation-gli": {"gt_dilation": 0, "min_lesion_volume": 0.0, "matching": "bipartite"},
}


@dataclass(frozen=True)
class LesionwiseResult:
    """Lesion-wise scores of one region of one subject.

    Attributes:
        dice: lesion-wise Dice, FN and FP lesions counted as 0.
        hd95: lesion-wise HD95 (mm), FN and FP lesions counted as the miss value.
        tp: detected lesions (of those scored).
        fp: predicted components that belong to no lesion.
        fn: missed lesions (of those scored).
        precision: TP / (TP + FP), NaN when that is 0 / 0.
        recall: TP / (TP + FN), NaN when that is 0 / 0.
        f1: 2 TP / (2 TP + FP + FN), NaN when that is 0 / 0.
        lesion_volume: (L,) volume (mm^3) of every ground-truth lesion, small ones included, in label order.
        lesion_scored: (L,) whether the lesion is above the small-lesion threshold.
        lesion_detected: (L,) whether a predicted component was matched to it.
        lesion_dice: (L,) its Dice (0 when missed).
        lesion_hd95: (L,) its HD95 (the miss value when missed).
    """

    dice: float
    hd95: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    lesion_volume: np.ndarray
    lesion_scored: np.ndarray
    lesion_detected: np.ndarray
    lesion_dice: np.ndarray
    lesion_hd95: np.ndarray

    def stats(self) -> dict[str, float]:
        """The summary statistics, without the per-lesion arrays.

        Returns:
            ``{stat: float}`` for each of :data:`LESIONWISE_STATS`, e.g. for a CSV row.
        """
        return {stat: float(getattr(self, stat)) for stat in LESIONWISE_STATS}


@dataclass(frozen=True)
class LesionwiseSettings:
    """How lesions are found, matched and scored (see the module docstring), passed whole to
    :func:`lesionwise_region` and :func:`lesionwise_metrics`; the defaults are the BraTS 2023 GLI evaluation's.

    Attributes:
        connectivity: of the lesions, as a ``scipy.ndimage.generate_binary_structure`` rank; None = full (26 in 3D).
        gt_dilation: dilation iterations merging nearby label components into one lesion and widening its region
            of interest for ``"dilated_overlap"``; 0 = none.
        dilation_connectivity: rank of the dilation's structuring element.
        min_lesion_volume: lesions of at most this volume (mm^3) are ignored.
        matching: ``"dilated_overlap"`` or ``"bipartite"`` (:data:`MATCHINGS`).
        convention: ``"brats"`` or ``"thesis"``: HD95 pooling, the empty case and the default ``max_hd95``.
        max_hd95: HD95 of a missed or false-positive lesion; None = the convention's (373 for ``"brats"``).

    Example:
        >>> settings = LesionwiseSettings(**LESIONWISE_PRESETS["brats2023-met"])
        >>> settings.gt_dilation, settings.min_lesion_volume, settings.check().name
        (1, 2.0, 'brats')
    """

    connectivity: int | None = None
    gt_dilation: int = 3
    dilation_connectivity: int = 2
    min_lesion_volume: float = 50.0
    matching: str = "dilated_overlap"
    convention: str | Convention = "brats"
    max_hd95: float | None = None

    def check(self) -> Convention:
        """Check the settings before anything is scored; the connectivities, whose range depends on the masks'
        dimensions, are checked with the masks.

        Returns:
            The scoring convention (:func:`~.conventions.get_convention`).

        Raises:
            ValueError: an unknown ``matching`` or convention, a negative ``min_lesion_volume`` or ``gt_dilation``.
        """
        if self.matching not in MATCHINGS:
            raise ValueError(f"Unknown lesion matching {self.matching!r}; choose one of {list(MATCHINGS)}.")
        if self.min_lesion_volume < 0:
            raise ValueError(f"min_lesion_volume must be >= 0, got {self.min_lesion_volume}.")
        if self.gt_dilation < 0:
            raise ValueError(f"gt_dilation must be >= 0, got {self.gt_dilation}.")
        return get_convention(self.convention)


def _structure(ndim: int, connectivity: int | None, name: str) -> np.ndarray:
    rank = ndim if connectivity is None else int(connectivity)
    if not 1 <= rank <= ndim:
        raise ValueError(f"{name} must be between 1 and {ndim} for {ndim}D masks, got {connectivity}.")
    return generate_binary_structure(ndim, rank)


def gt_lesions(
    label: np.ndarray | torch.Tensor,
    connectivity: int | None = None,
    gt_dilation: int = 3,
    dilation_connectivity: int = 2,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Ground-truth lesions: connected components, those within one component of the dilated label merged.

    Args:
        label: binary mask (*spatial), numpy or torch.
        connectivity: of the components, as a ``scipy.ndimage.generate_binary_structure`` rank; None = full
            (26 in 3D).
        gt_dilation: dilation iterations that merge nearby components; 0 = no merging.
        dilation_connectivity: rank of the dilation's structuring element (clipped to the number of dimensions).

    Returns:
        ``(lesions, regions_of_interest, count)``: int32 arrays of the label's shape numbering the lesions 1..count
        (0 elsewhere), and the dilated region of interest of each lesion with the same numbers (the lesions
        themselves when ``gt_dilation`` is 0).

    Raises:
        ValueError: on non-binary input, a negative ``gt_dilation`` or a connectivity out of range.

    Example:
        >>> y = np.zeros((1, 9), bool); y[0, [1, 3, 8]] = True
        >>> lesions, rois, n = gt_lesions(y, gt_dilation=1)  # 1 and 3 merge; 8 stays apart
        >>> n, lesions[0].tolist()
        (2, [0, 1, 0, 1, 0, 0, 0, 0, 2])
    """
    g = as_mask(label, "label")
    structure = _structure(g.ndim, connectivity, "connectivity")
    if gt_dilation < 0:
        raise ValueError(f"gt_dilation must be >= 0, got {gt_dilation}.")
    if gt_dilation == 0 or not g.any():
        lesions, count = label_components(g, structure=structure)
        return lesions.astype(np.int32, copy=False), lesions.astype(np.int32, copy=False), int(count)
    # dilating the label's bounding box grown by the dilation reach gives the same result as the whole volume
    box = bounding_box(g, pad=gt_dilation)
    grow = _structure(g.ndim, min(dilation_connectivity, g.ndim), "dilation_connectivity")
    dilated = binary_dilation(g[box], structure=grow, iterations=gt_dilation)
    rois = np.zeros(g.shape, dtype=np.int32)
    rois[box], count = label_components(dilated, structure=structure)
    return np.where(g, rois, 0).astype(np.int32, copy=False), rois, int(count)


def _pairs(first: np.ndarray, second: np.ndarray, n_second: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (first, second) label pairs among co-located voxels, with their voxel counts."""
    codes, counts = np.unique(first.astype(np.int64) * (n_second + 1) + second, return_counts=True)
    return codes // (n_second + 1), codes % (n_second + 1), counts


def _boxes(
    flat_index: np.ndarray, ids: np.ndarray, count: int, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label lowest and highest voxel coordinates, (count + 1, ndim) each, from the labelled voxels' indices."""
    coords = np.stack(np.unravel_index(flat_index, shape), axis=1)
    low = np.full((count + 1, len(shape)), np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full((count + 1, len(shape)), -1, dtype=np.int64)
    np.minimum.at(low, ids, coords)
    np.maximum.at(high, ids, coords)
    return low, high


def _bipartite(
    k_overlap: np.ndarray, j_overlap: np.ndarray, dice: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one lesion/component pairs maximising the summed Dice, among pairs that overlap (panoptica's rule)."""
    if k_overlap.size == 0:
        return k_overlap, j_overlap
    rows, row_index = np.unique(k_overlap, return_inverse=True)
    cols, col_index = np.unique(j_overlap, return_inverse=True)
    # pairs without overlap cost more than any overlapping pair, so the assignment only takes them when it must
    cost = np.full((rows.size, cols.size), 1.0 + 1e-6)
    cost[row_index, col_index] = 1.0 - dice
    r, c = linear_sum_assignment(cost)
    keep = cost[r, c] < 1.0
    return rows[r[keep]], cols[c[keep]]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def lesionwise_region(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
    settings: LesionwiseSettings = LesionwiseSettings(),
) -> LesionwiseResult:
    """Lesion-wise scores of one region (one binary mask pair of one subject); see the module docstring.

    Args:
        pred: binary prediction mask (*spatial), numpy or torch.
        label: binary label mask of the same shape.
        spacing: voxel size per spatial dimension (mm); None = 1. Scales HD95 and the lesion volumes.
        settings: how lesions are found, matched and scored (:class:`LesionwiseSettings`).

    Returns:
        a :class:`LesionwiseResult`.

    Raises:
        ValueError: on mismatched shapes, non-binary input, a bad ``spacing``, or bad settings
            (:meth:`LesionwiseSettings.check`, a connectivity out of range).

    Example:
        >>> y = np.zeros((1, 20), bool); y[0, 2:6] = True; y[0, 14:18] = True  # two lesions
        >>> p = np.zeros_like(y); p[0, 2:6] = True; p[0, 9] = True  # one found, one missed, one false positive
        >>> r = lesionwise_region(p, y, settings=LesionwiseSettings(gt_dilation=0, min_lesion_volume=0))
        >>> r.tp, r.fn, r.fp, r.dice, r.hd95, round(r.f1, 4)  # Dice (1 + 0 + 0) / 3, HD95 (0 + 373 + 373) / 3
        (1, 1, 1, 0.3333333333333333, 248.66666666666666, 0.5)
    """
    rules = settings.check()
    p = as_mask(pred, "pred")
    g = as_mask(label, "label")
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} and label shape {g.shape} must be equal.")
    steps = check_spacing(spacing, p.ndim)
    miss = rules.miss_value(p.shape, spacing) if settings.max_hd95 is None else float(settings.max_hd95)
    if p.any() or g.any():
        # the foreground's box grown by the dilation's reach gives the same lesions and scores as the whole volume
        box = bounding_box(p | g, pad=settings.gt_dilation + 1)
        p, g = p[box], g[box]

    components, n_pred = label_components(p, structure=_structure(p.ndim, settings.connectivity, "connectivity"))
    lesions, rois, n_lesions = gt_lesions(g, settings.connectivity, settings.gt_dilation,
                                          settings.dilation_connectivity)
    # everything below works on the foreground voxels' flat indices, not on whole volumes
    pred_at = np.flatnonzero(components)
    label_at = np.flatnonzero(lesions)
    component_of_pred = components.ravel()[pred_at]
    lesion_of_label = lesions.ravel()[label_at]
    pred_voxels = np.bincount(component_of_pred, minlength=n_pred + 1)
    lesion_voxels = np.bincount(lesion_of_label, minlength=n_lesions + 1)[1:]
    lesion_volume = lesion_voxels * float(np.prod(steps))
    scored = lesion_volume > settings.min_lesion_volume

    lesion_at_pred = lesions.ravel()[pred_at]
    overlap = lesion_at_pred > 0
    k_overlap, j_overlap, n_overlap = _pairs(lesion_at_pred[overlap], component_of_pred[overlap], n_pred)
    if settings.matching == "dilated_overlap":
        roi_at_pred = rois.ravel()[pred_at]
        touching = roi_at_pred > 0
        k_match, j_match, _ = _pairs(roi_at_pred[touching], component_of_pred[touching], n_pred)
    else:
        pair_dice = 2.0 * n_overlap / (lesion_voxels[k_overlap - 1] + pred_voxels[j_overlap])
        k_match, j_match = _bipartite(k_overlap, j_overlap, pair_dice)

    stride = n_pred + 1
    in_match = np.isin(k_overlap * stride + j_overlap, k_match * stride + j_match)
    intersection = np.bincount(k_overlap[in_match], weights=n_overlap[in_match], minlength=n_lesions + 1)[1:]
    matched_voxels = np.bincount(k_match, weights=pred_voxels[j_match], minlength=n_lesions + 1)[1:]
    detected = np.bincount(k_match, minlength=n_lesions + 1)[1:] > 0
    lesion_dice = 2.0 * intersection / (lesion_voxels + matched_voxels)

    lesion_hd95 = np.full(n_lesions, miss)
    lesion_low, lesion_high = _boxes(label_at, lesion_of_label, n_lesions, p.shape)
    pred_low, pred_high = _boxes(pred_at, component_of_pred, n_pred, p.shape)
    for k in np.flatnonzero(detected):
        own = j_match[k_match == k + 1]
        low = np.minimum(lesion_low[k + 1], pred_low[own].min(axis=0))
        high = np.maximum(lesion_high[k + 1], pred_high[own].max(axis=0))
        box = tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high))
        lesion_hd95[k] = hd95(np.isin(components[box], own), lesions[box] == k + 1, spacing, rules.pooled_hd95)

    tp = int(np.count_nonzero(detected & scored))
    fn = int(np.count_nonzero(~detected & scored))
    fp = n_pred - int(np.unique(j_match).size)
    scored_count = tp + fn
    if scored_count + fp == 0:
        dice, hd = rules.both_empty_dice, rules.both_empty_hd95
    else:
        dice = float(lesion_dice[scored].sum()) / (scored_count + fp)
        hd = float(lesion_hd95[scored].sum() + fp * miss) / (scored_count + fp)
    return LesionwiseResult(
        dice=dice,
        hd95=hd,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        lesion_volume=lesion_volume,
        lesion_scored=scored,
        lesion_detected=detected,
        lesion_dice=lesion_dice,
        lesion_hd95=lesion_hd95,
    )


def lesionwise_metrics(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
    settings: LesionwiseSettings = LesionwiseSettings(),
) -> dict[str, np.ndarray]:
    """Per-subject lesion-wise statistics for the regions TC, WT, ET and the subregions NCR, ED.

    Args:
        pred: binarised prediction (B, 3, *spatial), channels TC, WT, ET (bool or 0/1, numpy or torch).
        label: binary label of the same shape.
        spacing: voxel size per spatial dimension (mm), shared by the batch; None = 1.
        settings: as :func:`lesionwise_region`; a preset is ``LesionwiseSettings(**LESIONWISE_PRESETS[name])``.

    Returns:
        the :data:`LESIONWISE_COLUMNS` ``lesion_<stat>_<region>``, each a float64 numpy array of shape (B,).

    Raises:
        ValueError: as :func:`lesionwise_region`, or on a channel count other than 3.

    Example:
        >>> y = np.zeros((1, 3, 1, 20), bool); y[:, :, 0, 2:6] = True; y[:, :2, 0, 14:18] = True
        >>> m = lesionwise_metrics(y, y, settings=LesionwiseSettings(gt_dilation=0, min_lesion_volume=0))
        >>> m["lesion_tp_WT"].tolist(), m["lesion_tp_ET"].tolist(), m["lesion_dice_TC"].tolist()
        ([2.0], [1.0], [1.0])
        >>> m["lesion_dice_NCR"].tolist()  # NCR = TC - ET is the lesion at 14:18 only
        [1.0]
        >>> m["lesion_f1_ED"].tolist()  # ED = WT - TC is empty on both sides: NaN under "brats"
        [nan]
    """
    p, g = scored_regions(pred, label)
    out = {column: np.empty(p.shape[0], dtype=np.float64) for column in LESIONWISE_COLUMNS}
    for b in range(p.shape[0]):
        for c, name in enumerate(SCORED_REGIONS):
            for stat, value in lesionwise_region(p[b, c], g[b, c], spacing, settings).stats().items():
                out[f"lesion_{stat}_{name}"][b] = value
    return out
