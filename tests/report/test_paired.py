"""Every model against the baseline by per-subject (paired) differences of the mean Dice over TC/WT/ET, worked out by
hand: the mean and its Student-t interval, subjects matched by case id, a subject one side lacks, the rows, the tables,
Table 1's column and the chart."""

import csv
import json
import math

import pytest
from matplotlib.container import ErrorbarContainer

from raagr2_monai.metrics import METRIC_COLUMNS, write_metrics_csv
from raagr2_monai.report import (
    PAIRED_HEADER,
    PAIRED_KEYS,
    PAIRED_MARGIN,
    ReportInputs,
    collect_rows,
    paired_cell,
    paired_difference,
    paired_difference_figure,
    read_subject_scores,
    write_report,
)

from .conftest import MODELS

NAN = float("nan")
#: t(0.975, 4) and t(0.975, 3): the 95 % two-sided Student quantiles for 5 and 4 subjects
T_4 = 2.7764451051977987
T_3 = 3.182446305284263
#: five subjects' differences of the mean Dice (model - baseline): mean -0.06, sample std sqrt(0.001)
DIFFERENCES = {"c1": -0.10, "c2": -0.06, "c3": -0.02, "c4": -0.08, "c5": -0.04}


def _subject(tc, wt, et):
    scores = dict.fromkeys(METRIC_COLUMNS, 0.5)
    scores.update(dice_TC=tc, dice_WT=wt, dice_ET=et)
    return scores


def _baseline():
    """Five subjects; c3 has no ET (empty on both sides), so its mean Dice is over TC and WT."""
    return {"c1": _subject(0.8, 0.9, 0.7), "c2": _subject(0.7, 0.95, 0.6), "c3": _subject(0.6, 0.8, NAN),
            "c4": _subject(0.85, 0.9, 0.75), "c5": _subject(0.5, 0.7, 0.4)}


def _model(cases=DIFFERENCES):
    """Every region of each subject ``DIFFERENCES[case]`` below the baseline's, the cases in reverse order."""
    base = _baseline()
    return {c: _subject(*(base[c][f"dice_{r}"] + cases[c] for r in ("TC", "WT", "ET")))
            for c in reversed(list(cases))}


def test_paired_mean_and_student_t_interval_by_hand():
    found = paired_difference(_model(), _baseline())
    half = T_4 * math.sqrt(0.001) / math.sqrt(5)  # t(0.975, 4) x std / sqrt(n) = 0.039265
    assert found["paired_n"] == 5 and found["paired_unmatched"] == []
    assert found["paired_dice_diff"] == pytest.approx(-0.06)
    assert found["paired_dice_ci"] == pytest.approx([-0.06 - half, -0.06 + half])
    assert found["paired_dice_ci"] == pytest.approx([-0.099265, -0.020735], abs=1e-6)
    # per region over the subjects where both have it: ET leaves c3 out, (-0.10 - 0.06 - 0.08 - 0.04) / 4
    assert found["paired_dice_diff_TC"] == pytest.approx(-0.06) == found["paired_dice_diff_WT"]
    assert found["paired_dice_diff_ET"] == pytest.approx(-0.07)
    assert set(found) == set(PAIRED_KEYS)


def test_subjects_are_matched_by_case_id_not_by_order():
    model, base = _model(), _baseline()
    shuffled = {c: base[c] for c in ("c4", "c1", "c5", "c3", "c2")}
    assert list(model) != list(base)  # the model's CSV lists the cases in reverse
    for found in (paired_difference(model, shuffled), paired_difference(dict(reversed(model.items())), base)):
        assert found["paired_n"] == 5 and found["paired_unmatched"] == []
        assert found["paired_dice_diff"] == pytest.approx(-0.06)
        assert found["paired_dice_ci"] == pytest.approx([-0.099265, -0.020735], abs=1e-6)
    # pairing by position would mix subjects: the differences are no longer those of DIFFERENCES, and their spread
    # (the subjects' own differences in difficulty) widens the interval
    by_position = paired_difference(dict(zip(base, model.values())), base)
    assert by_position["paired_dice_ci"][1] - by_position["paired_dice_ci"][0] > 0.1


