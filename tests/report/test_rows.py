"""Report rows from plain data (a study folder, its state, the models, the benchmark), worked out by hand."""

import copy
import csv
import math
import shutil

import pytest

from raagr2_monai.report import collect_rows, record_mlflow_runs, write_tables

from .conftest import MODELS


def test_quality_cost_and_reductions_of_each_model(finished):
    root, state, benchmark = finished
    base, pruned, tuned = collect_rows(root, state, MODELS, benchmark)
    assert (base["model"], base["label"], base["family"]) == ("baseline", "RAAGR2-Net (baseline)", "architecture")
    assert (pruned["label"], pruned["family"], pruned["ratio"]) == ("Magnitude 20 %", "magnitude", 0.2)
    assert base["quality"]["dice_mean"] == pytest.approx(0.5)  # (0.5 + 0.75 + 0.25) / 3
    assert base["quality"]["subjects"] == 2 and base["quality"]["hd95_ED"] == 7.0
    assert pruned["quality"]["dice_ET"] is None and pruned["quality"]["dice_mean"] is None
    assert base["cost"] == {
        "params": 1000, "nonzero_params": 1000, "size_mb": 4.0, "size_sparse_mb": None, "gflops": 8.0,
        "latency_b1_ms": 10.0, "latency_b1_p25_ms": 9.0, "latency_b1_p75_ms": 11.0, "latency_bmax_ms": 32.0,
        "per_slice_ms": 8.0, "peak_mem_mb": 500.0, "train_step_ms": 100.0, "train_epoch_s": None,
        "timed_as": "baseline", "train_seconds": 30.0, "epochs": 1,
        "latency_b1_backends_ms": None, "latency_b1_backends_p25_ms": None, "latency_b1_backends_p75_ms": None,
    }
    reduction = pruned["reduction"]
    assert reduction["params"] == pytest.approx(20.0) and reduction["size_sparse_mb"] == pytest.approx(25.0)
    assert reduction["latency_b1"] == pytest.approx(-20.0) and reduction["latency_bmax"] == pytest.approx(25.0)
    assert reduction["peak_mem_mb"] is None and reduction["dice_mean_change"] is None
    assert reduction["pooled_dice_change"] == pytest.approx(-10.0)  # 100 x (0.8 - 0.9) points
    assert base["reduction"]["dice_mean_change"] == 0.0 and base["reduction"]["size_sparse_mb"] is None
    assert pruned["history"]["epochs"][0]["train_loss"] == 0.9
    # the best validation mean Dice of each run's history, and the lesion-wise means of its summary
    assert [r["validation"]["val_mean_dice"] for r in (base, pruned, tuned)] == [0.2, 0.45, 0.35]
    assert base["lesionwise"]["lesion_dice_WT"] == 0.625 and base["lesionwise"]["lesion_f1_ET"] == 0.25
    assert pruned["lesionwise"]["lesion_hd95_ET"] is None and tuned["lesionwise"]["lesion_hd95_TC"] == 16.0


def test_rows_name_their_sources(finished):
    root, state, benchmark = finished
    rows = collect_rows(root, state, MODELS, benchmark)
    assert rows[1]["sources"] == {
        "bundle": "models/baseline/pruned/magnitude-20",
        "run_json": "models/baseline/pruned/magnitude-20/runs/prune/run.json",
        "pruning_json": "models/baseline/pruned/magnitude-20/pruning.json",
        "eval_dir": "eval/magnitude-20",
        "eval_run_json": "eval/magnitude-20/run.json",
        "benchmark_json": "benchmark.json",
        "mlflow_run_id": None,
    }
    assert rows[0]["sources"]["pruning_json"] is None
    record_mlflow_runs(rows, {"baseline": "a" * 32})
    assert [r["sources"]["mlflow_run_id"] for r in rows] == ["a" * 32, None, None]


