"""Uncertainty of a segmentation, and how well it predicts failure.

From the mean probabilities of several predictions (:class:`raagr2_monai.networks.SampledProbabilities`: test-time
flips or Monte-Carlo dropout), per voxel and per study:

- :func:`entropy_map`: the predictive entropy of the mean, summed over the region channels (TC, WT, ET are
  independent sigmoids, so each contributes a binary entropy; in nats, 0 to ``3 ln 2``).
- :func:`study_uncertainty`: one number per study, the map's mean over the voxels where the mean prediction sees
  any chance of tumour (a region probability of at least ``margin``): the tumour and its uncertain rim, so that the
  large certain background does not dilute it; 0 where no voxel reaches ``margin``.

And whether that number ranks the studies by their quality: :func:`spearman` (rank correlation with Dice; a useful
score correlates negatively), :func:`auroc` (finding the studies below a Dice threshold), both at once for an
evaluation's subjects in :func:`failure_prediction`, and the voxel-level :func:`reliability` of the probabilities
themselves (confidence against accuracy, expected calibration error). Over many studies the reliability is pooled
from each study's bin sums (:func:`reliability_counts`, added up, then :func:`reliability_from_counts`), so that no
volume is held beyond its own scoring.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

__all__ = [
    "DEFAULT_MARGIN",
    "binary_entropy",
    "entropy_map",
    "study_uncertainty",
    "spearman",
    "auroc",
    "failure_prediction",
    "reliability",
    "reliability_counts",
    "reliability_from_counts",
]

ArrayLike = Union[np.ndarray, torch.Tensor]

#: The region probability from which a voxel counts for a study's score.
DEFAULT_MARGIN = 0.1
_EPS = 1e-7


def _numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def binary_entropy(p: ArrayLike) -> np.ndarray:
    """``-p ln p - (1 - p) ln (1 - p)`` per element, in nats (0 at 0 and 1, ``ln 2`` at 0.5).

    Example::

        >>> [round(float(h), 4) for h in binary_entropy(np.array([0.0, 0.5, 1.0]))]
        [0.0, 0.6931, 0.0]
    """
    q = np.clip(_numpy(p), _EPS, 1 - _EPS)
    return (-(q * np.log(q) + (1 - q) * np.log(1 - q))).astype(np.float32)


def entropy_map(probabilities: ArrayLike) -> np.ndarray:
    """The voxel-wise uncertainty of a mean prediction ``(C, *spatial)``: its binary entropies summed over the
    channels, ``(*spatial)`` float32.

    Raises:
        ValueError: not a ``(C, *spatial)`` array of probabilities in [0, 1] (NaN included).

    Example::

        >>> round(float(entropy_map(np.full((3, 1, 1), 0.5))[0, 0]), 4)  # three channels at 0.5: 3 ln 2
        2.0794
    """
    p = _numpy(probabilities)
    _check_probabilities(p, "entropy_map")
    return binary_entropy(p).sum(axis=0)


def _check_probabilities(p: np.ndarray, what: str) -> None:
    if p.ndim < 2:
        raise ValueError(f"{what} needs (channels, *spatial) probabilities; got shape {list(p.shape)}.")
    # NaN fails both comparisons, so that min and max (one pass each) also find it
    low, high = p.min(initial=0.0), p.max(initial=0.0)
    if not (low >= 0 and high <= 1):
        raise ValueError(f"{what} needs probabilities in [0, 1]; got values outside it or NaN.")


def study_uncertainty(probabilities: ArrayLike, margin: float = DEFAULT_MARGIN) -> float:
    """One study's uncertainty: the mean of :func:`entropy_map` over the voxels where some region's mean probability
    reaches ``margin``; 0.0 where none does (a confident empty prediction).

    Example::

        >>> p = np.zeros((3, 4, 4), np.float32); p[:, 0, 0] = 0.5; p[:, 0, 1] = 0.99
        >>> round(study_uncertainty(p), 3)  # (3 ln 2 + 3 * 0.056) / 2
        1.124
    """
    p = _numpy(probabilities)
    _check_probabilities(p, "study_uncertainty")
    region = p.max(axis=0) >= margin
    # the entropy of the region's voxels only: a BraTS volume is mostly certain background
    return float(binary_entropy(p[:, region]).sum(axis=0).mean()) if region.any() else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two paired samples (ties by mean rank); NaN with fewer than 3 pairs or a
    constant side.

    Example::

        >>> spearman([0.1, 0.4, 0.2, 0.9], [0.9, 0.5, 0.8, 0.2])
        -1.0
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"spearman needs paired samples; got {a.shape[0]} and {b.shape[0]} values.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """The area under the ROC curve of ``scores`` for finding the ``positives`` (e.g. studies below a Dice
    threshold, scored by their uncertainty): the chance that a positive scores above a negative, ties counting half
    (Mann-Whitney). NaN without both classes.

    Example::

        >>> auroc([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
        0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives, dtype=bool)
    if s.shape != y.shape:
        raise ValueError(f"auroc needs one label per score; got {s.shape[0]} scores and {y.shape[0]} labels.")
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def failure_prediction(scores: Sequence[float], dices: Sequence[float], failure_dice: float) -> Dict[str, Any]:
    """How well a per-study uncertainty score predicts failure on an evaluation's subjects: its Spearman correlation
    with the subjects' Dice (a useful score correlates negatively) and its AUROC for finding the subjects whose Dice
    is below ``failure_dice``. Subjects whose score or Dice is NaN are left out of both.

    Args:
        scores: each subject's uncertainty (:func:`study_uncertainty`).
        dices: the same subjects' Dice, e.g. their mean over TC, WT and ET
            (:func:`~raagr2_monai.metrics.table.subject_mean_dice`).
        failure_dice: a subject below this Dice counts as a failure.

    Returns:
        ``{"subjects": n scored, "failure_dice", "failures": n below it, "spearman", "auroc"}``; ``spearman`` is NaN
        with fewer than 3 subjects or a constant side, ``auroc`` NaN unless both failures and successes are there.

    Raises:
        ValueError: ``scores`` and ``dices`` differ in length.

    Example::

        >>> figures = failure_prediction([0.9, 0.7, 0.2, 0.1], [0.4, 0.6, 0.85, 0.9], failure_dice=0.8)
        >>> figures["spearman"], figures["auroc"], figures["failures"]  # the score ranks the subjects perfectly
        (-1.0, 1.0, 2)
    """
    s, d = np.asarray(scores, dtype=np.float64), np.asarray(dices, dtype=np.float64)
    if s.shape != d.shape:
        raise ValueError(f"failure_prediction needs one Dice per score; got {s.size} scores and {d.size} Dice.")
    keep = np.isfinite(s) & np.isfinite(d)
    s, d = s[keep], d[keep]
    below = d < float(failure_dice)
    return {"subjects": int(s.size), "failure_dice": float(failure_dice), "failures": int(below.sum()),
            "spearman": spearman(s, d), "auroc": auroc(s, below)}


def _edges(bins: int) -> np.ndarray:
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"reliability needs a whole number of bins >= 1; got {bins!r}.")
    return np.linspace(0.5, 1.0, int(bins) + 1)


