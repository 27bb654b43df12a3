"""`raagr2 benchmark`: result structure, exact counts, ratios against the baseline, bundles, sparse sizes, errors.

Timings are noisy on shared machines: only their structure and ordering (p25 <= median <= p75) are asserted.
"""

import csv
import json
import shutil
from pathlib import Path

import fire
import pytest
import torch

from raagr2_monai.benchmark import (
    META_KEY,
    benchmark_command,
    benchmark_models,
    bundle_name,
    check_settings,
    load_bundle_network,
    render,
    run_benchmark,
)
from raagr2_monai.cli import COMMANDS
from raagr2_monai.networks import count_flops, count_parameters, get_network, state_dict_mb
from raagr2_monai.pruning import prune, serialized_nbytes, to_sparse_state_dict

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(size=32, batches=(1, 2), repeats=2, warmup=0)
ROW_KEYS = {
    "params", "nonzero_params", "size_mb", "size_sparse_mb", "flops", "latency_ms", "peak_mem_mb",
    "mem_before_forward_mb", "train_step_ms", "train_images_per_s", "vs_baseline",
}


def make_bundle(folder: Path, variant: str = "depthwise", state=None, sparse=None) -> Path:
    """A bundle folder with the configs of ``bundles/<variant>`` and, optionally, models/model(_sparse).pt."""
    shutil.copytree(REPO / "bundles" / variant / "configs", folder / "configs")
    if state is not None or sparse is not None:
        (folder / "models").mkdir()
    if state is not None:
        torch.save(state, folder / "models" / "model.pt")
    if sparse is not None:
        torch.save(sparse, folder / "models" / "model_sparse.pt")
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: light on a shared machine, and less slowed down by it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
        assert set(row["vs_baseline"]) == ROW_KEYS - {"vs_baseline", "mem_before_forward_mb"}
        assert list(row["vs_baseline"]["latency_ms"]) == ["1", "2"]
    meta = doc[META_KEY]
    assert meta["baseline"] == "baseline" and meta["baseline_added"] is False
    assert meta["settings"] == {"size": 32, "batches": [1, 2], "repeats": 2, "warmup": 0, "device": "cpu"}
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


def test_bundle_folder_with_weights(tmp_path):
    state = get_network("depthwise").state_dict()
    tiny = make_bundle(tmp_path / "tiny", state=state)
    net = load_bundle_network(tiny)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    result = run_benchmark(bundles=str(tiny), size=32, batches=1, repeats=1, warmup=0, measure_memory=False,
                           train_step=False)
    assert list(result) == ["baseline", "tiny", META_KEY]
    assert result["tiny"]["params"] == 5_046_155
    assert result["tiny"]["weights"] == str(tiny / "models" / "model.pt")
    assert "added as the reference" in result["baseline"]["source"]


def test_pruned_bundle_inside_a_bundle_reports_its_sparse_file(tmp_path):
    parent = make_bundle(tmp_path / "bundles" / "depthwise")
    masked = get_network("depthwise")
    prune(masked, "magnitude", 0.3)
    packed = to_sparse_state_dict(masked.state_dict())
    child = make_bundle(parent / "pruned" / "magnitude-30", state=masked.state_dict(), sparse=packed)
    assert bundle_name(child) == "depthwise/pruned/magnitude-30"
    result = run_benchmark(variants="baseline", bundles=f"{parent},{child}", size=32, batches=1, repeats=1,
                           warmup=0, measure_memory=False, train_step=False)
    assert list(result) == ["baseline", "depthwise", "depthwise/pruned/magnitude-30", META_KEY]
    row = result["depthwise/pruned/magnitude-30"]
    assert row["size_sparse_mb"] == (child / "models" / "model_sparse.pt").stat().st_size / 1e6 < row["size_mb"]
    assert row["nonzero_params"] < row["params"]
    assert result["depthwise"]["weights"] is None and result["depthwise"]["size_sparse_mb"] is None


def test_bad_input_gives_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown variant.*'resnet'.*valid names: baseline"):
        run_benchmark("baseline,resnet")
    with pytest.raises(FileNotFoundError, match="Bundle folder .*nope does not exist"):
        run_benchmark(bundles=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="is not a bundle: .*inference.json is missing"):
        run_benchmark(bundles=str(tmp_path))
    with pytest.raises(ValueError, match="every batch size must be an integer >= 1; got 0"):
        check_settings(32, "1,0", 1, 0)
    with pytest.raises(ValueError, match="got -2"):
        check_settings(32, (-2,), 1, 0)
    with pytest.raises(ValueError, match="multiple of 16.*got 40"):
        check_settings(40, 1, 1, 0)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        check_settings(32, 1, 0, 0)
    with pytest.raises(ValueError, match="format must be one of table, csv, json; got 'yaml'"):
        benchmark_command("baseline", format="yaml")
    with pytest.raises(ValueError, match="not starting with '_'"):
        benchmark_models({"_meta": get_network("baseline")})
    make_bundle(tmp_path / "baseline")
    with pytest.raises(ValueError, match="Two models are named 'baseline'"):
        run_benchmark("baseline", str(tmp_path / "baseline"))


def test_cli_writes_csv(tmp_path):
    out = tmp_path / "bench" / "result.csv"
    command = ["benchmark", "--variants", "baseline", "--size", "32", "--batch", "1,2", "--repeats", "2",
               "--warmup", "0", "--format", "csv", "--output", str(out), "--nomemory", "--notrain"]
    assert fire.Fire(COMMANDS, command=command) == f"wrote {out} (1 models, csv)"
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["baseline"]
    row = rows[0]
    assert int(row["params"]) == 8_911_235 and float(row["vs_baseline_params"]) == 1.0
    assert float(row["latency_b2_p25_ms"]) <= float(row["latency_b2_median_ms"]) <= float(row["latency_b2_p75_ms"])
    assert row["peak_mem_mb"] == row["train_step_ms"] == ""
    assert row["timer"] == "time.perf_counter" and int(row["torch_threads"]) == 1 and row["size"] == "32"
    assert [p.name for p in out.parent.iterdir()] == ["result.csv"]
