"""Does the uncertainty predict failure? The report's section on it: the baseline and each family's best model
(:func:`~raagr2_monai.report.evaluation_figures.best_per_family`, chosen on validation) evaluated again on the test
subjects with several predictions per slice (the study's ``uncertainty/<key>`` steps), how well each one's per-study
uncertainty ranks the subjects by Dice (Spearman; AUROC for finding the subjects below a Dice threshold) and how
reliable its voxel probabilities are (expected calibration error, reliability diagram).

Everything is read from plain data: the study's state (the steps record each evaluation's folder and
``failure_prediction.json``, written by :class:`raagr2_monai.handlers.BraTSMetricsWriter`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from scipy import stats

from raagr2_monai.metrics import DEFAULT_MARGIN
from raagr2_monai.visualize import reliability_figure, save_png

from .evaluation_figures import FAMILY_TITLES, best_per_family
from .rows import ModelLike, read_summary, region_mean_dice, step_name, validation_score

__all__ = [
    "FAILURE_STEP",
    "FailurePrediction",
    "failure_models",
    "failure_records",
    "failure_lines",
    "spearman_threshold",
    "write_failure_prediction",
]

PathLike = Union[str, os.PathLike]

#: The prefix of the study's steps that evaluate a model with an uncertainty: ``uncertainty/baseline`` and
#: ``uncertainty/<family>`` (the family's best model).
FAILURE_STEP = "uncertainty/"
_REFERENCE = "baseline"


def failure_models(rows: Sequence[Mapping[str, Any]]) -> List[Tuple[str, str, str]]:
    """The models whose failure prediction the report shows: the baseline, then each family's best model (chosen as
    the report's figures choose it, on validation), as ``(key, model, chosen on)``; ``key`` names the study step
    (``uncertainty/<key>``).

    Example::

        >>> rows = [{"model": "baseline", "family": "architecture", "validation": {"val_mean_dice": 0.9},
        ...          "quality": {"dice_mean": 0.9}},
        ...         {"model": "snip-20", "family": "snip", "validation": {"val_mean_dice": 0.5},
        ...          "quality": {"dice_mean": 0.4}}]
        >>> failure_models(rows)
        [('baseline', 'baseline', 'reference'), ('snip', 'snip-20', 'validation')]
    """
    chosen = [(_REFERENCE, _REFERENCE, "reference")] if any(r["model"] == _REFERENCE for r in rows) else []
    return chosen + [(b.family, b.model, b.basis) for b in best_per_family(rows)]


def failure_model(root: PathLike, state: Mapping[str, Any], models: Sequence[ModelLike], key: str) -> str:
    """The model the study's ``uncertainty/<key>`` step evaluates, from the finished steps of ``state`` (before the
    benchmark, which :func:`~raagr2_monai.report.rows.collect_rows` needs): the baseline for ``baseline``, else the
    best model of family ``key`` as :func:`failure_models` (:func:`best_per_family`) chooses it from the report's rows:
    on its runs' best validation mean Dice, or the mean test Dice where none of the family has one.

    Args:
        root: the study folder.
        state: the content of its ``state.json``; the family's training or pruning steps must be done (and its
            evaluations, where no run has a validation score).
        models: the study's models, in report order.
        key: ``baseline`` or a family.

    Raises:
        ValueError: no model of family ``key`` has a finished run with a score.
    """
    if key == _REFERENCE:
        return _REFERENCE
    steps, candidates = state["steps"], []
    for spec in models:
        if spec.family != key or spec.name == _REFERENCE or step_name(spec) not in steps:
            continue
        history = json.loads((Path(root) / steps[step_name(spec)]["history"]).read_text())
        evaluated = steps.get(f"evaluate/{spec.name}")
        dice = region_mean_dice(read_summary(Path(root) / evaluated["summary_csv"])["mean"]) if evaluated else None
        candidates.append({"model": spec.name, "family": key, "quality": {"dice_mean": dice},
                           "validation": {"val_mean_dice": validation_score(history)}})
    best = best_per_family(candidates)
    if not best:
        raise ValueError(f"No model of the {key!r} family has a finished run with a score: its failure prediction "
                         "cannot choose one.")
    return best[0].model


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def failure_records(root: PathLike, state: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One record per finished ``uncertainty/<key>`` step of the study, in the order they were recorded.

    Args:
        root: the study folder (the steps' paths are relative to it).
        state: the content of its ``state.json``.

    Returns:
        Records with ``key``, ``model``, ``mode``, ``samples``, ``eval_dir``, ``subjects``,
        ``failure_dice``, ``failures``, ``spearman``, ``auroc``, ``ece``, ``ece_tumour``, ``reliability`` and
        ``reliability_tumour`` (NaN where the JSON holds null).

    Raises:
        FileNotFoundError: a step's ``failure_prediction.json`` is missing.
    """
    records = []
    for step, outputs in state["steps"].items():
        if not step.startswith(FAILURE_STEP):
            continue
        figures = json.loads((Path(root) / outputs["failure_json"]).read_text())
        records.append({
            "key": step[len(FAILURE_STEP):], "model": outputs["model"], "mode": outputs["mode"],
            "samples": outputs["samples"], "eval_dir": outputs["eval_dir"],
            "subjects": figures["subjects"], "failure_dice": figures["failure_dice"], "failures": figures["failures"],
            "spearman": _number(figures["spearman"]), "auroc": _number(figures["auroc"]),
            "ece": _number(figures["reliability"]["ece"]), "ece_tumour": _number(figures["reliability_tumour"]["ece"]),
            "reliability": figures["reliability"], "reliability_tumour": figures["reliability_tumour"],
        })
    return records


