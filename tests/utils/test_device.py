"""The device decided in one place (``raagr2_monai.utils.device``): what each setting resolves to, what is refused
in one line, and that every path that names a device goes through it (configs, segment, benchmark, study).

CUDA's presence is faked where a rule depends on it (``torch.cuda.is_available``, ``device_count``), so the rules
for GPU machines are checked here too; the GPU itself is exercised by the ``cuda`` tests (``tests/cuda``).
"""

import contextlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from raagr2_monai.utils import (
    amp_kwargs,
    autocast,
    ddp_device_ids,
    distributed_backend,
    model_device,
    resolve_device,
    use_amp,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine that says it has two CUDA devices (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_automatic_device_is_cuda_when_available_else_cpu(two_gpus, monkeypatch):
    assert resolve_device() == torch.device("cuda")
    assert resolve_device("auto", index=1) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("AUTO", index=1) == torch.device("cpu")


def test_explicit_devices(two_gpus):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), index=1) == torch.device("cpu")
    assert resolve_device(" cuda ") == torch.device("cuda")
    assert resolve_device("cuda", index=1) == torch.device("cuda", 1)
    # an explicit index wins over the process's local rank
    assert resolve_device("cuda:0", index=1) == torch.device("cuda", 0)


@pytest.mark.parametrize(
    "setting, message",
    [
        ("cuda", "CUDA is not available on this machine; use 'cpu'"),
        ("cuda:1", "CUDA is not available"),
        ("gpu", "device must be 'cpu', 'cuda', 'cuda:<index>' or 'auto'; got 'gpu'"),
        ("meta", "only 'cpu' and 'cuda' are supported"),
        (3.5, "device must be"),
    ],
)
def test_devices_this_machine_lacks_are_refused_in_one_line(no_gpu, setting, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        resolve_device(setting)
    assert "\n" not in str(err.value)


def test_a_gpu_index_the_machine_lacks_is_refused(two_gpus):
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        resolve_device(None, index=5)


def test_precision_follows_the_device(two_gpus):
    assert use_amp("cuda", True) and not use_amp("cuda", False)
    assert not use_amp("cpu", True)
    assert amp_kwargs() == {"dtype": torch.float16}
    assert distributed_backend("cuda:1") == "nccl" and distributed_backend("cpu") == "gloo"
    assert ddp_device_ids("cuda:1") == [torch.device("cuda", 1)] and ddp_device_ids("cpu") is None


def test_a_torchrun_process_takes_the_gpu_of_its_local_rank(two_gpus, monkeypatch):
    """``--device cuda`` replaces the multi-GPU config's device expression: the process must still use the GPU of its
    LOCAL_RANK (made current by start_distributed), not GPU 0."""
    import torch.distributed as dist

    from raagr2_monai.bundle import start_distributed

    made_current = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    start_distributed("cuda", 1)
    start_distributed("cuda:0", 1)
    start_distributed("cpu", 1)
    assert made_current == [torch.device("cuda", 1), torch.device("cuda", 0)]
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert ddp_device_ids("cuda") == [torch.device("cuda", 1)]


def test_autocast_is_full_precision_on_the_cpu():
    assert isinstance(autocast("cpu", True), contextlib.nullcontext)
    with autocast("cpu", True):
        assert not torch.is_autocast_enabled("cpu")


def test_model_device_reads_parameters_then_buffers():
    assert model_device(nn.Linear(2, 2).to("meta")) == torch.device("meta")
    assert model_device(nn.BatchNorm2d(2, affine=False).to("meta")) == torch.device("meta")
    assert model_device(nn.ReLU()) == torch.device("cpu")


def test_bundles_resolve_and_check_the_device_through_one_function():
    """Every config's device goes through resolve_device and is checked first; no config decides it itself."""
    for path in sorted((REPO / "bundles").glob("*/configs/*.json")):
        text = path.read_text()
        assert "torch.cuda.is_available" not in text, path
        assert "'nccl'" not in text, path
        config = json.loads(text)
        if "device" in config:
            assert "raagr2_monai.utils.resolve_device(" in config["device"], path
        if path.name in ("train.json", "inference.json"):
            assert config["use_amp"] == "$raagr2_monai.utils.use_amp(@device, @amp)", path
            checks = config.get("checks", config.get("initialize"))
            assert checks[0] == "$raagr2_monai.bundle.checked(raagr2_monai.utils.resolve_device, @device)", path


def test_package_decides_the_device_in_one_module():
    """``torch.cuda.is_available`` is asked in raagr2_monai/utils/device.py alone."""
    askers = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "raagr2_monai").rglob("*.py")
        if "cuda.is_available(" in path.read_text()
    ]
    assert askers == ["raagr2_monai/utils/device.py"]
