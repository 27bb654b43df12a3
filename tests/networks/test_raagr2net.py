"""RAAGR2-Net variants: exact sizes, shapes, input checks, TorchScript, FLOPs."""

import math

import pytest
import torch

from raagr2_monai.networks import (
    HEAD_PRIOR,
    NETWORKS,
    RAAGR2Net,
    count_flops,
    count_parameters,
    get_network,
    parameters_per_part,
    variant_of,
)

# The published counts: the thesis's Table 2 counts at out_channels=5 (encdec corrected); the head holds 33 * out_channels.
PARAMS_OUT5 = {"baseline": 8_911_301, "depthwise": 5_046_221, "paired": 5_051_061, "encdec": 6_606_701}
PARTS_OUT5 = {
    "baseline": (6_848_416, 1_568_160, 133_440, 361_120, 165),
    "depthwise": (2_983_336, 1_568_160, 133_440, 361_120, 165),
    "paired": (2_988_176, 1_568_160, 133_440, 361_120, 165),
    "encdec": (2_983_336, 1_568_160, 133_440, 1_921_600, 165),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_parameter_counts(name):
    assert count_parameters(get_network(name, in_channels=4, out_channels=5)) == PARAMS_OUT5[name]
    assert count_parameters(get_network(name, in_channels=4, out_channels=3)) == PARAMS_OUT5[name] - 2 * 33
    assert tuple(parameters_per_part(get_network(name, out_channels=5)).values()) == PARTS_OUT5[name]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_forward_shape_and_range(name):
    net = get_network(name, out_channels=3).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 4, 32, 48))
    assert y.shape == (2, 3, 32, 48)
    # logits, as MONAI's networks return: the sigmoid is the loss's and the inferer's
    assert y.min() < 0 and torch.isfinite(y).all()
    assert not torch.equal(y, torch.sigmoid(y))


@pytest.mark.parametrize("name", list(NETWORKS))
def test_fresh_network_starts_at_the_head_prior(name):
    # every channel starts near "background" (HEAD_PRIOR), not at 0.5: Encoder-Decoder Shared trained far slower
    # from 0.5, its outputs unsaturated after the quick profile's 240 steps
    torch.manual_seed(0)
    net = get_network(name, out_channels=3).eval()
    assert torch.allclose(net.head.bias, torch.full((3,), math.log(HEAD_PRIOR / (1 - HEAD_PRIOR))))
    with torch.no_grad():
        y = torch.sigmoid(net(torch.randn(2, 4, 32, 32)))
    assert 0.002 < y.mean().item() < 0.05
    assert y.max().item() < 0.5


@pytest.mark.parametrize("shape", [(1, 4, 40, 32), (1, 4, 32, 20), (1, 4, 8, 8)])
def test_spatial_size_must_be_multiple_of_16(shape):
    with pytest.raises(ValueError, match=r"multiples of 16.*\[" + ", ".join(map(str, shape)) + r"\]"):
        RAAGR2Net()(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 5, 32, 32), (4, 32, 32)])
def test_wrong_channels_or_rank(shape):
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\).*\[" + ", ".join(map(str, shape)) + r"\]"):
        get_network("depthwise")(torch.zeros(shape))


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="baseline, depthwise, paired, encdec"):
        get_network("unet")


def test_registry_round_trip_and_dotted_path():
    from pydoc import locate

    for name, cls in NETWORKS.items():
        assert variant_of(get_network(name)) == name
        assert locate(f"raagr2_monai.networks.{cls.__name__}") is cls


@pytest.mark.parametrize("name", list(NETWORKS))
def test_torchscript_matches_eager(name):
    torch.manual_seed(0)
    net = get_network(name).eval()
    x = torch.randn(1, 4, 32, 32)
    scripted = torch.jit.script(net)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-6)
    with pytest.raises(torch.jit.Error, match="multiples of 16"):
        scripted(torch.zeros(1, 4, 24, 32))


def test_flops_of_baseline_match_spec():
    assert count_flops(get_network("baseline", out_channels=5), (1, 4, 192, 192)) == 15_460_761_600


def test_flops_count_functional_depthwise_convolutions():
    from raagr2_monai.networks import SharedReASPP3

    # SharedReASPP3(8 -> 16) at 16x16, 2 FLOPs per multiply-add: four functional depthwise 3x3 convolutions,
    # four pairs of 1x1 projections, one 1x1 fusion of 4 * 16 + 8 channels.
    pixels = 16 * 16
    expected = 4 * 2 * 9 * 8 * pixels + 8 * 2 * 8 * 16 * pixels + 2 * (4 * 16 + 8) * 16 * pixels
    assert count_flops(SharedReASPP3(8, 16), (1, 8, 16, 16)) == expected


def test_baseline_grouped_branches_are_separable_units():
    from raagr2_monai.networks import ReASPP3, SeparableConv

    stage = ReASPP3(32, 64)
    stems = [branch.stem for branch in stage.branches[:2]]
    assert all(isinstance(stem, SeparableConv) for stem in stems)
    assert [stem.grouped.groups for stem in stems] == [32, 32]
    assert [stem.grouped.dilation for stem in stems] == [(1, 1), (3, 3)]
    with pytest.raises(ValueError, match="multiple of in_channels"):
        SeparableConv(32, 48)
