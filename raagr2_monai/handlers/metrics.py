"""Ignite handlers of the BraTS metrics: the validation key metric and the per-subject CSV writer of evaluation
(with, where the evaluation sampled several predictions, each subject's uncertainty and how well it predicts
failure)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import decollate_batch
from monai.handlers import IgniteMetricHandler
from monai.metrics import DiceMetric

from raagr2_monai.constants import DEFAULT_CONVENTION
from raagr2_monai.data.labels import labelmap_to_regions
from raagr2_monai.data.layouts import strip_extension
from raagr2_monai.data.transforms import CONVENTION_KEY
from raagr2_monai.data.validation import read_label_file
from raagr2_monai.metrics import (
    DEFAULT_MARGIN,
    SUBJECT_COLUMNS,
    failure_prediction,
    get_convention,
    lesionwise_options,
    on_cpu,
    reliability_counts,
    reliability_from_counts,
    score_subject,
    study_uncertainty,
    subject_mean_dice,
    summarise,
    write_metrics_csv,
)
from raagr2_monai.networks import UNCERTAINTY_MODES
from raagr2_monai.utils import atomic_write_json
from raagr2_monai.visualize import reliability_figure, save_png

from raagr2_monai.handlers.items import item_value, source_file

__all__ = ["BraTSMeanDice", "BraTSMetricsWriter", "FAILURE_JSON", "RELIABILITY_PNG", "FAILURE_STATISTICS"]

logger = logging.getLogger(__name__)

#: The failure-prediction summary an evaluation with an uncertainty writes, in its output folder.
FAILURE_JSON = "failure_prediction.json"
#: Its reliability diagram.
RELIABILITY_PNG = "reliability.png"
#: The rows the summary CSV gains with an uncertainty (value in its ``uncertainty`` column): Spearman's correlation of
#: the score with the subjects' mean Dice, the AUROC for finding the subjects below ``failure_dice``, their number,
#: and the expected calibration error of the voxel probabilities (all voxels).
FAILURE_STATISTICS = ("failure_spearman", "failure_auroc", "failures", "ece")
# the per-row entry holding a subject's reliability sums until the rows of every rank are gathered
_RELIABILITY = "_reliability"


class BraTSMeanDice(IgniteMetricHandler):
    """Mean Dice over TC, WT, ET for validation during training (model selection, LR schedule, early stopping).

    ``monai.handlers.MeanDice`` has no ``ignore_empty`` argument and scores an empty label as NaN, leaving such
    subjects out of the mean; this handler wraps ``DiceMetric(include_background=True, ignore_empty=False)`` so that
    an empty region scores 1 when the prediction is empty too and 0 otherwise (the ``"thesis"`` convention of
    :mod:`raagr2_monai.metrics.conventions`): a model that wrongly predicts enhancing tumour in a case without any is
    penalised, and no subject drops out of a small validation set. Evaluation reports the official convention.
    Predictions must be binarised by the evaluator's postprocessing (``NestRegionsd`` in the bundles).

    Args:
        reduction: MONAI metric reduction; ``"mean"`` gives one number, ``"mean_batch"`` one per region.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.
        save_details: keep the per-subject (B, 3) scores in ``engine.state.metric_details``.

    Example:
        A bundle's evaluator config::

            "key_val_metric": {"val_mean_dice": {"_target_": "raagr2_monai.handlers.BraTSMeanDice",
                "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}}
    """

    def __init__(
        self,
        reduction: str = "mean",
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = DiceMetric(include_background=True, reduction=reduction, ignore_empty=False)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class BraTSMetricsWriter:
    """Ignite handler scoring every evaluated subject from the label map that inference writes, on the input's own
    grid, against the case's seg file, and writing the scores as two CSV files.

    Each output item of the evaluator (after the write-back postprocessing of
    :func:`raagr2_monai.data.chains.writeback_spec`) holds ``pred_key``: the (1, X, Y, Z) label map 0/1/2/4 on the
    input's grid, as written; optionally ``prob_key``: the (3, X, Y, Z) probabilities on that grid; and
    ``label_key``: the label MetaTensor of the working grid, whose ``meta["filename_or_obj"]`` names the seg file.
    That file is read as it is on disk (:func:`raagr2_monai.data.validation.read_label_file`) and the two label maps
    are scored by :func:`raagr2_monai.metrics.score_subject` (global and lesion-wise metrics under one scoring
    convention), so the scores are those of the written segmentation; distances are in mm, from the seg file's voxel
    spacing.

    The case id comes from, in order: the ``case_key`` entry of the output item, of the matching
    ``engine.state.batch`` item, the seg file's name, or ``case_<n>``.

    On ``STARTED`` the rows are cleared (an evaluator runs once per validation round); on ``COMPLETED`` the rows of
    all processes are gathered (every rank must attach this handler) and rank 0 writes
    ``<output_dir>/metrics_per_subject.csv`` (a ``case`` column then :data:`~raagr2_monai.metrics.SUBJECT_COLUMNS`,
    the lesion-wise ones only when computed, one row per subject, sorted by case), ``<output_dir>/metrics_summary.csv`` (a ``statistic`` column, rows mean,
    std, median and count - the number of subjects entering each mean, those with both sides empty being left out
    under the official convention - then the same metric columns) and ``<output_dir>/metrics_settings.json`` (the
    scoring convention with its reference, the lesion-wise options, the number of subjects).

    With ``uncertainty`` ``tta`` or ``mc_dropout`` (the predictions were several, averaged: ``prob_key`` holds their
    mean) each subject's row also gets ``uncertainty``, :func:`~raagr2_monai.metrics.study_uncertainty` of its mean
    probabilities on the input's grid (a column of both CSVs, last), and rank 0 also writes how well that score
    predicts failure: ``<output_dir>/failure_prediction.json`` (:func:`~raagr2_monai.metrics.failure_prediction` of
    the scores against each subject's mean Dice over TC, WT and ET, :func:`~raagr2_monai.metrics.subject_mean_dice`,
    with ``failure_dice`` the threshold of a failure; and the reliability of the voxel probabilities against the
    label's regions, pooled over the subjects from each subject's bin sums, over all voxels (``reliability``) and over
    the voxels where the mean prediction reaches ``margin`` or the label has tumour (``reliability_tumour``)),
    ``<output_dir>/reliability.png`` (both as a reliability diagram) and the rows :data:`FAILURE_STATISTICS` of
    ``metrics_summary.csv``. With ``uncertainty`` ``none`` nothing of this is computed or written.

    Args:
        output_dir: folder of the CSV and JSON files.
        pred_key: key of the written label map in each output item.
        prob_key: key of the probabilities (for the thesis-style pooled Dice), or ``None``.
        label_key: key of the label MetaTensor naming the seg file.
        case_key: key of the case id in the output or batch items.
        convention: the scoring convention, ``"brats"`` (official BraTS evaluation, default) or ``"thesis"`` (the
            former one: both-empty Dice 1; see :mod:`raagr2_monai.metrics.conventions`).
        lesionwise: a lesion-wise preset name (``raagr2_monai.metrics.LESIONWISE_PRESETS``) or options; ``None``
            leaves the lesion-wise columns out.
        uncertainty: how the predictions were sampled (:data:`~raagr2_monai.networks.UNCERTAINTY_MODES`: ``none``,
            ``tta``, ``mc_dropout``); anything but ``none`` needs ``prob_key``.
        failure_dice: a subject whose mean Dice is below this counts as a failure (in (0, 1]).
        reliability_bins: confidence bins of the reliability.
        margin: the region probability from which a voxel counts for the score
            (:data:`~raagr2_monai.metrics.DEFAULT_MARGIN`) and for the tumour-region reliability.

    Raises:
        ValueError: an unknown ``uncertainty``, one without ``prob_key``, or ``failure_dice`` outside (0, 1].

    Example::

        BraTSMetricsWriter("runs/evaluate", prob_key="pred_prob").attach(evaluator)
        BraTSMetricsWriter("runs/evaluate-tta", prob_key="pred_prob", uncertainty="tta").attach(evaluator)
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        pred_key: str = "pred",
        prob_key: str | None = None,
        label_key: str = "label",
        case_key: str = "case",
        convention: str = "brats",
        lesionwise: str | Mapping[str, Any] | None = "brats2023-gli",
        uncertainty: str = "none",
        failure_dice: float = 0.8,
        reliability_bins: int = 10,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        if uncertainty not in UNCERTAINTY_MODES:
            raise ValueError(f"BraTSMetricsWriter: uncertainty must be one of {', '.join(UNCERTAINTY_MODES)}; got "
                             f"{uncertainty!r}.")
        if uncertainty != "none" and prob_key is None:
            raise ValueError(f"BraTSMetricsWriter: uncertainty {uncertainty} scores the mean probabilities: give "
                             "prob_key.")
        if isinstance(failure_dice, bool) or not 0.0 < float(failure_dice) <= 1.0:
            raise ValueError(f"failure_dice must lie in (0, 1]; got {failure_dice!r}.")
        self.uncertainty = uncertainty
        self.failure_dice = float(failure_dice)
        self.reliability_bins = int(reliability_bins)
        self.margin = float(margin)
        self.convention = get_convention(convention)
        self.lesionwise = lesionwise_options(lesionwise)
        self.output_dir = Path(output_dir)
        self.pred_key = pred_key
        self.prob_key = prob_key
        self.label_key = label_key
        self.case_key = case_key
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's callbacks on ``engine``.

        Args:
            engine: an Ignite engine, typically a MONAI ``SupervisedEvaluator``.
        """
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the rows of a previous run."""
        self.rows = []

    def _case_id(self, engine: Engine, item: Mapping[str, Any], index: int, seg_path: str) -> str:
        case = item_value(engine, item, index, self.case_key)
        if case is not None:
            return str(case)
        return strip_extension(os.path.basename(seg_path)) or f"case_{len(self.rows)}"

    def iteration_completed(self, engine: Engine) -> None:
        """Score every subject of the current iteration's output.

        Raises:
            ValueError: an output item lacks the prediction or names no seg file, or the written label map and the
                seg file differ in shape (then the prediction was not inverted onto the input's grid).
        """
        output = engine.state.output
        items = decollate_batch(output, detach=True) if isinstance(output, Mapping) else output
        for index, item in enumerate(items):
            if self.pred_key not in item:
                raise ValueError(
                    f"BraTSMetricsWriter: engine output item {index} has no {self.pred_key!r} (keys: {sorted(item)})."
                )
            seg_path = source_file(item, self.label_key)
            if seg_path is None:
                raise ValueError(
                    f"BraTSMetricsWriter: output item {index} names no seg file: {self.label_key!r} must be the loaded "
                    "label MetaTensor (its meta['filename_or_obj'] is the file scored against)."
                )
            case = self._case_id(engine, item, index, seg_path)
            labels = item_value(engine, item, index, CONVENTION_KEY) or DEFAULT_CONVENTION
            truth, spacing = read_label_file(seg_path, case, labels)
            truth = torch.as_tensor(truth)[None]
            prob = item.get(self.prob_key) if self.prob_key else None
            row = score_subject(
                item[self.pred_key], truth, case, spacing, prob, self.convention, self.lesionwise, labels,
            )
            if self.uncertainty != "none":
                row.update(self._uncertainty(prob, truth, labels, case))
            self.rows.append(row)

    def _uncertainty(self, prob: Any, truth: torch.Tensor, labels: str, case: str) -> dict[str, Any]:
        """A subject's uncertainty score and reliability sums (all voxels, tumour region) of its mean probabilities
        against the regions of its seg file."""
        if prob is None:
            raise ValueError(f"BraTSMetricsWriter: case {case} has no {self.prob_key!r}: uncertainty "
                             f"{self.uncertainty} needs the mean probabilities.")
        p = on_cpu(prob).float().numpy()
        regions = labelmap_to_regions(truth, labels).numpy()
        if p.shape != regions.shape:
            raise ValueError(f"Case {case}: the probabilities have shape {list(p.shape)}, the seg file's regions "
                             f"{list(regions.shape)}: they must be on the input's grid.")
        if p.min() < 0.0 or p.max() > 1.0:  # resampling may step past [0, 1] by a rounding error (NaN stays)
            p = p.clip(0.0, 1.0)
        tumour = (p.max(axis=0) >= self.margin) | (regions.max(axis=0) > 0)
        return {
            "uncertainty": study_uncertainty(p, self.margin),
            _RELIABILITY: {
                "all": reliability_counts(p, regions, self.reliability_bins).tolist(),
                "tumour": reliability_counts(p, regions, self.reliability_bins, tumour).tolist(),
            },
        }

    def completed(self, engine: Engine | None = None) -> None:
        """Gather the rows of all processes; rank 0 writes the per-subject and summary CSV files."""
        rows = sorted((row for part in idist.all_gather(self.rows) for row in part), key=lambda row: row["case"])
        if idist.get_rank() != 0:
            return
        columns = [c for c in SUBJECT_COLUMNS if self.lesionwise is not None or not c.startswith("lesion_")]
        if self.uncertainty != "none":
            columns.append("uncertainty")
        sums = [row[_RELIABILITY] for row in rows if _RELIABILITY in row]
        rows = [{key: row[key] for key in ("case", *columns)} for row in rows]
        per_subject = write_metrics_csv(rows, self.output_dir / "metrics_per_subject.csv", fieldnames=("case", *columns))
        stats = summarise(rows)
        summary_rows = []
        for name, values in stats.items():
            missing = 0.0 if name == "count" else math.nan
            summary_rows.append({"statistic": name, **{key: values.get(key, missing) for key in columns}})
        if self.uncertainty != "none":
            figures = self._write_failure_prediction(rows, sums)
            values = (figures["spearman"], figures["auroc"], figures["failures"], figures["reliability"]["ece"])
            summary_rows += [{"statistic": name, **dict.fromkeys(columns, math.nan), "uncertainty": value}
                             for name, value in zip(FAILURE_STATISTICS, values)]
        summary = write_metrics_csv(
            summary_rows, self.output_dir / "metrics_summary.csv", fieldnames=("statistic", *columns)
        )
        settings = {
            "convention": self.convention.name,
            "convention_description": self.convention.description,
            "lesionwise": self.lesionwise,
            "subjects": len(rows),
            "scored_against": "the seg file of each case, on its own grid and voxel spacing (mm)",
        }
        if self.uncertainty != "none":
            settings.update(uncertainty=self.uncertainty, failure_dice=self.failure_dice, margin=self.margin,
                            reliability_bins=self.reliability_bins)
        atomic_write_json(self.output_dir / "metrics_settings.json", settings)
        logger.info("BraTS metrics of %d subjects written to %s and %s", len(rows), per_subject, summary)

    def _write_failure_prediction(self, rows: list[dict[str, Any]], sums: list[Mapping[str, Any]]) -> dict[str, Any]:
        """``failure_prediction.json`` and ``reliability.png`` of the gathered rows and reliability sums; returns the
        figures."""
        figures: dict[str, Any] = {
            "uncertainty": self.uncertainty,
            "score": f"study_uncertainty: mean entropy of the mean prediction over the voxels where a region "
                     f"reaches {self.margin:g}",
            "dice": "mean Dice over TC, WT and ET (NaN regions left out)",
            **failure_prediction([row["uncertainty"] for row in rows], [subject_mean_dice(row) for row in rows],
                                 self.failure_dice),
        }
        for key, part in (("reliability", "all"), ("reliability_tumour", "tumour")):
            total = np.sum([np.asarray(s[part], dtype=np.float64) for s in sums], axis=0) if sums else \
                np.zeros((self.reliability_bins, 3))
            figures[key] = reliability_from_counts(total)
        figures["reliability_tumour"]["voxels_counted"] = (
            f"voxels where a region's mean probability reaches {self.margin:g} or the seg file has tumour")
        atomic_write_json(self.output_dir / FAILURE_JSON, _nan_to_none(figures))
        save_png(reliability_figure(
            {"all voxels": figures["reliability"], "tumour region": figures["reliability_tumour"]},
            title=f"{len(rows)} subjects, uncertainty {self.uncertainty}: Spearman {figures['spearman']:.3f}, "
                  f"AUROC (mean Dice < {self.failure_dice:g}) {figures['auroc']:.3f}",
        ), self.output_dir / RELIABILITY_PNG)
        logger.info("Failure prediction of %d subjects (uncertainty %s): Spearman %.3f, AUROC %.3f, ECE %.4f; "
                    "written to %s", len(rows), self.uncertainty, figures["spearman"], figures["auroc"],
                    figures["reliability"]["ece"], self.output_dir / FAILURE_JSON)
        return figures


def _nan_to_none(value: Any) -> Any:
    """``value`` with every NaN float replaced by ``None`` (JSON's null), containers recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {key: _nan_to_none(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value
