"""``raagr2 benchmark``: variants and bundle folders measured in one run, pruned bundles' sparse files, clear errors
on bad input, and the command line writing CSV."""

import csv
from dataclasses import replace

import fire
import pytest

from raagr2_monai.benchmark import (
    META_KEY,
    BenchmarkSettings,
    backend_latencies,
    benchmark_command,
    benchmark_models,
    check_backends,
    check_settings,
    render,
    run_benchmark,
    runnable_backends,
)
from raagr2_monai.bundle import bundle_name
from raagr2_monai.cli import COMMANDS
from raagr2_monai.deploy import cpu_bf16, cpu_name
from raagr2_monai.networks import get_network
from raagr2_monai.pruning import prune, to_sparse_state_dict

from .conftest import make_bundle

#: one timed run of each figure at 32x32, without memory and training step
QUICK = BenchmarkSettings(size=32, batches=1, repeats=1, warmup=0, measure_memory=False, train_step=False)


def test_bundle_folder_with_weights(tmp_path):
    tiny = make_bundle(tmp_path / "tiny", state=get_network("depthwise").state_dict())
    result = run_benchmark(bundles=str(tiny), settings=QUICK)
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
    result = run_benchmark(variants="baseline", bundles=f"{parent},{child}", settings=QUICK)
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


@pytest.mark.slow
def test_backends_are_timed_against_the_baseline_torch_eager_of_the_same_run():
    result = run_benchmark("depthwise", settings=replace(QUICK, backends="onnxruntime", threads=1))
    assert result[META_KEY]["backends"]["backends"] == ["torch", "onnxruntime"]
    for name in ("baseline", "depthwise"):
        figures = result[name]["backends"]
        assert set(figures["latency_ms"]) == {"torch", "onnxruntime"}
        for backend, per_batch in figures["latency_ms"].items():
            spread = per_batch["1"]
            assert spread["p25"] <= spread["median"] <= spread["p75"]
            reference = result["baseline"]["backends"]["latency_ms"]["torch"]["1"]["median"]
            assert figures["speedup_vs_baseline_torch"][backend]["1"] == pytest.approx(reference / spread["median"])
    assert result["baseline"]["backends"]["speedup_vs_baseline_torch"]["torch"]["1"] == 1.0
    table = render(result, "table")
    assert "onnxruntime b1 ms (speed-up)" in table
    header = render(result, "csv").splitlines()[0].split(",")
    assert {"onnxruntime_b1_median_ms", "onnxruntime_b1_speedup_vs_baseline_torch"} <= set(header)


def test_backends_at_a_precision_are_named_and_ordered():
    assert check_backends(["openvino-bf16", "openvino", "onnxruntime", "openvino"]) == (
        "torch", "onnxruntime", "openvino", "openvino-bf16")
    for name in ("torch-bf16", "openvino-fp16", "openvino-int8"):
        with pytest.raises(ValueError, match=f"Unknown benchmark backend '{name}'"):
            check_backends([name])


def test_bf16_is_left_out_on_a_cpu_without_a_bfloat16_unit(monkeypatch):
    import raagr2_monai.deploy.backends as deploy_backends

    monkeypatch.setattr(deploy_backends, "cpu_bf16", lambda: False)
    chosen, skipped = runnable_backends(["openvino", "openvino-bf16"])
    assert chosen == ("torch", "openvino")
    assert list(skipped) == ["openvino-bf16"] and "bfloat16 unit" in skipped["openvino-bf16"]
    with pytest.raises(ValueError, match="bfloat16 unit"):  # asked for directly, it is refused
        backend_latencies({"baseline": get_network("baseline")},
                          BenchmarkSettings(size=32, batches=(1,), repeats=1, warmup=0, backends=["openvino-bf16"]))
    monkeypatch.setattr(deploy_backends, "cpu_bf16", lambda: True)
    assert runnable_backends(["openvino-bf16"]) == (("torch", "openvino-bf16"), {})


@pytest.mark.slow
@pytest.mark.skipif(not cpu_bf16(), reason="this CPU has no bfloat16 unit")
def test_openvino_bf16_is_timed_and_the_cpu_recorded():
    result = run_benchmark("depthwise", settings=replace(QUICK, backends="openvino-bf16,openvino", threads=1))
    meta = result[META_KEY]["backends"]
    assert meta["backends"] == ["torch", "openvino", "openvino-bf16"]
    assert meta["cpu"] == cpu_name() and meta["cpu_bf16"] is True and meta["skipped"] == {}
    assert set(result["depthwise"]["backends"]["latency_ms"]) == {"torch", "openvino", "openvino-bf16"}


def test_unknown_backend_and_bad_threads_are_refused_before_measuring():
    with pytest.raises(ValueError, match="tensorrt"):
        run_benchmark("depthwise", settings=replace(QUICK, backends="tensorrt"))
    with pytest.raises(ValueError, match="threads"):
        run_benchmark("depthwise", settings=replace(QUICK, backends="torch", threads=0))


def test_progress_bar_counts_the_models_measured_on_a_terminal_only(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    result = run_benchmark("depthwise", settings=QUICK)
    # the baseline added as the reference is measured too: two models
    assert "benchmark:" in terminal.getvalue() and "/2 [" in terminal.getvalue() and "/3" not in terminal.getvalue()
    assert [name for name in result if name != META_KEY] == ["baseline", "depthwise"]
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    run_benchmark("depthwise", settings=QUICK)
    assert log.getvalue() == ""
