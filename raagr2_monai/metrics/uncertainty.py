"""Uncertainty of a segmentation, and how well it predicts failure.

From the mean probabilities of several predictions (:class:`raagr2_monai.networks.SampledProbabilities`: test-time
flips or Monte-Carlo dropout), per voxel and per study:

- :func:`entropy_map`: the predictive entropy of the mean, summed over the region channels (TC, WT, ET are
  independent sigmoids, so each contributes a binary entropy; in nats, 0 to ``3 ln 2``).
- :func:`study_uncertainty`: one number per study, the map's mean over the voxels where the mean prediction sees
  any chance of tumour (a region probability of at least ``margin``): the tumour and its uncertain rim, so that the
  large certain background does not dilute it; 0 where no voxel reaches ``margin``.

And whether that number ranks the studies by their quality: :func:`spearman` (rank correlation with Dice; a useful
score correlates negatively), :func:`auroc` (finding the studies below a Dice threshold), and the voxel-level
:func:`reliability` of the probabilities themselves (confidence against accuracy, expected calibration error).
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Union

import numpy as np
import torch

__all__ = [
    "DEFAULT_MARGIN",
    "binary_entropy",
    "entropy_map",
    "study_uncertainty",
    "spearman",
    "auroc",
    "reliability",
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
    if p.ndim < 2:
        raise ValueError(f"entropy_map needs (channels, *spatial) probabilities; got shape {list(p.shape)}.")
    if not np.isfinite(p).all() or p.min(initial=0.0) < 0 or p.max(initial=0.0) > 1:
        raise ValueError("entropy_map needs probabilities in [0, 1]; got values outside it or NaN.")
    return binary_entropy(p).sum(axis=0)


def study_uncertainty(probabilities: ArrayLike, margin: float = DEFAULT_MARGIN) -> float:
    """One study's uncertainty: the mean of :func:`entropy_map` over the voxels where some region's mean probability
    reaches ``margin``; 0.0 where none does (a confident empty prediction).

    Example::

        >>> p = np.zeros((3, 4, 4), np.float32); p[:, 0, 0] = 0.5; p[:, 0, 1] = 0.99
        >>> round(study_uncertainty(p), 3)  # (3 ln 2 + 3 * 0.056) / 2
        1.124
    """
    p = _numpy(probabilities)
    entropy = entropy_map(p)
    region = p.max(axis=0) >= margin
    return float(entropy[region].mean()) if region.any() else 0.0


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


def reliability(probabilities: ArrayLike, labels: ArrayLike, bins: int = 10) -> Dict[str, object]:
    """How far the voxel probabilities can be taken at their word: each voxel and channel's confidence
    (``max(p, 1 - p)``) against whether its thresholded prediction is right, in ``bins`` equal-width confidence bins
    from 0.5 to 1.

    Args:
        probabilities: ``(C, *spatial)`` mean probabilities.
        labels: ``(C, *spatial)`` binary targets (the TC, WT, ET regions).
        bins: the number of bins.

    Returns:
        ``{"ece": expected calibration error (the voxel-weighted mean |accuracy - confidence|), "bins": [{"low",
        "high", "count", "confidence", "accuracy"}, ...]}``; empty bins have NaN confidence and accuracy.

    Example::

        >>> result = reliability(np.array([[0.9, 0.9, 0.6, 0.6]]), np.array([[1, 1, 1, 0]]), bins=5)
        >>> round(result["ece"], 4)  # bins at 0.9 (accuracy 1) and 0.6 (accuracy 0.5): (2 * 0.1 + 2 * 0.1) / 4
        0.1
    """
    p = _numpy(probabilities).ravel()
    y = _numpy(labels).ravel() > 0.5
    if p.shape != y.shape:
        raise ValueError(f"reliability needs labels of the probabilities' shape; got {p.size} and {y.size} values.")
    confidence = np.maximum(p, 1 - p)
    correct = (p >= 0.5) == y
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table: List[Dict[str, float]] = []
    ece = 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        conf = float(confidence[members].mean()) if count else math.nan
        acc = float(correct[members].mean()) if count else math.nan
        if count:
            ece += count / max(p.size, 1) * abs(acc - conf)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count, "confidence": conf,
                      "accuracy": acc})
    return {"ece": float(ece), "bins": table}
