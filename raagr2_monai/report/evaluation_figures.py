"""The evaluation's pictures in the report: each family's best model beside the baseline and the ground truth on one
test subject (:func:`~raagr2_monai.visualize.comparison_figure`), and the per-subject Dice and HD95 of the same
models (:func:`~raagr2_monai.visualize.distribution_figure`); and which model is each family's best, and on what.

A family's best model is chosen on the validation subjects (the best validation mean Dice of its run, the score its
kept checkpoint was selected on), never on the test subjects the report shows: choosing on them would flatter the
family. Only a family none of whose models carries a validation score falls back on the mean test Dice, and its
:class:`FamilyBest` says so, as does the report.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from raagr2_monai.constants import REGIONS
from raagr2_monai.data.transforms import CONVENTION_KEY
from raagr2_monai.data.validation import read_label_file
from raagr2_monai.visualize import (
    comparison_figure,
    distribution_figure,
    file_channels,
    read_modalities,
    read_subject_rows,
    save_png,
)

from .statistics import subject_mean_dice

__all__ = [
    "FAMILY_TITLES",
    "FamilyBest",
    "EvaluationFigures",
    "best_per_family",
    "representative_case",
    "write_evaluation_figures",
]

PathLike = Union[str, os.PathLike]

#: Each family of the study's rows (``ModelSpec.family``) as the report names it.
FAMILY_TITLES: Dict[str, str] = {
    "architecture": "weight sharing",
    "magnitude": "magnitude pruning",
    "snip": "SNIP pruning",
    "depgraph": "DepGraph pruning",
    "hybrid": "hybrid (weight sharing + DepGraph)",
}
_REFERENCE = "baseline"  # the model every family is compared with, never a family's best itself


@dataclass(frozen=True)
class FamilyBest:
    """A family's best model.

    Attributes:
        family: the family (a key of :data:`FAMILY_TITLES`).
        model: the chosen row's model name.
        basis: ``"validation"`` (best validation mean Dice) or ``"test"`` (mean test Dice, where no row of the family
            has a validation score).
        score: the chosen row's score on that basis.
    """

    family: str
    model: str
    basis: str
    score: float


@dataclass(frozen=True)
class EvaluationFigures:
    """What :func:`write_evaluation_figures` drew.

    Attributes:
        case: the test subject of the comparison.
        models: the models shown, the baseline first.
        comparison: the comparison PNG.
        distributions: the distributions PNG.
    """

    case: str
    models: List[str]
    comparison: Path
    distributions: Path


def best_per_family(rows: Sequence[Mapping[str, Any]]) -> List[FamilyBest]:
    """Each family's best model other than the baseline, in the order the families first appear in ``rows``.

    A family's candidates are its rows with a validation score (``row["validation"]["val_mean_dice"]``); the highest
    wins, the first in ``rows`` on a tie. A family with no such row is chosen on the mean test Dice
    (``row["quality"]["dice_mean"]``) with ``basis="test"``; a family with neither score, or with only the baseline,
    is left out.

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).

    Returns:
        One :class:`FamilyBest` per family.

    Example::

        >>> rows = [
        ...     {"model": "baseline", "family": "architecture", "validation": {"val_mean_dice": 0.9},
        ...      "quality": {"dice_mean": 0.9}},
        ...     {"model": "paired", "family": "architecture", "validation": {"val_mean_dice": 0.7},
        ...      "quality": {"dice_mean": 0.5}},
        ...     {"model": "depthwise", "family": "architecture", "validation": {"val_mean_dice": 0.6},
        ...      "quality": {"dice_mean": 0.8}},
        ...     {"model": "snip-20", "family": "snip", "validation": {"val_mean_dice": None},
        ...      "quality": {"dice_mean": 0.4}},
        ... ]
        >>> [(b.family, b.model, b.basis) for b in best_per_family(rows)]
        [('architecture', 'paired', 'validation'), ('snip', 'snip-20', 'test')]
    """
    families: Dict[str, List[Mapping[str, Any]]] = {}
    for row in rows:
        if row["model"] != _REFERENCE:
            families.setdefault(row["family"], []).append(row)
    chosen = []
    for family, members in families.items():
        for basis, score_of in (("validation", lambda r: r["validation"]["val_mean_dice"]),
                                ("test", lambda r: r["quality"]["dice_mean"])):
            scored = [(score_of(r), r) for r in members if score_of(r) is not None]
            if scored:
                # max() keeps the first of equal scores: ties go to the earlier row
                score, row = max(scored, key=lambda pair: pair[0])
                chosen.append(FamilyBest(family, row["model"], basis, float(score)))
                break
    return chosen


def representative_case(subject_rows: Sequence[Mapping[str, Any]], cases: Sequence[str]) -> str:
    """The subject of ``cases`` whose mean Dice (TC, WT, ET; NaN regions left out) is the median of the given
    per-subject rows (the lower of the two middle ones for an even count): a typical subject, neither the best nor
    the worst.

    Args:
        subject_rows: one model's per-subject rows (``metrics_per_subject.csv``), with ``case`` and ``dice_<region>``.
        cases: the subjects that can be shown (those with images on disk), in order; the first is the answer when no
            row of them has a finite Dice.

    Returns:
        The case id.

    Raises:
        ValueError: ``cases`` is empty.

    Example::

        >>> rows = [{"case": c, "dice_TC": d, "dice_WT": d, "dice_ET": "nan"} for c, d in
        ...         (("a", 0.9), ("b", 0.1), ("c", 0.5), ("d", 0.7))]
        >>> representative_case(rows, ["a", "b", "c", "d"])
        'c'
    """
    if not cases:
        raise ValueError("representative_case needs at least one case.")
    scores = {str(r["case"]): subject_mean_dice(r) for r in subject_rows}
    ranked = sorted((scores[c], i, c) for i, c in enumerate(cases) if math.isfinite(scores.get(c, math.nan)))
    return ranked[(len(ranked) - 1) // 2][2] if ranked else cases[0]


def _subject_dice(row: Mapping[str, Any]) -> Dict[str, float]:
    return {r: float(row[f"dice_{r}"]) if row.get(f"dice_{r}") not in (None, "") else math.nan for r in REGIONS}


def write_evaluation_figures(
    root: PathLike,
    rows: Sequence[Mapping[str, Any]],
    best: Sequence[FamilyBest],
    test_entries: Sequence[Mapping[str, Any]],
    folder: PathLike,
    dpi: int = 100,
) -> EvaluationFigures:
    """Draw the baseline and each family's best model on one test subject, and their per-subject distributions.

    The subject is :func:`representative_case` of the baseline's scores. Its FLAIR, seg file and each model's
    prediction (``<eval_dir>/predictions/<case>_pred.nii.gz``, the label map the evaluation wrote and scored, on the
    input's grid) are read from disk; each panel's Dice is the one in the model's ``metrics_per_subject.csv``.

    Args:
        root: the study folder (the rows' ``sources["eval_dir"]`` are relative to it).
        rows: the report's rows; the baseline's and each chosen model's are used.
        best: each family's best model (:func:`best_per_family`).
        test_entries: the test subjects' datalist entries (``case``, ``image``, ``label``, optionally the label
            convention and ``channels``), as the evaluation read them.
        folder: where ``best_models_subject.png`` and ``best_models_distributions.png`` go.
        dpi: pixels per inch.

    Returns:
        The :class:`EvaluationFigures`.

    Raises:
        ValueError: no baseline row, or no test entry.
        FileNotFoundError: a prediction, seg, image or per-subject CSV is missing.

    Example::

        entries = load_split(dataset_dir, "testing", None, seed)
        figures = write_evaluation_figures(root, rows, best_per_family(rows), entries, root / "charts")
    """
    root, folder = Path(root), Path(folder)
    by_name = {r["model"]: r for r in rows}
    if _REFERENCE not in by_name:
        raise ValueError(f"The report's rows hold no {_REFERENCE!r} row to compare the families' best models with.")
    models = [_REFERENCE] + [b.model for b in best]
    csvs = {m: root / by_name[m]["sources"]["eval_dir"] / "metrics_per_subject.csv" for m in models}
    tables = {m: read_subject_rows(path) for m, path in csvs.items()}
    entries = {str(e["case"]): e for e in test_entries}
    case = representative_case(tables[_REFERENCE], list(entries))
    entry = entries[case]
    labels: Optional[str] = entry.get(CONVENTION_KEY)
    truth, _ = read_label_file(entry["label"], case, labels)
    volumes, affine = read_modalities(entry["image"], ("flair",), file_channels(entry), case)
    predictions: Dict[str, np.ndarray] = {}
    scores: Dict[str, Dict[str, float]] = {}
    for model in models:
        path = root / by_name[model]["sources"]["eval_dir"] / "predictions" / f"{case}_pred.nii.gz"
        predictions[model], _ = read_label_file(path, case, labels)
        # the evaluation's own Dice of the subject; a model without that row is scored from its label map
        row = next((r for r in tables[model] if str(r["case"]) == case), None)
        if row is not None:
            scores[model] = _subject_dice(row)
    comparison = save_png(
        comparison_figure(volumes["flair"], truth, predictions, affine, title=f"test subject {case}",
                          scores=scores, labels=labels, dpi=dpi),
        folder / "best_models_subject.png",
    )
    distributions = save_png(
        distribution_figure(
            tables, ("dice", "hd95"), REGIONS, dpi=dpi,
            title="Per-subject Dice and HD95 on the test subjects: the baseline and each family's best",
        ),
        folder / "best_models_distributions.png",
    )
    return EvaluationFigures(case, models, comparison, distributions)
