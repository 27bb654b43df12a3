"""``raagr2 study`` end to end on a tiny synthetic set: report, tables, charts, MLflow runs (live), silenced notices
and resumption."""

import csv
import json
import logging
import math
import re
import shutil
import statistics
import warnings
from pathlib import Path

import pytest
import torch
from scipy import stats

from raagr2_monai.report import TABLE1_COLUMNS, TABLE2_COLUMNS, TABLE3_COLUMNS, collect_rows, failure_models
from raagr2_monai.report import validation_score
from raagr2_monai.study import run_study

from .records import Records

pytestmark = pytest.mark.slow

# two architectures, magnitude and DepGraph at one ratio: the smallest study that has every kind of row; two epochs
# (validated at the second) so that the curves logged by epoch have more than one step
SETTINGS = {"methods": ("magnitude", "depgraph"), "epochs": 2, "val_interval": 2, "lr_schedule": "cosine",
            "window_size": 48}
MODELS = ["baseline", "depthwise", "magnitude-20", "magnitude-20-ft", "depgraph-20", "depgraph-20-ft", "hybrid-50",
          "hybrid-50-kd"]
PNG = b"\x89PNG\r\n\x1a\n"
WORKFLOWS = "monai.bundle.workflows"
# the failure predictions: the baseline and each family's best evaluated again with test-time flips
FAILURES = ["baseline", "architecture", "magnitude", "depgraph", "hybrid"]



def _run(root, lines, **kwargs):
    """The tiny study in ``root / "out"`` on the synthetic set in ``root / "synthetic"``, with one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RAAGR2_SYNTHETIC_DIR", str(root / "synthetic"))
            patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            return run_study("tiny", output=root / "out", echo=lines.append, **SETTINGS, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One tiny study, with its printed lines, what MONAI's workflow logger let through and every warning shown."""
    root = tmp_path_factory.mktemp("study")
    lines = []
    records = Records()
    logging.getLogger(WORKFLOWS).addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")  # the deprecation warnings the study silences must reach it
            study = _run(root, lines)
    finally:
        logging.getLogger(WORKFLOWS).removeHandler(records)
    return study, lines, records.messages, [str(w.message) for w in shown]


@pytest.fixture(scope="module")
def study(first_run):
    return first_run[0]


