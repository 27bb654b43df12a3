"""BraTS-style per-subject region metrics, and the thesis-style pooled Dice kept apart (SPEC §3).

All metrics are computed per subject on the 3D volume (the 2D network's slices stacked back), on binarised
predictions and labels of shape (B, 3, H, W, D) whose channels are the BraTS regions TC, WT, ET (the order of MONAI's
``ConvertToMultiChannelBasedOnBratsClasses``). The disjoint subregions NCR = TC - ET, ED = WT - TC and ET are derived
with :func:`regions_to_subregions` and scored the same way.

Dice and HD95 come from MONAI's ``compute_dice`` and ``compute_hausdorff_distance(percentile=95)`` with
``include_background=True``: MONAI would otherwise drop channel 0, which here is TC, not a background. HD95 is the
symmetric 95th-percentile Hausdorff distance between the region surfaces, in the units of ``spacing`` (voxels when
``spacing`` is None).

Empty regions are scored with the BraTS challenge convention, so that no subject is silently dropped from a mean:

=====================================  ======  ==========================================================
case                                   Dice    HD95
=====================================  ======  ==========================================================
label and prediction both empty        1       0
exactly one of them empty              0       ``max_hd95``: by default the diagonal of the volume in
                                               physical units, ``sqrt(sum((n_i * spacing_i) ** 2))``, which
                                               is 373.13 mm for a BraTS volume of 240 x 240 x 155 at 1 mm,
                                               the value the BraTS challenge uses
=====================================  ======  ==========================================================

The thesis's headline Dice is a different quantity: all output channels and voxels of a batch pooled into one soft
Dice (:func:`pooled_dice`). Channels that are mostly background, or large and easy, dominate the pooled sums, so the
figure is far higher than, and not comparable to, the per-region BraTS Dice; it is reported only as the labelled
column ``thesis_pooled_dice``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch
from monai.handlers import IgniteMetricHandler
from monai.metrics import DiceMetric, compute_dice, compute_hausdorff_distance

__all__ = [
    "REGIONS",
    "SUBREGIONS",
    "METRIC_COLUMNS",
    "regions_to_subregions",
    "brats_metrics",
    "pooled_dice",
    "mean_iou",
    "summarise",
    "write_metrics_csv",
    "BraTSMeanDice",
    "BraTSMetricsWriter",
]

REGIONS: tuple[str, ...] = ("TC", "WT", "ET")
SUBREGIONS: tuple[str, ...] = ("NCR", "ED", "ET")
_SCORED: tuple[str, ...] = ("TC", "WT", "ET", "NCR", "ED")
METRIC_COLUMNS: tuple[str, ...] = (
    *(f"dice_{name}" for name in _SCORED),
    *(f"hd95_{name}" for name in _SCORED),
    "thesis_pooled_dice",
    "mean_iou",
)

logger = logging.getLogger(__name__)


def _check_regions(x: torch.Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[1] != 3:
        raise ValueError(
            f"{name} must have shape (B, 3, *spatial) with channels TC, WT, ET, got shape {tuple(x.shape)}."
        )


def _as_binary(x: torch.Tensor, name: str) -> torch.Tensor:
    # plain tensors: MetaTensor's metadata tracking only slows the many elementwise operations below
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    if x.dtype != torch.bool and not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(
            f"{name} must be binary (0/1 or bool); binarise probabilities first, e.g. with "
            "monai.transforms.AsDiscrete(threshold=0.5)."
        )
    return x.bool()


def _check_pair(pred: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != label.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} and label shape {tuple(label.shape)} must be equal.")
    _check_regions(pred, "pred")
    return _as_binary(pred, "pred"), _as_binary(label, "label")


def regions_to_subregions(x: torch.Tensor) -> torch.Tensor:
    """Convert the overlapping regions TC, WT, ET into the disjoint subregions NCR, ED, ET.

    NCR = TC and not ET, ED = WT and not TC, ET = ET. A voxel predicted ET but not TC (inconsistent, but possible for a
    multi-label network) counts as ET only.

    Args:
        x: binary tensor (B, 3, *spatial), channels TC, WT, ET.

    Returns:
        tensor of ``x``'s shape and dtype, channels NCR, ED, ET.

    Raises:
        ValueError: if ``x`` does not have 3 channels or is not binary.

    Example:
        >>> r = torch.tensor([1, 1, 0])[None, :, None]  # TC and WT, not ET
        >>> regions_to_subregions(r).flatten().tolist()  # NCR only
        [1, 0, 0]
    """
    _check_regions(x, "x")
    b = _as_binary(x, "x")
    tc, wt, et = b[:, 0], b[:, 1], b[:, 2]
    return torch.stack([tc & ~et, wt & ~tc, et], dim=1).to(x.dtype)


def _volume_diagonal(spatial_shape: Sequence[int], spacing: Sequence[float] | None) -> float:
    steps = spacing if spacing is not None else [1.0] * len(spatial_shape)
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(spatial_shape, steps)))


def _hd95(pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float] | None, max_hd95: float) -> torch.Tensor:
    """HD95 per (subject, channel) with the BraTS empty-case convention; MONAI is only called on non-empty pairs."""
    batch, channels = pred.shape[:2]
    out = torch.empty(batch, channels, dtype=torch.float32)
    pred_any = pred.flatten(2).any(dim=2)
    label_any = label.flatten(2).any(dim=2)
    for b in range(batch):
        for c in range(channels):
            if not pred_any[b, c] and not label_any[b, c]:
                out[b, c] = 0.0
            elif pred_any[b, c] != label_any[b, c]:
                out[b, c] = max_hd95
            else:
                out[b, c] = compute_hausdorff_distance(
                    pred[b : b + 1, c : c + 1].float(),
                    label[b : b + 1, c : c + 1].float(),
                    include_background=True,
                    percentile=95,
                    spacing=list(spacing) if spacing is not None else None,
                )[0, 0].cpu()
    return out


def brats_metrics(
    pred: torch.Tensor,
    label: torch.Tensor,
    spacing: Sequence[float] | None = None,
    max_hd95: float | None = None,
) -> dict[str, torch.Tensor]:
    """Per-subject Dice and HD95 for the regions TC, WT, ET and the subregions NCR, ED (ET is shared).

    Args:
        pred: binarised prediction (B, 3, H, W, D), channels TC, WT, ET (bool or 0/1).
        label: binary label of the same shape.
        spacing: voxel size per spatial dimension (e.g. the NIfTI pixdim, in mm), shared by the batch; None = 1.
        max_hd95: HD95 given when exactly one of prediction and label is empty; None = the volume diagonal in
            physical units (373.13 for 240 x 240 x 155 at 1 mm, see the module docstring).

    Returns:
        ``{"dice_TC", "dice_WT", "dice_ET", "dice_NCR", "dice_ED", "hd95_TC", ..., "hd95_ED"}``, each a float32
        CPU tensor of shape (B,).

    Raises:
        ValueError: on mismatched shapes, a channel count other than 3, non-binary input, or a ``spacing`` whose
            length is not the number of spatial dimensions.

    Example:
        >>> y = torch.zeros(1, 3, 8, 8, 8); y[:, :, 2:6, 2:6, 2:6] = 1
        >>> m = brats_metrics(y, y)
        >>> float(m["dice_TC"][0]), float(m["hd95_WT"][0]), float(m["dice_NCR"][0])  # NCR empty in both
        (1.0, 0.0, 1.0)
    """
    pred_b, label_b = _check_pair(pred, label)
    spatial_shape = tuple(pred.shape[2:])
    if spacing is not None and len(spacing) != len(spatial_shape):
        raise ValueError(
            f"spacing {tuple(spacing)} must give one value per spatial dimension of shape {spatial_shape}."
        )
    limit = float(max_hd95) if max_hd95 is not None else _volume_diagonal(spatial_shape, spacing)
    pred_all = torch.cat([pred_b, regions_to_subregions(pred_b)[:, :2]], dim=1)
    label_all = torch.cat([label_b, regions_to_subregions(label_b)[:, :2]], dim=1)
    # ignore_empty=False gives the BraTS convention for Dice directly: 1 when both are empty, 0 when only one is
    dice = compute_dice(pred_all.float(), label_all.float(), include_background=True, ignore_empty=False)
    dice = dice.float().cpu()
    hd95 = _hd95(pred_all, label_all, spacing, limit)
    result: dict[str, torch.Tensor] = {f"dice_{name}": dice[:, i] for i, name in enumerate(_SCORED)}
    result.update({f"hd95_{name}": hd95[:, i] for i, name in enumerate(_SCORED)})
    return result


def pooled_dice(pred_prob: torch.Tensor, label: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Thesis-style pooled soft Dice: every channel and voxel of the whole batch in one sum.

    ``(2 * sum(p * y) + smooth) / (sum(p) + sum(y) + smooth)`` over all elements (the Keras ``dice_coef`` the thesis
    reported as "Dice 0.985"). Large or background-like channels dominate the sums, so it is NOT comparable to the
    per-region BraTS Dice of :func:`brats_metrics`; keep it only as a labelled comparison column.

    Args:
        pred_prob: soft (or binary) predictions, any shape.
        label: binary label of the same shape.
        smooth: additive smoothing of numerator and denominator.

    Returns:
        a float32 scalar tensor.

    Raises:
        ValueError: on mismatched shapes.

    Example:
        >>> p = torch.tensor([[0.5, 1.0]]); y = torch.tensor([[1.0, 1.0]])
        >>> round(float(pooled_dice(p, y, smooth=0.0)), 4)  # 2 * 1.5 / (1.5 + 2)
        0.8571
    """
    if pred_prob.shape != label.shape:
        raise ValueError(
            f"pooled_dice: pred_prob shape {tuple(pred_prob.shape)} and label shape {tuple(label.shape)} must be equal."
        )
    p = (pred_prob.as_tensor() if isinstance(pred_prob, MetaTensor) else pred_prob).float()
    y = (label.as_tensor() if isinstance(label, MetaTensor) else label).float()
    return (2.0 * (p * y).sum() + smooth) / (p.sum() + y.sum() + smooth)


