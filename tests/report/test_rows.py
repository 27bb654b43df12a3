"""Report rows from plain data (a study folder, its state, the models, the benchmark), worked out by hand."""

import pytest

from raagr2_monai.report import collect_rows, record_mlflow_runs

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
