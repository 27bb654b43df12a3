"""The registry of pruning scores: the built-in magnitude and SNIP scores, and a registered custom score."""

import pytest
import torch
from torch import nn

from raagr2_monai.networks import get_network
from raagr2_monai.pruning import (
    SCORES,
    magnitude_masks,
    magnitude_scores,
    masks_from_scores,
    prunable_weights,
    prune,
    register_score,
    snip_scores,
)


# what the networks' logits are scored with (the bundles' RAAGR2Loss would do too, more slowly)
_loss = nn.functional.binary_cross_entropy_with_logits


def test_registry_holds_exactly_magnitude_and_snip():
    assert sorted(SCORES) == ["magnitude", "snip"]
    assert all(callable(fn) for fn in SCORES.values())


def test_magnitude_scores_are_abs_of_each_prunable_weight():
    torch.manual_seed(0)
    net = get_network("paired")
    weights = prunable_weights(net)
    scores = magnitude_scores(net)
    assert list(scores) == list(weights)
    for name, w in weights.items():
        assert torch.equal(scores[name], w.detach().abs())
        assert not scores[name].requires_grad
    # the registered score is the same, data and loss_fn ignored
    registered = SCORES["magnitude"](net, data=[object()], loss_fn=None)
    assert list(registered) == list(scores)
    assert all(torch.equal(registered[n], scores[n]) for n in scores)
    # the head is excluded unless asked for
    assert "head.weight" not in scores
    assert "head.weight" in magnitude_scores(net, exclude=())


@pytest.mark.parametrize("scope", ["global", "uniform"])
def test_masks_from_registered_magnitude_equal_magnitude_masks(scope):
    torch.manual_seed(0)
    net = get_network("paired")
    via_registry = masks_from_scores(SCORES["magnitude"](net), 0.3, scope)
    direct = magnitude_masks(net, 0.3, scope)
    assert list(via_registry) == list(direct)
    assert all(torch.equal(via_registry.masks[n], direct.masks[n]) for n in direct)
    # not vacuous: the masks remove weights, and the smallest |w| first
    flat_w = torch.cat([w.detach().abs().flatten() for w in prunable_weights(net).values()])
    flat_keep = torch.cat([m.flatten() for m in direct.masks.values()])
    assert 0 < int((~flat_keep).sum()) < flat_keep.numel()
    if scope == "global":
        assert flat_w[~flat_keep].max() <= flat_w[flat_keep].min()


def test_prune_uses_the_registry_for_mask_methods(monkeypatch):
    """prune() ranks by SCORES[method]: swapping the registered magnitude score changes what it removes."""
    torch.manual_seed(0)
    net = get_network("depthwise")
    weights = prunable_weights(net)
    # inverted scores: the largest |w| go first
    monkeypatch.setitem(SCORES, "magnitude", lambda model, data=None, loss_fn=None: {
        n: -w.detach().abs() for n, w in prunable_weights(model).items()
    })
    before = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    masks = prune(net, "magnitude", 0.2).masks
    keep = torch.cat([m.flatten() for m in masks.masks.values()])
    assert before[~keep].min() >= before[keep].max()


def test_register_score_refuses_existing_names_and_custom_score_makes_masks():
    torch.manual_seed(0)
    net = get_network("depthwise")
    original = dict(SCORES)
    with pytest.raises(ValueError, match="'magnitude' is already registered"):
        register_score("magnitude", lambda model, data=None, loss_fn=None: {})
    with pytest.raises(ValueError, match="'snip' is already registered"):
        register_score("snip", SCORES["magnitude"])
    with pytest.raises(ValueError, match="non-empty string"):
        register_score("", SCORES["magnitude"])
    with pytest.raises(TypeError, match="callable"):
        register_score("not-a-function", 3)
    assert SCORES == original

    def random_scores(model, data=None, loss_fn=None):
        g = torch.Generator().manual_seed(1)
        return {n: torch.rand(w.shape, generator=g) for n, w in prunable_weights(model).items()}

    try:
        assert register_score("random", random_scores) is random_scores
        assert SCORES["random"] is random_scores
        with pytest.raises(ValueError, match="'random' is already registered"):
            register_score("random", random_scores)
        masks = masks_from_scores(SCORES["random"](net), 0.4)
        total = sum(m.numel() for m in masks.masks.values())
        assert masks.sparsity() == round(0.4 * total) / total
        # random scores pick other weights than magnitude does
        by_magnitude = magnitude_masks(net, 0.4)
        assert any(not torch.equal(masks.masks[n], by_magnitude.masks[n]) for n in masks)
        # and the masks apply to the network they were scored on
        masks.apply(net)
        assert masks.sparsity(net) >= masks.sparsity()
        # a registered score is a pruning method of its own
        result = prune(get_network("depthwise"), "random", 0.4)
        assert result.method == "random" and result.sparsity == pytest.approx(0.4, abs=1e-6)
    finally:
        SCORES.pop("random", None)
    assert sorted(SCORES) == ["magnitude", "snip"]
    with pytest.raises(ValueError, match="Unknown pruning method 'random'; valid methods: magnitude, snip, depgraph"):
        prune(get_network("depthwise"), "random", 0.4)


def test_snip_score_without_data_or_loss_raises_before_any_work():
    net = get_network("depthwise")

    class _Unread:
        def __iter__(self):
            raise AssertionError("SNIP read its data although loss_fn was missing")

    message = r"SNIP needs data \(an iterable of \(image, label\) batches\) and a loss_fn\."
    with pytest.raises(ValueError, match=message):
        SCORES["snip"](net)
    with pytest.raises(ValueError, match=message):
        SCORES["snip"](net, data=_Unread())
    with pytest.raises(ValueError, match=message):
        SCORES["snip"](net, loss_fn=_loss)
    with pytest.raises(ValueError, match=message):
        prune(net, "snip", 0.2, data=_Unread())


def test_snip_score_with_data_matches_snip_scores():
    torch.manual_seed(0)
    net = get_network("depthwise")
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(2, 4, 16, 16, generator=g) + 1.0, (torch.rand(2, 3, 16, 16, generator=g) > 0.5).float())]
    torch.manual_seed(1)  # the same dropout draws for both
    registered = SCORES["snip"](net, batches, _loss)
    torch.manual_seed(1)
    direct = snip_scores(net, batches, _loss)
    assert list(registered) == list(direct)
    assert all(torch.equal(registered[n], direct[n]) for n in direct)
    assert any(bool((s > 0).any()) for s in direct.values())
