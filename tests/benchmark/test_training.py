"""Training throughput (``raagr2_monai.benchmark.training``, ``raagr2 benchmark --throughput``) on the CPU at a tiny
size: every figure there and positive, settings refused in one line before anything is measured, a channels-last
network computing what the contiguous one computes, and the GPU peak table."""

import csv
import io

import pytest
import torch

from raagr2_monai.benchmark import META_KEY, BenchmarkSettings, render, run_benchmark
from raagr2_monai.benchmark.training import (
    check_channels_last,
    check_compile,
    peak_tflops_of,
    render_throughput,
    throughput_grid,
    training_throughput,
)
from raagr2_monai.losses import RAAGR2Loss
from raagr2_monai.networks import count_flops, get_network
from raagr2_monai.utils import prepare_network

TINY = {"batch": 2, "size": 32, "device": "cpu", "repeats": 2, "warmup": 1}


@pytest.fixture(scope="module")
def depthwise():
    torch.manual_seed(0)
    return get_network("depthwise")


def test_figures_are_there_and_positive(depthwise):
    before = {k: v.clone() for k, v in depthwise.state_dict().items()}
    row = training_throughput(depthwise, **TINY)
    assert row["dtype"] == "float32" and row["precision"] == "auto"  # the CPU trains in float32 whatever is asked
    assert row["channels_last"] is True and row["compile"] is False and row["backends"] == {}  # uses_channels_last
    assert 0 < row["step_ms"]["p25"] <= row["step_ms"]["median"] <= row["step_ms"]["p75"]
    assert row["step_ms"]["mean"] > 0 and row["slices_per_s"] == pytest.approx(2 / (row["step_ms"]["mean"] / 1e3))
    assert row["train_flops"] == 3 * 2 * count_flops(get_network("depthwise"), (1, 4, 32, 32))
    assert row["achieved_tflops"] == pytest.approx(row["train_flops"] / (row["step_ms"]["mean"] / 1e3) / 1e12)
    assert row["peak_tflops"] is None and row["peak_fraction"] is None  # no peak known for a CPU
    assert row["peak_mem_mb"] > 0 and "VmHWM" in row["peak_mem_kind"]
    assert 0 < row["loss"] < 2
    assert all(torch.equal(v, depthwise.state_dict()[k]) for k, v in before.items())  # trained a copy


def test_a_given_peak_gives_the_share_of_it(depthwise):
    row = training_throughput(depthwise, peak_tflops=0.5, measure_memory=False, precision="bf16", **TINY)
    assert row["peak_tflops"] == 0.5 and row["peak_source"] == "given"
    assert row["peak_fraction"] == pytest.approx(row["achieved_tflops"] / 0.5)
    assert row["peak_mem_mb"] is None and row["dtype"] == "float32"


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"precision": "fp8"}, "precision must be one of 'auto', 'bf16', 'fp16', 'fp32'; got 'fp8'"),
        ({"precision": "half"}, "precision must be one of"),
        ({"batch": 0}, "batch must be an integer >= 1; got 0"),
        ({"size": 40}, "size must be a multiple of 16"),
        ({"repeats": 0}, "repeats must be an integer >= 1"),
        ({"compile": "nope"}, "compile must be true, false or a torch.compile backend"),
        ({"device": "gpu"}, "device must be 'cpu', 'cuda'"),
    ],
)
def test_bad_settings_are_refused_in_one_line(depthwise, setting, message):
    with pytest.raises(ValueError, match=message) as err:
        training_throughput(depthwise, **{**TINY, **setting})
    assert "\n" not in str(err.value)


def _without_dropout(net):
    # a dropout mask is drawn in memory order, so the two layouts drop other elements even from one seed
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return net


def test_channels_last_computes_what_the_contiguous_network_computes():
    """Training mode (BatchNorm on batch statistics), forward and gradients, in float64: the same function to
    rounding. (In float32 the two layouts sum in another order, and BatchNorm over the few values of the 2x2 bottom
    level of a 32x32 input amplifies that to a few percent of some gradients.)"""
    torch.manual_seed(0)
    for variant in ("baseline", "paired"):
        net = _without_dropout(get_network(variant).train()).double()
        x = torch.randn(2, 4, 32, 32, dtype=torch.float64)
        y = (torch.rand(2, 3, 32, 32) > 0.5).double()
        last = _without_dropout(prepare_network(get_network(variant).train().double(), "cpu", channels_last=True))
        last.load_state_dict(net.state_dict())
        out, out_last = net(x), last(x)
        assert out_last.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out_last, out, rtol=1e-9, atol=1e-9)
        RAAGR2Loss()(out, y).backward()
        RAAGR2Loss()(out_last, y).backward()
        grads = dict(last.named_parameters())
        for name, p in net.named_parameters():
            scale = float(p.grad.abs().max())
            torch.testing.assert_close(grads[name].grad, p.grad, rtol=0, atol=1e-6 * scale + 1e-12, msg=name)


