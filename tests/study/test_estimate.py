"""The study's estimate: unit costs summed over the runner's own step list, linear in epochs and subjects, the
steps at once limited by the device's memory, the gpu profile within 15 minutes on an H200, and what it prints."""

import dataclasses
import json
import re

import pytest

from raagr2_monai.study import UnitCosts, estimate_study, experiment_matrix, failure_tasks, get_profile, run_study
from raagr2_monai.study import study_tasks
from raagr2_monai.study import estimate, profiles, runner, tasks
from raagr2_monai.study.estimate import _simulate, decide_lanes
from raagr2_monai.study.profiles import section_counts
from raagr2_monai.study.steps import FAILURE_SAMPLES

VARIANTS = ("baseline", "depthwise", "paired", "encdec")
COUNTS = {"training": 8, "validation": 2, "testing": 3}


def _costs(**changes):
    """Round unit costs: a training step 1 s, a validation slice 0.01 s (10 slices a study), nothing else."""
    costs = UnitCosts(train_step_s={v: 1.0 for v in VARIANTS}, forward_slice_s={v: 0.01 for v in VARIANTS},
                      slices=10, step_overhead_s=0.0, export_s=0.0)
    return dataclasses.replace(costs, **changes)


def _h200(step_s):
    """An H200 (the issue's figures: a baseline training step at batch 16, 192 x 192, 0.084 s in fp32 and about 0.05
    s in mixed precision; validation of a whole study on whole slices 0.2 s) on a 16-CPU host whose host work costs
    what it costs on this project's 2-core machine (load 3.1 s, crops 0.2 s, scoring 1.3 s a study)."""
    return UnitCosts(
        device="cuda:0", threads=4, cpus=16, train_step_s={v: step_s for v in VARIANTS},
        forward_slice_s={v: 0.2 / 155 for v in VARIANTS}, slice_hw=(208, 224), slices=155, sample_s=0.2,
        load_study_s=3.1, cached_study_s=0.065, score_study_s=1.3, study_mb=202.0, compact_mb=65.0,
        process_mb=3000.0, train_device_mb=12_000.0, val_device_mb=2000.0, device_total_mb=143_000.0,
        host_total_mb=135_000.0, gflops={"baseline": 15.46, "depthwise": 11.55, "paired": 11.55, "encdec": 15.86},
    )


def _device(est: dict, step: str) -> float:
    return next(r["device_seconds"] for r in est["steps"] if r["step"] == step)


def _seconds(est, step):
    return next(r["seconds"] for r in est["steps"] if r["step"] == step)


def test_estimate_is_linear_in_epochs_and_subjects():
    profile = get_profile("tiny", val_interval=1, batch_size=4, num_samples=2)
    one = estimate_study(profile, _costs(), COUNTS)
    two = estimate_study(get_profile(profile, epochs=2, finetune_epochs=2, hybrid_finetune_epochs=2), _costs(), COUNTS)
    # 8 training subjects x 2 slices / batch 4: 4 steps an epoch; a validation: 2 studies x 10 slices x 0.01 s
    assert one["steps_per_epoch"] == 4 and _seconds(one, "train/baseline") == pytest.approx(4 * 1.0 + 2 * 0.1)
    for step in ("train/baseline", "train/depthwise", "prune/magnitude-20-ft"):
        assert _seconds(two, step) == pytest.approx(2 * _seconds(one, step)), step
    # DepGraph's scoring (a traced forward pass) is the same whatever the epochs: affine in them
    three = estimate_study(get_profile(profile, epochs=3, finetune_epochs=3, hybrid_finetune_epochs=3), _costs(),
                           COUNTS)
    kd = [_seconds(e, "prune/hybrid-50-kd") for e in (one, two, three)]
    assert kd[2] - kd[1] == pytest.approx(kd[1] - kd[0]) and kd[1] - kd[0] > 0
    assert _seconds(two, "evaluate/baseline") == _seconds(one, "evaluate/baseline")
    more = estimate_study(profile, _costs(), {k: 2 * n for k, n in COUNTS.items()})
    for step in ("train/baseline", "prune/magnitude-20-ft", "evaluate/baseline", "evaluate/hybrid-50"):
        assert _seconds(more, step) == pytest.approx(2 * _seconds(one, step)), step
    assert one["serial_s"] == pytest.approx(sum(r["seconds"] for r in one["steps"]) + one["benchmark_s"])
    # the cache of every study is filled once, before the first step, and each test study is read back and scored
    # by each evaluation: linear in the subjects too
    loads = estimate_study(profile, _costs(load_study_s=1.0, cached_study_s=0.5, score_study_s=1.0), COUNTS)
    extra = {step: _seconds(loads, step) - _seconds(one, step) for step in ("train/baseline", "train/depthwise")}
    assert extra["train/depthwise"] > 0 and extra["train/baseline"] - extra["train/depthwise"] == pytest.approx(8 + 2 + 3)
    assert _seconds(loads, "evaluate/baseline") - _seconds(one, "evaluate/baseline") == pytest.approx(3 * 1.5)
    assert estimate_study(profile, _costs(), COUNTS, done={"train/baseline"})["steps"][0]["step"] == "train/depthwise"