@dataclass(frozen=True)
class FailurePrediction:
    """What :func:`write_failure_prediction` found and drew.

    Attributes:
        records: :func:`failure_records`.
        chart: the reliability diagram of every model (tumour region), or ``None`` without records.
    """

    records: List[Dict[str, Any]]
    chart: Optional[Path]


def write_failure_prediction(root: PathLike, state: Mapping[str, Any], folder: PathLike,
                             dpi: int = 100) -> FailurePrediction:
    """Read the study's failure-prediction evaluations and draw their reliability diagram,
    ``<folder>/failure_reliability.png`` (each model's voxels of the tumour region: the whole volume is almost all
    confident background).

    Example::

        failure = write_failure_prediction(root, state, root / "charts")
        lines = failure_lines(failure, relative=lambda p: os.path.relpath(p, root))
    """
    records = failure_records(root, state)
    if not records:
        return FailurePrediction([], None)
    chart = save_png(reliability_figure(
        {r["model"]: r["reliability_tumour"] for r in records}, dpi=dpi,
        title="Reliability of the voxel probabilities in the tumour region, test subjects"),
        Path(folder) / "failure_reliability.png")
    return FailurePrediction(records, chart)


def spearman_threshold(subjects: int) -> float:
    """The smallest |Spearman| distinguishable from 0 at the 5 % level (two-sided) with ``subjects`` pairs, by the
    t approximation ``r = t / sqrt(n - 2 + t^2)``, ``t = t(0.975, n - 2)``; NaN below 4 subjects.

    Example::

        >>> round(spearman_threshold(21), 3), round(spearman_threshold(100), 3)
        (0.433, 0.197)
    """
    if subjects < 4:
        return math.nan
    t = float(stats.t.ppf(0.975, subjects - 2))
    return t / math.sqrt(subjects - 2 + t * t)


def _significance(subjects: int) -> str:
    threshold = spearman_threshold(subjects)
    if math.isnan(threshold):
        return f"{subjects} subjects are too few for a rank correlation to mean anything."
    return (f"With {subjects} subjects a Spearman within ±{threshold:.2f} is not distinguishable from 0 at the 5 % "
            "level.")


def _cell(value: float, spec: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def failure_lines(failure: FailurePrediction, relative: Any = str) -> List[str]:
    """The report's section on failure prediction; no lines without records (a study from before these steps).

    Args:
        failure: :func:`write_failure_prediction`'s result.
        relative: turns the chart's path into the one the report shows.

    Example::

        >>> failure_lines(FailurePrediction([], None))
        []
    """
    records = failure.records
    if not records:
        return []
    first = records[0]
    modes = sorted({f"{r['mode']} ({r['samples']} predictions a slice)" for r in records})
    lines = [
        "", "## Does the uncertainty predict failure?", "",
        f"The baseline and each family's best model (chosen on validation, as above) evaluated again on the "
        f"{first['subjects']} test subjects with {', '.join(modes)}: `tta` averages the network's probabilities over "
        "the slice and its in-plane flips, `mc_dropout` over passes with dropout on. Each subject's **uncertainty** "
        f"is the mean predictive entropy of that mean prediction over the voxels where a region reaches probability "
        f"{DEFAULT_MARGIN:g} (it cannot see a confident miss: a region predicted absent with certainty). "
        "**Spearman**: its rank correlation with the subject's mean Dice over TC/WT/ET (a useful score is "
        "negative: more uncertain, worse); **AUROC**: how well it finds the subjects whose mean Dice is below "
        f"{first['failure_dice']:g} (0.5: chance, 1: every failure above every success; `-` without both kinds). "
        "**ECE**: the expected calibration error of the voxel probabilities (confidence max(p, 1 - p) against "
        f"being right, {len(first['reliability']['bins'])} bins), over every voxel and over the tumour region "
        f"(voxels where a region reaches {DEFAULT_MARGIN:g} or the label has tumour). "
        + _significance(first["subjects"]) + " The label maps of these evaluations come from the mean prediction, "
        "so their Dice can differ slightly from Table 1's.", "",
        "| model | chosen as | uncertainty | Spearman (uncertainty, mean Dice) | AUROC (mean Dice < "
        f"{first['failure_dice']:g}) | subjects below / scored | ECE, all voxels | ECE, tumour region | evaluation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        chosen = "reference" if r["key"] == _REFERENCE else f"best of {FAMILY_TITLES.get(r['key'], r['key'])}"
        lines.append(f"| `{r['model']}` | {chosen} | {r['mode']}, {r['samples']} | {_cell(r['spearman'], '+.3f')} | "
                     f"{_cell(r['auroc'], '.3f')} | {r['failures']} / {r['subjects']} | {_cell(r['ece'], '.4f')} | "
                     f"{_cell(r['ece_tumour'], '.4f')} | `{r['eval_dir']}/` |")
    lines += ["", f"![failure_reliability]({relative(failure.chart)})", "",
              "Reliability in the tumour region: each confidence bin's accuracy at its mean confidence (on the "
              "diagonal: calibrated; below: over-confident), and below it the share of voxels per bin. Each "
              "evaluation's folder holds its `failure_prediction.json` (the figures and bins) and `reliability.png` "
              "(all voxels and tumour region)."]
    return lines
