"""The spread of the report's per-subject scores, and which rows score identically on every subject.

A Table 1 figure is a mean over few test subjects; its spread is the sample standard deviation (``ddof=1``) and the
half-width of the 95 % confidence interval of the mean, ``t(0.975, n - 1) * std / sqrt(n)`` (Student's t), over the
``n`` subjects with a value (a region empty on both sides is NaN under the official BraTS convention and is left out).
The mean Dice's spread is that of each subject's mean over TC, WT and ET (its NaN regions left out).

A model is compared with the baseline by per-subject (paired) differences: on each test subject both were scored on
(matched by case id), the model's mean Dice over TC/WT/ET minus the baseline's; the mean of these differences and its
95 % confidence interval (Student's t with ``n - 1`` degrees of freedom) say whether the two differ beyond what these
subjects can resolve, which two overlapping intervals of the means cannot (the subjects' difficulty, shared by both,
cancels out of a difference).

Two rows whose every Dice and HD95 agree on every subject (to within :data:`IDENTICAL_TOLERANCE`) gave the same label
maps on the test subjects; the report flags them instead of presenting them as two results.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from scipy import stats

from raagr2_monai.constants import REGIONS, SCORED_REGIONS
from raagr2_monai.metrics import METRIC_COLUMNS, subject_mean_dice
from raagr2_monai.visualize import read_subject_rows

__all__ = [
    "IDENTICAL_TOLERANCE",
    "IDENTITY_COLUMNS",
    "PAIRED_KEYS",
    "SPREAD_KEYS",
    "SubjectScores",
    "identical_rows",
    "paired_difference",
    "quality_spread",
    "read_subject_scores",
    "spread",
    "subject_mean_dice",
]

PathLike = Union[str, os.PathLike]
#: One evaluation's per-subject scores: case -> column -> value (NaN where the CSV has none).
SubjectScores = Dict[str, Dict[str, float]]

#: The Table 1 keys with a spread: the per-subject metrics and the mean Dice over TC/WT/ET.
SPREAD_KEYS: Tuple[str, ...] = (*METRIC_COLUMNS, "dice_mean")
#: The per-subject columns two rows must share to be identical: Dice and HD95 of every scored region.
IDENTITY_COLUMNS: Tuple[str, ...] = tuple(f"{metric}_{region}" for metric in ("dice", "hd95")
                                          for region in SCORED_REGIONS)
#: Largest difference between two scores still counted as equal.
IDENTICAL_TOLERANCE = 1e-9
#: The keys of :func:`paired_difference`.
PAIRED_KEYS: Tuple[str, ...] = ("paired_n", "paired_dice_diff", "paired_dice_ci",
                                *(f"paired_dice_diff_{r}" for r in REGIONS), "paired_unmatched")


def spread(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """The sample standard deviation of the finite ``values`` and the half-width of the 95 % confidence interval of
    their mean (Student's t with ``n - 1`` degrees of freedom).

    Returns:
        ``(std, ci95)``; both ``None`` with fewer than two finite values.

    Example::

        >>> std, ci95 = spread([0.4, 0.6, float("nan")])
        >>> round(std, 4), round(ci95, 4)  # t(0.975, 1) = 12.706: two subjects say little
        (0.1414, 1.2706)
        >>> spread([0.5])
        (None, None)
    """
    finite = [float(v) for v in values if math.isfinite(float(v))]
    n = len(finite)
    if n < 2:
        return None, None
    mean = sum(finite) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    return std, float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def paired_difference(scores: SubjectScores, reference: SubjectScores) -> Dict[str, Any]:
    """The per-subject (paired) difference between a model's and a reference's mean Dice over TC/WT/ET
    (:func:`subject_mean_dice`, the score of Table 1's mean Dice), with the 95 % confidence interval of its mean.

    Subjects are matched by case id, whatever the order of the CSVs. A case that only one of the two has is left out
    and named in ``paired_unmatched``: a study scores every model on the same subjects, so a name there means an
    evaluation is incomplete or of another split, and the difference covers fewer subjects than the table's means. A
    subject whose mean Dice is NaN on either side (every region empty on both sides) is left out too, as in Table 1.

    Args:
        scores: the model's per-subject scores (:func:`read_subject_scores`).
        reference: the reference's (the baseline's), in the same form.

    Returns:
        ``paired_n``: the subjects paired; ``paired_dice_diff``: the mean over them of model minus reference
        (``None`` without a subject); ``paired_dice_ci``: ``[low, high]``, its 95 % confidence interval, Student's t
        with ``paired_n - 1`` degrees of freedom (``None`` with fewer than two subjects); ``paired_dice_diff_<region>``
        for TC, WT and ET: the mean difference of that region's Dice over the paired subjects where both sides have
        one (``None`` where none has); ``paired_unmatched``: the case ids only one side has, sorted (empty: none).

    Example::

        >>> ref = {c: {"dice_TC": 0.8, "dice_WT": 0.9, "dice_ET": 0.7} for c in ("a", "b", "c")}
        >>> model = {c: {"dice_TC": 0.8 - d, "dice_WT": 0.9 - d, "dice_ET": 0.7 - d}
        ...          for c, d in (("c", 0.0), ("b", 0.05), ("a", 0.1), ("x", 0.5))}
        >>> found = paired_difference(model, ref)
        >>> found["paired_n"], round(found["paired_dice_diff"], 4), found["paired_unmatched"]
        (3, -0.05, ['x'])
        >>> [round(v, 4) for v in found["paired_dice_ci"]]  # -0.05 -/+ t(0.975, 2) 4.303 x 0.05 / sqrt(3)
        [-0.1742, 0.0742]
    """
    shared = [case for case in scores if case in reference]
    pairs = [(subject_mean_dice(scores[c]), subject_mean_dice(reference[c])) for c in shared]
    differences = [ours - ref for ours, ref in pairs if math.isfinite(ours) and math.isfinite(ref)]
    mean = _mean(differences)
    _, ci95 = spread(differences)
    out: Dict[str, Any] = {
        "paired_n": len(differences),
        "paired_dice_diff": mean,
        "paired_dice_ci": None if mean is None or ci95 is None else [mean - ci95, mean + ci95],
    }
    for region in REGIONS:
        key = f"dice_{region}"
        per_region = [(scores[c].get(key, math.nan), reference[c].get(key, math.nan)) for c in shared]
        out[f"paired_dice_diff_{region}"] = _mean([a - b for a, b in per_region
                                                   if math.isfinite(a) and math.isfinite(b)])
    out["paired_unmatched"] = sorted(scores.keys() ^ reference.keys())
    return out


def read_subject_scores(path: PathLike, columns: Sequence[str] = METRIC_COLUMNS) -> SubjectScores:
    """The ``columns`` of an evaluation's ``metrics_per_subject.csv``, per case, as numbers (an empty cell: NaN).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a column is missing or a cell is not a number (the message names the file).
    """
    scores: SubjectScores = {}
    for line in read_subject_rows(path):
        missing = [c for c in ("case", *columns) if c not in line]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(missing)} in the per-subject scores.")
        try:
            scores[line["case"]] = {c: math.nan if line[c] in ("", None) else float(line[c]) for c in columns}
        except ValueError:
            raise ValueError(f"{path}: case {line['case']} holds a score that is not a number.") from None
    return scores


def quality_spread(scores: SubjectScores) -> Dict[str, Optional[float]]:
    """``<key>_std`` and ``<key>_ci95`` (:func:`spread`) of every key of :data:`SPREAD_KEYS` over the subjects.

    Example::

        >>> nan = float("nan")
        >>> subjects = {"a": {"dice_TC": 0.4, "dice_WT": 0.6, "dice_ET": nan},
        ...             "b": {"dice_TC": 0.6, "dice_WT": 0.8, "dice_ET": 0.7}}
        >>> result = quality_spread({c: {k: s.get(k, nan) for k in METRIC_COLUMNS} for c, s in subjects.items()})
        >>> round(result["dice_TC_std"], 4), result["dice_ET_std"], round(result["dice_mean_std"], 4)
        (0.1414, None, 0.1414)
    """
    per_key = {key: [s[key] for s in scores.values()] for key in METRIC_COLUMNS}
    per_key["dice_mean"] = [subject_mean_dice(s) for s in scores.values()]
    out: Dict[str, Optional[float]] = {}
    for key in SPREAD_KEYS:
        out[f"{key}_std"], out[f"{key}_ci95"] = spread(per_key[key])
    return out


def _same(a: SubjectScores, b: SubjectScores, columns: Sequence[str], tolerance: float) -> bool:
    if a.keys() != b.keys():
        return False
    for case, scores in a.items():
        for column in columns:
            x, y = scores[column], b[case][column]
            if math.isnan(x) != math.isnan(y) or (not math.isnan(x) and abs(x - y) > tolerance):
                return False
    return True


def identical_rows(
    scores: Mapping[str, SubjectScores],
    columns: Sequence[str] = IDENTITY_COLUMNS,
    tolerance: float = IDENTICAL_TOLERANCE,
) -> Dict[str, List[str]]:
    """For every model, the other models with the same subjects and the same ``columns`` on each of them (within
    ``tolerance``; NaN equals only NaN).

    Args:
        scores: model -> its per-subject scores (:func:`read_subject_scores`), in report order.
        columns: the columns compared.
        tolerance: the largest difference counted as equal.

    Returns:
        Model -> the identical other models, in the order of ``scores`` (empty: none).

    Example::

        >>> a = {"c1": {"dice_TC": 0.5, "hd95_TC": float("nan")}}
        >>> b = {"c1": {"dice_TC": 0.5 + 1e-12, "hd95_TC": float("nan")}}
        >>> c = {"c1": {"dice_TC": 0.6, "hd95_TC": float("nan")}}
        >>> identical_rows({"x": a, "y": b, "z": c}, ("dice_TC", "hd95_TC"))
        {'x': ['y'], 'y': ['x'], 'z': []}
    """
    models = list(scores)
    found: Dict[str, List[str]] = {m: [] for m in models}
    for i, first in enumerate(models):
        for second in models[i + 1:]:
            if _same(scores[first], scores[second], columns, tolerance):
                found[first].append(second)
                found[second].append(first)
    return found
