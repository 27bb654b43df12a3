"""The report's rows, one per model, gathered from plain data: the study folder, the content of its ``state.json``,
the list of models and the benchmark's JSON.

A row holds the model's quality and lesion-wise scores (the evaluation's ``metrics_summary.csv``; the spread of the
quality scores, the per-subject (paired) difference of its mean Dice to the baseline's, and the rows that score
identically on every subject, from its ``metrics_per_subject.csv``), cost
(the benchmark, with each inference backend's latency where it has them, and the training or pruning step),
reductions against the baseline, training curve and best validation score (``history.json``) and sources (the folders
and files it came from, and its MLflow run id once the run is logged), so that every number can be traced.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

from raagr2_monai.constants import REGIONS

from .statistics import (
    PAIRED_KEYS,
    SubjectScores,
    identical_rows,
    paired_difference,
    quality_spread,
    read_subject_scores,
)

__all__ = [
    "TABLE1_COLUMNS",
    "TABLE2_COLUMNS",
    "TABLE3_COLUMNS",
    "LESIONWISE_TABLE_COLUMNS",
    "ModelLike",
    "collect_rows",
    "read_summary",
    "record_mlflow_runs",
    "region_mean_dice",
    "step_name",
    "validation_score",
]

PathLike = Union[str, os.PathLike]

#: (key, header) of Table 1, quality on the test subjects (means over subjects).
TABLE1_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("dice_TC", "Dice TC"),
    ("dice_WT", "Dice WT"),
    ("dice_ET", "Dice ET"),
    ("dice_mean", "mean Dice (TC/WT/ET)"),
    ("dice_NCR", "Dice NCR"),
    ("dice_ED", "Dice ED"),
    ("hd95_TC", "HD95 TC"),
    ("hd95_WT", "HD95 WT"),
    ("hd95_ET", "HD95 ET"),
    ("hd95_NCR", "HD95 NCR"),
    ("hd95_ED", "HD95 ED"),
    ("mean_iou", "mean IoU"),
    ("thesis_pooled_dice", "thesis-style pooled Dice"),
)
#: (key, header) of Table 2, cost.
TABLE2_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("params", "parameters"),
    ("nonzero_params", "non-zero parameters"),
    ("size_mb", "size MB (dense)"),
    ("size_sparse_mb", "size MB (sparse)"),
    ("gflops", "GFLOPs"),
    ("latency_b1_ms", "latency ms, batch 1"),
    ("latency_bmax_ms", "latency ms, batch N"),
    ("per_slice_ms", "ms per slice, batch N"),
    ("peak_mem_mb", "peak memory MB"),
    ("train_step_ms", "train step ms"),
    ("train_epoch_s", "train s per epoch (benchmark)"),
    ("train_seconds", "training s (wall)"),
    ("epochs", "epochs"),
)
#: (key, header) of Table 3, reductions against the baseline in percent (negative: an increase).
TABLE3_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("params", "parameters (non-zero) -%"),
    ("size_mb", "size (dense) -%"),
    ("size_sparse_mb", "size (sparse) -%"),
    ("flops", "FLOPs -%"),
    ("latency_b1", "latency b1 -%"),
    ("latency_bmax", "latency bN -%"),
    ("peak_mem_mb", "peak memory -%"),
    ("train_step_ms", "train step -%"),
    ("dice_mean_change", "mean Dice change (points)"),
    ("pooled_dice_change", "pooled Dice change (points)"),
)

#: (key, header) of the lesion-wise table: means over test subjects of the evaluation's ``lesion_<stat>_<region>``
#: columns (:data:`raagr2_monai.metrics.LESIONWISE_COLUMNS`) for the BraTS regions.
LESIONWISE_TABLE_COLUMNS: Tuple[Tuple[str, str], ...] = tuple(
    (f"lesion_{stat}_{region}", f"{title} {region}")
    for stat, title in (("dice", "lesion Dice"), ("hd95", "lesion HD95"), ("f1", "lesion F1"))
    for region in REGIONS
)


class ModelLike(Protocol):
    """What a row needs to know of its model (:class:`raagr2_monai.study.ModelSpec` is one)."""

    name: str
    kind: str
    variant: str
    method: Optional[str]
    ratio: Optional[float]
    finetune_epochs: int
    from_scratch: bool

    @property
    def label(self) -> str: ...

    @property
    def family(self) -> str: ...


def step_name(model: ModelLike) -> str:
    """The ``state.json`` step that made a model: ``train/<name>`` for an architecture, else ``prune/<name>``.

    Example::

        >>> from types import SimpleNamespace
        >>> step_name(SimpleNamespace(name="snip-20", kind="pruned"))
        'prune/snip-20'
    """
    return f"{'train' if model.kind == 'architecture' else 'prune'}/{model.name}"


def validation_score(history: Mapping[str, Any]) -> Optional[float]:
    """The best validation mean Dice of a run's ``history.json``: that of the model the run kept (training and
    fine-tuning keep their best validation checkpoint; a pruned model that is not fine-tuned is validated once).

    Returns:
        The highest ``val_mean_dice`` over the epochs and the validation-only entry, or ``None`` without one.

    Example::

        >>> validation_score({"epochs": [{"val_mean_dice": 0.4}, {"val_mean_dice": 0.6}, {}], "validation_only": None})
        0.6
        >>> validation_score({"epochs": [], "validation_only": {"val_mean_dice": 0.3}})
        0.3
        >>> validation_score({"epochs": [{"train_loss": 0.9}]}) is None
        True
    """
    values = [e["val_mean_dice"] for e in history.get("epochs") or [] if "val_mean_dice" in e]
    if history.get("validation_only"):
        values.append(history["validation_only"]["val_mean_dice"])
    return max(values) if values else None


def _read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(value: Any) -> Optional[float]:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def read_summary(path: PathLike) -> Dict[str, Dict[str, str]]:
    """An evaluation's ``metrics_summary.csv`` by statistic: ``{"mean": {column: text}, "count": {...}, ...}``."""
    return {r["statistic"]: r for r in _read_csv(Path(path))}


