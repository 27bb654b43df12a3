"""The ``raagr2`` command line: options checked before a command runs, user errors in one line, segment."""

import functools
import inspect
import re
import shutil
from pathlib import Path

import pytest

from raagr2_monai import cli

REPO = Path(__file__).resolve().parents[1]


def _run(capsys, *args: str):
    """``raagr2 ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        cli.main(list(args))
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def benchmark_must_not_run(monkeypatch):
    """Replace ``raagr2 benchmark`` by a function with its signature that fails the test when called."""

    @functools.wraps(cli.benchmark)  # inspect.signature follows __wrapped__: the check sees benchmark's options
    def never(*args, **kwargs):
        pytest.fail("the command ran although its command line was refused")

    monkeypatch.setitem(cli.COMMANDS, "benchmark", never)


@pytest.mark.parametrize(
    "args, message",
    [
        (["benchmark", "--variant", "depthwise"], "raagr2 benchmark has no option --variant; did you mean --variants?"),
        (["benchmark", "--variant=depthwise"], "raagr2 benchmark has no option --variant; did you mean --variants?"),
        (["benchmark", "--nomemroy"], "raagr2 benchmark has no option --nomemroy; did you mean --nomemory?"),
        (["benchmark", "--zzz"], "raagr2 benchmark has no option --zzz; its options: --variants, --bundles,"),
        (["benchmark", "--output"], "raagr2 benchmark: --output needs a value"),
        (
            ["benchmark", "a", "b", "192", "1", "10", "2", "table", "x", "cpu", "1", "1", "torch", "1", "1", "16",
             "bf16", "1", "0", "989", "extra"],
            "raagr2 benchmark takes at most 19 value(s)",
        ),
        (["benchmrk", "--size", "32"], "raagr2 has no command benchmrk; did you mean benchmark?"),
    ],
)
def test_bad_command_line_refused_before_the_command_runs(capsys, benchmark_must_not_run, args, message):
    status, out, err = _run(capsys, *args)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {message}")


def test_summary_option_suggestion(capsys):
    status, _, err = _run(capsys, "summary", "--out_channel", "3")
    assert (status, err) == (2, "error: raagr2 summary has no option --out_channel; did you mean --out_channels?\n")


def test_missing_required_value_refused(capsys):
    status, _, err = _run(capsys, "segment", "bundles/depthwise")
    assert (status, err) == (2, "error: raagr2 segment needs --output_dir.\n")


def _recording(monkeypatch, name):
    """Replace the command ``name`` by a function with its signature that records the arguments Fire passes; returns
    a function giving the arguments of the last call by parameter name."""
    calls = []
    command = getattr(cli, name)

    @functools.wraps(command)  # inspect.signature follows __wrapped__: the check sees the command's options
    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return "ran"

    monkeypatch.setitem(cli.COMMANDS, name, record)
    return lambda: inspect.signature(command).bind(*calls[-1][0], **calls[-1][1]).arguments


def test_fire_forms_still_dispatch(capsys, monkeypatch):
    last_call = _recording(monkeypatch, "benchmark")
    status, out, _ = _run(capsys, "benchmark", "--variants=depthwise", "--size", "32", "--nomemory", "--train")
    assert (status, out) == (0, "ran\n")
    kwargs = last_call()
    assert kwargs["variants"] == "depthwise" and kwargs["size"] == 32
    assert kwargs["memory"] is False and kwargs["train"] is True


def test_optional_boolean_options_are_switches(capsys, monkeypatch):
    # `segment --whole_slice` and `--noskip_empty`, as the README writes them (unset: the bundle's setting)
    last_call = _recording(monkeypatch, "segment")
    status, out, err = _run(capsys, "segment", "b", "--dataset_dir", "d", "--output_dir", "o", "--whole_slice",
                            "--noskip_empty")
    assert (status, out) == (0, "ran\n"), err
    kwargs = last_call()
    assert kwargs["whole_slice"] is True and kwargs["skip_empty"] is False
    status, _, err = _run(capsys, "segment", "b", "--dataset_dir", "d", "--output_dir", "o", "--nowhole_slices")
    assert (status, err) == (2, "error: raagr2 segment has no option --nowhole_slices; did you mean --nowhole_slice?\n")


@pytest.mark.parametrize("args", [["benchmark", "--help"], ["benchmark", "--size", "32", "-h"], ["--help"]])
def test_help_shows_help_without_running(capsys, benchmark_must_not_run, args):
    status, out, err = _run(capsys, *args)
    assert status == 0
    shown = out + err  # Fire writes its help to stdout or stderr, depending on its version and terminal
    assert "SYNOPSIS" in shown
    if args[0] == "benchmark":
        assert "--variants" in shown


def test_user_error_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("RAAGR2_VERBOSE", raising=False)
    missing = tmp_path / "nonexistent"
    status, out, err = _run(capsys, "datalist", "--data_dir", str(missing), "--output", str(tmp_path / "d.json"))
    assert status == 1 and out == ""
    assert err == f"error: BraTS folder {missing} does not exist or is not a folder.\n"
    assert "Traceback" not in err


def test_unknown_profile_names_the_closest(capsys, monkeypatch):
    monkeypatch.delenv("RAAGR2_VERBOSE", raising=False)
    status, _, err = _run(capsys, "study", "--profile", "quik")
    assert status == 1
    assert err == "error: Unknown profile 'quik' (did you mean quick?); valid profiles: quick, full, gpu, tiny.\n"


def test_verbose_flag_raises_the_error(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("RAAGR2_VERBOSE", raising=False)
    # --verbose anywhere is taken off the line before the check: Fire never sees it
    with pytest.raises(FileNotFoundError, match="does not exist or is not a folder"):
        cli.main(["datalist", "--verbose", "--data_dir", str(tmp_path / "no"), "--output", str(tmp_path / "d.json")])


def test_verbose_environment_raises_the_error(tmp_path, monkeypatch):
    # main() lets the error through, so Python prints its traceback
    monkeypatch.setenv("RAAGR2_VERBOSE", "1")
    with pytest.raises(FileNotFoundError, match="does not exist or is not a folder"):
        cli.main(["datalist", "--data_dir", str(tmp_path / "no"), "--output", str(tmp_path / "d.json")])


def test_bug_keeps_its_traceback(capsys, monkeypatch):
    @functools.wraps(cli.summary)
    def buggy(*args, **kwargs):
        return {}["missing"]  # a failed lookup: a bug, not the user's error

    monkeypatch.setitem(cli.COMMANDS, "summary", buggy)
    with pytest.raises(KeyError):
        cli.main(["summary"])


def test_segment_writes_label_maps_and_stage_times(capsys, tmp_path):
    import torch

    from raagr2_monai.data.synthetic import generate
    from raagr2_monai.networks import get_network
    from raagr2_monai.utils import atomic_save

    studies = tmp_path / "studies"
    (case,) = generate(str(studies), cases=1, seed=0, shape=(48, 48, 16))
    bundle = tmp_path / "depthwise"
    shutil.copytree(REPO / "bundles" / "depthwise", bundle)
    torch.manual_seed(0)
    atomic_save(get_network("depthwise", in_channels=4, out_channels=3).state_dict(), bundle / "models" / "model.pt")
    out = tmp_path / "out"

    status, stdout, err = _run(
        capsys, "segment", str(bundle), "--dataset_dir", str(studies), "--output_dir", str(out),
        "--device", "cpu", "--roi_size", "32", "--repeat", "2",
    )
    assert status == 0, err
    written = out / f"{case}_pred.nii.gz"
    assert written.is_file()
    study_line = next(line for line in stdout.splitlines() if line.startswith(f"{case}:"))
    assert str(written) in study_line and "(median of 2 runs)" in study_line
    times = dict(re.findall(r"(\w+) (\d+\.\d{3}) s", study_line))
    assert list(times) == ["load", "preprocess", "network", "invert", "postprocess", "write", "total"]
    assert f"segmented 1 study with {bundle} into {out}; median" in stdout
    assert "s per study; network in fp32 (torch on cpu)" in stdout


def test_segment_without_weights_names_the_fix(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("RAAGR2_VERBOSE", raising=False)
    bundle = tmp_path / "depthwise"
    shutil.copytree(REPO / "bundles" / "depthwise", bundle)
    from raagr2_monai.data.synthetic import generate

    generate(str(tmp_path / "studies"), cases=1, seed=0, shape=(48, 48, 16))
    status, _, err = _run(
        capsys, "segment", str(bundle), "--dataset_dir", str(tmp_path / "studies"), "--output_dir", str(tmp_path / "o"),
        "--device", "cpu",
    )
    assert status == 1 and err.count("\n") == 1
    train = bundle / "configs" / "train.json"
    assert err == (
        f"error: Checkpoint {bundle / 'models' / 'model.pt'} does not exist: train the bundle first "
        f"(python -m monai.bundle run training --config_file {train}), or set ckpt_path to a trained checkpoint.\n"
    )


def test_missing_weights_messages(tmp_path):
    from raagr2_monai.networks import check_weights, missing_weights

    bundle = tmp_path / "baseline"
    shutil.copytree(REPO / "bundles" / "baseline", bundle)
    configs = bundle / "configs"
    pruned = bundle / "pruned" / "depgraph-20" / "models" / "model.pt"
    assert str(missing_weights(pruned, None)) == (
        f"Checkpoint {pruned} does not exist: prune the bundle first (python -m monai.bundle run pruning "
        f"--config_file \"['{configs / 'train.json'}','{configs / 'prune.json'}']\" --method depgraph --ratio 0.2)."
    )
    elsewhere = tmp_path / "weights.pt"
    assert str(missing_weights(elsewhere, "source_ckpt")) == (
        f"Checkpoint {elsewhere} does not exist: set source_ckpt to a trained checkpoint."
    )
    with pytest.raises(FileNotFoundError, match=r"train the bundle first .*, or set source_ckpt to"):
        check_weights(bundle / "models" / "model.pt", "source_ckpt")
    elsewhere.write_bytes(b"")
    assert check_weights(elsewhere) == str(elsewhere)


@pytest.mark.parametrize(
    "args",
    [
        ["study", "--profile", "tiny", "--device", "cuda"],
        ["segment", "bundles/depthwise", "--dataset_dir", ".", "--output_dir", "o", "--device", "cuda"],
        ["benchmark", "--variants", "baseline", "--device", "cuda"],
    ],
)
def test_a_gpu_this_machine_lacks_is_refused_before_any_work(capsys, monkeypatch, args):
    """Every command resolves its device through raagr2_monai.utils.resolve_device: one line, nothing started."""
    monkeypatch.delenv("RAAGR2_VERBOSE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    status, out, err = _run(capsys, *args)
    assert status == 1 and out == ""
    assert err == "error: device 'cuda': CUDA is not available on this machine; use 'cpu'.\n"


def test_study_estimate_only_prints_the_estimate_and_runs_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RAAGR2_SYNTHETIC_DIR", str(tmp_path / "synthetic"))
    out_dir = tmp_path / "study"
    status, out, err = _run(capsys, "study", "--profile", "tiny", "--estimate_only", "--output", str(out_dir))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[-1] == "estimate only: nothing was run"
    for line, start in zip(lines, ("unit costs on cpu, ", "schedule: ", "time: ", "memory: ", "steps at once: ")):
        assert line.startswith(f"[estimate] {start}"), line
    assert not out_dir.exists() and not (tmp_path / "synthetic").exists()