def mean_iou(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per-subject mean over TC, WT, ET of the intersection over union of binarised predictions.

    IoU of a channel = |P and G| / |P or G| over the subject's volume, 1 when both are empty (the Dice convention of
    :func:`brats_metrics`); the three IoUs are averaged with equal weight.

    Args:
        pred: binarised prediction (B, 3, *spatial), channels TC, WT, ET.
        label: binary label of the same shape.

    Returns:
        float32 CPU tensor of shape (B,).

    Raises:
        ValueError: on mismatched shapes, a channel count other than 3, or non-binary input.

    Example:
        >>> y = torch.zeros(1, 3, 4); y[:, :, :2] = 1
        >>> p = torch.zeros(1, 3, 4); p[:, :, :1] = 1
        >>> float(mean_iou(p, y)[0])
        0.5
    """
    pred_b, label_b = _check_pair(pred, label)
    intersection = (pred_b & label_b).flatten(2).sum(dim=2).float()
    union = (pred_b | label_b).flatten(2).sum(dim=2).float()
    iou = torch.where(union > 0, intersection / union.clamp_min(1.0), torch.ones_like(union))
    return iou.mean(dim=1).cpu()


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation, median and count of every numeric column, ignoring NaN.

    A column is numeric when every row holds an ``int`` or ``float`` there (``bool`` and strings such as the case id are
    skipped). A column whose values are all NaN gets NaN statistics and count 0; ``std`` is the sample standard
    deviation (n - 1) and needs two values.

    Args:
        rows: per-subject rows, e.g. from :class:`BraTSMetricsWriter`.

    Returns:
        ``{"mean": {column: value}, "std": {...}, "median": {...}, "count": {...}}``.

    Example:
        >>> rows = [{"case": "a", "dice_TC": 0.5}, {"case": "b", "dice_TC": 1.0}, {"case": "c", "dice_TC": math.nan}]
        >>> s = summarise(rows)
        >>> s["mean"]["dice_TC"], s["median"]["dice_TC"], s["count"]["dice_TC"]
        (0.75, 0.75, 2.0)
    """
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    numeric = [
        key
        for key in columns
        if all(
            key in row and isinstance(row[key], (int, float)) and not isinstance(row[key], bool) for row in rows
        )
    ]
    summary: dict[str, dict[str, float]] = {"mean": {}, "std": {}, "median": {}, "count": {}}
    for key in numeric:
        values = torch.tensor([float(row[key]) for row in rows], dtype=torch.float64)
        values = values[~torch.isnan(values)]
        count = values.numel()
        summary["count"][key] = float(count)
        summary["mean"][key] = float(values.mean()) if count else math.nan
        summary["std"][key] = float(values.std(correction=1)) if count > 1 else math.nan
        # torch.median picks the lower middle value; the usual median averages the two middle ones
        summary["median"][key] = float(values.quantile(0.5)) if count else math.nan
    return summary


