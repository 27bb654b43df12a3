"""BatchNorm recalibration: re-estimating running statistics after pruning has changed the activations."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import nn

from raagr2_monai.utils import model_device

__all__ = ["recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Any], num_batches: int = 10) -> int:
    """Re-estimate every BatchNorm's running statistics, e.g. after pruning.

    Statistics are reset and accumulated as a plain average (``momentum=None``) over up to ``num_batches`` batches,
    with BatchNorm layers in train mode and everything else in eval mode (dropout off, as at inference). No weight
    changes; modes and momenta are restored.

    Args:
        model: the network.
        batches: images, ``(image, label)`` pairs or dicts with ``image``.
        num_batches: the most batches to use, at least 1.

    Returns:
        The number of batches used.

    Raises:
        ValueError: for ``num_batches < 1`` or when ``batches`` yields nothing.

    Example::

        recalibrate_bn(net, loader, num_batches=20)
        # 20
    """
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer; got {num_batches!r}.")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    device = model_device(model)
    used = 0
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for batch in batches:
            if used >= num_batches:
                break
            if isinstance(batch, torch.Tensor):
                image = batch
            else:
                image = batch["image"] if isinstance(batch, Mapping) else batch[0]
            model(image.to(device))
            used += 1
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, training in modes.items():
            m.train(training)
    if used == 0:
        raise ValueError("BatchNorm recalibration needs at least one batch; the iterable was empty.")
    return used
