"""The report's charts drawn from hand-made rows: labels that never overlap, error bars of the right length, the
Pareto front over models and backends, the hybrid's star, axes that say their units and range, and training curves
split into loss and Dice and grouped by family."""

import math

import numpy as np
import pytest
from matplotlib.container import BarContainer

from raagr2_monai.constants import SCORED_REGIONS
from raagr2_monai.report import (
    FAMILY_STYLES,
    LABEL_GID,
    cost_points,
    family_styles,
    label_boxes,
    overlapping_labels,
    quality_cost_figure,
    region_dice_figure,
    training_curves_figure,
)

BACKENDS = ("torch", "onnxruntime", "openvino")


def _row(model, family, dice, params_m, latency, backends=None, ci95=0.02, kind="pruned", epochs=0,
         from_scratch=False):
    """A report row with what the charts read; ``backends``: backend -> batch-1 median (p25/p75: -/+ 10 %)."""
    quality = {"dice_mean": dice, "dice_mean_ci95": ci95}
    quality.update({f"dice_{r}": dice for r in SCORED_REGIONS})
    quality.update({f"dice_{r}_ci95": ci95 for r in SCORED_REGIONS})
    return {
        "model": model, "family": family, "kind": kind, "from_scratch": from_scratch, "quality": quality,
        "cost": {
            "nonzero_params": params_m * 1e6, "latency_b1_ms": latency,
            "latency_b1_p25_ms": latency * 0.9, "latency_b1_p75_ms": latency * 1.1,
            "latency_b1_backends_ms": backends,
            "latency_b1_backends_p25_ms": None if backends is None else {b: m * 0.9 for b, m in backends.items()},
            "latency_b1_backends_p75_ms": None if backends is None else {b: m * 1.1 for b, m in backends.items()},
        },
        "history": {"epochs": [{"epoch": e, "train_loss": 1.0 / e, "val_mean_dice": 0.1 * e}
                               for e in range(1, epochs + 1)], "iterations": [[1, 1.0, 1.0]]},
    }