def region_mean_dice(mean: Mapping[str, Any]) -> Optional[float]:
    """Table 1's mean Dice: the mean of a summary's mean Dice of TC, WT and ET (numbers or the CSV's text); ``None``
    unless all three have a value.

    Example::

        >>> region_mean_dice({"dice_TC": "0.5", "dice_WT": 0.75, "dice_ET": 0.25}), region_mean_dice({"dice_TC": ""})
        (0.5, None)
    """
    dices = [_float(mean.get(f"dice_{r}")) for r in REGIONS]
    return sum(dices) / 3 if all(d is not None for d in dices) else None


def _reduction(ratio: Optional[float]) -> Optional[float]:
    return None if ratio is None else 100.0 * (1.0 - ratio)


def _finished(steps: Mapping[str, Mapping[str, Any]], step: str) -> Mapping[str, Any]:
    if step not in steps:
        raise ValueError(f"The study's state records no finished step {step!r}: run the study to its end first.")
    return steps[step]


def _backend_latencies(entry: Mapping[str, Any]) -> Dict[str, Optional[Dict[str, float]]]:
    """Batch-1 median, p25 and p75 per inference backend of a benchmark row's ``backends`` (the format of
    :func:`raagr2_monai.benchmark.backend_latencies`); ``None`` each without backend figures at batch 1."""
    per_backend = (entry.get("backends") or {}).get("latency_ms") or {}
    at_one = {backend: batches["1"] for backend, batches in per_backend.items() if "1" in batches}
    if not at_one:
        return {"latency_b1_backends_ms": None, "latency_b1_backends_p25_ms": None,
                "latency_b1_backends_p75_ms": None}
    return {f"latency_b1_backends{suffix}_ms": {backend: figures[stat] for backend, figures in at_one.items()}
            for suffix, stat in (("", "median"), ("_p25", "p25"), ("_p75", "p75"))}


