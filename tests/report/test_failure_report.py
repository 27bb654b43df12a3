"""The report's failure prediction, from plain data: the hand-made study of conftest with the baseline and the
magnitude family's best evaluated again with an uncertainty (their ``failure_prediction.json`` written by hand)."""

import json
import math

import pytest

from raagr2_monai.report import (
    ReportInputs,
    collect_rows,
    failure_lines,
    failure_model,
    failure_models,
    failure_records,
    spearman_threshold,
    write_failure_prediction,
    write_report,
)

from .conftest import MODELS

PNG = b"\x89PNG\r\n\x1a\n"


def _reliability(ece, counts):
    bins = [{"low": 0.5 + 0.25 * i, "high": 0.75 + 0.25 * i, "count": c,
             "confidence": 0.6 + 0.3 * i if c else None, "accuracy": 0.5 + 0.45 * i if c else None}
            for i, c in enumerate(counts)]
    return {"ece": ece, "voxels": sum(counts), "bins": bins}


FIGURES = {
    "baseline": {"subjects": 2, "failure_dice": 0.8, "failures": 1, "spearman": None, "auroc": 1.0,
                 "reliability": _reliability(0.0012, [10, 990]), "reliability_tumour": _reliability(0.0525, [10, 40])},
    "magnitude-20": {"subjects": 2, "failure_dice": 0.8, "failures": 2, "spearman": None, "auroc": None,
                     "reliability": _reliability(0.002, [20, 980]), "reliability_tumour": _reliability(0.07, [20, 30])},
}


@pytest.fixture
def with_failures(finished):
    """The hand-made study with its two ``uncertainty/<key>`` steps and their JSON."""
    root, state, benchmark = finished
    for key, model in (("baseline", "baseline"), ("magnitude", "magnitude-20")):
        folder = root / "uncertainty" / model
        folder.mkdir(parents=True)
        (folder / "failure_prediction.json").write_text(json.dumps({"uncertainty": "tta", **FIGURES[model]}))
        state["steps"][f"uncertainty/{key}"] = {
            "model": model, "mode": "tta", "samples": 4, "eval_dir": f"uncertainty/{model}",
            "failure_json": f"uncertainty/{model}/failure_prediction.json"}
    return root, state, benchmark


def test_the_models_evaluated_are_the_baseline_and_each_familys_best_chosen_on_validation(finished):
    root, state, benchmark = finished
    rows = collect_rows(root, state, MODELS, benchmark)
    assert failure_models(rows) == [("baseline", "baseline", "reference"), ("magnitude", "magnitude-20", "validation")]
    # the study's step chooses before the benchmark, from the runs' histories: the same model
    assert failure_model(root, state, MODELS, "magnitude") == "magnitude-20"
    assert failure_model(root, state, MODELS, "baseline") == "baseline"
    # no validation score in the family: the mean test Dice decides (magnitude-20 has none: no ET value)
    for name in ("magnitude-20", "magnitude-20-ft"):
        path = root / state["steps"][f"prune/{name}"]["history"]
        history = json.loads(path.read_text())
        history["epochs"][0].pop("val_mean_dice")
        path.write_text(json.dumps(history))
    assert failure_model(root, state, MODELS, "magnitude") == "magnitude-20-ft"
    with pytest.raises(ValueError, match="No model of the 'snip' family"):
        failure_model(root, state, MODELS, "snip")


def test_the_section_shows_each_models_figures_and_their_reliability_chart(with_failures, subjects):
    root, state, benchmark = with_failures
    records = failure_records(root, state)
    assert [(r["key"], r["model"]) for r in records] == [("baseline", "baseline"), ("magnitude", "magnitude-20")]
    assert math.isnan(records[0]["spearman"]) and records[1]["ece_tumour"] == 0.07
    rows = collect_rows(root, state, MODELS, benchmark)
    text = write_report(ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////s.db",
                                     subjects)).read_text()
    headers = [line for line in text.splitlines() if line.startswith("## ")]
    assert headers.index("## Does the uncertainty predict failure?") == \
        headers.index("## Each family's best model on the test subjects") + 1
    assert "| model | chosen as | uncertainty | Spearman (uncertainty, mean Dice) | AUROC (mean Dice < 0.8) | " \
        "subjects below / scored | ECE, all voxels | ECE, tumour region | evaluation |" in text
    assert "| `baseline` | reference | tta, 4 | - | 1.000 | 1 / 2 | 0.0012 | 0.0525 | `uncertainty/baseline/` |" in text
    assert "| `magnitude-20` | best of magnitude pruning | tta, 4 | - | - | 2 / 2 | 0.0020 | 0.0700 | " \
        "`uncertainty/magnitude-20/` |" in text
    assert "2 subjects are too few for a rank correlation to mean anything." in text
    assert "![failure_reliability](charts/failure_reliability.png)" in text
    assert (root / "charts" / "failure_reliability.png").read_bytes()[:8] == PNG


def test_no_section_for_a_study_without_these_evaluations(finished, tmp_path):
    root, state, _ = finished
    failure = write_failure_prediction(root, state, tmp_path / "charts")
    assert failure.records == [] and failure.chart is None and failure_lines(failure) == []
    assert not (tmp_path / "charts").exists()


def test_spearman_threshold_of_the_subjects():
    # the 5 % two-sided critical value of a rank correlation: 0.433 with the quick profile's 21 test subjects
    assert spearman_threshold(21) == pytest.approx(0.433, abs=1e-3)
    assert spearman_threshold(10) == pytest.approx(0.632, abs=1e-3)
    assert math.isnan(spearman_threshold(3))
