"""``report.md``, the tables and the charts written from hand-made rows; the thesis's columns hold its published
figures (typed from its Tables 1-3)."""

import csv
import json
import shutil

from matplotlib.image import imread

from raagr2_monai.constants import SCORED_REGIONS
from raagr2_monai.report import (
    CHART_NAMES,
    ReportInputs,
    best_per_family,
    collect_rows,
    record_mlflow_runs,
    write_report,
)

from .conftest import MODELS

PNG = b"\x89PNG\r\n\x1a\n"


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_report_tables_and_charts(finished, subjects):
    root, state, benchmark = finished
    rows = collect_rows(root, state, MODELS, benchmark)
    record_mlflow_runs(rows, {"baseline": "b" * 32, "magnitude-20": "m" * 32, "magnitude-20-ft": "f" * 32})
    path = write_report(
        ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////study/mlruns.db", subjects))
    text = path.read_text()
    assert path == root / "report.md"
    assert "Data: `/data/synthetic` (built-in synthetic set); split by patient, seed 3; every model evaluated on the " \
        "same 2 held-out test subjects (c1, c2), whole slices seen through 32x32 windows. Training: 1 epochs, batch " \
        "4 of 32x32 crops, lr 0.001 (plateau schedule)" in text
    assert "(`mlflow ui --backend-store-uri sqlite:////study/mlruns.db`)" in text
    # ours (mean ± 95 % CI half-width: two subjects at mean -/+ 0.0625, or -/+ 1 for HD95, give t(0.975, 1) = 12.706
    # times 0.0625 or 1), then the thesis's Table 1 (pooled Dice; "C2" = TC, "C4" = WT, "C3" = ET)
    assert _line(text, "| RAAGR2-Net (baseline) (`baseline`)") == (
        "| RAAGR2-Net (baseline) (`baseline`) | 0.5000 ± 0.7941 | 0.7500 ± 0.7941 | 0.2500 ± 0.7941 | 0.5000 ± 0.7941 "
        "| 0.4000 ± 0.7941 | 0.6000 ± 0.7941 | 10.00 ± 12.71 | 8.00 ± 12.71 | 12.00 ± 12.71 | 9.00 ± 12.71 "
        "| 7.00 ± 12.71 | 0.3000 ± 0.7941 | 0.9000 ± 0.7941 | - | 0.9849 | 0.8254 | 0.8513 | 0.8247 |"
    )
    assert "95 % confidence interval** (Student's t with n - 1 degrees of freedom" in text
    assert "Identical rows" not in text and "‡" not in _line(text, "| Magnitude 20 % (`magnitude-20`)")
    # the paired difference to the baseline: both subjects' mean Dice 0.125 below the baseline's
    assert _line(text, "| Magnitude 20 % (`magnitude-20`)").endswith(
        "| -0.125 [-0.125, -0.125] | 0.7547 | 0.0022 | 0.0004 | 0.0209 |")
    # Table 2: ours, then the thesis's parameters, MB, GFLOPs, ms and peak GB of "Magnitude 20%"
    assert _line(text, "| `magnitude-20` | 1,000 |") == (
        "| `magnitude-20` | 1,000 | 800 | 4.00 | 3.00 | 8.000 | 12.00 | 24.00 | 6.00 | - | - | - | 30 | 1 | "
        "8,911,301 | 34.32 | 15.92 | 13.48 | 0.51 |"
    )
    # Table 3: reductions in percent (negative: an increase), then the thesis's params, size, FLOPs, GPU memory
    assert _line(text, "| `magnitude-20` | +20.0") == (
        "| `magnitude-20` | +20.0 | +0.0 | +25.0 | +0.0 | -20.0 | +25.0 | - | - | - | -10.0 "
        "| 0.0 | 0.0 | 0.0 | 7.3 |"
    )
    assert "| `baseline` | `models/baseline` | `models/baseline/runs/train/run.json` | `eval/baseline/` | " \
        f"`{'b' * 32}` |" in text
    assert "- Its DepGraph 20 % and 30 % rows are identical copies of one run." in text
    with open(root / "tables" / "table2_cost.csv", newline="") as f:
        cost = list(csv.DictReader(f))
    assert [(r["model"], r["nonzero_params"], r["peak_mem_mb"], r["source_mlflow_run_id"]) for r in cost] == [
        ("baseline", "1000", "500.0", "b" * 32), ("magnitude-20", "800", "", "m" * 32),
        ("magnitude-20-ft", "800", "", "f" * 32)]
    for name in CHART_NAMES:
        assert (root / "charts" / f"{name}.png").read_bytes()[:8] == PNG
        assert f"![{name}](charts/{name}.png)" in text
    assert "The black step line and rings: the Pareto front" in text
    assert not [p for p in root.rglob(".*") if p.is_file()], "no temporary file is left behind"


def test_lesionwise_table_shows_the_summary_means(finished, subjects):
    root, state, benchmark = finished
    rows = collect_rows(root, state, MODELS, benchmark)
    inputs = ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////s.db", subjects)
    text = write_report(inputs).read_text()
    assert "## Lesion-wise scores on the test subjects" in text
    assert "| model | lesion Dice TC | lesion Dice WT | lesion Dice ET | lesion HD95 TC | lesion HD95 WT | " \
        "lesion HD95 ET | lesion F1 TC | lesion F1 WT | lesion F1 ET |" in text
    assert "| `baseline` | 0.5000 | 0.6250 | 0.2500 | 20.00 | 10.00 | 30.00 | 0.5000 | 0.8750 | 0.2500 |" in text
    assert "| `magnitude-20` | 0.2500 | 0.5000 | - | 40.00 | 20.00 | - | 0.2500 | 0.5000 | - |" in text
    with open(root / "tables" / "lesionwise_quality.csv", newline="") as f:
        assert [r["lesion_hd95_TC"] for r in csv.DictReader(f)] == ["20.0", "40.0", "16.0"]


def test_best_model_figures_are_pngs_shown_in_the_report(finished, subjects):
    root, state, benchmark = finished
    rows = collect_rows(root, state, MODELS, benchmark)
    inputs = ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////s.db", subjects)
    text = write_report(inputs).read_text()
    sizes = {}
    for name in ("best_models_subject", "best_models_distributions"):
        png = root / "charts" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG
        assert 10_000 < png.stat().st_size < 1_000_000
        sizes[name] = imread(png).shape
        assert f"![{name}](charts/{name}.png)" in text
    # three panels (truth, baseline, magnitude-20) of 3 x 4.05 inches; two panels (Dice, HD95) of 5.5 x 4 inches
    assert sizes == {"best_models_subject": (405, 900, 4), "best_models_distributions": (400, 1100, 4)}
    # the baseline's median subject of the two is the lower one, c1
    assert "Test subject `c1` (the baseline's median test subject by mean Dice over TC/WT/ET)" in text
    assert "Per-subject Dice and HD95 (mm) per region of `baseline`, `magnitude-20` on the 2 test subjects" in text
    assert not [p for p in root.rglob(".*") if p.is_file()], "no temporary file is left behind"


def test_best_of_a_family_is_chosen_on_validation_not_on_test(finished, subjects):
    root, state, benchmark = finished
    rows = collect_rows(root, state, MODELS, benchmark)
    # the test subjects prefer magnitude-20-ft (the only mean test Dice), the validation subjects magnitude-20
    (best,) = best_per_family(rows)
    assert (best.family, best.model, best.basis, best.score) == ("magnitude", "magnitude-20", "validation", 0.45)
    inputs = ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////s.db", subjects)
    text = write_report(inputs).read_text()
    assert "| magnitude pruning | `magnitude-20` | best validation mean Dice | 0.4500 |" in text
    assert "chosen on the mean test Dice" not in text

    # no validation score anywhere in the family: the choice falls back on test, and the report says so
    for row in rows:
        row["validation"]["val_mean_dice"] = None
    (best,) = best_per_family(rows)
    assert (best.model, best.basis) == ("magnitude-20-ft", "test")
    inputs = ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////s.db", subjects)
    text = write_report(inputs).read_text()
    assert "| magnitude pruning | `magnitude-20-ft` | **mean test Dice** | 0.6250 |" in text
    assert "No magnitude pruning model has a validation score: `magnitude-20-ft` was chosen on the mean test " \
        "Dice" in text


def test_rows_identical_on_every_subject_are_flagged_and_explained(finished, subjects):
    root, state, benchmark = finished
    # magnitude-20 (pruned, not fine-tuned) now gives the baseline's scores on every subject
    shutil.copy(root / "eval/baseline/metrics_per_subject.csv", root / "eval/magnitude-20/metrics_per_subject.csv")
    rows = collect_rows(root, state, MODELS, benchmark)
    inputs = ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////s.db", subjects)
    text = write_report(inputs).read_text()
    assert _line(text, "| RAAGR2-Net (baseline) (`baseline`) ‡ | 0.5000 ± 0.7941 |")
    assert _line(text, "| Magnitude 20 % (`magnitude-20`) ‡ |")
    assert "‡" not in _line(text, "| Magnitude 20 % + FT (`magnitude-20-ft`)")
    assert "- `baseline` and `magnitude-20` are identical on every subject: the likely reason is that the pruning of " \
        "`magnitude-20` changed no weight that the test inputs reach" in text
    assert "zero padding at the border at 32x32 in-plane" in text
    records = json.loads((root / "tables" / "table1_quality.json").read_text())
    assert [r["identical_to"] for r in records] == [["magnitude-20"], ["baseline"], []]
    with open(root / "tables" / "table1_quality.csv", newline="") as f:
        assert [r["identical_to"] for r in csv.DictReader(f)] == ["magnitude-20", "baseline", ""]

    # rows that miss the tumour everywhere are identical for a reason that says nothing of the pruning
    for row in rows[:2]:
        row["quality"].update({f"dice_{region}": 0.0 for region in SCORED_REGIONS})
    inputs = ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////s.db", subjects)
    text = write_report(inputs).read_text()
    assert "- `baseline` and `magnitude-20` are identical on every subject: none of them overlaps the tumour on any " \
        "subject" in text


def test_report_inputs_render_the_sections_in_order(finished, subjects):
    root, state, benchmark = finished
    rows = collect_rows(root, state, MODELS, benchmark)
    inputs = ReportInputs(str(root), rows, state, benchmark, "/data/synthetic", "sqlite:////s.db", subjects)
    assert (inputs.cases, inputs.window, inputs.largest_batch) == (["c1", "c2"], 32, 4)
    assert inputs.relative(root / "charts" / "a.png") == "charts/a.png"
    text = write_report(inputs).read_text()
    assert text.startswith("# RAAGR2-Net compression study: profile `") and text.endswith("finished steps\n")
    # no backend timed: no deployment section between Tables 2 and 3
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Table 1: quality on the test subjects", "## Lesion-wise scores on the test subjects",
        "## Table 2: size and cost", "## Table 3: reductions against the baseline",
        "## Training", "## Each family's best model on the test subjects", "## Where each row comes from",
        "## Charts", "## The thesis's published figures (not produced by this code)", "## Files"]
