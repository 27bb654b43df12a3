"""What a training on a GPU sets up for throughput, on the test device: the AMP dtype (bfloat16 from compute
capability 8.0), cuDNN autotuning, channels-last networks, the training benchmark's step, and a MONAI trainer with
the bundles' GPU settings (``decollate=False``, a non-blocking copy of pinned batches, fused Adam, no loss scaling for
bfloat16, the loss logged every n-th iteration, the history and the progress bar reading it without waiting) whose
iterations never wait for the host: ``torch.cuda.set_sync_debug_mode("error")`` turns any wait into an error.

With ``RAAGR2_TEST_DEVICE=cpu`` the same tests run on the CPU, where every one of these settings is a no-op."""

import copy
import io
import math

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler
from monai.utils import set_determinism

from raagr2_monai.benchmark.training import _training_step, peak_tflops_of, training_throughput
from raagr2_monai.handlers import EpochHistory, TrainingProgressBar
from raagr2_monai.handlers.history import log_every, output_loss
from raagr2_monai.losses import RAAGR2Loss
from raagr2_monai.networks import get_network
from raagr2_monai.utils import (
    GradScalerHandler,
    amp_dtype,
    amp_kwargs,
    autocast,
    configure_backends,
    is_cuda,
    needs_grad_scaler,
    prepare_network,
    resolve_device,
    use_amp,
    uses_channels_last,
)

from .test_tensors import no_host_sync


def test_amp_dtype_is_bfloat16_from_compute_capability_8(device):
    dev = resolve_device(device)
    if not is_cuda(dev):
        assert not use_amp(dev) and not needs_grad_scaler(dev)
        return
    expected = torch.bfloat16 if torch.cuda.get_device_capability(dev) >= (8, 0) else torch.float16
    assert amp_dtype(dev) == expected and amp_kwargs(dev) == {"dtype": expected}
    assert needs_grad_scaler(dev) is (expected == torch.float16) and needs_grad_scaler(dev, True, "fp16")
    x, w = torch.randn(1, 4, 8, 8, device=dev), torch.randn(8, 4, 3, 3, device=dev)
    with autocast(dev):
        assert torch.nn.functional.conv2d(x, w).dtype == expected
    with autocast(dev, True, "fp16"):
        assert torch.nn.functional.conv2d(x, w).dtype == torch.float16
    with autocast(dev, True, "fp32"):
        assert torch.nn.functional.conv2d(x, w).dtype == torch.float32


def test_configure_backends_sets_cudnn_benchmark(device, backend_flags):
    set_determinism(seed=0)  # what every bundle training calls first: cudnn.deterministic
    try:
        kept = configure_backends(device)
        tuned = configure_backends(device, deterministic=False)
    finally:
        set_determinism(seed=None)
    if not is_cuda(device):
        assert kept == tuned == {}
        return
    assert kept == {"cudnn_benchmark": False, "cudnn_deterministic": True, "tf32": True}
    assert tuned == {"cudnn_benchmark": True, "cudnn_deterministic": False, "tf32": True}
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    else:
        assert torch.backends.cuda.matmul.allow_tf32


def test_prepare_network_makes_it_channels_last(device):
    dev = resolve_device(device)
    torch.manual_seed(0)
    net = get_network("paired").eval()
    reference = copy.deepcopy(net).to(dev)
    assert prepare_network(net, dev) is net and uses_channels_last(dev)
    x = torch.randn(2, 4, 64, 64, device=dev)
    with torch.no_grad():
        out, expected = net(x), reference(x)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.dim() == 4)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # probabilities (the sigmoid of the logits), from other kernels (TF32 for float32 convolutions is cuDNN's
    # default); the exact equality of the two layouts is checked in float64 on the CPU (tests/benchmark/test_training.py)
    difference = (torch.sigmoid(out) - torch.sigmoid(expected)).abs()
    assert float(difference.mean()) < 2e-3 and float(difference.max()) < 5e-2
    with torch.no_grad(), autocast(dev):
        difference = (torch.sigmoid(net(x).float()) - torch.sigmoid(reference(x).float())).abs()
    assert float(difference.mean()) < 1e-2


