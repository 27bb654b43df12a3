"""Shared depthwise kernels stay one tensor, and every use of them feeds their gradient."""

import copy
from typing import Dict, List

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from raagr2_monai.networks import DepthwiseKernel, SharedDepthwiseBlock, get_network

SHARED = ["depthwise", "paired", "encdec"]
# uses of each kernel: encoder stage i's kernel is used by its four branches; in encdec, the kernels of stages 1-4
# are also used by one decoder level each (four branches, each applied to two inputs: skip and upsampled).
KERNELS_PER_STAGE = {"depthwise": 1, "paired": 2, "encdec": 1}


def kernel_uses(model: torch.nn.Module, x: torch.Tensor) -> Dict[int, List[torch.Tensor]]:
    """Run ``model`` and return, per kernel tensor id, the stand-ins each SharedDepthwiseBlock received for it.

    A pre-hook swaps the kernel a block receives for ``kernel * 1`` with ``retain_grad``: the stand-in's gradient is
    what that use contributes, and the stand-in's autograd parent tells which tensor the block was really given.
    """
    uses: Dict[int, List[torch.Tensor]] = {}

    def hook(module, args):
        parts, weight, bias = args
        stand_in = weight * 1
        stand_in.retain_grad()
        uses.setdefault(id(weight), []).append(stand_in)
        return parts, stand_in, bias

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, SharedDepthwiseBlock)]
    try:
        model(x).sum().backward()
    finally:
        for h in handles:
            h.remove()
    return uses


def assert_tied(model: torch.nn.Module, name: str) -> None:
    """Every block's kernel is a registered parameter of ``model``; use counts and gradient sums are as designed."""
    kernels = [m.weight for m in model.modules() if isinstance(m, DepthwiseKernel)]
    assert len(kernels) == 5 * KERNELS_PER_STAGE[name]
    model.zero_grad()
    uses = kernel_uses(model, torch.randn(1, 4, 32, 32))
    params = {id(p) for p in model.parameters()}
    assert set(uses) <= params, "a block used a kernel that is not one of this model's parameters"
    assert set(uses) == {id(k) for k in kernels}, "every kernel is used, and only those"
    for k in kernels:
        n_uses = len(uses[id(k)])
        expected = 4 // KERNELS_PER_STAGE[name]
        if name == "encdec" and k.shape[0] > 4:
            expected += 4  # its decoder level
        assert n_uses == expected
        contributions = torch.stack([u.grad for u in uses[id(k)]])
        assert (contributions.flatten(1).abs().sum(1) > 0).all(), "every use contributes a gradient"
        assert torch.allclose(k.grad, contributions.sum(0), rtol=1e-4, atol=1e-5 * k.grad.abs().max().item()), "contributions accumulate"


@pytest.mark.parametrize("name", SHARED)
def test_tied_in_a_fresh_model(name):
    torch.manual_seed(0)
    assert_tied(get_network(name).train(), name)


@pytest.mark.parametrize("name", SHARED)
def test_tied_after_deepcopy_to_and_load_state_dict(name):
    torch.manual_seed(0)
    source = get_network(name)
    clone = copy.deepcopy(source).to(torch.float64).to(torch.float32)
    assert_tied(clone, name)
    target = get_network(name)
    target.load_state_dict(source.state_dict(), strict=True)
    assert_tied(target, name)
    for k_src, k_dst in zip(
        (m.weight for m in source.modules() if isinstance(m, DepthwiseKernel)),
        (m.weight for m in target.modules() if isinstance(m, DepthwiseKernel)),
    ):
        assert torch.equal(k_src, k_dst) and k_src is not k_dst


def test_encdec_decoder_owns_no_kernel_and_state_dict_lists_each_kernel_once():
    net = get_network("encdec")
    assert not any(isinstance(m, DepthwiseKernel) for m in net.decoder.modules())
    keys = [k for k in net.state_dict() if "kernels" in k]
    assert sorted(keys) == sorted(f"encoder.{i}.kernels.0.{p}" for i in range(5) for p in ("weight", "bias"))


@pytest.mark.parametrize("name", ["baseline"] + SHARED)
def test_no_parameter_is_unused(name):
    torch.manual_seed(0)
    net = get_network(name).train()
    net(torch.randn(2, 4, 32, 32)).square().mean().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert unused == []


@pytest.mark.parametrize("name", SHARED)
def test_changing_a_shared_kernel_changes_every_user_in_torchscript(name):
    torch.manual_seed(0)
    net = get_network(name).eval()
    scripted = torch.jit.script(copy.deepcopy(net))
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        # stage 3's kernel feeds its own branches and, in encdec, the decoder level of width 64
        for model in (net, scripted):
            model.encoder[3].kernels[0].weight.mul_(-2.0)
        assert torch.allclose(scripted(x), net(x), atol=1e-6)
        scripted_params = {n: p for n, p in scripted.named_parameters()}
        assert len(scripted_params) == len(dict(net.named_parameters()))


def test_shared_kernels_initialised_like_conv2d():
    torch.manual_seed(0)
    kernel = DepthwiseKernel(256)
    conv = torch.nn.Conv2d(256, 256, 3, groups=256)
    # kaiming_uniform(a=sqrt(5)) over fan_in 9 gives U(-1/3, 1/3) for weight and bias alike
    for mine, reference in ((kernel.weight, conv.weight), (kernel.bias, conv.bias)):
        assert mine.abs().max() <= 1 / 3
        assert abs(mine.std().item() - reference.std().item()) < 0.02


@pytest.mark.parametrize("name", SHARED)
def test_tied_under_ddp(name, tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        ddp = DistributedDataParallel(get_network(name))
        assert sum(p.numel() for p in ddp.parameters()) == sum(p.numel() for p in ddp.module.parameters())
        assert_tied(ddp, name)
    finally:
        dist.destroy_process_group()
