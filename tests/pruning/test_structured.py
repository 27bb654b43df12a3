"""DepGraph channel pruning of all four variants: sizes and FLOPs fall, shapes hold, shared kernels stay shared."""

import pytest
import torch

from raagr2_monai.networks import NETWORKS, DepthwiseKernel, blocks, count_flops, count_parameters, get_network
from raagr2_monai.pruning import build_pruned_network, prune

RATIOS = (0.1, 0.2, 0.3)
TRACE = torch.zeros(1, 4, 16, 16)  # the smallest input the four poolings allow: cheap tracing and FLOP counts


@pytest.fixture(scope="module")
def pruned():
    """variant -> [(result, model) for each ratio]; built once (about 1 s per prune on one core)."""
    out = {}
    for variant in NETWORKS:
        out[variant] = []
        for ratio in RATIOS:
            torch.manual_seed(0)
            net = get_network(variant)
            out[variant].append((prune(net, "depgraph", ratio, example_inputs=TRACE), net))
    return out


@pytest.mark.parametrize("variant", list(NETWORKS))
def test_parameters_and_flops_strictly_fall_with_ratio(pruned, variant):
    results = [result for result, _ in pruned[variant]]
    base = count_parameters(get_network(variant))
    params = [base] + [r.params_after for r in results]
    flops = [results[0].flops_before] + [r.flops_after for r in results]
    assert all(r.params_before == base for r in results)
    assert params == sorted(set(params), reverse=True), params  # strictly decreasing
    assert flops == sorted(set(flops), reverse=True), flops
    for (result, net), ratio in zip(pruned[variant], RATIOS):
        assert result.requested_ratio == ratio
        assert result.params_after == count_parameters(net)
        assert result.flops_after == count_flops(net, tuple(TRACE.shape))
        assert result.param_reduction == pytest.approx(1 - result.params_after / base)
        assert 0.03 < result.param_reduction < 0.7
        assert result.history and all(isinstance(step[0], str) for step in result.history)


@pytest.mark.parametrize("variant", list(NETWORKS))
def test_pruned_forward_backward_and_untouched_ends(pruned, variant):
    _, net = pruned[variant][-1]
    net.train()
    x = torch.rand(2, 4, 32, 32)
    y = net(x)
    assert y.shape == (2, 3, 32, 32)
    assert torch.isfinite(y).all()  # logits
    y.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    net.zero_grad(set_to_none=True)
    # head keeps its outputs; the first encoder stage (it concatenates the raw input) is not pruned
    assert net.head.out_channels == 3
    fresh = get_network(variant)
    assert {k: v.shape for k, v in net.encoder[0].state_dict().items()} == {
        k: v.shape for k, v in fresh.encoder[0].state_dict().items()
    }
    assert net.encoder[-1].fuse[0].out_channels < 512


@pytest.mark.parametrize("variant", ["depthwise", "paired", "encdec"])
def test_shared_kernels_stay_one_tensor(pruned, variant, monkeypatch):
    _, net = pruned[variant][-1]
    net.eval()
    kernels = {id(m.weight): m for m in net.modules() if isinstance(m, DepthwiseKernel)}
    assert sum(p.numel() for p in net.parameters()) == count_parameters(net)
    used = []
    original = blocks.depthwise_conv

    def spy(x, weight, bias, dilation):
        used.append((id(weight), id(bias)))
        return original(x, weight, bias, dilation)

    monkeypatch.setattr(blocks, "depthwise_conv", spy)
    net(torch.rand(1, 4, 16, 16))
    # every functional use reads a kernel that the model owns, and every owned kernel is used
    assert {w for w, _ in used} == set(kernels)
    assert {b for _, b in used} == {id(m.bias) for m in kernels.values()}
    stage = net.encoder[2]
    for i, branch in zip(stage.kernel_index, stage.branches):
        assert stage.kernels[i].weight.shape[0] == branch.project[0].in_channels
    if variant == "encdec":
        # decoder level 1 (width 128) borrows encoder stage 3's kernel: 4 branches x 2 parts, plus the encoder's 4
        borrowed = id(net.encoder[3].kernels[0].weight)
        assert sum(w == borrowed for w, _ in used) == 4 + 8
        assert net.decoder[1].kernels is not None and len(net.decoder[1].kernels) == 0


def test_shared_kernel_change_reaches_every_branch(pruned):
    _, net = pruned["encdec"][-1]
    net.eval()
    x = torch.rand(1, 4, 16, 16)
    stage, level = net.encoder[3], net.decoder[1]
    captured = {}
    hooks = [
        m.register_forward_hook(lambda mod, args, out, key=key: captured.__setitem__(key, out.detach().clone()))
        for key, m in [(f"enc{i}", b) for i, b in enumerate(stage.branches)]
        + [(f"dec{i}", b) for i, b in enumerate(level.branches)]
    ]
    net(x)
    before = dict(captured)
    with torch.no_grad():
        stage.kernels[0].weight.mul_(2.0)
    net(x)
    for hook in hooks:
        hook.remove()
    assert len(before) == 8
    assert all(not torch.allclose(before[k], captured[k]) for k in before)


def test_baseline_grouped_stems_pruned_consistently(pruned):
    _, net = pruned["baseline"][-1]
    for stage in net.encoder[1:]:
        for branch in stage.branches[:2]:
            grouped, pointwise = branch.stem[0], branch.stem[1][0]
            assert grouped.groups == grouped.in_channels
            assert grouped.out_channels % grouped.in_channels == 0
            assert grouped.weight.shape == (grouped.out_channels, 1, 3, 3)
            assert pointwise.in_channels == grouped.out_channels


def _conv_widths(net):
    return {name: m.out_channels for name, m in net.named_modules()
            if isinstance(m, torch.nn.Conv2d) and not name.startswith("head")}


def test_round_to_keeps_channel_counts_multiples_and_replays():
    torch.manual_seed(0)
    free, rounded = get_network("depthwise"), get_network("depthwise")
    rounded.load_state_dict(free.state_dict())
    prune(free, "depgraph", 0.6, example_inputs=TRACE)
    result = prune(rounded, "depgraph", 0.6, example_inputs=TRACE, round_to=8)
    # without it, DepGraph at 60 % leaves counts such as 13 or 27 channels; with it, every pruned layer keeps a multiple
    assert any(width % 8 for width in _conv_widths(free).values())
    assert all(width % 8 == 0 for width in _conv_widths(rounded).values()), _conv_widths(rounded)
    assert result.params_after == count_parameters(rounded) < count_parameters(get_network("depthwise"))
    # the history alone rebuilds that structure: round_to needs no record to reload a pruned bundle
    rebuilt = build_pruned_network("depthwise", result.history)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in rounded.state_dict().items()}
    assert rounded(torch.zeros(1, 4, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("round_to", [0, -8, 8.0, True, "8"])
def test_bad_round_to_is_refused(round_to):
    with pytest.raises(ValueError, match=r"round_to must be null or an integer >= 1 \(a channel multiple"):
        prune(get_network("depthwise"), "depgraph", 0.2, example_inputs=TRACE, round_to=round_to)


def test_round_to_is_refused_for_mask_methods():
    for method in ("magnitude", "snip"):
        with pytest.raises(ValueError, match=f"round_to applies to DepGraph's channel counts; {method} zeroes weights"):
            prune(get_network("depthwise"), method, 0.2, round_to=8)
