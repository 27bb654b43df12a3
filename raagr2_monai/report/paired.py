"""Every model against the baseline by per-subject (paired) differences of the mean Dice over TC/WT/ET
(:func:`~raagr2_monai.report.statistics.paired_difference`): Table 1's column, the text under the table, and a chart
of each model's mean difference with its 95 % confidence interval.

Two means whose confidence intervals overlap can still differ: each interval holds the spread of the subjects'
difficulty, which both models share and which cancels out of a per-subject difference. The paired interval is the one
that says whether a model is worse than the baseline on these subjects.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory
from scipy import stats

from raagr2_monai.constants import REGIONS
from raagr2_monai.visualize.figures import new_figure

from .tradeoff import family_styles

__all__ = [
    "PAIRED_HEADER",
    "PAIRED_MARGIN",
    "UNMATCHED_MARK",
    "paired_cell",
    "paired_difference_figure",
    "paired_notes",
]

#: Table 1's header of the paired column.
PAIRED_HEADER = "Δ mean Dice vs baseline, paired (95 % CI)"
#: The second reference line of the chart: one Dice point below the baseline.
PAIRED_MARGIN = -0.01
#: Marks a paired cell whose model and baseline were not scored on the same subjects.
UNMATCHED_MARK = "§"
_DPI = 110


def _compared(rows: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The rows compared with the baseline (the baseline's own paired figures are ``None``)."""
    return [r for r in rows if r["quality"]["paired_n"] is not None]


def paired_cell(quality: Mapping[str, Any], subjects: Optional[int] = None) -> str:
    """How Table 1 prints a row's paired difference to the baseline: the mean difference and its 95 % confidence
    interval in brackets, 3 decimals each; the number of subjects where it differs from ``subjects``; a mark
    (:data:`UNMATCHED_MARK`) where the two evaluations did not score the same cases; ``-`` for the baseline.

    Args:
        quality: a row's ``quality`` (:func:`~raagr2_monai.report.rows.collect_rows`).
        subjects: the number of test subjects of the study.

    Returns:
        The cell's text.

    Example::

        >>> paired_cell({"paired_n": 6, "paired_dice_diff": -0.0657, "paired_dice_ci": [-0.1301, -0.0102],
        ...              "paired_unmatched": []}, 6)
        '-0.066 [-0.130, -0.010]'
        >>> paired_cell({"paired_n": 1, "paired_dice_diff": 0.02, "paired_dice_ci": None,
        ...              "paired_unmatched": ["c2"]}, 2)
        '+0.020 (n = 1, no CI) §'
    """
    n, diff, ci = quality["paired_n"], quality["paired_dice_diff"], quality["paired_dice_ci"]
    if n is None:
        return "-"
    if diff is None:
        text = "- (no subject in common)"
    elif ci is None:
        text = f"{diff:+.3f} (n = {n}, no CI)"
    else:
        text = f"{diff:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" + ("" if n == subjects else f" (n = {n})")
    return text + (f" {UNMATCHED_MARK}" if quality["paired_unmatched"] else "")


def paired_notes(rows: Sequence[Mapping[str, Any]], chart: Optional[str] = None) -> List[str]:
    """The lines under Table 1 that say how the paired column is computed and how to read it, and name the cases of
    every row whose evaluation and the baseline's did not score the same subjects.

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).
        chart: the paired chart's path relative to ``report.md`` (linked from the text), if written.

    Returns:
        Markdown lines (empty without a row to compare).
    """
    compared = _compared(rows)
    if not compared:
        return []
    counts = sorted({r["quality"]["paired_n"] for r in compared})
    if len(counts) == 1 and counts[0] > 1:
        n_text = f"n = {counts[0]} subjects (t(0.975, {counts[0] - 1}) = {stats.t.ppf(0.975, counts[0] - 1):.3f})"
    else:
        n_text = "n subjects (per row: " + ", ".join(str(c) for c in counts) + ")"
    shown = f"; [{chart}]({chart}) draws them" if chart else ""
    lines = ["", f"**{PAIRED_HEADER}**: on every test subject that the model and the baseline were both scored on "
                 "(matched by case id in their `metrics_per_subject.csv`), the subject's mean Dice over TC/WT/ET (the "
                 "score behind the mean Dice column) minus the baseline's; the cell is the mean of these differences "
                 f"over the {n_text} and, in brackets, the 95 % confidence interval of that mean (Student's t with "
                 "n - 1 degrees of freedom on the differences). Each subject's difficulty, shared by both models, "
                 "cancels out of its difference, so this interval is narrower than the mean Dice's ± suggests: rows "
                 "whose ± intervals overlap can still differ. An interval that excludes 0 means the difference is not "
                 "noise at this n (at the 5 % level, for the row taken alone: with many rows, one in twenty clears 0 "
                 "by chance); one that includes 0 means these subjects cannot tell the model from the baseline, not "
                 "that the two are equal. The mean Dice column averages the three regions' means, each over the "
                 "subjects where the region has a value, so where a region is NaN on some subjects (empty on both "
                 "sides) the paired mean need not equal the difference of two rows' mean Dice. "
                 "`tables/table1_quality.csv` holds the figures (`paired_n`, "
                 "`paired_dice_diff`, `paired_dice_ci_low`, `paired_dice_ci_high`) and the mean per-region "
                 f"differences (`paired_dice_diff_TC`, `_WT`, `_ET`){shown}."]
    unmatched = [r for r in compared if r["quality"]["paired_unmatched"]]
    if unmatched:
        lines += ["", f"{UNMATCHED_MARK} **Different subjects**: these models and the baseline were not scored on the "
                      "same test subjects, so their paired difference covers only the subjects both have (and Table "
                      "1's means of the two rows are over different subjects); every model of a study should be "
                      "scored on the same split:", ""]
        lines += [f"- `{r['model']}`: subjects paired: {r['quality']['paired_n']}; not scored on both: "
                  + ", ".join(f"`{case}`" for case in r["quality"]["paired_unmatched"]) for r in unmatched]
    return lines