def write_metrics_csv(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, fieldnames: Sequence[str] | None = None
) -> Path:
    """Write rows to a CSV file atomically (a temporary file in the same folder, then renamed over ``path``).

    Args:
        rows: one mapping per line.
        path: destination; missing parent folders are created.
        fieldnames: column order; None = the keys of all rows, in order of first appearance.

    Returns:
        the written path.

    Raises:
        ValueError: if there are neither rows nor ``fieldnames``, or a row has a key outside ``fieldnames``.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_metrics_csv([{"case": "a", "dice_TC": 0.5}], pathlib.Path(tempfile.mkdtemp()) / "m.csv")
        >>> p.read_text().splitlines()
        ['case,dice_TC', 'a,0.5']
    """
    target = Path(path)
    if fieldnames is None:
        if not rows:
            raise ValueError(f"write_metrics_csv: no rows and no fieldnames for {target}.")
        columns: list[str] = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
    else:
        columns = list(fieldnames)
        for i, row in enumerate(rows):
            extra = set(row) - set(columns)
            if extra:
                raise ValueError(f"write_metrics_csv: row {i} for {target} has keys {sorted(extra)} not in fieldnames.")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


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

            "key_val_metric": {"val_mean_dice": {"_target_": "raagr2_monai.metrics.BraTSMeanDice",
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

    Example:
        >>> writer = BraTSMetricsWriter("eval")  # doctest: +SKIP
        >>> writer.attach(evaluator)  # doctest: +SKIP
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