def test_an_unfinished_step_is_named(finished):
    root, state, benchmark = finished
    del state["steps"]["evaluate/magnitude-20"]
    with pytest.raises(ValueError, match="records no finished step 'evaluate/magnitude-20'"):
        collect_rows(root, state, MODELS, benchmark)
    (root / "models/baseline/runs/train/history.json").unlink()
    with pytest.raises(FileNotFoundError, match="history.json"):
        collect_rows(root, state, MODELS[:1], benchmark)


# two subjects at mean -/+ 0.0625 (Dice, IoU, pooled Dice) or -/+ 1 (HD95): std = step x sqrt(2); the 95 % CI
# half-width is t(0.975, 1) x std / sqrt(2) = 12.7062 x step
T_1 = 12.706204736


def test_each_score_carries_its_spread_over_the_subjects(finished):
    root, state, benchmark = finished
    base, pruned, _ = collect_rows(root, state, MODELS, benchmark)
    assert base["quality"]["dice_TC_std"] == pytest.approx(0.0625 * math.sqrt(2))
    assert base["quality"]["dice_TC_ci95"] == pytest.approx(T_1 * 0.0625)
    assert base["quality"]["hd95_WT_ci95"] == pytest.approx(T_1 * 1.0)
    assert base["quality"]["mean_iou_std"] == pytest.approx(0.0625 * math.sqrt(2))
    # per-subject mean Dice: c1 (0.4375 + 0.6875 + 0.1875) / 3, c2 (0.5625 + 0.8125 + 0.3125) / 3
    assert base["quality"]["dice_mean_std"] == pytest.approx(0.125 / math.sqrt(2))
    # magnitude-20 has no ET: no spread there, and its subjects' mean Dice leaves ET out (c1 0.3125, c2 0.4375)
    assert pruned["quality"]["dice_ET_std"] is None and pruned["quality"]["dice_ET_ci95"] is None
    assert pruned["quality"]["dice_mean_ci95"] == pytest.approx(T_1 * 0.0625)
    assert base["quality"]["subjects"] == 2


def test_rows_identical_on_every_subject_name_each_other(finished):
    root, state, benchmark = finished
    assert [r["identical_to"] for r in collect_rows(root, state, MODELS, benchmark)] == [[], [], []]
    shutil.copy(root / "eval/magnitude-20-ft/metrics_per_subject.csv", root / "eval/baseline/metrics_per_subject.csv")
    assert [r["identical_to"] for r in collect_rows(root, state, MODELS, benchmark)] == [
        ["magnitude-20-ft"], [], ["baseline"]]


def test_backend_latencies_of_the_benchmark_reach_the_rows_and_table_2(finished):
    root, state, benchmark = finished
    benchmark = copy.deepcopy(benchmark)
    for name, factor in (("baseline", 1.0), ("magnitude-20", 0.5)):
        benchmark[name]["backends"] = {
            "latency_ms": {backend: {"1": {"median": 8 * f * factor, "p25": 7 * f * factor, "p75": 9 * f * factor,
                                           "per_slice_ms": 8 * f * factor},
                                     "4": {"median": 1.0, "p25": 1.0, "p75": 1.0, "per_slice_ms": 0.25}}
                           for backend, f in (("torch", 1.0), ("onnxruntime", 0.5))},
            "speedup_vs_baseline_torch": {},
        }
    rows = collect_rows(root, state, MODELS, benchmark)
    assert rows[1]["cost"]["latency_b1_backends_ms"] == {"torch": 4.0, "onnxruntime": 2.0}
    assert rows[1]["cost"]["latency_b1_backends_p25_ms"] == {"torch": 3.5, "onnxruntime": 1.75}
    assert rows[0]["cost"]["latency_b1_backends_p75_ms"] == {"torch": 9.0, "onnxruntime": 4.5}
    assert rows[2]["cost"]["latency_b1_backends_ms"] is None  # no backend figures in its benchmark row
    write_tables(rows, root / "tables")
    with open(root / "tables" / "table2_cost.csv", newline="") as f:
        cost = list(csv.DictReader(f))
    assert [(r["latency_b1_ms_onnxruntime"], r["latency_b1_p75_ms_torch"]) for r in cost] == [
        ("4.0", "9.0"), ("2.0", "4.5"), ("", "")]
