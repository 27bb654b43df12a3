"""A finished study as plain data, written by hand: two models, their evaluation summaries, histories and a benchmark,
with figures simple enough to work the report's numbers out by hand."""

import json
from pathlib import Path

import pytest

from raagr2_monai.study import ModelSpec

MODELS = [
    ModelSpec("baseline", "architecture", "baseline"),
    ModelSpec("magnitude-20", "pruned", "baseline", "magnitude", 0.2),
]
KEYS = ["dice_TC", "dice_WT", "dice_ET", "dice_NCR", "dice_ED", "hd95_TC", "hd95_WT", "hd95_ET", "hd95_NCR", "hd95_ED",
        "thesis_pooled_dice", "mean_iou"]
# per model: the mean row of metrics_summary.csv, in the order of KEYS ("" = no value, as the CSV writes NaN)
MEANS = {
    "baseline": [0.5, 0.75, 0.25, 0.4, 0.6, 10.0, 8.0, 12.0, 9.0, 7.0, 0.9, 0.3],
    "magnitude-20": [0.25, 0.5, "", 0.1, 0.2, 20.0, 16.0, "", 18.0, 14.0, 0.8, 0.2],
}


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
    "_meta": {"settings": {"batches": [1, 4], "device": "cpu"}, "environment": {"torch_threads": 2},
              "methods": {"peak_mem_mb": "peak RSS", "train_step_ms": "median step"}},
}
HISTORY = {
    "epochs": [{"epoch": 1, "train_loss": 0.9, "seconds": 3.0, "val_mean_dice": 0.2}],
    "iterations": [[1, 1.0, 0.9]],
    "validation_only": None,
}
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
        (tmp_path / run / "history.json").write_text(json.dumps(HISTORY))
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
        steps[f"evaluate/{spec.name}"] = {"summary_csv": f"eval/{spec.name}/metrics_summary.csv",
                                          "run_json": f"eval/{spec.name}/run.json", "cases": ["c1", "c2"]}
    steps["benchmark"] = {"benchmark_json": "benchmark.json"}
    state = {"format": 1, "settings": {"profile": PROFILE, "data_dir": None, "seed": 3}, "steps": steps}
    return tmp_path, state, BENCHMARK