def collect_rows(
    root: PathLike, state: Mapping[str, Any], models: Sequence[ModelLike], benchmark: Mapping[str, Any]
) -> List[Dict[str, Any]]:
    """One record per model: its quality, cost, reductions, training curve and sources, read from the runs' files.

    Args:
        root: the study folder (the paths the steps recorded are relative to it).
        state: the content of the study's ``state.json``; its ``steps`` must hold ``train/<model>`` or
            ``prune/<model>``, and ``evaluate/<model>``, of every model, and ``benchmark``.
        models: the study's models, in report order.
        benchmark: the benchmark's JSON (a :func:`raagr2_monai.benchmark.benchmark_models` result with
            ``flops_at_flops_size`` per model), holding every model.

    Returns:
        Records with keys ``model``, ``label``, ``kind``, ``family``, ``variant``, ``method``, ``ratio``,
        ``finetune_epochs``, ``from_scratch``, ``quality`` (Table 1 keys, ``subjects``, and ``<key>_std`` and
        ``<key>_ci95`` of every Table 1 key from the per-subject scores:
        :func:`~raagr2_monai.report.statistics.quality_spread`; and the paired comparison with the baseline,
        :data:`~raagr2_monai.report.statistics.PAIRED_KEYS`: ``paired_n``, ``paired_dice_diff``, ``paired_dice_ci``
        (``[low, high]``), ``paired_dice_diff_<region>`` and ``paired_unmatched``, from
        :func:`~raagr2_monai.report.statistics.paired_difference`, each ``None`` for the baseline),
        ``identical_to`` (the other models that score the same on every subject:
        :func:`~raagr2_monai.report.statistics.identical_rows`), ``lesionwise`` (:data:`LESIONWISE_TABLE_COLUMNS`
        keys, ``None`` where the summary has no value), ``cost`` (Table 2 keys,
        the batch-1 p25 and p75, and ``latency_b1_backends_ms``, ``latency_b1_backends_p25_ms`` and
        ``latency_b1_backends_p75_ms``: backend -> batch-1 figure, ``None`` where the benchmark has no backends),
        ``reduction`` (Table 3 keys), ``history``, ``validation`` (``val_mean_dice``: :func:`validation_score`) and
        ``sources`` (``mlflow_run_id`` is ``None`` until :func:`record_mlflow_runs`).

    Raises:
        ValueError: a step of a model is not recorded as finished.
        FileNotFoundError: a run's output named in the state is missing.
        ValueError: a per-subject CSV lacks a metric column or holds a cell that is not a number.
    """
    root = Path(root)
    steps = state["steps"]
    benchmark_json = _finished(steps, "benchmark")["benchmark_json"]
    bmax = str(max(benchmark["_meta"]["settings"]["batches"]))
    rows: List[Dict[str, Any]] = []
    subjects: Dict[str, SubjectScores] = {}
    for spec in models:
        made = _finished(steps, step_name(spec))
        evaluated = _finished(steps, f"evaluate/{spec.name}")
        summary = read_summary(root / evaluated["summary_csv"])
        mean = summary["mean"]
        quality: Dict[str, Any] = {key: _float(mean.get(key)) for key, _ in TABLE1_COLUMNS if key != "dice_mean"}
        quality["dice_mean"] = region_mean_dice(mean)
        quality["subjects"] = int(float(summary["count"]["dice_TC"]))
        subjects[spec.name] = read_subject_scores(root / evaluated["per_subject_csv"])
        quality.update(quality_spread(subjects[spec.name]))
        history = json.loads((root / made["history"]).read_text())
        b = benchmark[spec.name]
        cost = {
            "params": b["params"],
            "nonzero_params": b["nonzero_params"],
            "size_mb": b["size_mb"],
            "size_sparse_mb": b["size_sparse_mb"],
            "gflops": b["flops_at_flops_size"] / 1e9,
            "latency_b1_ms": b["latency_ms"]["1"]["median"] if "1" in b["latency_ms"] else None,
            "latency_b1_p25_ms": b["latency_ms"]["1"]["p25"] if "1" in b["latency_ms"] else None,
            "latency_b1_p75_ms": b["latency_ms"]["1"]["p75"] if "1" in b["latency_ms"] else None,
            "latency_bmax_ms": b["latency_ms"][bmax]["median"],
            "per_slice_ms": b["latency_ms"][bmax]["per_slice_ms"],
            "peak_mem_mb": b["peak_mem_mb"],
            "train_step_ms": b["train_step_ms"],
            "train_epoch_s": b.get("train_epoch_s"),
            "timed_as": b.get("timed_as", spec.name),
            "train_seconds": made["train_seconds"],
            "epochs": made["epochs"],
            **_backend_latencies(b),
        }
        vs = b["vs_baseline"]
        rows.append(
            {
                "model": spec.name,
                "label": spec.label,
                "kind": spec.kind,
                "family": spec.family,
                "variant": spec.variant,
                "method": spec.method,
                "ratio": spec.ratio,
                "finetune_epochs": spec.finetune_epochs,
                "from_scratch": spec.from_scratch,
                "quality": quality,
                "lesionwise": {key: _float(mean.get(key)) for key, _ in LESIONWISE_TABLE_COLUMNS},
                "cost": cost,
                "reduction": {
                    "params": _reduction(vs["nonzero_params"]),
                    "size_mb": _reduction(vs["size_mb"]),
                    "size_sparse_mb": _reduction(vs["size_sparse_mb"]),
                    "flops": _reduction(vs["flops"]),
                    "latency_b1": _reduction(vs["latency_ms"].get("1")),
                    "latency_bmax": _reduction(vs["latency_ms"][bmax]),
                    "peak_mem_mb": _reduction(vs["peak_mem_mb"]),
                    "train_step_ms": _reduction(vs["train_step_ms"]),
                },
                "history": history,
                "validation": {"val_mean_dice": validation_score(history)},
                "sources": {
                    "bundle": made["bundle"],
                    "run_json": made["run_json"],
                    "pruning_json": made.get("pruning_json"),
                    "eval_dir": os.path.dirname(evaluated["summary_csv"]),
                    "eval_run_json": evaluated["run_json"],
                    "benchmark_json": benchmark_json,
                    "mlflow_run_id": None,
                },
            }
        )
    for row, others in zip(rows, identical_rows(subjects).values()):
        row["identical_to"] = others
    base = next(r for r in rows if r["model"] == "baseline")
    for row in rows:
        if row is base:
            row["quality"].update(dict.fromkeys(PAIRED_KEYS))
        else:
            row["quality"].update(paired_difference(subjects[row["model"]], subjects["baseline"]))
        for key, quality_key in (("dice_mean_change", "dice_mean"), ("pooled_dice_change", "thesis_pooled_dice")):
            ours, ref = row["quality"][quality_key], base["quality"][quality_key]
            row["reduction"][key] = None if ours is None or ref is None else 100.0 * (ours - ref)
    return rows


def record_mlflow_runs(rows: Sequence[Dict[str, Any]], runs: Mapping[str, str]) -> None:
    """Record each row's MLflow run id (model name -> run id) as its ``sources["mlflow_run_id"]``, in place.

    Example::

        >>> rows = [{"model": "baseline", "sources": {"mlflow_run_id": None}}]
        >>> record_mlflow_runs(rows, {"baseline": "0123abcd"})
        >>> rows[0]["sources"]["mlflow_run_id"]
        '0123abcd'
    """
    for row in rows:
        row["sources"]["mlflow_run_id"] = runs.get(row["model"])