def _csv(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_has_the_three_tables_and_marks_the_thesis_figures(study):
    text = (study.root / "report.md").read_text()
    for title in ("## Table 1: quality", "## Table 2: size and cost", "## Table 3: reductions against the baseline"):
        assert title in text
    assert '| † thesis pooled Dice | † thesis TC ("C2") | † thesis WT ("C4") | † thesis ET ("C3") |' in text
    assert "thesis-style pooled Dice" in text and "FlopCounterMode" in text
    assert "DepGraph 20 % and 30 % rows are identical copies" in text
    # the thesis's published baseline figures (its Table 1: pooled Dice 0.9849, "C2" 0.8254, "C4" 0.8513, "C3" 0.8247)
    # sit beside ours, in the marked columns
    baseline_line = next(line for line in text.splitlines() if line.startswith("| RAAGR2-Net (baseline)"))
    assert baseline_line.endswith("| 0.9849 | 0.8254 | 0.8513 | 0.8247 |")


def test_tables_have_one_row_per_model_with_their_sources(study):
    tables = study.root / "tables"
    for name, columns, models in (
        ("table1_quality", TABLE1_COLUMNS, MODELS),
        ("table2_cost", TABLE2_COLUMNS, MODELS),
        ("table3_reductions", TABLE3_COLUMNS, MODELS[1:]),
    ):
        records = json.loads((tables / f"{name}.json").read_text())
        rows = _csv(tables / f"{name}.csv")
        assert [r["model"] for r in records] == [r["model"] for r in rows] == models
        expected = {key for key, _ in columns} | {"source_bundle", "source_run_json", "source_mlflow_run_id"}
        assert expected <= set(rows[0])
        for record in records:
            assert (study.root / record["source_run_json"]).is_file()
            assert len(record["source_mlflow_run_id"]) == 32
    cost = {r["model"]: r for r in json.loads((tables / "table2_cost.json").read_text())}
    assert cost["magnitude-20"]["nonzero_params"] < cost["magnitude-20"]["params"] == cost["baseline"]["params"]
    assert cost["magnitude-20"]["size_sparse_mb"] < cost["magnitude-20"]["size_mb"]
    assert cost["depgraph-20"]["params"] < cost["baseline"]["params"]
    assert cost["depgraph-20"]["gflops"] < cost["baseline"]["gflops"]
    reductions = {r["model"]: r for r in json.loads((tables / "table3_reductions.json").read_text())}
    expected_params = 100 * (1 - cost["depthwise"]["nonzero_params"] / cost["baseline"]["nonzero_params"])
    assert reductions["depthwise"]["params"] == pytest.approx(expected_params)
    assert reductions["magnitude-20"]["flops"] == 0.0
    thesis = json.loads((tables / "thesis_tables.json").read_text())
    # as published (thesis Table 2): its DepGraph 20 % and 30 % rows are one run, copied
    assert thesis["table2"]["DepGraph 20%"] == thesis["table2"]["DepGraph 30%"]
    assert [thesis["table2"][row]["params"] for row in ("Base RAAGR2-Net", "Encoder-Decoder Shared", "DepGraph 10%")] \
        == [8_911_301, 6_621_141, 7_293_449]


def test_report_numbers_are_those_of_the_evaluation_csvs(study):
    text = (study.root / "report.md").read_text()
    records = {r["model"]: r for r in json.loads((study.root / "tables" / "table1_quality.json").read_text())}
    for model in MODELS:
        summary = {r["statistic"]: r for r in _csv(study.root / "eval" / model / "metrics_summary.csv")}
        per_subject = _csv(study.root / "eval" / model / "metrics_per_subject.csv")
        assert len(per_subject) == records[model]["subjects"] == 2
        # the model's Table 1 line; a row identical to another on every subject is marked ‡
        line = next(line for line in text.splitlines() if re.match(rf"\| .*\(`{re.escape(model)}`\)( ‡)? \|", line))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        for i, (key, _) in enumerate(TABLE1_COLUMNS):
            if key == "dice_mean":
                value = sum(float(summary["mean"][f"dice_{r}"]) for r in ("TC", "WT", "ET")) / 3
            else:
                value = float(summary["mean"][key])
                # Both-empty regions are NaN per subject (official convention) and stay out of the mean.
                subjects = [v for v in (float(r[key]) for r in per_subject) if not math.isnan(v)]
                expected = sum(subjects) / len(subjects) if subjects else math.nan
                assert value == pytest.approx(expected, nan_ok=True)
                assert float(summary["count"][key]) == len(subjects)
                # the 95 % CI half-width of the mean: t(0.975, n - 1) x sample std / sqrt(n)
                ci95 = (stats.t.ppf(0.975, len(subjects) - 1) * statistics.stdev(subjects) / math.sqrt(len(subjects))
                        if len(subjects) > 1 else None)
                assert records[model][f"{key}_ci95"] == pytest.approx(ci95)
            assert records[model][key] == pytest.approx(value, abs=1e-12, nan_ok=True)
            # mean ± CI half-width; Dice, IoU and pooled Dice with 4 decimals, HD95 with 2; no value: "-"
            spec = ".2f" if key.startswith("hd95") else ".4f"
            ci95 = records[model][f"{key}_ci95"]
            shown = "-" if math.isnan(value) else format(value, spec) + ("" if ci95 is None else f" ± {ci95:{spec}}")
            assert cells[i] == shown, (model, key)


def test_charts_are_png_files(study):
    import matplotlib.image

    for name in ("dice_vs_params", "dice_vs_latency", "region_dice", "training_curves"):
        path = study.root / "charts" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG
        image = matplotlib.image.imread(str(path))
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert f"(charts/{name}.png)" in (study.root / "report.md").read_text()


def test_report_shows_each_familys_best_model_chosen_on_validation(study):
    import matplotlib.image

    text = (study.root / "report.md").read_text()
    runs = {m: study.root / "models" / m / "runs" / "train" for m in ("baseline", "depthwise")}
    runs.update({m: study.root / "models" / "baseline" / "pruned" / m / "runs" / "prune" for m in MODELS[2:-2]})
    runs.update({m: study.root / "models" / "depthwise" / "pruned" / m / "runs" / "prune" for m in MODELS[-2:]})
    val = {m: validation_score(json.loads((run / "history.json").read_text())) for m, run in runs.items()}
    best = {"weight sharing": "depthwise",
            "magnitude pruning": max(("magnitude-20", "magnitude-20-ft"), key=lambda m: val[m]),
            "DepGraph pruning": max(("depgraph-20", "depgraph-20-ft"), key=lambda m: val[m]),
            "hybrid (weight sharing + DepGraph)": max(("hybrid-50", "hybrid-50-kd"), key=lambda m: val[m])}
    for family, model in best.items():
        assert f"| {family} | `{model}` | best validation mean Dice | {val[model]:.4f} |" in text
    for name in ("best_models_subject", "best_models_distributions"):
        path = study.root / "charts" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG
        height, width, _ = matplotlib.image.imread(str(path)).shape
        assert height > 300 and width > 800
        assert f"![{name}](charts/{name}.png)" in text
    assert f"the predictions of `baseline`, {', '.join(f'`{m}`' for m in best.values())}, outlined" in text
    assert "## Lesion-wise scores on the test subjects" in text
    lesionwise = json.loads((study.root / "tables" / "lesionwise_quality.json").read_text())
    assert [r["model"] for r in lesionwise] == MODELS
    # the study's evaluations write predictions but no overlay pictures
    for model in MODELS:
        assert len(list((study.root / "eval" / model / "predictions").glob("*_pred.nii.gz"))) == 2
        assert not (study.root / "eval" / model / "overlays").exists()


def test_baseline_and_each_familys_best_are_evaluated_again_with_an_uncertainty(study):
    """The failure prediction: the models the report shows (the baseline, each family's best, chosen on validation)
    evaluated again with test-time flips, each subject's uncertainty in its CSV, the figures in its JSON and in the
    report's section."""
    steps = study.state.data["steps"]
    benchmark = json.loads((study.root / "benchmark.json").read_text())
    chosen = {key: model for key, model, _ in failure_models(collect_rows(study.root, study.state.data, study.models,
                                                                          benchmark))}
    assert list(chosen) == FAILURES
    text = (study.root / "report.md").read_text()
    assert "## Does the uncertainty predict failure?" in text and "![failure_reliability](charts/failure_reliability" \
        ".png)" in text
    assert (study.root / "charts" / "failure_reliability.png").read_bytes()[:8] == PNG
    for key in FAILURES:
        out = steps[f"uncertainty/{key}"]
        assert (out["model"], out["mode"], out["samples"], out["eval_dir"]) == (
            chosen[key], "tta", 4, f"uncertainty/{chosen[key]}")
        per_subject = _csv(study.root / out["per_subject_csv"])
        plain = _csv(study.root / "eval" / chosen[key] / "metrics_per_subject.csv")
        assert [r["case"] for r in per_subject] == [r["case"] for r in plain]
        assert list(per_subject[0])[-1] == "uncertainty" and "uncertainty" not in plain[0]
        assert all(0.0 <= float(r["uncertainty"]) <= 3 * math.log(2) for r in per_subject)
        assert "lesion_dice_TC" not in per_subject[0], "no lesion-wise scores: the failure prediction needs none"
        figures = json.loads((study.root / out["failure_json"]).read_text())
        assert figures["uncertainty"] == "tta" and figures["subjects"] == 2 and figures["failure_dice"] == 0.8
        assert figures["spearman"] is None, "two subjects: no rank correlation"
        # every voxel of the two 48 x 48 x 16 test volumes, in each of the three regions
        assert figures["reliability"]["voxels"] == 3 * 2 * 48 * 48 * 16
        assert 0 < figures["reliability_tumour"]["voxels"] < figures["reliability"]["voxels"]
        assert (study.root / out["reliability_png"]).read_bytes()[:8] == PNG
        assert f"| `{chosen[key]}` | " in text and f"`{out['eval_dir']}/` |" in text


def test_training_curves_are_recorded(study):
    history = json.loads((study.root / "models" / "baseline" / "runs" / "train" / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert history["epochs"][0]["train_loss"] > 0 and 0 <= history["epochs"][1]["val_mean_dice"] <= 1
    assert [i[0] for i in history["iterations"]] == list(range(1, len(history["iterations"]) + 1))
    # the cosine schedule over 2 epochs: the full rate, then half of it
    assert [e["lr"] for e in history["epochs"]] == pytest.approx([1e-3, 5e-4])
    settings = json.loads((study.root / "models" / "baseline" / "runs" / "train" / "run.json").read_text())["settings"]
    assert (settings["roi_size"], settings["validation_roi_size"], settings["lr_schedule"]) == (
        [32, 32], [48, 48], "cosine")
    assert not list(study.root.rglob("last.pt")), "finished runs drop their resumable training state"
    pruned = study.root / "models" / "baseline" / "pruned"
    untuned = json.loads((pruned / "depgraph-20" / "runs" / "prune" / "history.json").read_text())
    assert untuned["epochs"] == [] and "val_mean_dice" in untuned["validation_only"]
    assert (pruned / "depgraph-20" / "models" / "pruning_history.json").is_file()
    assert (pruned / "magnitude-20-ft" / "models" / "model_sparse.pt").is_file()


def test_mlflow_parent_child_runs_and_registered_models(study):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=study.tracking_uri)
    experiment = client.get_experiment_by_name("raagr2_study")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(MODELS)
    records = {r["model"]: r for r in json.loads((study.root / "tables" / "table1_quality.json").read_text())}
    for child in children:
        assert child.data.metrics["quality.dice_mean"] == pytest.approx(records[child.info.run_name]["dice_mean"])
        assert "cost.params" in child.data.metrics and child.data.params["kind"] in ("architecture", "pruned")
    baseline = next(r for r in children if r.info.run_name == "baseline")
    report = (study.root / "report.md").read_text()
    assert f"| `baseline` | `models/baseline` | `models/baseline/runs/train/run.json` | `eval/baseline/` | " \
        f"`{baseline.info.run_id}` |" in report
    assert [m.step for m in client.get_metric_history(baseline.info.run_id, "train_loss")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "tables", "charts", "benchmark.json", "state.json"} <= artifacts
    assert parent.data.params["profile.name"] == "tiny"
    registered = {m.name for m in client.search_registered_models()}
    assert registered == {"raagr2-best-architecture", "raagr2-best-magnitude", "raagr2-best-depgraph",
                          "raagr2-best-hybrid"}
    version = client.get_model_version("raagr2-best-depgraph", "1")
    source = Path(version.source.removeprefix("file://"))
    state = torch.load(source / "models" / "model.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert (source / "models" / "pruning_history.json").is_file() and (source / "configs" / "inference.json").is_file()


def test_failure_prediction_is_logged_to_each_models_child_run(study):
    """Each failure-prediction evaluation's figures, setting and files go to its model's child run, once; a figure
    the evaluation could not compute (Spearman of two subjects) is left out rather than logged as NaN."""
    client, _, children = _runs(study)
    steps = study.state.data["steps"]
    logged = study.state.data["mlflow"]["failure"]
    assert sorted(logged) == sorted(FAILURES)
    for key in FAILURES:
        out = steps[f"uncertainty/{key}"]
        run = children[out["model"]]
        assert logged[key] == run.info.run_id
        figures = json.loads((study.root / out["failure_json"]).read_text())
        metrics = run.data.metrics
        assert metrics["failure.ece"] == pytest.approx(figures["reliability"]["ece"])
        assert metrics["failure.ece_tumour"] == pytest.approx(figures["reliability_tumour"]["ece"])
        assert (metrics["failure.subjects"], metrics["failure.failures"]) == (2, figures["failures"])
        assert "failure.spearman" not in metrics
        assert ("failure.auroc" in metrics) == (figures["auroc"] is not None)
        assert (run.data.params["failure.mode"], run.data.params["failure.samples"],
                run.data.params["failure.failure_dice"]) == ("tta", "4", "0.8")
        files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "failure_prediction")}
        assert files == {"failure_prediction.json", "reliability.png", "metrics_per_subject.csv"}
    others = set(children) - {steps[f"uncertainty/{key}"]["model"] for key in FAILURES}
    assert others and not any(k.startswith("failure.") for m in others for k in children[m].data.metrics)


def test_hybrid_rows_prune_the_depthwise_model_and_one_distils_from_the_baseline(study):
    pruned = study.root / "models" / "depthwise" / "pruned"
    plain = json.loads((pruned / "hybrid-50" / "runs" / "prune" / "run.json").read_text())["settings"]
    kd = json.loads((pruned / "hybrid-50-kd" / "runs" / "prune" / "run.json").read_text())["settings"]
    assert (plain["method"], plain["ratio"], plain["teacher_bundle"], plain["distill_weight"]) == (
        "depgraph", 0.5, None, None)
    assert Path(kd["teacher_bundle"]) == study.root / "models" / "baseline" and kd["distill_weight"] == 0.5
    assert plain["source_ckpt"] == kd["source_ckpt"] == str(study.root / "models" / "depthwise" / "models" / "model.pt")


def _runs(study):
    """The study's MLflow client, parent run and child runs by model."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=study.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("raagr2_study").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1
    return client, parent, {r.info.run_name: r for r in children}


def _made(study, model):
    """The state's record of the step that trained or pruned ``model``."""
    steps = json.loads((study.root / "state.json").read_text())["steps"]
    return steps[f"train/{model}"] if f"train/{model}" in steps else steps[f"prune/{model}"]


def test_each_child_run_spans_its_training_and_got_its_curves_epoch_by_epoch(study):
    client, parent, children = _runs(study)
    assert sorted(children) == sorted(MODELS)
    spans = []
    for model in MODELS:  # the study's order: trained, then pruned
        made, run = _made(study, model), children[model].info
        assert run.status == "FINISHED"
        assert parent.info.start_time <= run.start_time < run.end_time < parent.info.end_time
        # open while the step ran: from before the training to after it, not a few milliseconds at the end
        assert made["train_seconds"] - 0.5 <= (run.end_time - run.start_time) / 1000 <= made["step_seconds"] + 1.0
        history = json.loads((study.root / made["history"]).read_text())
        for key in ("train_loss", "lr", "val_mean_dice", "val_dice_tc", "val_dice_wt", "val_dice_et"):
            logged = client.get_metric_history(run.run_id, key)
            expected = [e for e in history["epochs"] if key in e]
            assert [m.step for m in logged] == [e["epoch"] for e in expected], (model, key)
            assert [m.value for m in logged] == pytest.approx([e[key] for e in expected])
            assert all(run.start_time <= m.timestamp <= run.end_time for m in logged), "logged as the epoch ended"
        # the test figures came later, to the same run, without moving its end
        (quality,) = client.get_metric_history(run.run_id, "quality.dice_mean")
        assert quality.timestamp >= run.end_time
        spans.append((run.start_time, run.end_time))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
    assert [m.step for m in client.get_metric_history(children["baseline"].info.run_id, "val_mean_dice")] == [2]


def test_the_estimate_comes_first_and_each_step_records_its_peak_memory(first_run):
    study, lines, _, _ = first_run
    first = next(i for i, line in enumerate(lines) if line.startswith("[study "))
    estimates = [line for line in lines[:first] if line.startswith("[estimate] ")]
    # the estimate, then the cache filled once for every step, then the steps
    assert len(estimates) >= 5 and lines[: len(estimates)] == estimates
    assert [line[:14] for line in lines[len(estimates) : first]] == ["[study] cache:"] * 2
    assert any(line.startswith("[estimate] time: ") for line in estimates)
    cache = study.state.data["cache"]
    assert [cache[k]["studies"] for k in ("train", "validation", "testing")] == [5, 2, 2]
    assert len(list(Path(cache["dir"]).glob("*.pt"))) == 5 + 2 + 2  # compact, and float32 for the test studies
    estimate = json.loads((study.root / "estimate.json").read_text())
    assert len(estimate["steps"]) == 2 * len(MODELS) + len(FAILURES) and estimate["parallel"]["lanes"] == 1
    steps = study.state.data["steps"]
    assert all(out["peak_rss_mb"] > 100 and out["lane"] == 0 for out in steps.values())
    (run,) = study.state.data["runs"][:1]
    assert [s["step"] for s in run["steps"]] == list(steps)  # one at a time: in the order they finished
    assert all(a["finished_at"] <= b["started_at"] for a, b in zip(run["steps"], run["steps"][1:]))
    client, _, children = _runs(study)
    peak = client.get_metric_history(children["baseline"].info.run_id, "step.peak_rss_mb")
    assert [m.value for m in peak] == [pytest.approx(steps["train/baseline"]["peak_rss_mb"])]


def test_workflow_notices_are_silenced_and_counted_in_one_line(first_run):
    _, lines, passed, shown = first_run
    assert not [m for m in passed if m.startswith(("No workflow type", "Logging file is set to False"))]
    assert not [m for m in shown if re.match(r"'(min_delta|cumulative_delta)' is deprecated", m)]
    assert [line for line in lines if line.startswith("Silenced: ")] == [lines[-1]]
    # a training or pruning and an evaluation workflow per model, and the evaluations with an uncertainty; each
    # training or pruning workflow's early stopping passes Ignite two deprecated arguments
    workflows = 2 * len(MODELS) + len(FAILURES)
    for counted in (f"MONAI 'No workflow type ... specified' x{workflows}",
                    f"MONAI 'Logging file is set to False' x{workflows}",
                    f"Ignite EarlyStopping deprecation warnings x{2 * len(MODELS)}"):
        assert counted in lines[-1]
    # not a terminal: MONAI's line per iteration stays, and no bar replaces it
    assert "iteration lines" not in lines[-1]
    assert logging.getLogger(WORKFLOWS).filters == [], "the filters end with the study"


def test_rerun_resumes_without_redoing_finished_steps_or_duplicating_runs(study):
    state_file = study.root / "state.json"
    before = json.loads(state_file.read_text())
    _, parent_before, children_before = _runs(study)
    again = _run(study.root.parent, [])
    assert again.counts == {"train": 0, "prune": 0, "evaluate": 0, "benchmark": 0, "uncertainty": 0}
    after = json.loads(state_file.read_text())
    assert after["steps"] == before["steps"] and after["mlflow"] == before["mlflow"]
    _, parent, children = _runs(study)
    assert parent.info.run_id == parent_before.info.run_id and parent.info.status == "FINISHED"
    assert {m: r.info.run_id for m, r in children.items()} == {m: r.info.run_id for m, r in children_before.items()}

    # an interruption during the last pruning: it, its evaluation and the benchmark were not recorded; and the
    # record of depthwise's child run was lost (the study then logs a new one, from its history, in its place)
    for step in ("prune/hybrid-50-kd", "evaluate/hybrid-50-kd", "benchmark"):
        del after["steps"][step]
    del after["mlflow"]["children"]["depthwise"]
    after["mlflow"]["results"].remove("depthwise")
    state_file.write_text(json.dumps(after))
    shutil.rmtree(study.root / "eval" / "hybrid-50-kd")
    lines = []
    resumed = _run(study.root.parent, lines)
    assert resumed.counts == {"train": 0, "prune": 1, "evaluate": 1, "benchmark": 1, "uncertainty": 0}
    evaluated = 2 * len(MODELS)  # made (trained or pruned), evaluated; then the failure predictions and the benchmark
    steps = evaluated + len(FAILURES) + 1
    progress = [line for line in lines if line.startswith("[study ")]
    assert progress[0] == f"[study {len(MODELS)}/{steps}] prune/hybrid-50-kd ..."
    assert progress[2] == f"[study {evaluated}/{steps}] evaluate/hybrid-50-kd ..."
    assert re.fullmatch(rf"\[study {evaluated}/{steps}\] evaluate/hybrid-50-kd done in \d+ s; about .+ left",
                        progress[3])
    assert progress[-1].startswith(f"[study {steps}/{steps}] benchmark done in ")
    assert (study.root / "eval" / "hybrid-50-kd" / "metrics_summary.csv").is_file()
    final = json.loads(state_file.read_text())
    assert final["steps"]["train/baseline"] == before["steps"]["train/baseline"]

    client, parent, children = _runs(study)
    assert sorted(children) == sorted(MODELS) and parent.info.run_id == parent_before.info.run_id
    assert final["mlflow"]["children"] == {m: r.info.run_id for m, r in children.items()}
    # the redone pruning continued its own child run: same id, same start, a later end
    redone, old = children["hybrid-50-kd"].info, children_before["hybrid-50-kd"].info
    assert redone.run_id == old.run_id and redone.start_time == old.start_time and redone.end_time > old.end_time
    assert redone.status == "FINISHED"
    # the redone benchmark's figures replaced the old ones in every child run
    cost = {r["model"]: r for r in json.loads((study.root / "tables" / "table2_cost.json").read_text())}
    for model, run in children.items():
        assert run.data.metrics["cost.latency_bmax_ms"] == pytest.approx(cost[model]["latency_bmax_ms"])
    # the lost record: a new child run, with the curves of history.json
    assert children["depthwise"].info.run_id != children_before["depthwise"].info.run_id
    history = json.loads((study.root / _made(study, "depthwise")["history"]).read_text())
    assert [(m.step, m.value) for m in client.get_metric_history(children["depthwise"].info.run_id, "train_loss")] \
        == [(e["epoch"], pytest.approx(e["train_loss"])) for e in history["epochs"]]


def test_fresh_needs_a_study_and_noresume_refuses_one(study, tmp_path):
    with pytest.raises(FileExistsError, match=re.escape(f"{study.root} holds a study; pass --resume")):
        run_study("tiny", output=study.root, resume=False, echo=lambda line: None, **SETTINGS)
