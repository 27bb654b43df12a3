"""``BenchmarkSettings``: what ``raagr2 benchmark`` passes whole, the same options and defaults as the command line,
every value read and checked at once, a bad one refused in one line."""

import inspect
from dataclasses import fields

import fire
import pytest

import raagr2_monai.benchmark as benchmark
from raagr2_monai.benchmark import BenchmarkSettings
from raagr2_monai.cli import COMMANDS

#: the options of ``raagr2 benchmark`` that are not measurement settings
NOT_SETTINGS = ("variants", "bundles", "format", "output")


@pytest.fixture
def passed(monkeypatch):
    """Run ``raagr2 benchmark`` with a stand-in ``benchmark_command``; returns the arguments the command got."""
    calls = []

    def command(variants, bundles, settings, format, output):
        calls.append({"variants": variants, "bundles": bundles, "settings": settings, "format": format,
                      "output": output})
        return "ran"

    monkeypatch.setattr(benchmark, "benchmark_command", command)

    def run(*args: str) -> dict:
        assert fire.Fire(COMMANDS, command=["benchmark", *args]) == "ran"
        return calls[-1]

    return run


def test_the_command_lines_defaults_are_the_settings_defaults(passed):
    call = passed()
    assert call["settings"] == BenchmarkSettings()
    assert (call["variants"], call["bundles"], call["format"], call["output"]) == (None, None, "table", None)


def test_every_option_reaches_its_setting(passed):
    options = inspect.signature(COMMANDS["benchmark"]).parameters
    assert len(options) - len(NOT_SETTINGS) == len(fields(BenchmarkSettings)), "an option or a setting left out"
    call = passed("--variants", "depthwise", "--size", "64", "--batch", "2,4", "--repeats", "3", "--warmup", "1",
                  "--device", "cpu", "--nomemory", "--notrain", "--backends", "onnxruntime", "--threads", "2",
                  "--throughput", "--train_batch", "8", "--precision", "bf16", "--channels_last", "--compile", "eager",
                  "--peak_tflops", "100", "--format", "csv", "--output", "out.csv")
    assert call["settings"] == BenchmarkSettings(
        size=64, batches=(2, 4), repeats=3, warmup=1, device="cpu", measure_memory=False, train_step=False,
        backends="onnxruntime", threads=2, throughput=True, train_batches=8, precision="bf16", channels_last=True,
        compile="eager", peak_tflops=100,
    )
    default = BenchmarkSettings()
    assert [f.name for f in fields(default) if getattr(call["settings"], f.name) == getattr(default, f.name)] == []
    assert (call["variants"], call["format"], call["output"]) == ("depthwise", "csv", "out.csv")


def test_check_reads_the_values_as_the_keyword_path_did():
    assert BenchmarkSettings().check() == BenchmarkSettings(batches=(1, 8), backends=())
    checked = BenchmarkSettings(size=32, batches="8,1,8", backends="openvino,torch", throughput=True,
                                train_batches=[16, 4], precision="BF16", channels_last="auto", compile="true").check()
    assert checked == BenchmarkSettings(size=32, batches=(8, 1), backends=("torch", "openvino"), throughput=True,
                                        train_batches=(16, 4), precision="bf16", channels_last=None,
                                        compile="inductor")
    # the throughput's settings are read only where the throughput is measured
    assert BenchmarkSettings(precision="fp64", compile="turbo").check().precision == "fp64"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"size": 40}, "size must be a multiple of 16 (four 2x2 poolings); got 40."),
        ({"batches": "1,0"}, "every batch size must be an integer >= 1; got 0."),
        ({"repeats": 0}, "repeats must be an integer >= 1; got 0."),
        ({"warmup": -1}, "warmup must be an integer >= 0; got -1."),
        ({"backends": "torch,tensorrt"}, "Unknown backend 'tensorrt'; valid backends: torch, onnxruntime, openvino."),
        ({"backends": "torch", "threads": 0}, "threads must be a positive integer; got 0."),
        ({"device": "tpu"}, "device must be 'cpu', 'cuda', 'cuda:<index>' or 'auto'; got 'tpu'."),
        ({"throughput": True, "precision": "fp64"},
         "precision must be one of 'auto', 'bf16', 'fp16', 'fp32'; got 'fp64'."),
        ({"throughput": True, "train_batches": "16,0"}, "every batch size must be an integer >= 1; got 0."),
        ({"throughput": True, "peak_tflops": -1}, "peak_tflops must be a positive number; got -1."),
    ],
)
def test_check_refuses_a_bad_value_in_one_line(changes, message):
    with pytest.raises(ValueError) as refused:
        BenchmarkSettings(**changes).check()
    assert str(refused.value) == message
