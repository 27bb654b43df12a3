"""A finished study as plain data, written by hand: three models, their evaluation summaries and per-subject rows,
histories and a benchmark, with figures simple enough to work the report's numbers out by hand; and its two test
subjects on disk with each model's predictions.

The magnitude family's two models disagree: ``magnitude-20`` has the better validation score, ``magnitude-20-ft`` the
only mean test Dice (``magnitude-20`` has no ET value, so no mean), so a choice on the test subjects would differ from
the report's choice on validation."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from raagr2_monai.metrics import write_metrics_csv
from raagr2_monai.study import ModelSpec

from ..visualize.tiny_case import anatomy, write_case

MODELS = [
    ModelSpec("baseline", "architecture", "baseline"),
    ModelSpec("magnitude-20", "pruned", "baseline", "magnitude", 0.2),
    ModelSpec("magnitude-20-ft", "pruned", "baseline", "magnitude", 0.2, 1),
]
KEYS = ["dice_TC", "dice_WT", "dice_ET", "dice_NCR", "dice_ED", "hd95_TC", "hd95_WT", "hd95_ET", "hd95_NCR", "hd95_ED",
        "thesis_pooled_dice", "mean_iou",
        "lesion_dice_TC", "lesion_dice_WT", "lesion_dice_ET", "lesion_hd95_TC", "lesion_hd95_WT", "lesion_hd95_ET",
        "lesion_f1_TC", "lesion_f1_WT", "lesion_f1_ET"]
# per model: the mean row of metrics_summary.csv, in the order of KEYS ("" = no value, as the CSV writes NaN)
MEANS = {
    "baseline": [0.5, 0.75, 0.25, 0.4, 0.6, 10.0, 8.0, 12.0, 9.0, 7.0, 0.9, 0.3,
                 0.5, 0.625, 0.25, 20.0, 10.0, 30.0, 0.5, 0.875, 0.25],
    "magnitude-20": [0.25, 0.5, "", 0.1, 0.2, 20.0, 16.0, "", 18.0, 14.0, 0.8, 0.2,
                     0.25, 0.5, "", 40.0, 20.0, "", 0.25, 0.5, ""],
    "magnitude-20-ft": [0.5, 0.875, 0.5, 0.4, 0.6, 8.0, 4.0, 6.0, 9.0, 7.0, 0.95, 0.4,
                        0.5, 0.75, 0.5, 16.0, 8.0, 12.0, 0.5, 0.9375, 0.5],
}
#: best validation mean Dice of each model's run: against the test Dice, magnitude-20 beats magnitude-20-ft
VALIDATION = {"baseline": 0.2, "magnitude-20": 0.45, "magnitude-20-ft": 0.35}
CASES = ["c1", "c2"]


def _row(params, nonzero, size, sparse, flops, latency, peak, step, vs):
    return {
        "params": params, "nonzero_params": nonzero, "size_mb": size, "size_sparse_mb": sparse, "flops": flops,
        "flops_at_flops_size": flops * 4, "peak_mem_mb": peak, "train_step_ms": step,
        "latency_ms": {
            b: {"median": m, "p25": m - 1, "p75": m + 1, "per_slice_ms": m / int(b)} for b, m in latency.items()
        },
        "vs_baseline": vs,
    }


BENCHMARK = {
    "baseline": _row(1000, 1000, 4.0, None, 2e9, {"1": 10.0, "4": 32.0}, 500.0, 100.0, {
        "params": 1.0, "nonzero_params": 1.0, "size_mb": 1.0, "size_sparse_mb": None, "flops": 1.0,
        "latency_ms": {"1": 1.0, "4": 1.0}, "peak_mem_mb": 1.0, "train_step_ms": 1.0}),
    "magnitude-20": _row(1000, 800, 4.0, 3.0, 2e9, {"1": 12.0, "4": 24.0}, None, None, {
        "params": 1.0, "nonzero_params": 0.8, "size_mb": 1.0, "size_sparse_mb": 0.75, "flops": 1.0,
        "latency_ms": {"1": 1.2, "4": 0.75}, "peak_mem_mb": None, "train_step_ms": None}),
    "magnitude-20-ft": _row(1000, 800, 4.0, 3.0, 2e9, {"1": 12.0, "4": 24.0}, None, None, {
        "params": 1.0, "nonzero_params": 0.8, "size_mb": 1.0, "size_sparse_mb": 0.75, "flops": 1.0,
        "latency_ms": {"1": 1.2, "4": 0.75}, "peak_mem_mb": None, "train_step_ms": None}),
    "_meta": {"settings": {"batches": [1, 4], "device": "cpu"}, "environment": {"torch_threads": 2},
              "methods": {"peak_mem_mb": "peak RSS", "train_step_ms": "median step"}},
}


def _history(val_mean_dice: float) -> dict:
    return {
        "epochs": [{"epoch": 1, "train_loss": 0.9, "seconds": 3.0, "val_mean_dice": val_mean_dice}],
        "iterations": [[1, 1.0, 0.9]],
        "validation_only": None,
    }


def _subject_rows(means: list) -> list:
    """Two subjects whose values straddle the means (c1 below, c2 above), so that their means are ``means``."""
    rows = []
    for case, sign in zip(CASES, (-1, 1)):
        row = {"case": case}
        for key, mean in zip(KEYS, means):
            step = 1.0 if "hd95" in key else 0.0625
            row[key] = float("nan") if mean == "" else mean + sign * step
        rows.append(row)
    return rows
PROFILE = {"name": "tiny", "roi_size": 32, "epochs": 1, "batch_size": 4, "learning_rate": 0.001, "ratios": [0.2],
           "finetune_epochs": 1, "bench_size": 32, "flops_size": 64, "bench_repeats": 1, "bench_warmup": 0}


@pytest.fixture
def finished(tmp_path):
    """``(root, state, benchmark)`` of the hand-made study."""
    steps = {}
    for spec in MODELS:
        pruned = spec.kind == "pruned"
        run = f"models/baseline/pruned/{spec.name}/runs/prune" if pruned else "models/baseline/runs/train"
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "history.json").write_text(json.dumps(_history(VALIDATION[spec.name])))
        made = {"bundle": str(Path(run).parents[1]), "run_json": f"{run}/run.json", "history": f"{run}/history.json",
                "train_seconds": 30.0, "epochs": 1}
        if pruned:
            made["pruning_json"] = f"{Path(run).parents[1]}/pruning.json"
        steps[f"{'prune' if pruned else 'train'}/{spec.name}"] = made
        evaluation = tmp_path / "eval" / spec.name
        evaluation.mkdir(parents=True)
        (evaluation / "metrics_summary.csv").write_text(
            "statistic," + ",".join(KEYS) + "\n"
            + "mean," + ",".join(str(v) for v in MEANS[spec.name]) + "\n"
            + "count," + ",".join("2.0" for _ in KEYS) + "\n"
        )
        write_metrics_csv(_subject_rows(MEANS[spec.name]), evaluation / "metrics_per_subject.csv")
        steps[f"evaluate/{spec.name}"] = {"summary_csv": f"eval/{spec.name}/metrics_summary.csv",
                                          "per_subject_csv": f"eval/{spec.name}/metrics_per_subject.csv",
                                          "run_json": f"eval/{spec.name}/run.json", "cases": ["c1", "c2"]}
    steps["benchmark"] = {"benchmark_json": "benchmark.json"}
    state = {"format": 1, "settings": {"profile": PROFILE, "data_dir": None, "seed": 3}, "steps": steps}
    return tmp_path, state, BENCHMARK


def _prediction(model: str, seg: np.ndarray) -> np.ndarray:
    if model == "baseline":
        return seg
    if model == "magnitude-20":
        return np.where(seg == 4, 1, seg).astype(seg.dtype)  # enhancing tumour called necrosis
    return np.roll(seg, 1, axis=0)  # everything one voxel off


@pytest.fixture
def subjects(finished):
    """The test subjects of :func:`finished` on disk (the tiny BraTS-like case as ``c1`` and ``c2``) with every
    model's predictions in ``eval/<model>/predictions/``; their datalist entries."""
    root = finished[0]
    images, seg = anatomy()
    entries = [write_case(root / "data", case, images, seg, np.eye(4)) for case in CASES]
    for spec in MODELS:
        folder = root / "eval" / spec.name / "predictions"
        folder.mkdir()
        for case in CASES:
            nib.save(nib.Nifti1Image(_prediction(spec.name, seg), np.eye(4)), str(folder / f"{case}_pred.nii.gz"))
    return entries
