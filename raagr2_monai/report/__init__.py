"""The study's report: tables (Markdown, CSV, JSON), charts (PNG) and the thesis's published figures beside ours.

- :mod:`.thesis`: the thesis's Tables 1-4 as published, which of our rows claim to be the same model, and what is
  wrong with those figures;
- :mod:`.rows`: one row per model, gathered from plain data (the study folder, its ``state.json``, the list of models
  and the benchmark's JSON), each naming its sources so that every number can be traced;
- :mod:`.tables`: Tables 1-3 and the lesion-wise scores as CSV and JSON, and the thesis's tables as JSON;
- :mod:`.charts`: the PNG charts;
- :mod:`.figures`: each family's best model (chosen on validation) beside the baseline on a test subject, and the
  per-subject distributions of their scores;
- :mod:`.markdown`: ``report.md``, and :func:`~.markdown.write_report`, which writes it with the tables, charts and
  figures.

Example::

    rows = collect_rows(root, state, models, benchmark)
    write_report(root, rows, state, benchmark, dataset_dir, tracking_uri, test_entries)
"""

from .charts import write_charts
from .figures import (
    FAMILY_TITLES,
    EvaluationFigures,
    FamilyBest,
    best_per_family,
    representative_case,
    write_evaluation_figures,
)
from .markdown import quality_cell, render_markdown, write_report
from .rows import (
    LESIONWISE_TABLE_COLUMNS,
    TABLE1_COLUMNS,
    TABLE2_COLUMNS,
    TABLE3_COLUMNS,
    collect_rows,
    record_mlflow_runs,
    step_name,
    validation_score,
)
from .tables import table_records, write_tables
from .thesis import THESIS_NOTES, THESIS_ROW, THESIS_TABLE1, THESIS_TABLE2, THESIS_TABLE3, THESIS_TABLE4

__all__ = [
    "THESIS_TABLE1",
    "THESIS_TABLE2",
    "THESIS_TABLE3",
    "THESIS_TABLE4",
    "THESIS_ROW",
    "THESIS_NOTES",
    "TABLE1_COLUMNS",
    "TABLE2_COLUMNS",
    "TABLE3_COLUMNS",
    "LESIONWISE_TABLE_COLUMNS",
    "collect_rows",
    "record_mlflow_runs",
    "step_name",
    "validation_score",
    "FAMILY_TITLES",
    "FamilyBest",
    "EvaluationFigures",
    "best_per_family",
    "representative_case",
    "write_evaluation_figures",
    "table_records",
    "write_tables",
    "write_charts",
    "quality_cell",
    "render_markdown",
    "write_report",
]