def _crowded(backends: bool):
    """24 models on top of each other: Dice 0.80-0.81, 8.90-8.92 M parameters, 10-10.3 ms (then x0.6, x0.4)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        latency = 10 + 0.3 * rng.random()
        rows.append(_row(f"model-{i}", ("architecture", "magnitude", "snip", "depgraph", "hybrid", "other")[i % 6],
                         0.80 + 0.01 * rng.random(), 8.9 + 0.02 * rng.random(), latency,
                         dict(zip(BACKENDS, (latency, 0.6 * latency, 0.4 * latency))) if backends else None))
    return rows


def _segments(ax):
    """Every error bar segment of the axes, as ((x0, y0), (x1, y1)) rounded to 9 decimals."""
    found = set()
    for container in ax.containers:
        if isinstance(container, BarContainer):
            continue  # its error bars are also among the containers, as an ErrorbarContainer
        for collection in container.lines[2]:
            found.update(tuple(tuple(round(float(v), 9) for v in point) for point in segment)
                         for segment in collection.get_segments())
    return found


def _offsets(ax, gid):
    return sorted(tuple(round(float(v), 9) for v in xy) for c in ax.collections if c.get_gid() == gid
                  for xy in c.get_offsets())


@pytest.mark.parametrize("cost, backends", [("params", False), ("latency", True)])
def test_labels_of_a_crowded_chart_neither_overlap_nor_cover_a_point(cost, backends):
    rows = _crowded(backends)
    fig = quality_cost_figure(rows, cost, 192, "cpu")
    ax = fig.axes[0]
    boxes = label_boxes(ax)
    assert len(boxes) == len(cost_points(rows, cost)[0]) == 24 * (3 if backends else 1)
    assert overlapping_labels(ax) == []
    area = ax.get_window_extent()
    points = [ax.transData.transform(xy) for xy in _offsets(ax, "point")]
    for text, box in boxes:
        assert area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1, text
        assert not any(box.contains(x, y) for x, y in points), text


def test_the_overlap_check_finds_labels_put_on_top_of_each_other():
    fig = quality_cost_figure(_crowded(False)[:3], "params", 192, "cpu")
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_gid() == LABEL_GID]
    assert len(labels) == 3 and overlapping_labels(ax) == []
    for label in labels:  # all three labels where the first one is
        label.xy, label.xyann = labels[0].xy, labels[0].xyann
        label.set_horizontalalignment(labels[0].get_horizontalalignment())
        label.set_verticalalignment(labels[0].get_verticalalignment())
    assert overlapping_labels(ax) == [("1", "2"), ("1", "3"), ("2", "3")]


def test_pareto_front_over_models_and_backends_with_their_error_bars():
    rows = [
        _row("a", "architecture", 0.8, 9.0, 10.0, {"torch": 10.0, "onnxruntime": 6.0}, kind="architecture"),
        _row("b", "depgraph", 0.7, 5.0, 8.0, {"torch": 8.0, "onnxruntime": 5.0}, ci95=0.05),
        _row("c", "snip", 0.6, 9.0, 12.0, {"torch": 12.0, "onnxruntime": 7.0}),
    ]
    ax = quality_cost_figure(rows, "latency", 192, "cpu").axes[0]
    assert len(_offsets(ax, "point")) == 6
    # b behind onnxruntime is the cheapest, a behind onnxruntime the best; every other point is beaten by one of them
    assert _offsets(ax, "pareto-points") == [(5.0, 0.7), (6.0, 0.8)]
    (line,) = [line for line in ax.lines if line.get_gid() == "pareto-line"]
    assert list(line.get_xdata()) == [5.0, 6.0, ax.get_xlim()[1]] and list(line.get_ydata()) == [0.7, 0.8, 0.8]
    assert line.get_drawstyle() == "steps-post"
    segments = _segments(ax)
    assert ((5.0, 0.65), (5.0, 0.75)) in segments  # b's 95 % CI of the mean Dice, 0.7 -/+ 0.05
    assert ((4.5, 0.7), (5.5, 0.7)) in segments  # its latency p25-p75
    legend = [t.get_text() for t in ax.figure.legends[0].get_texts()]
    assert {"backend: torch", "backend: onnxruntime", "Pareto front (higher Dice, lower cost)"} <= set(legend)
    assert ax.get_xlabel() == "latency (ms per 192x192 slice, batch 1)"
    assert "CPU, per inference backend" in ax.get_title()

    ax = quality_cost_figure(rows, "params", 192, "cpu").axes[0]
    assert _offsets(ax, "pareto-points") == [(5.0, 0.7), (9.0, 0.8)]
    # 5 to 9 M parameters: the axis starts above 0 and its label says where
    left = ax.get_xlim()[0]
    assert 0 < left < 5 and ax.get_xlabel() == f"non-zero parameters (millions)\ncost axis from {left:g}, not from 0"


def test_the_hybrid_is_a_star_on_both_charts_and_an_unknown_family_gets_its_own_colour():
    rows = [_row("baseline", "architecture", 0.8, 9.0, 10.0, kind="architecture"),
            _row("hybrid-30", "hybrid", 0.78, 2.0, 4.0),
            _row("distilled", "distillation", 0.7, 3.0, 5.0)]
    for cost, x in (("params", 2.0), ("latency", 4.0)):
        fig = quality_cost_figure(rows, cost, 64, "cpu")
        assert _offsets(fig.axes[0], "hybrid") == [(x, 0.78)]
        assert {"hybrid (deployable)", "distillation"} <= {t.get_text() for t in fig.legends[0].get_texts()}
    assert FAMILY_STYLES["hybrid"][1] == "*"
    colour, _ = family_styles(["distillation"])["distillation"]
    assert colour not in {c for c, _ in FAMILY_STYLES.values()}


def test_the_dice_axis_starts_at_zero_or_says_where_it_starts():
    high = [_row("a", "architecture", 0.85, 9.0, 10.0), _row("b", "snip", 0.80, 8.0, 9.0)]
    ax = quality_cost_figure(high, "params", 64, "cpu").axes[0]
    bottom = ax.get_ylim()[0]
    assert 0 < bottom <= 0.78 and f"Dice axis from {bottom:g}, not from 0" in ax.get_ylabel()
    low = [_row("a", "architecture", 0.15, 9.0, 10.0), _row("b", "snip", 0.6, 8.0, 9.0)]
    ax = quality_cost_figure(low, "params", 64, "cpu").axes[0]
    assert ax.get_ylim()[0] == 0 and "not from 0" not in ax.get_ylabel()
    assert ax.get_ylabel().startswith("mean Dice (TC/WT/ET), test subjects")


def test_a_model_without_mean_dice_is_left_out_and_named_in_the_key():
    rows = [_row("a", "architecture", 0.85, 9.0, 10.0), _row("b", "snip", None, 8.0, 9.0)]
    fig = quality_cost_figure(rows, "params", 64, "cpu")
    assert len(_offsets(fig.axes[0], "point")) == 1
    assert any("2  b  (not shown)" in t.get_text() for t in fig.texts)


def test_region_bars_carry_the_ci_of_each_mean_cut_at_one():
    rows = [_row("a", "architecture", 0.5, 9.0, 10.0, ci95=0.1), _row("b", "snip", 0.95, 8.0, 9.0, ci95=0.2)]
    rows[0]["quality"]["dice_ET"] = None
    ax = region_dice_figure(rows).axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.get_label() for c in bars] == list(SCORED_REGIONS) and all(c.errorbar for c in bars)
    tc = next(c for c in bars if c.get_label() == "TC")
    assert [round(b.get_height(), 9) for b in tc] == [0.5, 0.95]
    segments = _segments(ax)
    x_a, x_b = (b.get_x() + b.get_width() / 2 for b in tc)
    assert ((round(x_a, 9), 0.4), (round(x_a, 9), 0.6)) in segments
    assert ((round(x_b, 9), 0.75), (round(x_b, 9), 1.0)) in segments  # 0.95 + 0.2 cut at 1
    et = next(c for c in bars if c.get_label() == "ET")
    assert math.isnan(et[0].get_height())  # no mean, no bar (never a bar at 0)


def test_training_curves_put_loss_above_dice_and_fine_tuning_by_family():
    rows = [_row("baseline", "architecture", 0.8, 9.0, 10.0, kind="architecture", epochs=5),
            _row("depthwise", "architecture", 0.8, 3.0, 10.0, kind="architecture", epochs=5),
            _row("snip-20-init", "snip", 0.7, 7.0, 10.0, epochs=5, from_scratch=True)]
    for method in ("magnitude", "snip", "depgraph"):
        for ratio in (10, 20, 30):
            rows.append(_row(f"{method}-{ratio}", method, 0.7, 8.0, 10.0))  # not fine-tuned: no epochs
            rows.append(_row(f"{method}-{ratio}-ft", method, 0.7, 8.0, 10.0, epochs=2))
    fig = training_curves_figure(rows)
    axes = np.array(fig.axes).reshape(2, 4)
    assert [ax.get_title() for ax in axes[0]] == ["training from scratch", "fine-tuning: magnitude pruning",
                                                  "fine-tuning: SNIP pruning", "fine-tuning: DepGraph pruning"]
    assert {ax.get_ylabel() for ax in axes[0]} == {"training loss"}
    assert {ax.get_ylabel() for ax in axes[1]} == {"validation mean Dice"}
    assert {ax.get_xlabel() for ax in axes[1]} == {"epoch"}
    expected = [["baseline", "depthwise", "snip-20-init"]] + [
        [f"{m}-{r}-ft" for r in (10, 20, 30)] for m in ("magnitude", "snip", "depgraph")]
    for ax, models in zip(axes[1], expected):
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == models
        assert len(ax.lines) == len(models)
        # the legend sits below the panel, outside the data
        assert legend.get_window_extent().y1 < ax.get_window_extent().y0
