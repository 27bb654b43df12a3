"""``report.md``, the tables and the charts written from hand-made rows; the thesis's columns hold its published
figures (typed from its Tables 1-3)."""

import csv

from raagr2_monai.report import collect_rows, record_mlflow_runs, write_report

from .conftest import MODELS

PNG = b"\x89PNG\r\n\x1a\n"


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_report_tables_and_charts(finished):
    root, state, benchmark = finished
    rows = collect_rows(root, state, MODELS, benchmark)
    record_mlflow_runs(rows, {"baseline": "b" * 32, "magnitude-20": "m" * 32})
    path = write_report(root, rows, state, benchmark, "/data/synthetic", "sqlite:////study/mlruns.db")
    text = path.read_text()
    assert path == root / "report.md"
    assert "Data: `/data/synthetic` (built-in synthetic set); split by patient, seed 3; every model evaluated on the " \
        "same 2 held-out test subjects (c1, c2) at 32x32 in-plane." in text
    assert "(`mlflow ui --backend-store-uri sqlite:////study/mlruns.db`)" in text
    # ours, then the thesis's Table 1 (pooled Dice; "C2" = TC, "C4" = WT, "C3" = ET)
    assert _line(text, "| RAAGR2-Net (baseline) (`baseline`)") == (
        "| RAAGR2-Net (baseline) (`baseline`) | 0.5000 | 0.7500 | 0.2500 | 0.5000 | 0.4000 | 0.6000 | 10.00 | 8.00 "
        "| 12.00 | 9.00 | 7.00 | 0.3000 | 0.9000 | 0.9849 | 0.8254 | 0.8513 | 0.8247 |"
    )
    assert _line(text, "| Magnitude 20 % (`magnitude-20`)").endswith("| 0.7547 | 0.0022 | 0.0004 | 0.0209 |")
    # Table 2: ours, then the thesis's parameters, MB, GFLOPs, ms and peak GB of "Magnitude 20%"
    assert _line(text, "| `magnitude-20` | 1,000 |") == (
        "| `magnitude-20` | 1,000 | 800 | 4.00 | 3.00 | 8.000 | 12.00 | 24.00 | 6.00 | - | - | 30 | 1 | "
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
        ("baseline", "1000", "500.0", "b" * 32), ("magnitude-20", "800", "", "m" * 32)]
    for name in ("dice_vs_params", "dice_vs_latency", "region_dice", "training_curves"):
        assert (root / "charts" / f"{name}.png").read_bytes()[:8] == PNG
        assert f"![{name}](charts/{name}.png)" in text
    assert not [p for p in root.rglob(".*") if p.is_file()], "no temporary file is left behind"