def reliability_counts(probabilities: ArrayLike, labels: ArrayLike, bins: int = 10,
                       mask: Optional[ArrayLike] = None) -> np.ndarray:
    """One study's reliability sums per confidence bin, to be added up over studies: each voxel and channel's
    confidence (``max(p, 1 - p)``) in ``bins`` equal-width bins from 0.5 to 1, and whether its thresholded prediction
    (``p >= 0.5``) matches the label.

    Args:
        probabilities: ``(C, *spatial)`` mean probabilities.
        labels: ``(C, *spatial)`` binary targets (the TC, WT, ET regions).
        bins: the number of bins.
        mask: ``(*spatial)`` voxels to count (every channel of them); ``None`` counts all.

    Returns:
        ``(bins, 3)`` float64: per bin the number of voxel-channels, their summed confidence and their number
        predicted right (:func:`reliability_from_counts` turns a sum of these into the reliability).

    Raises:
        ValueError: labels or mask of another shape, or a bad bin count.

    Example::

        >>> reliability_counts(np.array([[0.9, 0.2, 0.6]]), np.array([[1, 1, 0]]), bins=2).round(4).tolist()
        [[1.0, 0.6, 0.0], [2.0, 1.7, 1.0]]
    """
    edges = _edges(bins)
    p, y = _numpy(probabilities), _numpy(labels)
    if p.shape != y.shape:
        raise ValueError(f"reliability needs labels of the probabilities' shape; got {list(p.shape)} and "
                         f"{list(y.shape)}.")
    if mask is not None:
        keep = _numpy(mask) > 0.5
        if keep.shape != p.shape[1:]:
            raise ValueError(f"reliability needs a mask of the probabilities' spatial shape {list(p.shape[1:])}; got "
                             f"{list(keep.shape)}.")
        p, y = p[:, keep], y[:, keep]
    p, truth = p.ravel(), y.ravel() > 0.5
    confidence = np.maximum(p, 1 - p)
    correct = (p >= 0.5) == truth
    size = len(edges) - 1
    # most voxels of a volume are confident background, in the last bin: only the others are binned one by one
    # (digitize's right-closed bins, as a binary search against float32 edges: no float64 copy of a volume)
    rest = confidence <= edges[-2].astype(p.dtype)
    index = np.searchsorted(edges[1:-1].astype(p.dtype), confidence[rest], side="left")
    counts = np.stack([np.bincount(index, minlength=size).astype(np.float64),
                       np.bincount(index, weights=confidence[rest], minlength=size),
                       np.bincount(index[correct[rest]], minlength=size).astype(np.float64)], axis=1)
    counts[-1] += [p.size - index.size, confidence.sum(dtype=np.float64) - counts[:, 1].sum(),
                   np.count_nonzero(correct) - counts[:, 2].sum()]
    return counts