def test_estimate_sums_over_the_runners_step_list(monkeypatch, tmp_path):
    profile = get_profile("tiny")
    est = estimate_study(profile, _costs(), COUNTS)
    models = experiment_matrix(profile)
    # the trainings, prunings and evaluations, then the evaluations with an uncertainty
    assert [r["step"] for r in est["steps"]] == [t.step for t in study_tasks(models)]
    assert [t.step for t in study_tasks(models)][-6:] == [t.step for t in failure_tasks(models)]
    assert [r["step"] for r in est["steps"] if r["action"] == "evaluate_uncertainty"] == [
        "uncertainty/baseline", "uncertainty/architecture", "uncertainty/magnitude", "uncertainty/snip",
        "uncertainty/depgraph", "uncertainty/hybrid"]
    # each predicts every slice FAILURE_SAMPLES times: that much more device time than the plain evaluation
    assert _device(est, "uncertainty/baseline") == pytest.approx(FAILURE_SAMPLES * _device(est, "evaluate/baseline"))
    real = tasks.study_tasks

    def one_more(models):
        tasks = real(models)
        return tasks + [dataclasses.replace(tasks[-1], step="evaluate/again")]

    # the one list, which the runner and the estimate both take from .tasks
    monkeypatch.setattr(runner, "study_tasks", one_more)
    monkeypatch.setattr(estimate, "study_tasks", one_more)
    more = estimate_study(profile, _costs(), COUNTS)
    assert len(more["steps"]) == len(est["steps"]) + 1 and more["steps"][-1]["step"] == "evaluate/again"
    assert more["serial_s"] == pytest.approx(est["serial_s"] + _seconds(est, est["steps"][-1]["step"]))
    # the runner's own list is the patched one as well
    assert runner.Study(tmp_path / "study", profile, None)._tasks()[-1].step == "evaluate/again"


def test_steps_at_once_follow_the_needs_and_the_device_memory(monkeypatch):
    assert _simulate([10.0, 10.0, 1.0], [[], [], [0]], lanes=2) == 11.0
    assert _simulate([10.0, 10.0, 1.0], [[], [], [0]], lanes=1) == 21.0
    assert decide_lanes(4, 30_000.0, 80_000.0) == {
        "lanes": 2, "cpu_lanes": 4, "device_fit": 2, "step_device_mb": 30_000.0, "device_total_mb": 80_000.0,
        "limited_by": "device memory"}
    monkeypatch.setattr(profiles, "usable_cpus", lambda: 16)
    profile = get_profile("tiny", workers="auto", num_workers=3, methods=("magnitude",))
    small = dataclasses.replace(_h200(0.05), train_device_mb=10_000.0, device_total_mb=32_000.0)
    est = estimate_study(profile, small, COUNTS)
    # 600 MB of CUDA context + 1.25 x 10 GB a step: 2 of them in 90 % of 32 GB, while the CPUs allow 16 / 4
    assert est["parallel"] == {"lanes": 2, "cpu_lanes": 4, "device_fit": 2, "step_device_mb": 13_100.0,
                               "device_total_mb": 32_000.0, "limited_by": "device memory"}
    # one device: the steps at once do not overlap their device time
    assert est["parallel_s"] >= sum(r["device_seconds"] for r in est["steps"]) + est["benchmark_s"]


def test_gpu_profile_fits_16_and_a_half_minutes_on_an_h200(monkeypatch):
    monkeypatch.setattr(profiles, "usable_cpus", lambda: 16)
    profile = get_profile("gpu")
    counts = section_counts(profile)
    assert counts == {"training": 30, "validation": 9, "testing": 21}
    for step_s in (0.084, 0.05):
        est = estimate_study(profile, _h200(step_s), counts)
        assert est["parallel"]["lanes"] == 4  # 16 CPUs / (1 + 3 loaders); the device holds more
        # 14 min 33 s before the failure prediction's six evaluations with test-time flips, 16 min 08 s with them
        assert est["parallel_s"] <= 16.5 * 60, est["parallel_s"]
        assert est["memory"]["host_total_mb"] < 135_000.0
    assert [r["epochs"] for r in est["steps"] if r["action"] == "train"] == [35] * 4
    # a training or pruning and an evaluation per row, and the baseline and 5 families' best evaluated with TTA
    assert len(est["steps"]) == 2 * len(experiment_matrix(profile)) + 6 == 60


def test_printed_lines_and_estimate_only_run_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RAAGR2_SYNTHETIC_DIR", str(tmp_path / "synthetic"))
    lines = []
    est = run_study("tiny", output=tmp_path / "out", echo=lines.append, estimate_only=True)
    assert not (tmp_path / "out").exists() and not (tmp_path / "synthetic").exists(), "nothing made, not even data"
    assert all(line.startswith("[estimate] ") for line in lines)
    assert re.match(r"\[estimate\] unit costs on cpu, \d+ thread\(s\) a step \(measured in \d+ s", lines[0])
    assert f"{len(est['steps'])} steps and the benchmark; 2 trainings (2 epochs)" in lines[1]
    assert re.match(r"\[estimate\] time: .+ one step at a time; .+ at 1 at a time \(benchmark .+, alone\)$", lines[2])
    assert lines[3].startswith("[estimate] memory: host ") and lines[4].startswith("[estimate] steps at once: 1")
    assert lines[5].startswith("[estimate] data: the synthetic set is generated first, about ")
    assert est["subjects"] == {"training": 5, "validation": 2, "testing": 2}
    json.dumps(est)  # what estimate.json holds
