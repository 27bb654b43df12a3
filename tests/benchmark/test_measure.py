"""Measuring networks in one run (``benchmark_models``) and rendering the result: structure, exact counts, ratios
against the baseline, sparse sizes.

Timings are noisy on shared machines: only their structure and ordering (p25 <= median <= p75) are asserted.
"""

import json

import pytest
import torch

from raagr2_monai.benchmark import META_KEY, benchmark_models, render
from raagr2_monai.benchmark.memory import CpuMemoryProbe
from raagr2_monai.networks import count_flops, count_parameters, get_network, state_dict_mb
from raagr2_monai.pruning import prune, serialized_nbytes, to_sparse_state_dict

SMALL = dict(size=32, batches=(1, 2), repeats=2, warmup=0)
ROW_KEYS = {
    "params", "nonzero_params", "size_mb", "size_sparse_mb", "flops", "latency_ms", "peak_mem_mb",
    "mem_before_forward_mb", "train_step_ms", "train_images_per_s", "vs_baseline", "timed_as",
}


@pytest.fixture(scope="module")
def measured(one_thread):
    torch.manual_seed(0)
    models = {"baseline": get_network("baseline"), "depthwise": get_network("depthwise")}
    return benchmark_models(models, **SMALL)


def test_json_is_keyed_by_model_with_every_figure(measured):
    doc = json.loads(render(measured, "json"))
    assert list(doc) == ["baseline", "depthwise", META_KEY]
    for name in ("baseline", "depthwise"):
        row = doc[name]
        assert ROW_KEYS <= set(row)
        assert list(row["latency_ms"]) == ["1", "2"]
        assert all(set(row["latency_ms"][b]) == {"median", "p25", "p75", "per_slice_ms"} for b in ("1", "2"))
        assert set(row["vs_baseline"]) == ROW_KEYS - {"vs_baseline", "mem_before_forward_mb", "timed_as"}
        assert row["timed_as"] == name
        assert list(row["vs_baseline"]["latency_ms"]) == ["1", "2"]
    meta = doc[META_KEY]
    assert meta["baseline"] == "baseline" and meta["baseline_added"] is False
    assert meta["settings"] == {"size": 32, "batches": [1, 2], "repeats": 2, "warmup": 0, "device": "cpu",
                                "train_shape": [2, 4, 32, 32], "share_structure": False}
    assert meta["environment"]["torch_threads"] == torch.get_num_threads()
    assert meta["environment"]["torch_threads"] > 0 and meta["environment"]["cpu_model"]
    assert meta["timer"] == "time.perf_counter" and "FlopCounterMode" in meta["flop_counter"]
    assert "separate process" in meta["methods"]["peak_mem_mb"]


def test_counts_are_exact(measured):
    net = get_network("depthwise")
    row = measured["depthwise"]
    assert row["params"] == count_parameters(net) == 5_046_155
    assert row["nonzero_params"] == row["params"]
    assert row["size_sparse_mb"] is None
    assert row["flops"] == count_flops(net, (1, 4, 32, 32))
    assert row["size_mb"] == pytest.approx(state_dict_mb(net), rel=1e-3)
    assert measured["baseline"]["params"] == 8_911_235


def test_ratios_come_from_the_same_run(measured):
    base, dw = measured["baseline"], measured["depthwise"]
    ratios = base["vs_baseline"]
    assert all(ratios[k] == 1.0 for k in ("params", "size_mb", "flops", "peak_mem_mb", "train_step_ms"))
    assert ratios["latency_ms"] == {"1": 1.0, "2": 1.0}
    assert dw["vs_baseline"]["params"] == 5_046_155 / 8_911_235
    assert dw["vs_baseline"]["flops"] == dw["flops"] / base["flops"]
    assert dw["vs_baseline"]["latency_ms"]["2"] == dw["latency_ms"]["2"]["median"] / base["latency_ms"]["2"]["median"]
    assert dw["vs_baseline"]["train_images_per_s"] == dw["train_images_per_s"] / base["train_images_per_s"]


