"""Ignite handlers of the BraTS metrics: the validation key metric and the per-subject CSV writer of evaluation."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch
from monai.handlers import IgniteMetricHandler
from monai.metrics import DiceMetric

from raagr2_monai.metrics import METRIC_COLUMNS, brats_metrics, mean_iou, pooled_dice, summarise, write_metrics_csv

__all__ = ["BraTSMeanDice", "BraTSMetricsWriter"]

logger = logging.getLogger(__name__)


class BraTSMeanDice(IgniteMetricHandler):
    """Mean Dice over TC, WT, ET with the BraTS empty-case convention, as an Ignite metric for the evaluator.

    ``monai.handlers.MeanDice`` has no ``ignore_empty`` argument and scores an empty label as NaN, leaving such
    subjects out of the mean; this handler wraps ``DiceMetric(include_background=True, ignore_empty=False)`` so that
    an empty region scores 1 when the prediction is empty too and 0 otherwise, as in :func:`brats_metrics`.
    Predictions must be binarised by the evaluator's postprocessing (e.g. ``AsDiscreted(threshold=0.5)``).

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


def _case_from_meta(item: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = item.get(key)
        if isinstance(value, MetaTensor) and "filename_or_obj" in value.meta:
            name = value.meta["filename_or_obj"]
            if isinstance(name, (list, tuple)):
                name = name[0]
            base = Path(str(name)).name
            for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
                if base.endswith(suffix):
                    return base[: -len(suffix)]
            return base
    return None


class BraTSMetricsWriter:
    """Ignite handler computing every per-subject metric of an evaluation and writing them as two CSV files.

    On ``ITERATION_COMPLETED`` it reads ``engine.state.output``, the list of per-subject dicts that MONAI's engines
    produce after ``decollate_batch`` (a still-batched dict is decollated here), each with a ``pred_key`` tensor
    (3, H, W, D) of probabilities or a binary mask, and a ``label_key`` tensor of the same shape. The prediction is
    binarised with ``pred >= threshold`` (a binary mask is unchanged) for Dice, HD95 and mean IoU; the thesis-style
    pooled Dice uses the prediction as it arrives, so it is soft only if the postprocessing left it soft.

    The case id comes from, in order: the ``case_key`` entry of the output item, of the matching
    ``engine.state.batch`` item (put a ``"case"`` key in the datalist: MONAI carries extra keys through), the file
    name of the label/image ``MetaTensor`` (``meta["filename_or_obj"]`` without extension), or ``case_<n>``.
    Voxel spacing is ``spacing`` if given, else the label's ``MetaTensor.pixdim``, else 1.

    On ``STARTED`` the rows are cleared (an evaluator runs once per validation round); on ``COMPLETED`` the rows of
    all processes are gathered and rank 0 writes ``<output_dir>/metrics_per_subject.csv`` (a ``case`` column then
    :data:`METRIC_COLUMNS`) and ``<output_dir>/metrics_summary.csv`` (a ``statistic`` column, rows mean, std, median,
    count, then the same metric columns).

    Args:
        output_dir: folder of the two CSV files.
        threshold: binarisation threshold of the predictions.
        pred_key: key of the prediction in each output item.
        label_key: key of the label in each output item.
        case_key: key of the case id in the output or batch items.
        spacing: voxel size per spatial dimension; None = from the label's metadata.
        max_hd95: HD95 of a region present in only one of prediction and label; None = volume diagonal.

    Example::

        writer = BraTSMetricsWriter("eval")
        writer.attach(evaluator)
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        threshold: float = 0.5,
        pred_key: str = "pred",
        label_key: str = "label",
        case_key: str = "case",
        spacing: Sequence[float] | None = None,
        max_hd95: float | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.pred_key = pred_key
        self.label_key = label_key
        self.case_key = case_key
        self.spacing = spacing
        self.max_hd95 = max_hd95
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

    def _case_id(self, engine: Engine, item: Mapping[str, Any], index: int) -> str:
        if self.case_key in item:
            return str(item[self.case_key])
        batch = engine.state.batch
        if isinstance(batch, list) and index < len(batch) and isinstance(batch[index], Mapping):
            if self.case_key in batch[index]:
                return str(batch[index][self.case_key])
        elif isinstance(batch, Mapping) and self.case_key in batch:
            return str(batch[self.case_key][index])
        from_meta = _case_from_meta(item, (self.label_key, "image", self.pred_key))
        return from_meta if from_meta is not None else f"case_{len(self.rows)}"

    def _spacing(self, label: torch.Tensor) -> Sequence[float] | None:
        if self.spacing is not None:
            return self.spacing
        if isinstance(label, MetaTensor):
            return [float(s) for s in label.pixdim]
        return None

    def subject_row(self, pred: torch.Tensor, label: torch.Tensor, case: str) -> dict[str, Any]:
        """All metrics of one subject.

        Args:
            pred: prediction (3, H, W, D), probabilities or binary.
            label: binary label of the same shape.
            case: the case id.

        Returns:
            ``{"case": case, <every column of METRIC_COLUMNS>: float}``.

        Raises:
            ValueError: on mismatched shapes, a channel count other than 3, or a non-binary label.
        """
        spacing = self._spacing(label)
        pred_t = torch.as_tensor(pred).detach()[None]
        label_t = torch.as_tensor(label).detach()[None]
        binary = pred_t >= self.threshold
        metrics = brats_metrics(binary, label_t, spacing=spacing, max_hd95=self.max_hd95)
        row: dict[str, Any] = {"case": case}
        row.update({key: float(value[0]) for key, value in metrics.items()})
        row["thesis_pooled_dice"] = float(pooled_dice(pred_t, label_t))
        row["mean_iou"] = float(mean_iou(binary, label_t)[0])
        return {key: row[key] for key in ("case", *METRIC_COLUMNS)}

    def iteration_completed(self, engine: Engine) -> None:
        """Score every subject of the current iteration's output.

        Raises:
            ValueError: if an output item lacks the prediction or label key.
        """
        output = engine.state.output
        items = decollate_batch(output, detach=True) if isinstance(output, Mapping) else output
        for index, item in enumerate(items):
            missing = [key for key in (self.pred_key, self.label_key) if key not in item]
            if missing:
                raise ValueError(
                    f"BraTSMetricsWriter: engine output item {index} has no {missing} (keys: {sorted(item)})."
                )
            case = self._case_id(engine, item, index)
            self.rows.append(self.subject_row(item[self.pred_key], item[self.label_key], case))

    def completed(self, engine: Engine | None = None) -> None:
        """Gather the rows of all processes; rank 0 writes the per-subject and summary CSV files."""
        rows = [row for part in idist.all_gather(self.rows) for row in part]
        if idist.get_rank() != 0:
            return
        per_subject = write_metrics_csv(
            rows, self.output_dir / "metrics_per_subject.csv", fieldnames=("case", *METRIC_COLUMNS)
        )
        stats = summarise(rows)
        summary_rows = []
        for name, values in stats.items():
            missing = 0.0 if name == "count" else math.nan
            summary_rows.append({"statistic": name, **{key: values.get(key, missing) for key in METRIC_COLUMNS}})
        summary = write_metrics_csv(
            summary_rows, self.output_dir / "metrics_summary.csv", fieldnames=("statistic", *METRIC_COLUMNS)
        )
        logger.info("BraTS metrics of %d subjects written to %s and %s", len(rows), per_subject, summary)
