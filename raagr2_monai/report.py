"""The study's report: tables (Markdown, CSV, JSON), charts (PNG) and the thesis's published figures beside ours.

:func:`collect_rows` gathers, per model of a study, the figures of the runs that produced them (the evaluation's
``metrics_summary.csv``, the benchmark's JSON, the training or pruning run's ``history.json`` and ``pruning.json``);
:func:`write_report` turns them into ``report.md``, ``tables/*.{csv,json}`` and ``charts/*.png``. Every row names its
sources (folders, ``run.json`` files and the MLflow run id) so each number can be traced.

The thesis's own figures (:data:`THESIS_TABLE1` to :data:`THESIS_TABLE4`) are copied from its Tables 1-4 and shown only
in columns and sections marked "thesis (published)"; SPEC §1-§4 list what they got wrong.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from raagr2_monai.utils import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from raagr2_monai.study import Study

__all__ = [
    "THESIS_TABLE1",
    "THESIS_TABLE2",
    "THESIS_TABLE3",
    "THESIS_TABLE4",
    "THESIS_ROW",
    "THESIS_NOTES",
    "TABLE1_COLUMNS",
    "TABLE2_COLUMNS",
    "TABLE3_COLUMNS",
    "collect_rows",
    "write_tables",
    "write_charts",
    "write_report",
]

# Thesis Table 1 ("Performance Metrics Comparison Across All Model Variants"), as published. Its columns: pooled
# "Dice Coef." (soft, all channels incl. background-like ones, per batch of slices), "Mean IoU", and "C2/C3/C4 Dice",
# which the thesis calls NCR/NET, ET, ED but which were in fact the TC, ET and WT output channels (SPEC §2).
THESIS_TABLE1: Dict[str, Dict[str, float]] = {
    "Base RAAGR2-Net": {"pooled_dice": 0.9849, "mean_iou": 0.9710, "TC": 0.8254, "ET": 0.8247, "WT": 0.8513},
    "Depthwise Shared": {"pooled_dice": 0.9837, "mean_iou": 0.9690, "TC": 0.7638, "ET": 0.6408, "WT": 0.8526},
    "Paired Shared": {"pooled_dice": 0.9786, "mean_iou": 0.9599, "TC": 0.6934, "ET": 0.6719, "WT": 0.7727},
    "Encoder-Decoder Shared": {"pooled_dice": 0.9841, "mean_iou": 0.9695, "TC": 0.7717, "ET": 0.7818, "WT": 0.8248},
    "Magnitude 10%": {"pooled_dice": 0.7415, "mean_iou": 0.8697, "TC": 0.1874, "ET": 0.0209, "WT": 0.0439},
    "Magnitude 20%": {"pooled_dice": 0.7547, "mean_iou": 0.8931, "TC": 0.0022, "ET": 0.0209, "WT": 0.0004},
    "Magnitude 30%": {"pooled_dice": 0.6077, "mean_iou": 0.8443, "TC": 0.0308, "ET": 0.0209, "WT": 0.0016},
    "SNIP 10%": {"pooled_dice": 0.2855, "mean_iou": 0.0053, "TC": 0.0309, "ET": 0.0209, "WT": 0.0731},
    "SNIP 20%": {"pooled_dice": 0.2789, "mean_iou": 0.0169, "TC": 0.0310, "ET": 0.0210, "WT": 0.0737},
    "SNIP 30%": {"pooled_dice": 0.2866, "mean_iou": 0.1113, "TC": 0.0310, "ET": 0.0210, "WT": 0.0741},
    "DepGraph 10%": {"pooled_dice": 0.9528, "mean_iou": 0.9154, "TC": 0.2480, "ET": 0.1773, "WT": 0.2461},
    "DepGraph 20%": {"pooled_dice": 0.5970, "mean_iou": 0.4392, "TC": 0.0633, "ET": 0.0010, "WT": 0.0350},
    "DepGraph 30%": {"pooled_dice": 0.5970, "mean_iou": 0.4392, "TC": 0.0633, "ET": 0.0010, "WT": 0.0350},
    "Magnitude 20% (FT)": {"pooled_dice": 0.9851, "mean_iou": 0.9716, "TC": 0.8274, "ET": 0.8312, "WT": 0.8252},
    "SNIP 20% (FT)": {"pooled_dice": 0.9854, "mean_iou": 0.9719, "TC": 0.8458, "ET": 0.8262, "WT": 0.8565},
}

# Thesis Table 2 ("Model Statistics and Computational Benchmarks"), as published: parameters, size (MB), inference
# (ms, GPU), FLOPs (ptflops, 2 x MACs, in G), peak GPU memory (GB), execution time (s).
_THESIS_TABLE2_KEYS = ("params", "size_mb", "latency_ms", "gflops", "peak_gb", "time_s")
THESIS_TABLE2: Dict[str, Dict[str, float]] = {
    name: dict(zip(_THESIS_TABLE2_KEYS, values))
    for name, values in (
        ("Base RAAGR2-Net", (8911301, 34.26, 12.88, 15.92, 0.55, 8.50)),
        ("Depthwise Shared", (5046221, 19.44, 12.68, 11.86, 0.47, 7.75)),
        ("Paired Shared", (5051061, 19.47, 12.00, 11.86, 0.29, 7.83)),
        ("Encoder-Decoder Shared", (6621141, 25.50, 11.79, 15.79, 0.68, 8.17)),
        ("Magnitude 10%", (8911301, 34.32, 14.13, 15.92, 0.51, 8.87)),
        ("Magnitude 20%", (8911301, 34.32, 13.48, 15.92, 0.51, 8.50)),
        ("Magnitude 30%", (8911301, 34.32, 13.29, 15.92, 0.41, 8.78)),
        ("SNIP 10%", (8911301, 34.25, 13.49, 15.92, 0.51, 8.68)),
        ("SNIP 20%", (8911301, 34.25, 13.39, 15.92, 0.41, 8.59)),
        ("SNIP 30%", (8911301, 34.25, 13.98, 15.92, 0.34, 8.62)),
        ("DepGraph 10%", (7293449, 28.13, 13.97, 13.01, 0.45, 8.88)),
        ("DepGraph 20%", (6141273, 23.72, 13.69, 10.84, 0.42, 8.24)),
        ("DepGraph 30%", (6141273, 23.72, 13.69, 10.84, 0.42, 8.24)),
        ("Magnitude 20% (FT)", (8911301, 34.26, 13.31, 15.92, 0.48, 8.37)),
        ("SNIP 20% (FT)", (8911301, 34.26, 12.62, 15.92, 0.51, 8.33)),
    )
}

# Thesis Table 3 ("Percentage Reductions Relative to Base RAAGR2-Net Model"), as published, in percent (positive =
# reduction; the thesis prints reductions as up-arrows and increases as down-arrows). Unstructured rows: 0 % for
# parameters, size and FLOPs (the thesis's dagger: "theoretical sparsity").
THESIS_TABLE3: Dict[str, Dict[str, float]] = {
    "Depthwise Shared": {"params": 43.4, "size": 43.2, "flops": 25.5, "gpu_mem": 14.5, "time": 8.8},
    "Paired Shared": {"params": 43.3, "size": 43.2, "flops": 25.5, "gpu_mem": 47.3, "time": 7.9},
    "Encoder-Decoder Shared": {"params": 25.7, "size": 25.6, "flops": 0.8, "gpu_mem": -23.6, "time": 3.9},
    "DepGraph 10%": {"params": 18.2, "size": 17.9, "flops": 18.3, "gpu_mem": 18.2, "time": -4.5},
    "DepGraph 20%": {"params": 31.1, "size": 30.8, "flops": 31.9, "gpu_mem": 23.6, "time": 3.1},
    "DepGraph 30%": {"params": 31.1, "size": 30.8, "flops": 31.9, "gpu_mem": 23.6, "time": 3.1},
    "Magnitude 10%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 7.3, "time": -4.4},
    "Magnitude 20%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 7.3, "time": 0.0},
    "Magnitude 30%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 25.5, "time": -3.3},
    "SNIP 10%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 7.3, "time": -2.1},
    "SNIP 20%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 25.5, "time": -1.1},
    "SNIP 30%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 38.2, "time": -1.4},
    "Magnitude 20% (FT)": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 12.7, "time": 1.5},
    "SNIP 20% (FT)": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 7.3, "time": 2.0},
}

# Thesis Table 4 ("Training Efficiency Comparison Across Model Variants"): 35 epochs on a GPU, in minutes.
THESIS_TABLE4: Dict[str, Dict[str, Any]] = {
    "Base RAAGR2-Net": {"train_minutes": 47.5, "time_reduction_pct": None, "memory_reduction_pct": None},
    "Encoder-Decoder Shared": {"train_minutes": 46.9, "time_reduction_pct": 1.3, "memory_reduction_pct": 0.0},
    "Paired Shared": {"train_minutes": 42.2, "time_reduction_pct": 11.2, "memory_reduction_pct": 25.7},
    "Depthwise Shared": {"train_minutes": 39.9, "time_reduction_pct": 16.0, "memory_reduction_pct": 25.7},
}

#: Our row name -> the thesis's row that claims to be the same model.
THESIS_ROW: Dict[str, str] = {
    "baseline": "Base RAAGR2-Net",
    "depthwise": "Depthwise Shared",
    "paired": "Paired Shared",
    "encdec": "Encoder-Decoder Shared",
    **{f"{m}-{p}": f"{t} {p}%" for m, t in (("magnitude", "Magnitude"), ("snip", "SNIP"), ("depgraph", "DepGraph"))
       for p in (10, 20, 30)},
    "magnitude-20-ft": "Magnitude 20% (FT)",
    "snip-20-ft": "SNIP 20% (FT)",
}

#: What is wrong with the thesis's figures (SPEC §1-§4); printed under every comparison.
THESIS_NOTES: Tuple[str, ...] = (
    "Its \"C2/C3/C4\" Dice columns, labelled NCR/NET, ET and ED, were the TC, ET and WT output channels; they are "
    "shown here under TC, ET and WT.",
    "Its headline \"Dice Coef.\" pools all output channels and voxels of a batch of slices, background-like ones "
    "included, on soft predictions; it is comparable only with our column \"thesis-style pooled Dice\", not with the "
    "per-subject BraTS Dice.",
    "Its DepGraph 20 % and 30 % rows are identical copies of one run.",
    "Its \"SNIP (unfinetuned)\" rows measured an untrained network (Dice about 0.28).",
    "Its \"fine-tuned\" Magnitude and SNIP rows were dense networks trained from scratch (the masks were not kept), "
    "which is why their parameters, size and FLOPs equal the baseline's.",
    "Its FLOPs come from ptflops (2 x MACs, activations double-counted, functional convolutions missed); ours from "
    "torch.utils.flop_counter.FlopCounterMode (every convolution, a multiply-add = 2 FLOPs).",
    "Its Encoder-Decoder Shared count (6,621,141) includes 4,840 unused parameters and ties nothing across encoder "
    "and decoder; ours ties the decoder to the encoder's kernels (6,606,701 at 5 outputs).",
    "Its latency, memory and time figures are from a GPU; the quick profile's are from the CPU it ran on.",
)

REGIONS = ("TC", "WT", "ET")
SUBREGIONS = ("NCR", "ED")

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
    ("train_seconds", "training s"),
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


def _read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(value: Any) -> Optional[float]:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _reduction(ratio: Optional[float]) -> Optional[float]:
    return None if ratio is None else 100.0 * (1.0 - ratio)


def collect_rows(study: "Study", mlflow_runs: Optional[Mapping[str, str]] = None) -> List[Dict[str, Any]]:
    """One record per model: its quality, cost, reductions, training curve and sources, read from the runs' files.

    Args:
        study: a study whose steps have all finished.
        mlflow_runs: model name -> MLflow child run id, recorded as the row's ``mlflow_run_id``.

    Returns:
        Records with keys ``model``, ``label``, ``kind``, ``variant``, ``method``, ``ratio``, ``finetune_epochs``,
        ``quality`` (Table 1 keys), ``cost`` (Table 2 keys), ``reduction`` (Table 3 keys), ``history`` and
        ``sources``.

    Raises:
        FileNotFoundError: a run's output named in the study's state is missing.
    """
    root = study.root
    bench = json.loads((root / study.state.get("benchmark")["benchmark_json"]).read_text())
    meta = bench["_meta"]
    bmax = str(max(meta["settings"]["batches"]))
    rows: List[Dict[str, Any]] = []
    for spec in study.models:
        made = study.state.get(f"{'train' if spec.kind == 'architecture' else 'prune'}/{spec.name}")
        evaluated = study.state.get(f"evaluate/{spec.name}")
        summary = {r["statistic"]: r for r in _read_csv(root / evaluated["summary_csv"])}
        mean = summary["mean"]
        quality: Dict[str, Any] = {key: _float(mean.get(key)) for key, _ in TABLE1_COLUMNS if key != "dice_mean"}
        dices = [quality[f"dice_{r}"] for r in REGIONS]
        quality["dice_mean"] = sum(dices) / 3 if all(d is not None for d in dices) else None
        quality["subjects"] = int(float(summary["count"]["dice_TC"]))
        b = bench[spec.name]
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
            "train_seconds": made["train_seconds"],
            "epochs": made["epochs"],
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
                "history": json.loads((root / made["history"]).read_text()),
                "sources": {
                    "bundle": made["bundle"],
                    "run_json": made["run_json"],
                    "pruning_json": made.get("pruning_json"),
                    "eval_dir": os.path.dirname(evaluated["summary_csv"]),
                    "eval_run_json": evaluated["run_json"],
                    "benchmark_json": study.state.get("benchmark")["benchmark_json"],
                    "mlflow_run_id": (mlflow_runs or {}).get(spec.name),
                },
            }
        )
    base = next(r for r in rows if r["model"] == "baseline")
    for row in rows:
        for key, quality_key in (("dice_mean_change", "dice_mean"), ("pooled_dice_change", "thesis_pooled_dice")):
            ours, ref = row["quality"][quality_key], base["quality"][quality_key]
            row["reduction"][key] = None if ours is None or ref is None else 100.0 * (ours - ref)
    return rows


def _flat(row: Mapping[str, Any], section: str, columns: Sequence[Tuple[str, str]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"model": row["model"], "label": row["label"]}
    out.update({key: row[section].get(key) for key, _ in columns})
    if section == "quality":
        out["subjects"] = row["quality"]["subjects"]
    if section == "cost":
        out["latency_b1_p25_ms"] = row["cost"]["latency_b1_p25_ms"]
        out["latency_b1_p75_ms"] = row["cost"]["latency_b1_p75_ms"]
    out.update({f"source_{k}": v for k, v in row["sources"].items()})
    return out


def table_records(rows: Sequence[Mapping[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """The three tables as lists of flat records (one per model, with the sources), as written to CSV and JSON."""
    return {
        "table1_quality": [_flat(r, "quality", TABLE1_COLUMNS) for r in rows],
        "table2_cost": [_flat(r, "cost", TABLE2_COLUMNS) for r in rows],
        "table3_reductions": [_flat(r, "reduction", TABLE3_COLUMNS) for r in rows if r["model"] != "baseline"],
    }


def _csv_text(records: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
    return buffer.getvalue()


def write_tables(rows: Sequence[Mapping[str, Any]], folder: Path) -> Dict[str, Path]:
    """Write each table as CSV and JSON, and the thesis's published tables as JSON, into ``folder``.

    Returns:
        File stem -> JSON path.
    """
    written = {}
    for name, records in table_records(rows).items():
        atomic_write_text(str(folder / f"{name}.csv"), _csv_text(records))
        atomic_write_text(str(folder / f"{name}.json"), json.dumps(records, indent=2))
        written[name] = folder / f"{name}.json"
    thesis = {
        "source": "the thesis's Tables 1-4, as published (not produced by this code); see notes",
        "notes": list(THESIS_NOTES),
        "table1": THESIS_TABLE1,
        "table2": THESIS_TABLE2,
        "table3": THESIS_TABLE3,
        "table4": THESIS_TABLE4,
    }
    atomic_write_text(str(folder / "thesis_tables.json"), json.dumps(thesis, indent=2))
    written["thesis_tables"] = folder / "thesis_tables.json"
    return written


# ---------------------------------------------------------------------------------------------------------- charts
_COLOURS = {"architecture": "tab:blue", "magnitude": "tab:orange", "snip": "tab:green", "depgraph": "tab:red"}


def _scatter(rows: Sequence[Mapping[str, Any]], x_of, xlabel: str, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for family, colour in _COLOURS.items():
        points = [(x_of(r), r["quality"]["dice_mean"], r) for r in rows if r["family"] == family]
        points = [p for p in points if p[0] is not None and p[1] is not None]
        if not points:
            continue
        ax.scatter([p[0] for p in points], [p[1] for p in points], c=colour, label=family, s=36,
                   marker="o" if family == "architecture" else "^")
        for x, y, r in points:
            ax.annotate(r["model"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean BraTS Dice (TC/WT/ET), test subjects")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def write_charts(rows: Sequence[Mapping[str, Any]], folder: Path, bench_note: str) -> Dict[str, Path]:
    """Write the PNG charts: Dice against parameters, Dice against latency, per-region Dice, training curves.

    Returns:
        Chart name -> path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = {name: folder / f"{name}.png" for name in
              ("dice_vs_params", "dice_vs_latency", "region_dice", "training_curves")}
    _scatter(rows, lambda r: r["cost"]["nonzero_params"] / 1e6, "non-zero parameters (millions)",
             "Quality against parameters", charts["dice_vs_params"])
    _scatter(rows, lambda r: r["cost"]["latency_b1_ms"], f"latency, ms per forward pass at batch 1 ({bench_note})",
             "Quality against latency", charts["dice_vs_latency"])

    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(rows) + 3), 5))
    regions = ("TC", "WT", "ET", "NCR", "ED")
    width = 0.8 / len(regions)
    for i, region in enumerate(regions):
        values = [r["quality"][f"dice_{region}"] or 0.0 for r in rows]
        ax.bar([j + i * width for j in range(len(rows))], values, width, label=region)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["model"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("Dice, mean over test subjects")
    ax.set_ylim(0, 1)
    ax.set_title("Per-region Dice per model")
    ax.legend(fontsize=8, ncol=5)
    _save(fig, charts["region_dice"])

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in rows:
        epochs = r["history"].get("epochs") or []
        if not epochs:
            continue
        axis = left if r["kind"] == "architecture" or r["from_scratch"] else right
        steps = r["history"].get("iterations") or []
        line = axis.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], marker="o",
                         label=f"{r['model']} loss")[0]
        if steps:
            axis.plot([s[1] for s in steps], [s[2] for s in steps], color=line.get_color(), alpha=0.35, linewidth=0.8)
        val = [(e["epoch"], e["val_mean_dice"]) for e in epochs if "val_mean_dice" in e]
        if val:
            axis.plot([v[0] for v in val], [v[1] for v in val], linestyle="--", marker="x", color=line.get_color(),
                      label=f"{r['model']} val Dice")
    left.set_title("Training: loss (per iteration, epoch means o), validation mean Dice (x)", fontsize=9)
    right.set_title("Fine-tuning after pruning (same marks)", fontsize=9)
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=6, ncol=2)
    _save(fig, charts["training_curves"])
    return charts


