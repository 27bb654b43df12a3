"""PruneHandler and MaskHandler on a real MONAI SupervisedTrainer: pruning at start, the optimizer rebound to the
pruned parameters, masks kept through Adam steps, metrics for the loggers."""

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from raagr2_monai.losses import RAAGR2Loss
from raagr2_monai.networks import count_parameters, get_network
from raagr2_monai.handlers import MaskHandler, PruneHandler
from raagr2_monai.pruning import load_masks, magnitude_masks, rebind_optimizer



def _batches(n=2, size=32):
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randn(2, 4, size, size, generator=gen),
            "label": (torch.rand(2, 3, size, size, generator=gen) > 0.7).float(),
        }
        for _ in range(n)
    ]


def _trainer(net, handlers, lr=1e-2, iterations=2):
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        epoch_length=iterations,
        train_data_loader=_batches(iterations),
        network=net,
        optimizer=optimizer,
        loss_function=RAAGR2Loss(),
        train_handlers=handlers,
    )
    return trainer, optimizer


class Snapshot:
    """Attached after the PruneHandler: the weights as pruned, before the first step."""

    def __init__(self):
        self.state = {}

    def attach(self, engine):
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine):
        self.state = {k: v.detach().clone() for k, v in engine.network.state_dict().items()}


def test_depgraph_rebinds_the_optimizer_and_fine_tunes_the_pruned_parameters():
    torch.manual_seed(0)
    net = get_network("depthwise")
    dense = count_parameters(net)
    handler = PruneHandler("depgraph", 0.2, roi_size=(32, 32), round_to=4)
    snapshot = Snapshot()
    trainer, optimizer = _trainer(net, [handler, snapshot])
    trainer.run()

    assert handler.report["params_before"] == dense
    assert count_parameters(net) == handler.report["params_after"] < dense
    assert handler.report["flops_after"] < handler.report["flops_before"]
    assert handler.report["round_to"] == 4
    assert all(m.out_channels % 4 == 0 for name, m in net.named_modules()
               if isinstance(m, torch.nn.Conv2d) and not name.startswith("head"))
    # the optimizer updates exactly the network's (new, smaller) tensors ...
    assert [id(p) for g in optimizer.param_groups for p in g["params"]] == [id(p) for p in net.parameters()]
    # ... and fine-tuning moved them away from their pruned values
    after, pruned = net.state_dict(), snapshot.state
    weights = [k for k, v in pruned.items() if k.endswith("weight") and v.dim() == 4]
    assert weights and all(after[k].shape == pruned[k].shape for k in weights)
    assert sum(not torch.equal(after[k], pruned[k]) for k in weights) == len(weights)
    assert trainer.state.metrics["pruning_params"] == float(handler.report["params_after"])
    assert trainer.state.metrics["pruning_param_reduction"] == pytest.approx(1 - count_parameters(net) / dense)
    assert net(torch.zeros(1, 4, 32, 32)).shape == (1, 3, 32, 32)


def test_masks_stay_in_force_through_adam_steps():
    torch.manual_seed(0)
    net = get_network("paired")
    handler = PruneHandler("magnitude", 0.3)
    snapshot = Snapshot()
    trainer, optimizer = _trainer(net, [handler, snapshot], iterations=3)
    trainer.run()

    masks, pruned = handler.result.masks, snapshot.state
    params = dict(net.named_parameters())
    for name, mask in masks.masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0, name
    kept_moved = sum(not torch.equal(params[n][m], pruned[n][m]) for n, m in masks.masks.items())
    assert kept_moved == len(masks)
    assert trainer.state.metrics["pruning_sparsity"] == pytest.approx(0.3, abs=1e-6)
    assert handler.report["achieved"] == pytest.approx(0.3, abs=1e-6)

    # without the handler's hook, Adam's momentum revives pruned weights: the test above could fail
    handler.detach_masks()
    batch = _batches(1)[0]
    optimizer.zero_grad()
    RAAGR2Loss()(net(batch["image"]), batch["label"]).backward()
    optimizer.step()
    assert any(torch.count_nonzero(params[n][~m]) > 0 for n, m in masks.masks.items())


