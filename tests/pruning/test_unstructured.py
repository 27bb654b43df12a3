"""Unstructured pruning: magnitude and SNIP masks, fine-tuning with masks, sparse saving, BN recalibration."""

import math

import pytest
import torch
from torch import nn

from raagr2_monai.networks import DepthwiseKernel, get_network
from raagr2_monai.pruning import (
    MaskSet,
    from_sparse_state_dict,
    magnitude_masks,
    padded_batches,
    prunable_weights,
    prune,
    recalibrate_bn,
    serialized_nbytes,
    snip_scores,
    to_sparse_state_dict,
)



# what the networks' logits are scored with (the bundles' RAAGR2Loss would do too, more slowly)
_loss = nn.functional.binary_cross_entropy_with_logits


def _batches(n: int, seed: int = 0, size: int = 16):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(2, 4, size, size, generator=g) + 1.0, (torch.rand(2, 3, size, size, generator=g) > 0.5).float())
        for _ in range(n)
    ]


def test_prunable_weights_cover_convs_and_shared_kernels_not_head():
    net = get_network("paired")
    names = prunable_weights(net)
    assert "head.weight" not in names
    kernels = [m for m in net.modules() if isinstance(m, DepthwiseKernel)]
    assert len(kernels) == 10  # five stages, two kernel sets each
    assert all(any(p is k.weight for p in names.values()) for k in kernels)
    convs = [m for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and n != "head"]
    assert len(names) == len(convs) + len(kernels)


@pytest.mark.parametrize("ratio", [0.1, 0.3])
def test_magnitude_global_sparsity_exact_and_smallest_removed(ratio):
    torch.manual_seed(0)
    net = get_network("paired")
    head = net.head.weight.detach().clone()
    kernel = net.encoder[1].kernels[0].weight
    weights = prunable_weights(net)
    total = sum(w.numel() for w in weights.values())
    before = torch.cat([w.detach().abs().flatten() for w in weights.values()])

    result = prune(net, "magnitude", ratio)

    assert result.sparsity == round(ratio * total) / total
    assert result.masks.sparsity() == result.sparsity
    flat = torch.cat([w.detach().flatten() for w in prunable_weights(net).values()])
    assert int((flat == 0).sum()) == round(ratio * total)
    assert before[flat == 0].max() <= before[flat != 0].min()
    assert torch.equal(net.head.weight, head)
    assert net.encoder[1].kernels[0].weight is kernel  # still the one shared tensor, masked in place
    assert result.params_after == result.params_before - round(ratio * total)


def test_magnitude_uniform_prunes_each_tensor_by_ratio():
    net = get_network("depthwise")
    masks = magnitude_masks(net, 0.25, scope="uniform")
    for name, mask in masks.masks.items():
        assert int((~mask).sum()) == round(0.25 * mask.numel()), name


def test_masks_survive_adam_finetuning_and_state_dict_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = get_network("encdec")
    result = prune(net, "magnitude", 0.3)
    masks = result.masks
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    handle = masks.attach(net, optimizer)
    for image, label in _batches(2):
        optimizer.zero_grad()
        _loss(net(image), label).backward()
        optimizer.step()
    handle.remove()
    params = dict(net.named_parameters())
    for name, mask in masks.masks.items():
        assert torch.all(params[name][~mask] == 0), name
    changed = [n for n, m in masks.masks.items() if not torch.equal(params[n][m], before[n][m])]
    assert len(changed) == len(masks)  # the kept weights did train
    assert masks.sparsity(net) == pytest.approx(0.3, abs=1e-6)

    torch.save(net.state_dict(), tmp_path / "model.pt")
    torch.save(masks.state_dict(), tmp_path / "masks.pt")
    fresh = get_network("encdec")
    fresh.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True), strict=True)
    loaded = MaskSet.from_state_dict(torch.load(tmp_path / "masks.pt", weights_only=True))
    recovered = MaskSet.from_model(fresh)
    for name, mask in masks.masks.items():
        assert torch.equal(loaded.masks[name], mask)
        assert not torch.any(recovered.masks[name] & ~mask)  # every pruned weight is still zero after loading
    # a kept weight that training happened to land on exactly 0.0 reads as pruned: rare, never the other way round
    flips = sum(int((recovered.masks[n] != m).sum()) for n, m in masks.masks.items())
    assert flips <= 10
    assert loaded.sparsity(fresh) == masks.sparsity(net)


