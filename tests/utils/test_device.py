"""The device decided in one place (``raagr2_monai.utils.device``): what each setting resolves to, what is refused
in one line, and that every path that names a device goes through it (configs, segment, benchmark, study); the
precision (``amp_dtype``: bfloat16 on GPUs of compute capability 8.0 and later), and what a GPU training sets up for
throughput (cuDNN and TF32, channels-last, no loss scaling for bfloat16), each a no-op on the CPU.

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
    GradScalerHandler,
    amp_dtype,
    amp_kwargs,
    autocast,
    check_precision,
    configure_backends,
    ddp_device_ids,
    distributed_backend,
    is_cuda,
    model_device,
    needs_grad_scaler,
    prepare_network,
    resolve_device,
    use_amp,
    uses_channels_last,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine that says it has two CUDA devices (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def ampere(two_gpus, monkeypatch):
    """Two GPUs of compute capability 8.0 (bfloat16 tensor cores)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))


@pytest.fixture
def turing(two_gpus, monkeypatch):
    """Two GPUs of compute capability 7.5 (float16 tensor cores only)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))


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


def test_precision_follows_the_device(turing):
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


def test_amp_dtype_is_bfloat16_from_compute_capability_8_and_float16_before(ampere, monkeypatch):
    assert amp_dtype("cuda") == torch.bfloat16 and amp_dtype("cuda:1", "auto") == torch.bfloat16
    assert amp_kwargs("cuda") == {"dtype": torch.bfloat16}
    assert amp_kwargs() == {"dtype": torch.bfloat16}  # no arguments: the automatic device, as the configs had it
    assert amp_dtype("cuda", "fp16") == torch.float16 and amp_dtype("cuda", "FP32") == torch.float32
    assert not needs_grad_scaler("cuda", True, "auto") and needs_grad_scaler("cuda", True, "fp16")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert amp_dtype("cuda") == torch.float16 and amp_dtype("cuda", "bf16") == torch.bfloat16
    assert needs_grad_scaler("cuda", True, "auto") and not needs_grad_scaler("cuda", False, "auto")


def test_the_cpu_keeps_float32_whatever_the_precision():
    for precision in ("auto", "bf16", "fp16", "fp32", None):
        assert not use_amp("cpu", True, precision) and not needs_grad_scaler("cpu", True, precision)
        assert isinstance(autocast("cpu", True, precision), contextlib.nullcontext)
    assert amp_dtype("cpu") == torch.float16  # what the engines would autocast to, were they on a GPU before Ampere
    assert amp_kwargs("cpu") == {"dtype": torch.float16}


def test_fp32_means_no_autocast(ampere):
    assert not use_amp("cuda", True, "fp32")
    assert isinstance(autocast("cuda", True, "fp32"), contextlib.nullcontext)
    assert amp_kwargs("cuda", "fp32") == {"dtype": torch.float32, "enabled": False}


@pytest.mark.parametrize("setting", ["fp8", "half", "", 16, True])
def test_a_precision_setting_is_refused_in_one_line(setting):
    message = "precision must be one of 'auto', 'bf16', 'fp16', 'fp32'; got "
    for call in (check_precision, lambda p: amp_dtype("cpu", p), lambda p: amp_kwargs("cpu", p),
                 lambda p: autocast("cpu", True, p), lambda p: use_amp("cpu", True, p)):
        with pytest.raises(ValueError, match=message) as err:
            call(setting)
        assert "\n" not in str(err.value)
    assert check_precision(" Auto ") == "auto" and check_precision(None) == "auto"


def test_raagr2_segment_refuses_a_bad_precision_before_building_anything(tmp_path):
    from raagr2_monai.deploy import SegmentSettings, segment_command

    with pytest.raises(ValueError, match="precision must be one of"):
        segment_command(tmp_path / "no-bundle", tmp_path / "out", dataset_dir=str(tmp_path),
                        settings=SegmentSettings(precision="fp64"))


def test_configure_backends_is_a_no_op_on_the_cpu(backend_flags):
    torch.backends.cudnn.benchmark = False
    assert configure_backends("cpu") == {} and configure_backends("cpu", deterministic=False) == {}
    assert torch.backends.cudnn.benchmark is False


def test_configure_backends_autotunes_unless_determinism_was_asked_for(two_gpus, backend_flags):
    torch.backends.cudnn.deterministic = False
    assert configure_backends("cuda") == {"cudnn_benchmark": True, "cudnn_deterministic": False, "tf32": True}
    assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    # what MONAI's set_determinism(seed=...) sets is kept ...
    from monai.utils import set_determinism

    set_determinism(seed=0)
    assert configure_backends("cuda") == {"cudnn_benchmark": False, "cudnn_deterministic": True, "tf32": True}
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    # ... unless the run says otherwise
    assert configure_backends("cuda", deterministic=False, tf32=False)["cudnn_benchmark"]
    assert not torch.backends.cudnn.deterministic and torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert configure_backends("cuda", deterministic=True)["cudnn_deterministic"]
    set_determinism(seed=None)


def test_channels_last_on_both_devices_and_prepare_network(two_gpus):
    assert uses_channels_last("cuda") and uses_channels_last("cpu")  # measured faster on the CPU too
    assert is_cuda("cuda:1") and not is_cuda("cpu")
    from raagr2_monai.networks import get_network

    torch.manual_seed(0)
    net = get_network("paired").eval()
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        expected = net(x)
    shared = {name: p for name, p in net.named_parameters()}
    assert prepare_network(net, "cpu", channels_last=False) is net  # the former layout, on request
    assert all(p.is_contiguous() for p in net.parameters())
    assert prepare_network(net, "cpu") is net
    four_d = [p for p in net.parameters() if p.dim() == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    assert {name: p for name, p in net.named_parameters()}.keys() == shared.keys()
    assert len(list(net.parameters())) == len(shared)  # shared kernels are still one tensor each
    with torch.no_grad():
        out = net(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    net.load_state_dict(get_network("paired").state_dict())  # a contiguous checkpoint loads into it
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.dim() == 4)


class _Trainer:
    """What GradScalerHandler sees of a MONAI trainer: the scaler Trainer.run() made, and its events."""

    def __init__(self):
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)  # stands in for MONAI's enabled one
        self.scaler.made_by_monai = True
        self.handlers = {}

    def add_event_handler(self, event, handler):
        self.handlers[event] = handler


@pytest.mark.parametrize("precision, kept", [("auto", False), ("bf16", False), ("fp16", True), ("fp32", False)])
def test_grad_scaler_handler_drops_loss_scaling_where_the_dtype_needs_none(ampere, precision, kept):
    from ignite.engine import Events

    trainer = _Trainer()
    GradScalerHandler("cuda", True, precision).attach(trainer)
    trainer.handlers[Events.STARTED](trainer)
    assert getattr(trainer.scaler, "made_by_monai", False) is kept
    assert not trainer.scaler.is_enabled()
    trainer = _Trainer()
    trainer.scaler = None  # MONAI without amp (the CPU): nothing to replace
    GradScalerHandler("cpu", True, precision).attach(trainer)
    trainer.handlers[Events.STARTED](trainer)
    assert trainer.scaler is None


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
            assert config["device"]["_target_"] == "raagr2_monai.utils.resolve_device", path
        if path.name in ("train.json", "inference.json"):
            assert config["use_amp"] == {"_target_": "raagr2_monai.utils.use_amp", "device": "@device", "amp": "@amp",
                                         "precision": "@amp_precision"}, path
            checks = config.get("checks", config.get("initialize"))
            assert checks[0] == {"_target_": "raagr2_monai.bundle.checked", "check": "raagr2_monai.utils.resolve_device",
                                 "device": "@device"}, path


def test_package_decides_the_device_in_one_module():
    """``torch.cuda.is_available`` is asked in raagr2_monai/utils/device.py alone."""
    askers = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "raagr2_monai").rglob("*.py")
        if "cuda.is_available(" in path.read_text()
    ]
    assert askers == ["raagr2_monai/utils/device.py"]