def reliability_from_counts(counts: ArrayLike) -> Dict[str, Any]:
    """The reliability of summed :func:`reliability_counts` (one study's, or several added up).

    Args:
        counts: ``(bins, 3)``: per bin the voxel-channels, their summed confidence and their number right.

    Returns:
        ``{"ece": expected calibration error (the voxel-weighted mean |accuracy - confidence|; NaN with no voxel),
        "voxels": voxel-channels counted, "bins": [{"low", "high", "count", "confidence", "accuracy"}, ...]}``;
        empty bins have NaN confidence and accuracy.

    Raises:
        ValueError: not ``(bins, 3)``.

    Example::

        >>> result = reliability_from_counts([[1.0, 0.6, 0.0], [2.0, 1.7, 1.0]])
        >>> round(result["ece"], 4), result["bins"][1]["accuracy"]  # (1 x 0.6 + 2 x 0.35) / 3
        (0.4333, 0.5)
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] < 1:
        raise ValueError(f"reliability_from_counts needs (bins, 3) sums; got shape {list(c.shape)}.")
    edges = _edges(c.shape[0])
    total = float(c[:, 0].sum())
    table: List[Dict[str, float]] = []
    ece = 0.0
    for b, (count, confidence_sum, correct_sum) in enumerate(c):
        conf = confidence_sum / count if count else math.nan
        acc = correct_sum / count if count else math.nan
        if count:
            ece += count / total * abs(acc - conf)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(count),
                      "confidence": float(conf), "accuracy": float(acc)})
    return {"ece": float(ece) if total else math.nan, "voxels": int(total), "bins": table}


def reliability(probabilities: ArrayLike, labels: ArrayLike, bins: int = 10) -> Dict[str, Any]:
    """How far the voxel probabilities can be taken at their word: each voxel and channel's confidence
    (``max(p, 1 - p)``) against whether its thresholded prediction is right, in ``bins`` equal-width confidence bins
    from 0.5 to 1 (:func:`reliability_counts` then :func:`reliability_from_counts`).

    Args:
        probabilities: ``(C, *spatial)`` mean probabilities.
        labels: ``(C, *spatial)`` binary targets (the TC, WT, ET regions).
        bins: the number of bins.

    Returns:
        ``{"ece": expected calibration error (the voxel-weighted mean |accuracy - confidence|), "voxels", "bins":
        [{"low", "high", "count", "confidence", "accuracy"}, ...]}``; empty bins have NaN confidence and accuracy.

    Example::

        >>> result = reliability(np.array([[0.9, 0.9, 0.6, 0.6]]), np.array([[1, 1, 1, 0]]), bins=5)
        >>> round(result["ece"], 4)  # bins at 0.9 (accuracy 1) and 0.6 (accuracy 0.5): (2 * 0.1 + 2 * 0.1) / 4
        0.1
    """
    p, y = _numpy(probabilities), _numpy(labels)
    if p.size != y.size:
        raise ValueError(f"reliability needs labels of the probabilities' shape; got {p.size} and {y.size} values.")
    return reliability_from_counts(reliability_counts(p.reshape(1, -1), y.reshape(1, -1), bins))