def test_masks_move_to_their_parameters_device_once():
    """Re-applied after every optimizer step, a mask must not be copied to the weight's device each time: it moves
    on first use and stays (the meta device stands in for a GPU; the cuda tests use a real one)."""
    net = get_network("depthwise")
    masks = magnitude_masks(net, 0.3)
    net.to("meta")
    masks.apply(net)
    moved = dict(masks.masks)
    assert all(mask.device.type == "meta" and mask.dtype == torch.bool for mask in moved.values())
    masks.apply(net)
    assert all(masks.masks[name] is moved[name] for name in moved)  # no new copy at the second application


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 1, bias=False)
        self.head = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([3.0, -0.5]).view(1, 2, 1, 1))
            self.head.weight.fill_(1.0)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


def test_snip_scores_equal_abs_weight_times_gradient_on_toy():
    # loss = sum(label * (w0 x0 + w1 x1)): dL/dw_c = sum(label * x_c), summed over the batches
    x1 = torch.tensor([[[[1.0, 2.0]], [[4.0, -1.0]]]])  # (1, 2, 1, 2)
    x2 = torch.tensor([[[[0.5, 0.5]], [[1.0, 1.0]]]])
    y1 = torch.tensor([[[[1.0, 1.0]]]])
    y2 = torch.tensor([[[[2.0, 0.0]]]])
    toy = _Toy()
    scores = snip_scores(toy, [(x1, y1), (x2, y2)], lambda p, y: (p * y).sum())
    assert list(scores) == ["conv.weight"]
    grad0 = (1 + 2) + (2 * 0.5)  # 4
    grad1 = (4 - 1) + (2 * 1.0)  # 5
    expected = torch.tensor([abs(3.0 * grad0), abs(-0.5 * grad1)]).view(1, 2, 1, 1)
    assert torch.allclose(scores["conv.weight"], expected)
    assert toy.conv.weight.grad is None  # scoring leaves no gradients behind

    result = prune(toy, "snip", 0.5, data=[(x1, y1), (x2, y2)], loss_fn=lambda p, y: (p * y).sum())
    assert torch.equal(toy.conv.weight.flatten(), torch.tensor([3.0, 0.0]))
    assert result.sparsity == 0.5


def test_snip_on_network_exact_sparsity_and_no_side_effects():
    torch.manual_seed(0)
    net = get_network("depthwise")
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    net.eval()
    result = prune(net, "snip", 0.2, data=_batches(2), loss_fn=_loss)
    total = sum(m.numel() for m in result.masks.masks.values())
    assert result.sparsity == round(0.2 * total) / total
    assert not net.training
    for name, b in net.named_buffers():
        assert torch.equal(b, buffers[name]), name


def test_snip_on_small_crops_scores_deep_dilated_taps_zero_unless_padded_to_a_slice():
    # on a 64 x 64 crop the baseline's deepest stage is 4 x 4: taps of its widest dilations only see padding, get no
    # gradient and would be the first removed; padded with background to a BraTS slice (240) every weight is reached
    # (the shared variants escape: one kernel serves every dilation, and the small ones reach data)
    torch.manual_seed(0)
    net = get_network("baseline")
    crops = _batches(1, size=64)
    small = snip_scores(net, crops, _loss)
    padded = snip_scores(net, padded_batches(crops, (240, 240)), _loss)
    unreached = {name: int((score == 0).sum()) for name, score in small.items() if bool((score == 0).any())}
    assert unreached and all(name.startswith("encoder.") for name in unreached)
    assert sum(unreached.values()) > 0.05 * sum(s.numel() for s in small.values())
    assert all(bool((score > 0).all()) for score in padded.values())