# ---------------------------------------------------------------------------------------------------------- markdown
def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


_FORMATS = {
    "params": ",d", "nonzero_params": ",d", "size_mb": ".2f", "size_sparse_mb": ".2f", "gflops": ".3f",
    "latency_b1_ms": ".2f", "latency_bmax_ms": ".2f", "per_slice_ms": ".2f", "peak_mem_mb": ".0f",
    "train_step_ms": ".1f", "train_seconds": ".0f", "epochs": "d",
}


def quality_cell(key: str, value: Optional[float]) -> str:
    """How Table 1 prints a value: Dice, IoU and pooled Dice with 4 decimals, HD95 with 2."""
    return _fmt(value, ".2f" if key.startswith("hd95") else ".4f")


def _md_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _thesis(name: str, table: Mapping[str, Mapping[str, Any]], key: str, spec: str) -> str:
    row = table.get(THESIS_ROW.get(name, ""))
    return _fmt(row.get(key), spec) if row else ""


def render_markdown(study: "Study", rows: Sequence[Mapping[str, Any]], charts: Mapping[str, Path],
                    tables: Mapping[str, Path]) -> str:
    """The text of ``report.md``."""
    p = study.profile
    bench = json.loads((study.root / study.state.get("benchmark")["benchmark_json"]).read_text())
    meta = bench["_meta"]
    env = meta.get("environment", {})
    bmax = max(meta["settings"]["batches"])
    cases = study.state.get("evaluate/baseline")["cases"]
    rel = lambda path: os.path.relpath(str(path), str(study.root))  # noqa: E731
    lines = [
        f"# RAAGR2-Net compression study: profile `{p.name}`",
        "",
        f"Data: `{study.dataset_dir}`{' (built-in synthetic set)' if study.data_dir is None else ''}; split by "
        f"patient, seed {study.seed}; every model evaluated on the same {len(cases)} held-out test subjects "
        f"({', '.join(cases)}) at {p.roi_size}x{p.roi_size} in-plane. Training: {p.epochs} epochs, batch "
        f"{p.batch_size}, lr {p.learning_rate}; pruning of the trained baseline at "
        f"{', '.join(f'{round(r * 100)} %' for r in p.ratios)}, fine-tuning {p.finetune_epochs} epoch(s) with the "
        "masks in force (unstructured) or on the channel-pruned network (DepGraph). Magnitude and SNIP prune "
        "globally; SNIP scores |w dL/dw| on the trained baseline (the thesis's setting), and rows named "
        "`snip-*-init` (where the profile has them) prune at initialisation and then train, as Lee et al. do.",
        "",
        "Every row names the run that produced it: `tables/*.csv` and `tables/*.json` hold, per model, its bundle "
        "folder, its training or pruning `run.json`, its evaluation folder (`metrics_per_subject.csv`, "
        "`metrics_summary.csv`), the benchmark file and its MLflow run id "
        f"(`mlflow ui --backend-store-uri {study.tracking_uri}`).",
    ]
    if study.data_dir is None:
        lines += ["", "**The quick profile proves the pipeline, not the models**: a few epochs on small synthetic "
                      "volumes on a CPU give low Dice; the thesis's schedule is the `full` profile on a GPU."]

    # Table 1
    lines += ["", "## Table 1: quality on the test subjects", "",
              "BraTS-style per-subject metrics on the 3D volumes (mean over subjects): Dice and HD95 (voxels) for the "
              "regions TC, WT, ET and the subregions NCR (= TC - ET) and ED (= WT - TC); an empty region scores Dice "
              "1 / HD95 0 when the prediction is empty too, else Dice 0 / HD95 = the volume diagonal. The "
              "**thesis-style pooled Dice** (all channels and voxels pooled, soft predictions) is kept only to compare "
              "with the thesis's headline figure. Columns marked † are the thesis's published figures "
              "(its Table 1), not ours.", ""]
    header = ["model"] + [h for _, h in TABLE1_COLUMNS] + ["† thesis pooled Dice", "† thesis TC (\"C2\")",
                                                           "† thesis WT (\"C4\")", "† thesis ET (\"C3\")"]
    body = []
    for r in rows:
        body.append([f"{r['label']} (`{r['model']}`)"] + [quality_cell(k, r["quality"][k]) for k, _ in TABLE1_COLUMNS]
                    + [_thesis(r["model"], THESIS_TABLE1, k, ".4f") for k in ("pooled_dice", "TC", "WT", "ET")])
    lines += _md_table(header, body)

    # Table 2
    bench_note = (f"{meta['settings']['device']}, {p.bench_size}x{p.bench_size}, "
                  f"{env.get('torch_threads', '?')} threads")
    lines += ["", "## Table 2: size and cost", "",
              f"Parameters count each tensor once; non-zero parameters leave out masked weights. Size: the state_dict "
              f"as `torch.save` writes it (MB = 10^6 bytes); sparse: the masked model's compressed file "
              f"(`models/model_sparse.pt`). GFLOPs: `torch.utils.flop_counter.FlopCounterMode` at 1x4x{p.flops_size}x"
              f"{p.flops_size} (a multiply-add = 2; masks do not lower it). Latency: median of {p.bench_repeats} timed "
              f"forward passes after {p.bench_warmup} warm-up ones on {bench_note} (batch 1 and batch {bmax}; "
              f"p25-p75 in the CSV). Peak memory: {meta['methods']['peak_mem_mb']}. Train step: "
              f"{meta['methods']['train_step_ms']}. Training s: wall time of the model's training run (for pruned "
              "models: pruning plus fine-tuning), validation included. Columns marked † are the thesis's published "
              "figures (its Table 2: GPU, FLOPs by ptflops at 192x192).", ""]
    header = ["model"] + [h.replace("batch N", f"batch {bmax}") for _, h in TABLE2_COLUMNS] + [
        "† thesis parameters", "† thesis MB", "† thesis GFLOPs", "† thesis ms", "† thesis peak GB"]
    body = []
    for r in rows:
        body.append([f"`{r['model']}`"] + [_fmt(r["cost"][k], _FORMATS[k]) for k, _ in TABLE2_COLUMNS]
                    + [_thesis(r["model"], THESIS_TABLE2, k, s) for k, s in
                       (("params", ",d"), ("size_mb", ".2f"), ("gflops", ".2f"), ("latency_ms", ".2f"),
                        ("peak_gb", ".2f"))])
    lines += _md_table(header, body)

    # Table 3
    lines += ["", "## Table 3: reductions against the baseline", "",
              "Percent reduction against the baseline measured in the same benchmark run (negative: an increase); "
              "parameters count non-zero weights, so masks count as a reduction here although the dense tensors keep "
              "their size, FLOPs and latency. Dice changes are in points (x 100) of the mean BraTS Dice and of the "
              "pooled Dice. Columns marked † are the thesis's published reductions (its Table 3).", ""]
    header = ["model"] + [h.replace("bN", f"b{bmax}") for _, h in TABLE3_COLUMNS] + [
        "† thesis params -%", "† thesis size -%", "† thesis FLOPs -%", "† thesis GPU mem -%"]
    body = []
    for r in rows:
        if r["model"] == "baseline":
            continue
        body.append([f"`{r['model']}`"] + [_fmt(r["reduction"][k], "+.1f") for k, _ in TABLE3_COLUMNS]
                    + [_thesis(r["model"], THESIS_TABLE3, k, ".1f") for k in ("params", "size", "flops", "gpu_mem")])
    lines += _md_table(header, body)

    # training
    lines += ["", "## Training", "",
              "Per-epoch mean training loss and validation mean Dice of every run are in each run's `history.json` "
              "and in its MLflow run (metrics `train_loss`, `val_mean_dice` by epoch).", ""]
    header = ["model", "epochs", "training s", "s per epoch", "last train loss", "best val mean Dice",
              "† thesis minutes (35 epochs, GPU, Table 4)"]
    body = []
    for r in rows:
        epochs = r["history"].get("epochs") or []
        vals = [e["val_mean_dice"] for e in epochs if "val_mean_dice" in e]
        vals += [r["history"]["validation_only"]["val_mean_dice"]] if r["history"].get("validation_only") else []
        thesis_row = THESIS_TABLE4.get(THESIS_ROW.get(r["model"], ""))
        body.append([f"`{r['model']}`", str(r["cost"]["epochs"]), _fmt(r["cost"]["train_seconds"], ".0f"),
                     _fmt(sum(e["seconds"] for e in epochs) / len(epochs), ".0f") if epochs else "-",
                     _fmt(epochs[-1]["train_loss"], ".4f") if epochs else "-",
                     _fmt(max(vals), ".4f") if vals else "-",
                     _fmt(thesis_row["train_minutes"], ".1f") if thesis_row else ""])
    lines += _md_table(header, body)

    lines += ["", "## Where each row comes from", "",
              "Paths are relative to this folder; the MLflow run is a child of this study's parent run.", ""]
    lines += _md_table(
        ["model", "bundle (model files, configs)", "training / pruning run", "evaluation", "MLflow run id"],
        [[f"`{r['model']}`", f"`{r['sources']['bundle']}`", f"`{r['sources']['run_json']}`",
          f"`{r['sources']['eval_dir']}/`", f"`{r['sources']['mlflow_run_id'] or '-'}`"] for r in rows],
    )

    lines += ["", "## Charts", ""]
    lines += [f"![{name}]({rel(path)})" for name, path in charts.items()]

    lines += ["", "## The thesis's published figures (not produced by this code)", "",
              "Copied from the thesis's Tables 1-4 (`tables/thesis_tables.json`). What is wrong with them:", ""]
    lines += [f"- {note}" for note in THESIS_NOTES]
    lines += ["", "Thesis Table 1 with its columns relabelled:", ""]
    lines += _md_table(["† thesis row", "pooled Dice", "mean IoU", "TC (\"C2\")", "ET (\"C3\")", "WT (\"C4\")"],
                       [[name, *(f"{v[k]:.4f}" for k in ("pooled_dice", "mean_iou", "TC", "ET", "WT"))]
                        for name, v in THESIS_TABLE1.items()])
    lines += ["", "Thesis Table 2:", ""]
    lines += _md_table(["† thesis row", "parameters", "MB", "ms", "GFLOPs (ptflops)", "peak GPU GB", "exec. s"],
                       [[name, f"{v['params']:,}", f"{v['size_mb']:.2f}", f"{v['latency_ms']:.2f}",
                         f"{v['gflops']:.2f}", f"{v['peak_gb']:.2f}", f"{v['time_s']:.2f}"]
                        for name, v in THESIS_TABLE2.items()])
    lines += ["", "Thesis Table 3 (percent reduction; negative: an increase):", ""]
    lines += _md_table(["† thesis row", "params", "size", "FLOPs", "GPU memory", "time"],
                       [[name, *(f"{v[k]:.1f}" for k in ("params", "size", "flops", "gpu_mem", "time"))]
                        for name, v in THESIS_TABLE3.items()])
    lines += ["", "## Files", ""]
    lines += [f"- `{rel(path)}` (and `.csv`)" if name.startswith("table") else f"- `{rel(path)}`"
              for name, path in tables.items()]
    lines += [f"- `{study.state.get('benchmark')['benchmark_json']}`: the benchmark, with its environment and methods",
              "- `state.json`: the study's settings and finished steps", ""]
    return "\n".join(lines)


def write_report(study: "Study", mlflow_runs: Optional[Mapping[str, str]] = None) -> Path:
    """Write ``report.md``, ``tables/`` and ``charts/`` of a finished study.

    Args:
        study: the study (all steps done).
        mlflow_runs: model name -> MLflow child run id, recorded in every row's sources.

    Returns:
        The path of ``report.md``.
    """
    rows = collect_rows(study, mlflow_runs)
    tables = write_tables(rows, study.root / "tables")
    meta = json.loads((study.root / study.state.get("benchmark")["benchmark_json"]).read_text())["_meta"]
    note = f"{meta['settings']['device']}, {study.profile.bench_size}x{study.profile.bench_size}"
    charts = write_charts(rows, study.root / "charts", note)
    path = study.root / "report.md"
    atomic_write_text(str(path), render_markdown(study, rows, charts, tables))
    return path
