"""The study on the test device: ``raagr2 study --profile tiny --device ...`` as a user runs it, and the ``full``
profile, the one meant for a GPU, on a small synthetic folder with its epochs and sizes cut down. Every training,
pruning and evaluation of a study must run on the device it was given, with AMP exactly on CUDA, and score every test
subject; the benchmark must measure on that device."""

import csv
import json
import math
from pathlib import Path

import torch

from raagr2_monai.study import run_study

from .conftest import assert_ran_on, raagr2

# the full profile's schedule cut to a smoke run; what stays is what sets it apart from the others: SNIP at
# initialisation, the hybrid rows with and without distillation (the teacher on the device too), one worker. Its
# exported backends (ONNX Runtime, OpenVINO) run on the CPU whatever the device, so they are left out here.
FULL = {
    "variants": ("baseline", "depthwise"), "methods": ("snip",), "ratios": (0.2,), "roi_size": 32, "epochs": 1,
    "batch_size": 4, "num_samples": 2, "finetune_epochs": 1, "snip_batches": 1, "snip_size": 64, "hybrid_ratio": 0.5,
    "hybrid_finetune_epochs": 1, "bench_size": 32, "bench_batches": (1, 2), "bench_repeats": 1, "bench_warmup": 0,
    "bench_backends": (), "flops_size": 32,
}


def assert_study_ran_on(root: Path, device: str, models: int) -> None:
    """``models`` models made (trained or pruned) and evaluated on ``device``, then benchmarked there."""
    assert (root / "report.md").is_file()
    steps = json.loads((root / "state.json").read_text())["steps"]
    made = [step for name, step in steps.items() if name.startswith(("train/", "prune/"))]
    evaluated = [step for name, step in steps.items() if name.startswith("evaluate/")]
    assert len(made) == len(evaluated) == models
    for step in made + evaluated:
        assert_ran_on(json.loads((root / step["run_json"]).read_text())["settings"], device)
    for step in evaluated:
        with open(root / step["per_subject_csv"]) as f:
            rows = list(csv.DictReader(f))
        assert [r["case"] for r in rows] == step["cases"]
        assert all(math.isfinite(float(r["dice_WT"])) for r in rows)
    measured_on = json.loads((root / "benchmark.json").read_text())["_meta"]["environment"]["device"]
    assert torch.device(measured_on).type == torch.device(device).type


def test_tiny_study_on_the_device(device, tmp_path, workdir):
    out = tmp_path / "tiny"
    raagr2("study", "--profile", "tiny", "--output", out, "--device", device, cwd=workdir,
           env={"RAAGR2_SYNTHETIC_DIR": str(tmp_path / "synthetic"), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    assert_study_ran_on(out, device, models=10)


def test_full_profile_on_a_small_synthetic_folder(device, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    study = run_study("full", data_dir=str(tiny_dataset), output=tmp_path / "full", device=device,
                      echo=lambda line: None, **FULL)
    assert study.profile.name == "full" and study.profile.device == device
    # baseline, depthwise, SNIP with and without fine-tuning, SNIP at initialisation, the two hybrid rows
    assert_study_ran_on(study.root, device, models=7)