def test_a_subject_only_one_side_has_is_left_out_and_named():
    base = _baseline()
    model = _model()
    del model["c5"]  # the model was not scored on c5 ...
    model["c9"] = _subject(0.1, 0.1, 0.1)  # ... but on a case the baseline does not have
    found = paired_difference(model, base)
    differences = [-0.10, -0.06, -0.02, -0.08]
    mean = sum(differences) / 4
    std = math.sqrt(sum((d - mean) ** 2 for d in differences) / 3)
    assert (found["paired_n"], found["paired_unmatched"]) == (4, ["c5", "c9"])
    assert found["paired_dice_diff"] == pytest.approx(-0.065)
    assert found["paired_dice_ci"] == pytest.approx([mean - T_3 * std / 2, mean + T_3 * std / 2])
    # one subject in common: a mean, no interval; none: neither
    one = paired_difference({"c1": model["c1"]}, base)
    assert (one["paired_n"], one["paired_dice_ci"]) == (1, None) and one["paired_dice_diff"] == pytest.approx(-0.1)
    none = paired_difference({"x": model["c1"]}, base)
    assert (none["paired_n"], none["paired_dice_diff"], none["paired_dice_ci"]) == (0, None, None)
    assert none["paired_unmatched"] == ["c1", "c2", "c3", "c4", "c5", "x"]


def test_paired_cells():
    quality = {"paired_n": 5, "paired_dice_diff": -0.06, "paired_dice_ci": [-0.099265, -0.020735],
               "paired_unmatched": []}
    assert paired_cell(quality, 5) == "-0.060 [-0.099, -0.021]"
    fewer = {**quality, "paired_n": 4, "paired_unmatched": ["c5"]}
    assert paired_cell(fewer, 5) == "-0.060 [-0.099, -0.021] (n = 4) §"
    assert paired_cell(dict.fromkeys(PAIRED_KEYS), 5) == "-"  # the baseline
    assert paired_cell({**quality, "paired_n": 0, "paired_dice_diff": None, "paired_dice_ci": None,
                        "paired_unmatched": ["x"]}, 5) == "- (no subject in common) §"


# the hand-made study (conftest): two subjects at mean -/+ 0.0625 per region. Subjects' mean Dice: baseline c1 0.4375,
# c2 0.5625; magnitude-20 (no ET) c1 0.3125, c2 0.4375; magnitude-20-ft c1 0.5625, c2 0.6875. Both differences of a
# model are equal, so the interval has no width.


def test_rows_carry_the_paired_difference_and_the_baseline_none(finished):
    root, state, benchmark = finished
    base, pruned, tuned = collect_rows(root, state, MODELS, benchmark)
    assert {k: base["quality"][k] for k in PAIRED_KEYS} == dict.fromkeys(PAIRED_KEYS)
    assert pruned["quality"]["paired_n"] == 2 and pruned["quality"]["paired_unmatched"] == []
    assert pruned["quality"]["paired_dice_diff"] == pytest.approx(-0.125)
    assert pruned["quality"]["paired_dice_ci"] == pytest.approx([-0.125, -0.125])
    assert pruned["quality"]["paired_dice_diff_TC"] == pytest.approx(-0.25)
    assert pruned["quality"]["paired_dice_diff_ET"] is None
    assert tuned["quality"]["paired_dice_diff"] == pytest.approx(0.125)
    assert tuned["quality"]["paired_dice_diff_WT"] == pytest.approx(0.125)


def _drop_case(path, case):
    scores = read_subject_scores(path)
    write_metrics_csv([{"case": c, **v} for c, v in scores.items() if c != case], path)