def test_padded_batches_centre_the_crop_in_background():
    image, label = torch.arange(16.0).view(1, 1, 4, 4), torch.ones(1, 3, 4, 4)
    out_image, out_label = next(padded_batches([{"image": image, "label": label}], (7, 8)))
    assert out_image.shape == (1, 1, 7, 8) and out_label.shape == (1, 3, 7, 8)
    assert torch.equal(out_image[..., 1:5, 2:6], image) and float(out_image.sum()) == float(image.sum())
    assert float(out_label.sum()) == float(label.sum())
    big = torch.zeros(1, 1, 9, 9)
    assert next(padded_batches([(big, big)], (8, 8)))[0].shape == big.shape


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, float("nan"), float("inf"), "0.2", True, None])
def test_bad_ratio_raises_naming_value_and_rule(ratio):
    with pytest.raises(ValueError, match="strictly between 0 and 1") as err:
        prune(get_network("depthwise"), "magnitude", ratio)
    assert repr(ratio) in str(err.value)


def test_bad_method_scope_and_missing_snip_data():
    net = get_network("depthwise")
    with pytest.raises(ValueError, match="'l1'.*magnitude, snip, depgraph"):
        prune(net, "l1", 0.2)
    with pytest.raises(ValueError, match="'layerwise'.*global, uniform"):
        prune(net, "magnitude", 0.2, scope="layerwise")
    with pytest.raises(ValueError, match="SNIP needs data"):
        prune(net, "snip", 0.2)
    with pytest.raises(ValueError, match="at least one"):
        snip_scores(net, [], _loss)


def test_sparse_state_dict_roundtrip_and_is_smaller(tmp_path):
    torch.manual_seed(0)
    net = get_network("depthwise")
    masks = prune(net, "magnitude", 0.3).masks
    state = net.state_dict()
    packed = to_sparse_state_dict(state, masks)
    torch.save(packed, tmp_path / "sparse.pt")
    restored = from_sparse_state_dict(torch.load(tmp_path / "sparse.pt", weights_only=True))
    assert list(restored) == list(state)
    assert all(torch.equal(restored[k], state[k]) for k in state)
    dense_bytes = serialized_nbytes(state)
    sparse_bytes = serialized_nbytes(packed)
    masked = sum(m.numel() for m in masks.masks.values()) * 4
    # 30 % fewer values, plus one bit per masked entry, plus the untouched tensors
    assert sparse_bytes == pytest.approx(dense_bytes - masked * (0.3 - 1 / 32), rel=0.01)
    with pytest.raises(KeyError, match="nope"):
        to_sparse_state_dict(state, ["nope"])
    with pytest.raises(ValueError, match="raagr2_monai.sparse/1"):
        from_sparse_state_dict(state)


def test_recalibrate_bn_changes_stats_only():
    torch.manual_seed(0)
    net = get_network("depthwise").train()
    net.decoder[0].dropout.eval()
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    bn = net.encoder[1].fuse[1]
    assert torch.all(bn.running_mean == 0)
    (image, _), = _batches(1)

    used = recalibrate_bn(net, [image, image, image], num_batches=2)

    assert used == 2
    assert int(bn.num_batches_tracked) == 2
    mean_once = bn.running_mean.clone()
    assert not torch.allclose(mean_once, torch.zeros_like(mean_once))
    # momentum=None is a cumulative average: one batch gives the same statistics as that batch twice
    recalibrate_bn(net, [(image, None)], num_batches=5)
    assert torch.allclose(bn.running_mean, mean_once, atol=1e-6)
    assert bn.momentum == 0.1
    assert net.training and not net.decoder[0].dropout.training
    assert all(torch.equal(p, weights[n]) for n, p in net.named_parameters())
    with pytest.raises(ValueError, match="positive integer; got 0"):
        recalibrate_bn(net, [image], num_batches=0)
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_bn(net, [], num_batches=1)
    assert math.isfinite(float(bn.running_var.sum()))