def test_spread_memory_and_train_figures_are_consistent(measured):
    for row in (measured["baseline"], measured["depthwise"]):
        for b, spread in row["latency_ms"].items():
            assert 0 < spread["p25"] <= spread["median"] <= spread["p75"]
            assert spread["per_slice_ms"] == spread["median"] / int(b)
        assert row["peak_mem_mb"] >= row["mem_before_forward_mb"] > 0
        assert row["train_images_per_s"] == pytest.approx(2 / (row["train_step_ms"] / 1e3))


def test_shared_structures_are_timed_once_and_counted_apart(one_thread):
    torch.manual_seed(0)
    masked = get_network("baseline")
    prune(masked, "magnitude", 0.5)
    models = {"baseline": get_network("baseline"), "depthwise": get_network("depthwise"), "masked": masked}
    result = benchmark_models(models, size=32, batches=1, repeats=1, warmup=0, measure_memory=False,
                              train_shape=(3, 4, 16, 16), share_structure=True)
    assert [result[n]["timed_as"] for n in models] == ["baseline", "depthwise", "baseline"]
    # the zeroed copy reports the baseline's timing, but its own counts
    assert result["masked"]["latency_ms"] == result["baseline"]["latency_ms"]
    assert result["masked"]["train_step_ms"] == result["baseline"]["train_step_ms"]
    assert result["depthwise"]["latency_ms"] != result["baseline"]["latency_ms"]
    assert result["masked"]["nonzero_params"] < result["masked"]["params"] == result["baseline"]["params"]
    # the training step ran at the given shape: 3 images per step
    assert result["baseline"]["train_images_per_s"] == pytest.approx(3 / (result["baseline"]["train_step_ms"] / 1e3))
    assert result[META_KEY]["settings"]["train_shape"] == [3, 4, 16, 16]
    assert "same structure" in result[META_KEY]["methods"]["timed_as"]


def test_table_names_timer_counter_and_threads(measured):
    text = render(measured, "table")
    assert "time.perf_counter" in text and "FlopCounterMode" in text
    assert f"{torch.get_num_threads()} torch threads" in text
    assert "5,046,155" in text and "b2 ms median [p25, p75]" in text
    assert f"{5_046_155 / 8_911_235:.3f}" in text.split("Ratios against")[1]


def test_masked_model_reports_nonzero_and_sparse_size():
    torch.manual_seed(0)
    masked = get_network("depthwise")
    pruned = prune(masked, "magnitude", 0.5, scope="uniform")
    result = benchmark_models(
        {"masked": masked}, size=32, batches=1, repeats=1, warmup=0, measure_memory=False, train_step=False
    )
    row = result["masked"]
    assert result[META_KEY]["baseline_added"] is True and list(result)[0] == "baseline"
    assert row["nonzero_params"] == pruned.params_after < row["params"] == 5_046_155
    packed = to_sparse_state_dict(masked.state_dict(), pruned.masks.masks)
    assert row["size_sparse_mb"] == serialized_nbytes(packed) / 1e6
    assert row["size_sparse_mb"] < row["size_mb"]
    assert row["vs_baseline"]["size_sparse_mb"] == row["size_sparse_mb"] / result["baseline"]["size_mb"]
    assert row["peak_mem_mb"] is None and row["vs_baseline"]["train_step_ms"] is None


def test_one_memory_process_measures_model_after_model_without_carrying_a_peak_over():
    """A model with 75 MB of activations, then one with almost none, in the same process: the second's peak is its
    own, not the first's (the peak is reset and the freed memory released between them)."""
    wide, narrow = torch.nn.Conv2d(4, 64, 3, padding=1), torch.nn.Conv2d(4, 1, 1)
    with CpuMemoryProbe() as probe:
        first = probe.measure("wide", wide, (8, 4, 192, 192))
        second = probe.measure("narrow", narrow, (8, 4, 192, 192))
    assert not first["peak_since_start"] and not second["peak_since_start"]
    assert first["peak_mem_mb"] - first["mem_before_forward_mb"] > 70  # 8 x 64 x 192 x 192 float32 outputs
    assert second["peak_mem_mb"] < first["peak_mem_mb"] - 50
    # the first model's 75 MB of outputs went back to the system (what stays is the libraries' one-time set-up of
    # their first forward pass, about 20 MB)
    assert second["mem_before_forward_mb"] < first["mem_before_forward_mb"] + 50