def test_grid_and_table(depthwise):
    rows = throughput_grid({"depthwise": depthwise}, (1, 2), 32, "cpu",
                           [{"label": "NCHW", "channels_last": False}, {"label": "NHWC", "channels_last": True}],
                           repeats=1, warmup=0, measure_memory=False)
    assert [(r["label"], r["batch"], r["channels_last"]) for r in rows] == [
        ("NCHW", 1, False), ("NCHW", 2, False), ("NHWC", 1, True), ("NHWC", 2, True)]
    assert len({r["train_flops"] for r in rows}) == 2  # by batch, not by layout
    table = render_throughput(rows).splitlines()
    assert table[0].split()[:3] == ["model", "setting", "batch"] and len(table) == 5
    assert table[3].split()[:5] == ["depthwise", "NHWC", "1", "float32", "yes"]


def test_compile_setting_and_a_compiled_step():
    assert check_compile(False) is False and check_compile("true") == "inductor" and check_compile("eager") == "eager"
    assert check_channels_last(None) is None and check_channels_last("AUTO") is None
    assert check_channels_last("false") is False
    with pytest.raises(ValueError, match="channels_last must be true or false"):
        check_channels_last("sometimes")
    net = get_network("depthwise")
    row = training_throughput(net, compile="eager", measure_memory=False, **TINY)  # dynamo traced, run eagerly
    assert row["compile"] == "eager" and row["slices_per_s"] > 0


def test_peak_table_knows_gpus_by_name():
    assert peak_tflops_of("NVIDIA H200", "bf16") == 989.4
    assert peak_tflops_of("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops_of("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops_of("NVIDIA H100 NVL", "tf32") == 417.5
    assert peak_tflops_of("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert peak_tflops_of("NVIDIA A10", "bf16") == 125.0
    assert peak_tflops_of("NVIDIA L40S", "fp16") == 362.05 and peak_tflops_of("NVIDIA L4", "bf16") == 121.0
    assert peak_tflops_of("NVIDIA GeForce RTX 4090", "bf16") == 165.2
    assert peak_tflops_of("Tesla V100-SXM2-16GB", "bf16") is None  # no bfloat16 tensor cores
    assert peak_tflops_of("NVIDIA A10G", "bf16") is None and peak_tflops_of("AMD EPYC", "fp32") is None


def test_benchmark_command_adds_throughput_to_every_row():
    settings = BenchmarkSettings(size=32, batches=1, repeats=1, warmup=0, measure_memory=False, train_step=False,
                                 throughput=True, train_batches="1,2", precision="bf16", channels_last="true")
    result = run_benchmark("depthwise", settings=settings)
    settings = result[META_KEY]["throughput"]
    assert settings["batches"] == [1, 2] and settings["precision"] == "bf16" and settings["channels_last"] is True
    for name in ("baseline", "depthwise"):
        figures = result[name]["throughput"]
        assert sorted(figures) == ["1", "2"] and figures["2"]["channels_last"] is True
        assert figures["2"]["train_flops"] == 2 * figures["1"]["train_flops"] > 0
        assert figures["2"]["peak_mem_mb"] is None  # measure_memory=False
    table = render(result, "table")
    assert "Training throughput (precision bf16, compile off; peak: unknown for this device" in table
    assert "b2 slices/s" in table
    rows = list(csv.DictReader(io.StringIO(render(result, "csv"))))
    assert float(rows[1]["throughput_b2_slices_per_s"]) > 0 and rows[1]["throughput_b1_channels_last"] == "True"


def test_benchmark_command_refuses_throughput_settings_before_measuring():
    for setting, message in (({"precision": "fp64"}, "precision must be one of"),
                             ({"train_batches": "16,0"}, "every batch size must be an integer >= 1"),
                             ({"channels_last": "maybe"}, "channels_last must be true or false"),
                             ({"compile": "turbo"}, "compile must be true, false or a torch.compile backend"),
                             ({"peak_tflops": -1}, "peak_tflops must be a positive number")):
        with pytest.raises(ValueError, match=message):
            run_benchmark("depthwise", settings=BenchmarkSettings(size=32, batches=1, throughput=True, **setting))
