"""The pieces that move tensors, on the test device: scoring with prediction and truth on different devices, masks
that stay on their weights' device, a training step that does not wait for the host, and the shared precision
(``tests/cuda/test_throughput.py``: the throughput settings, and a whole trainer's step without waiting).

On CUDA, ``torch.cuda.set_sync_debug_mode("error")`` turns every host synchronisation into an error, so "does not
wait for the host" is checked, not assumed. With ``RAAGR2_TEST_DEVICE=cpu`` the same tests run on the CPU (where no
synchronisation exists to forbid).
"""

import contextlib
import math

import pytest
import torch

from raagr2_monai.losses import RAAGR2Loss
from raagr2_monai.metrics import score_subject
from raagr2_monai.networks import get_network
from raagr2_monai.pruning import magnitude_masks
from raagr2_monai.utils import amp_dtype, autocast, model_device, resolve_device, use_amp

from ..metrics.test_devices import subject_maps
from .conftest import is_cuda


def no_host_sync(device: str):
    """A context in which a host synchronisation on ``device`` raises (CUDA), or nothing is checked (CPU)."""
    if not is_cuda(device):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def forbid():
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")

    return forbid()


def test_the_device_resolves_and_autocast_follows_it(device):
    dev = resolve_device(device)
    assert dev.type == torch.device(device).type
    assert use_amp(dev, True) == is_cuda(device)
    net = get_network("depthwise").to(dev).eval()
    assert model_device(net).type == dev.type
    with torch.no_grad(), autocast(dev, True):
        out = net(torch.zeros(1, 4, 32, 32, device=dev))
    # bfloat16 on GPUs of compute capability 8.0 and later, float16 before; the CPU's float32
    assert out.dtype == (amp_dtype(dev) if is_cuda(device) else torch.float32)


def test_scoring_takes_prediction_and_truth_from_different_devices(device):
    pred, truth, prob = subject_maps()
    prob = prob.half()  # as AMP leaves it
    reference = score_subject(pred, truth, "c", prob=prob)
    dev = resolve_device(device)
    row = score_subject(pred.to(dev), truth, "c", prob=prob.to(dev))
    for key, value in reference.items():
        assert (math.isnan(value) and math.isnan(row[key])) if isinstance(value, float) and math.isnan(value) \
            else row[key] == pytest.approx(value), key


def test_masks_stay_on_the_weights_device_and_in_force(device):
    dev = resolve_device(device)
    torch.manual_seed(0)
    net = get_network("depthwise").to(dev)
    masks = magnitude_masks(net, 0.3)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    handle = masks.attach(net, optimizer)
    placed = dict(masks.masks)
    assert all(mask.device.type == dev.type for mask in placed.values())
    loss = RAAGR2Loss()
    x = torch.randn(2, 4, 32, 32, device=dev)
    y = (torch.rand(2, 3, 32, 32, device=dev) > 0.5).float()
    loss(net(x), y).backward()
    optimizer.step()
    optimizer.zero_grad()
    with no_host_sync(device):  # the loss takes logits: no range check, no read-back, at any step
        loss(net(x), y).backward()
        optimizer.step()
    handle.remove()
    assert all(masks.masks[name] is placed[name] for name in placed)  # not copied again at any step
    params = dict(net.named_parameters())
    assert all(bool((params[name][~mask] == 0).all()) for name, mask in masks.masks.items())
    assert all(mask.device.type == "cpu" for mask in masks.state_dict().values())


def test_the_loss_takes_saturated_logits_on_the_device(device):
    dev = resolve_device(device)
    target = torch.zeros(1, 3, 8, 8, device=dev)
    # confidently wrong by a logit of 100: the exact cross-entropy, not a clamped one
    logits = torch.full((1, 3, 8, 8), 100.0, device=dev)
    assert float(RAAGR2Loss(lambda_bce=1.0)(logits, target)) == pytest.approx(100.0)
