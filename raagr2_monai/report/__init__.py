"""The study's report: tables (Markdown, CSV, JSON), charts (PNG) and the thesis's published figures beside ours.

- :mod:`.thesis`: the thesis's Tables 1-4 as published, which of our rows claim to be the same model, and what is
  wrong with those figures;
- :mod:`.rows`: one row per model, gathered from plain data (the study folder, its ``state.json``, the list of models
  and the benchmark's JSON), each naming its sources so that every number can be traced;
- :mod:`.statistics`: the spread of the per-subject scores (standard deviation, 95 % confidence interval of the mean),
  each model's per-subject (paired) difference to the baseline, and the rows that score identically on every subject;
- :mod:`.paired`: that paired difference in Table 1 (its column and the text under the table) and as a chart;
- :mod:`.deployment`: each model's fastest CPU runtime against the goal of a deployable slim model;
- :mod:`.tables`: Tables 1-3 and the lesion-wise scores as CSV and JSON, and the thesis's tables as JSON;
- :mod:`.chart_labels`: chart labels placed so that none overlaps another or a point;
- :mod:`.tradeoff`: the charts of mean Dice against non-zero parameters and against latency, with the Pareto front;
- :mod:`.charts`: the PNG charts (those two, per-region Dice, training curves);
- :mod:`.evaluation_figures`: each family's best model (chosen on validation) beside the baseline on a test subject,
  and the per-subject distributions of their scores;
- :mod:`.failure`: whether the per-study uncertainty of the baseline and of each family's best model predicts
  failure (Spearman, AUROC, calibration), from the study's evaluations with an uncertainty;
- :mod:`.markdown`: ``report.md``, and :func:`~.markdown.write_report`, which writes it with the tables, charts and
  figures from a finished study's :class:`~.markdown.ReportInputs`.

Example::

    rows = collect_rows(root, state, models, benchmark)
    write_report(ReportInputs(root, rows, state, benchmark, dataset_dir, tracking_uri, test_entries))
"""

from .charts import CHART_NAMES, region_dice_figure, training_curves_figure, training_groups, write_charts
from .evaluation_figures import (
    FAMILY_TITLES,
    EvaluationFigures,
    FamilyBest,
    best_per_family,
    representative_case,
    write_evaluation_figures,
)
from .failure import (
    FAILURE_STEP,
    FailurePrediction,
    failure_lines,
    failure_model,
    failure_models,
    failure_records,
    spearman_threshold,
    write_failure_prediction,
)
from .deployment import DEPLOYMENT_GOAL, DeploymentGoal, deployment_checks, deployment_lines
from .markdown import ReportInputs, quality_cell, render_markdown, write_report
from .paired import (
    PAIRED_HEADER,
    PAIRED_MARGIN,
    UNMATCHED_MARK,
    paired_cell,
    paired_difference_figure,
    paired_notes,
)
from .rows import (
    LESIONWISE_TABLE_COLUMNS,
    TABLE1_COLUMNS,
    TABLE2_COLUMNS,
    TABLE3_COLUMNS,
    collect_rows,
    read_summary,
    record_mlflow_runs,
    region_mean_dice,
    step_name,
    validation_score,
)
from .chart_labels import LABEL_GID, boxes_overlap, label_boxes, overlapping_labels, place_labels
from .statistics import (
    IDENTICAL_TOLERANCE,
    IDENTITY_COLUMNS,
    PAIRED_KEYS,
    SPREAD_KEYS,
    identical_rows,
    paired_difference,
    quality_spread,
    read_subject_scores,
    spread,
    subject_mean_dice,
)
from .tables import table_records, write_tables
from .thesis import THESIS_NOTES, THESIS_ROW, THESIS_TABLE1, THESIS_TABLE2, THESIS_TABLE3, THESIS_TABLE4
from .tradeoff import (
    BACKEND_MARKERS,
    COST_AXES,
    FAMILY_STYLES,
    CostPoint,
    cost_points,
    family_styles,
    pareto_front,
    quality_cost_figure,
)

__all__ = [
    "FAILURE_STEP",
    "FailurePrediction",
    "failure_lines",
    "failure_model",
    "failure_models",
    "failure_records",
    "spearman_threshold",
    "write_failure_prediction",
    "DEPLOYMENT_GOAL",
    "DeploymentGoal",
    "deployment_checks",
    "deployment_lines",
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
    "read_summary",
    "region_mean_dice",
    "record_mlflow_runs",
    "step_name",
    "validation_score",
    "FAMILY_TITLES",
    "FamilyBest",
    "EvaluationFigures",
    "best_per_family",
    "representative_case",
    "write_evaluation_figures",
    "IDENTICAL_TOLERANCE",
    "IDENTITY_COLUMNS",
    "PAIRED_KEYS",
    "SPREAD_KEYS",
    "identical_rows",
    "paired_difference",
    "quality_spread",
    "read_subject_scores",
    "spread",
    "subject_mean_dice",
    "table_records",
    "write_tables",
    "LABEL_GID",
    "boxes_overlap",
    "label_boxes",
    "overlapping_labels",
    "place_labels",
    "BACKEND_MARKERS",
    "COST_AXES",
    "FAMILY_STYLES",
    "CostPoint",
    "cost_points",
    "family_styles",
    "pareto_front",
    "quality_cost_figure",
    "CHART_NAMES",
    "region_dice_figure",
    "training_curves_figure",
    "training_groups",
    "write_charts",
    "PAIRED_HEADER",
    "PAIRED_MARGIN",
    "UNMATCHED_MARK",
    "paired_cell",
    "paired_difference_figure",
    "paired_notes",
    "ReportInputs",
    "quality_cell",
    "render_markdown",
    "write_report",
]