def _annotation(quality: Mapping[str, Any]) -> str:
    diff, ci, n = quality["paired_dice_diff"], quality["paired_dice_ci"], quality["paired_n"]
    if diff is None:
        return "no subject in common"
    head = f"{diff:+.3f} " + (f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "(no CI)") + f", n = {n}"
    regions = "  ".join(f"{r} {quality[f'paired_dice_diff_{r}']:+.3f}" for r in REGIONS
                        if quality[f"paired_dice_diff_{r}"] is not None)
    return f"{head}\n{regions}" if regions else head


def paired_difference_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Each model's paired difference to the baseline (a point, its family's colour and marker) with its 95 %
    confidence interval (a horizontal bar), one line per model in report order, beside lines at 0 and at
    :data:`PAIRED_MARGIN`; the figures (and the mean per-region differences) written at the right of each line.

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`).

    Returns:
        The matplotlib figure.
    """
    compared = _compared(rows)
    styles = family_styles([r["family"] for r in rows])
    left, plot, right, top, bottom, per_row = 1.9, 5.4, 2.9, 0.95, 0.6, 0.42
    width, height = left + plot + right, top + bottom + per_row * max(1, len(compared))
    fig = new_figure(width, height, _DPI)
    ax = fig.add_axes((left / width, bottom / height, plot / width, per_row * max(1, len(compared)) / height))
    ax.axvline(0.0, color="black", linewidth=1.0, gid="zero-line")
    ax.axvline(PAIRED_MARGIN, color="0.45", linewidth=0.9, linestyle="--", gid="margin-line")
    ends = [0.0, PAIRED_MARGIN]
    for y, row in enumerate(compared):
        q = row["quality"]
        diff, ci = q["paired_dice_diff"], q["paired_dice_ci"]
        colour, marker = styles[row["family"]]
        if diff is not None:
            ends += [diff, *(ci or [])]
            if ci:
                ax.errorbar([diff], [y], xerr=[[diff - ci[0]], [ci[1] - diff]], fmt="none", ecolor=colour,
                            elinewidth=1.6, capsize=3, gid="paired-ci")
            ax.scatter([diff], [y], c=colour, marker=marker, s=90 if marker == "*" else 40, edgecolors="white",
                       linewidths=0.5, zorder=5, gid="paired-point")
        ax.text(1.02, y, _annotation(q), transform=blended_transform_factory(ax.transAxes, ax.transData),
                va="center", ha="left", fontsize=7, family="monospace")
    span = (max(ends) - min(ends)) or 0.02
    ax.set_xlim(min(ends) - 0.08 * span, max(ends) + 0.08 * span)
    ax.set_ylim(len(compared) - 0.5 if compared else 0.5, -0.5)  # the first row on top, as in the report
    ax.set_yticks(range(len(compared)))
    ax.set_yticklabels([r["model"] for r in compared], fontsize=8)
    ax.set_xlabel("paired difference of the mean Dice (TC/WT/ET), model - baseline, mean over test subjects")
    ax.grid(axis="x", alpha=0.3)
    if not compared:
        ax.text(0.5, 0.5, "no model to compare with the baseline", ha="center", va="center", transform=ax.transAxes)
    ax.legend(handles=[Line2D([], [], color="black", linewidth=1.0, label="0: no difference"),
                       Line2D([], [], color="0.45", linewidth=0.9, linestyle="--",
                              label=f"{PAIRED_MARGIN:+g}: one Dice point below the baseline")],
              loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.text(0.5, 1.0 - 0.12 / height, "Paired difference to the baseline on the test subjects: point = mean of the "
             "per-subject differences, bar = its 95 % CI (Student's t)\nright: mean [95 % CI], n subjects; below: "
             "the mean difference per region", ha="center", va="top", fontsize=9)
    return fig
