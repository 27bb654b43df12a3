"""Several study steps at once (``workers``): each in a worker process, started once the steps it needs are done,
beside another, with its MLflow child run and curves live; a failed step stops new ones from starting and is raised
once the running ones have finished and been recorded."""

import json
import re

import pytest

from raagr2_monai.report import step_name
from raagr2_monai.study import Study, get_profile, run_study
from raagr2_monai.study.countdown import Progress

from .standin_steps import FailingSteps

pytestmark = pytest.mark.slow

SETTINGS = {"methods": ("depgraph",), "hybrid_variant": None, "epochs": 2, "val_interval": 2, "window_size": 48,
            "workers": 2}


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    lines = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAAGR2_SYNTHETIC_DIR", str(root / "synthetic"))
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        study = run_study("tiny", output=root / "out", echo=lines.append, **SETTINGS)
    return study, lines


def test_steps_run_two_at_a_time_each_after_the_steps_it_needs(parallel):
    study, lines = parallel
    first = next(i for i, line in enumerate(lines) if not line.startswith("[estimate] "))
    assert "[estimate] steps at once: 2 (CPU allows 2; limited by cpu)" in lines[:first]
    assert lines[first].startswith("[study] cache: ") and lines[first + 1].startswith("[study] cache: train 5 studies")
    assert re.fullmatch(r"\[study\] 2 steps at a time, \d+ thread\(s\) each; the benchmark alone, after them",
                        lines[first + 2])
    # and the evaluations with an uncertainty of the baseline and of the weight-sharing and DepGraph families' best
    assert study.counts == {"train": 2, "prune": 2, "evaluate": 4, "benchmark": 1, "uncertainty": 3}
    steps = study.state.data["steps"]
    span = {step: (out["started_at"], out["finished_at"]) for step, out in steps.items()}
    assert all(start < end for start, end in span.values())
    (b0, b1), (d0, d1) = span["train/baseline"], span["train/depthwise"]
    assert b0 < d1 and d0 < b1, "the two trainings ran at once"
    for model in ("depgraph-20", "depgraph-20-ft"):
        assert span[f"prune/{model}"][0] >= b1, "a pruning starts once its source is trained"
    for spec in study.models:
        assert span[f"evaluate/{spec.name}"][0] >= span[step_name(spec)][1], "an evaluation starts once its model is"
    for key, models in (("baseline", ["baseline"]), ("architecture", ["depthwise"]),
                        ("depgraph", ["depgraph-20", "depgraph-20-ft"])):
        assert span[f"uncertainty/{key}"][0] >= max(span[f"evaluate/{m}"][1] for m in models), \
            "a failure prediction starts once its family is evaluated"
    assert span["benchmark"][0] >= max(end for step, (_, end) in span.items() if step != "benchmark")
    assert (study.root / "report.md").is_file()


def test_the_schedule_lanes_and_peak_memory_of_each_step_are_recorded(parallel):
    study, _ = parallel
    data = study.state.data
    assert data["parallelism"]["lanes"] == 2 and data["parallelism"]["limited_by"] == "cpu"
    assert data["parallelism"]["device_fit"] is None and data["parallelism"]["threads"] >= 1
    (run,) = data["runs"]
    assert run["lanes"] == 2 and run["started_at"] < run["finished_at"]
    assert sorted(s["step"] for s in run["steps"]) == sorted(data["steps"])
    for entry in run["steps"]:
        outputs = data["steps"][entry["step"]]
        assert entry["status"] == "done" and entry["lane"] == outputs["lane"] in (0, 1)
        assert entry["started_at"] == outputs["started_at"] and entry["finished_at"] == outputs["finished_at"]
        assert outputs["peak_rss_mb"] > 100, "a step's process holds torch at least"
    # two steps at once, each in its own lane
    trainings = [s for s in run["steps"] if s["step"].startswith("train/")]
    assert {s["lane"] for s in trainings} == {0, 1}
    estimate = json.loads((study.root / "estimate.json").read_text())
    assert sorted(s["step"] for s in estimate["steps"]) == sorted(s for s in data["steps"] if s != "benchmark")


def test_workers_log_their_curves_to_the_child_runs_while_they_train(parallel):
    import mlflow

    study, _ = parallel
    client = mlflow.MlflowClient(tracking_uri=study.tracking_uri)
    children = study.state.data["mlflow"]["children"]
    assert sorted(children) == ["baseline", "depgraph-20", "depgraph-20-ft", "depthwise"]
    spans = {}
    for model in ("baseline", "depthwise", "depgraph-20-ft"):
        run = client.get_run(children[model]).info
        assert run.status == "FINISHED"
        history = json.loads((study.root / study.state.get(step_name(
            next(s for s in study.models if s.name == model)))["history"]).read_text())
        logged = client.get_metric_history(run.run_id, "val_mean_dice")
        expected = [e for e in history["epochs"] if "val_mean_dice" in e]
        assert [m.step for m in logged] == [e["epoch"] for e in expected] and logged
        assert [m.value for m in logged] == pytest.approx([e["val_mean_dice"] for e in expected])
        assert all(run.start_time <= m.timestamp <= run.end_time for m in logged)
        spans[model] = (run.start_time, run.end_time)
    assert spans["baseline"][0] < spans["depthwise"][1] and spans["depthwise"][0] < spans["baseline"][1]


def test_workers_notices_are_counted_in_the_studys_summary_line(parallel):
    _, lines = parallel
    (summary,) = [line for line in lines if line.startswith("Silenced: ")]
    # one workflow per training, pruning and evaluation, each run in a worker: 8 of them, and 3 evaluations with an
    # uncertainty
    assert "MONAI 'No workflow type ... specified' x11" in summary


def test_a_failed_step_stops_new_steps_and_is_raised_after_the_running_ones(tmp_path):
    lines = []
    profile = get_profile("tiny", **SETTINGS)
    study = Study(tmp_path / "out", profile, None, echo=lines.append)
    study.steps = FailingSteps("depthwise", seconds=3.0)
    tasks = study._tasks()
    study.progress = Progress([t.step for t in tasks])
    study._open_schedule(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        with pytest.raises(RuntimeError, match="no luck with depthwise"):
            with study.tracker.study_run(profile.settings(), {}):
                study._run_parallel(tasks)
    failed = lines.index("[study 2/11] train/depthwise failed: no luck with depthwise")
    assert not [line for line in lines[failed:] if line.endswith(" ...")], "no step starts after a failure"
    # the training running beside it finished and was recorded
    assert study.state.done("train/baseline") and study.state.get("train/baseline")["made"] == "baseline"
    assert not study.state.done("train/depthwise")
    schedule = {s["step"]: s for s in study.state.data["runs"][-1]["steps"]}
    assert schedule["train/depthwise"]["status"] == "failed" and schedule["train/baseline"]["status"] == "done"
    assert schedule["train/depthwise"]["lane"] != schedule["train/baseline"]["lane"]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=study.tracking_uri)
    children = study.state.data["mlflow"]["children"]
    assert client.get_run(children["depthwise"]).info.status == "FAILED"
    assert client.get_run(children["baseline"]).info.status == "FINISHED"