def test_the_training_benchmark_steps_on_the_device(device, backend_flags):
    dev = resolve_device(device)
    row = training_throughput(get_network("depthwise"), batch=4, size=64, device=dev, repeats=3, warmup=2)
    assert row["slices_per_s"] > 0 and row["achieved_tflops"] > 0 and math.isfinite(row["loss"])
    assert row["peak_mem_mb"] > 0 and row["train_flops"] > 0
    if is_cuda(dev):
        assert row["dtype"] == str(amp_dtype(dev)).replace("torch.", "") and row["channels_last"]
        assert row["peak_mem_kind"] == "torch.cuda.max_memory_allocated"
        assert row["backends"]["cudnn_benchmark"]
        if peak_tflops_of(torch.cuda.get_device_name(dev), "bf16") is not None and row["dtype"] == "bfloat16":
            assert 0 < row["peak_fraction"] < 1


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_the_benchmark_step_never_waits_for_the_host(device, precision):
    dev = resolve_device(device)
    torch.manual_seed(0)
    net = prepare_network(get_network("depthwise").train(), dev)
    x = torch.randn(4, 4, 32, 32, device=dev)
    y = (torch.rand(4, 3, 32, 32, device=dev) > 0.5).float()
    step = _training_step(net, x, y, dev, precision, False)
    step()  # the loss checks its input's range once, on its first call
    with no_host_sync(device):
        losses = [step() for _ in range(3)]
    assert all(math.isfinite(float(loss)) for loss in losses)


def test_a_monai_trainer_with_the_gpu_settings_never_waits_for_the_host(device, tmp_path):
    dev = resolve_device(device)
    cuda = is_cuda(dev)
    torch.manual_seed(0)
    batches = [{"image": torch.randn(4, 4, 32, 32), "label": (torch.rand(4, 3, 32, 32) > 0.5).float()}
               for _ in range(3)]
    if cuda:
        batches = [{k: v.pin_memory() for k, v in batch.items()} for batch in batches]  # DataLoader(pin_memory=True)
    net = prepare_network(get_network("depthwise"), dev)
    trainer = SupervisedTrainer(
        device=dev, max_epochs=2, train_data_loader=batches, network=net, loss_function=RAAGR2Loss(),
        optimizer=torch.optim.Adam(net.parameters(), 1e-3, fused=True if cuda else None), decollate=False,
        non_blocking=cuda, amp=use_amp(dev), amp_kwargs=amp_kwargs(dev),
        train_handlers=[GradScalerHandler(dev, True),
                        StatsHandler(tag_name="train_loss", output_transform=output_loss, iteration_log=log_every(50))],
    )
    history = EpochHistory(tmp_path / "history.json")
    history.attach(trainer)
    bar = TrainingProgressBar("train", io.StringIO())
    bar.attach(trainer)
    guarded = []

    def forbid(engine):  # the second epoch's iterations, every handler of theirs included
        if engine.state.epoch == 2 and cuda:
            torch.cuda.set_sync_debug_mode("error")
            guarded.append(engine.state.iteration)

    def allow(engine):
        if cuda:
            torch.cuda.set_sync_debug_mode("default")

    trainer.add_event_handler(Events.ITERATION_STARTED, forbid)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, allow)  # attached last: runs after the other handlers
    try:
        trainer.run()
    finally:
        allow(trainer)
    assert guarded == ([4, 5, 6] if cuda else [])
    assert len(history.iterations) == 6 and all(math.isfinite(i[2]) for i in history.iterations)
    assert [e["iterations"] for e in history.epochs] == [3, 3]
    if cuda:
        assert trainer.scaler.is_enabled() is needs_grad_scaler(dev)
        assert bar.loss.value is None or math.isfinite(bar.loss.value)