def test_a_missing_subject_reaches_the_tables_and_is_flagged_in_the_report(finished, subjects):
    root, state, benchmark = finished
    _drop_case(root / "eval/magnitude-20-ft/metrics_per_subject.csv", "c1")
    rows = collect_rows(root, state, MODELS, benchmark)
    tuned = rows[2]["quality"]
    assert (tuned["paired_n"], tuned["paired_dice_ci"], tuned["paired_unmatched"]) == (1, None, ["c1"])
    assert tuned["paired_dice_diff"] == pytest.approx(0.125)  # c2 alone: 0.6875 - 0.5625
    inputs = ReportInputs(root, rows, state, benchmark, "/data/synthetic", "sqlite:////s.db", subjects)
    text = write_report(inputs).read_text()

    header = next(line for line in text.splitlines() if line.startswith("| model | Dice TC"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    column = cells.index(PAIRED_HEADER)
    assert cells[column + 1] == "† thesis pooled Dice"  # after our columns, before the thesis's
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) > column and "(`" in cells[0]:
            table[cells[0].split("`")[1]] = cells[column]
    assert table == {"baseline": "-", "magnitude-20": "-0.125 [-0.125, -0.125]",
                     "magnitude-20-ft": "+0.125 (n = 1, no CI) §"}
    assert f"**{PAIRED_HEADER}**: on every test subject that the model and the baseline were both scored on" in text
    assert "An interval that excludes 0 means the difference is not noise at this n" in text
    assert "- `magnitude-20-ft`: subjects paired: 1; not scored on both: `c1`" in text
    assert "[charts/paired_difference.png](charts/paired_difference.png)" in text
    assert "![paired_difference](charts/paired_difference.png)" in text

    records = json.loads((root / "tables/table1_quality.json").read_text())
    assert [r["paired_n"] for r in records] == [None, 2, 1]
    assert records[1]["paired_dice_ci_low"] == pytest.approx(-0.125) == records[1]["paired_dice_ci_high"]
    assert records[2]["paired_unmatched"] == ["c1"] and records[2]["paired_dice_ci_low"] is None
    with open(root / "tables/table1_quality.csv", newline="") as f:
        table1 = list(csv.DictReader(f))
    assert [(r["paired_n"], r["paired_dice_diff_ET"], r["paired_unmatched"]) for r in table1] == [
        ("", "", ""), ("2", "", ""), ("1", "0.25", "c1")]  # ET on c2: 0.5625 - 0.3125


def _row(model, family, diff, ci, n=6):
    quality = {"paired_n": n, "paired_dice_diff": diff, "paired_dice_ci": ci, "paired_unmatched": []}
    quality.update({f"paired_dice_diff_{r}": diff for r in ("TC", "WT", "ET")})
    return {"model": model, "family": family, "quality": quality}


def test_the_chart_draws_each_interval_beside_zero_and_one_point():
    rows = [{"model": "baseline", "family": "architecture", "quality": dict.fromkeys(PAIRED_KEYS)},
            _row("a", "architecture", -0.05, [-0.08, -0.02]),
            _row("b", "hybrid", 0.01, [-0.03, 0.05]),
            _row("c", "snip", 0.2, None, n=1),
            _row("d", "depgraph", None, None, n=0)]
    ax = paired_difference_figure(rows).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c", "d"]  # the baseline is the reference
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # the first row on top
    lines = {line.get_gid(): line for line in ax.lines}
    assert list(lines["zero-line"].get_xdata()) == [0.0, 0.0]
    assert list(lines["margin-line"].get_xdata()) == [PAIRED_MARGIN, PAIRED_MARGIN] == [-0.01, -0.01]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = [tuple(tuple(round(float(v), 9) for v in point) for point in seg)
                for c in bars for seg in c.lines[2][0].get_segments()]
    assert segments == [((-0.08, 0.0), (-0.02, 0.0)), ((-0.03, 1.0), (0.05, 1.0))]  # c has no interval, d no value
    points = sorted(tuple(round(float(v), 9) for v in xy) for c in ax.collections if c.get_gid() == "paired-point"
                    for xy in c.get_offsets())
    assert points == [(-0.05, 0.0), (0.01, 1.0), (0.2, 2.0)]
    texts = [t.get_text() for t in ax.texts]
    assert "-0.050 [-0.080, -0.020], n = 6\nTC -0.050  WT -0.050  ET -0.050" in texts
    assert "+0.200 (no CI), n = 1\nTC +0.200  WT +0.200  ET +0.200" in texts and "no subject in common" in texts
    low, high = ax.get_xlim()
    assert low < -0.08 and high > 0.2