def test_snip_with_bn_recalibration_draws_from_the_loader():
    torch.manual_seed(0)
    net = get_network("depthwise")
    norm = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    handler = PruneHandler("snip", 0.5, scope="uniform", snip_batches=1, bn_recalibration_batches=1)
    handler.prune(net, data=_batches(2), loss_function=RAAGR2Loss())
    assert handler.report["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert not torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
    with pytest.raises(RuntimeError, match="already pruned"):
        handler.prune(net, data=_batches(1), loss_function=RAAGR2Loss())
    with pytest.raises(ValueError, match="need training batches"):
        PruneHandler("snip", 0.5).prune(get_network("depthwise"))


def test_mask_handler_from_file(tmp_path):
    torch.manual_seed(0)
    net = get_network("paired")
    masks = magnitude_masks(net, 0.4)
    masks.apply(net)
    torch.save(masks.state_dict(), tmp_path / "masks.pt")
    handler = MaskHandler(str(tmp_path / "masks.pt"))
    trainer, _ = _trainer(net, [handler])
    trainer.run()
    assert masks.sparsity(net) == pytest.approx(0.4, abs=1e-6)
    assert trainer.state.metrics["pruning_sparsity"] == pytest.approx(0.4, abs=1e-6)

    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_masks(tmp_path / "missing.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt holds no masks"):
        MaskHandler(tmp_path / "bad.pt")


def test_bad_settings_fail_at_construction():
    with pytest.raises(ValueError, match="Unknown pruning method 'random'; valid methods: magnitude, snip, depgraph"):
        PruneHandler("random", 0.2)
    for ratio in (0, 1, 1.5, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            PruneHandler("magnitude", ratio)
    with pytest.raises(ValueError, match="Unknown pruning scope 'layer'"):
        PruneHandler("magnitude", 0.2, scope="layer")
    with pytest.raises(ValueError, match="snip_batches must be an integer >= 1"):
        PruneHandler("snip", 0.2, snip_batches=0)
    with pytest.raises(ValueError, match="round_to must be null or an integer >= 1"):
        PruneHandler("depgraph", 0.2, round_to=0)
    with pytest.raises(ValueError, match="round_to applies to DepGraph's channel counts; magnitude zeroes weights"):
        PruneHandler("magnitude", 0.2, round_to=8)


def test_rebind_refuses_a_foreign_parameter():
    net = torch.nn.Conv2d(1, 1, 1)
    stranger = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([net.weight, stranger], lr=0.1)
    with pytest.raises(ValueError, match="not one of the pruned network's"):
        rebind_optimizer(optimizer, net, {id(p): n for n, p in net.named_parameters()})


def _grads(net):
    return {name: p.grad.detach().clone() for name, p in net.named_parameters() if p.grad is not None}


def test_group_sparsity_adds_weight_times_gamma_times_w_to_the_gradients():
    from raagr2_monai.pruning import GroupSparsity

    torch.manual_seed(0)
    net = get_network("depthwise")
    # small gradients (the probabilities'), so that the added terms are not lost in float32 cancellation below
    torch.sigmoid(net(torch.randn(1, 4, 32, 32))).mean().backward()
    plain = _grads(net)
    sparsity = GroupSparsity(net, 1e-3)
    sparsity.regularize()
    once = _grads(net)
    sparsity.regularize(grad_scale=2.0)
    thrice = _grads(net)
    changed = [name for name in plain if not torch.equal(plain[name], once[name])]
    # many conv and BatchNorm weights, never the ignored first encoder stage; the head's input columns only (its
    # output channels are the three regions)
    assert len(changed) > 20 and not any(n.startswith("encoder.0.") for n in changed)
    assert [n for n in changed if n.startswith("head.")] == ["head.weight"]
    for name in changed:
        added = once[name] - plain[name]
        assert torch.allclose(thrice[name] - once[name], 2 * added, rtol=1e-3, atol=1e-8), name
        weight = dict(net.named_parameters())[name].detach()
        ratio = added[weight != 0] / weight[weight != 0]
        # weight * gamma with gamma in [1, 16], from the group of its output channel and that of its input channel:
        # the term pulls each weight towards zero, the least important most
        assert ratio.min() >= 1e-3 * (1 - 1e-4) and ratio.max() <= 2 * 16e-3 * (1 + 1e-4), name


def test_group_sparsity_handler_regularises_between_backward_and_step_and_is_off_at_zero():
    from raagr2_monai.handlers import GroupSparsityHandler

    calls = []
    torch.manual_seed(0)
    handler = GroupSparsityHandler(1e-3, roi_size=(32, 32))
    # called once per iteration, after the backward pass
    handler.regularize = lambda engine: calls.append(
        (engine.state.iteration, all(p.grad is not None for p in engine.network.parameters() if p.requires_grad)))
    trainer, _ = _trainer(get_network("depthwise"), [handler])
    trainer.run()
    assert calls == [(1, True), (2, True)] and handler.sparsity is not None

    off = GroupSparsityHandler(0.0)
    trainer, _ = _trainer(get_network("depthwise"), [off])
    trainer.run()
    assert off.sparsity is None
    with pytest.raises(ValueError, match="group_sparsity must be a number >= 0"):
        GroupSparsityHandler(-1e-4)
