"""Keeping an optimizer on a network whose parameters pruning replaced."""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

__all__ = ["rebind_optimizer"]


def rebind_optimizer(optimizer: torch.optim.Optimizer, network: nn.Module, names: Dict[int, str]) -> int:
    """Point ``optimizer``'s parameter groups at ``network``'s current parameters, matched by name.

    Structured pruning replaces parameter tensors by smaller ones; an optimizer built before it would go on updating
    the old tensors, which the network no longer uses. The state of replaced parameters (Adam moments of the old
    shape) is dropped; the optimizer object, its hyper-parameters and anything that references it (an LR scheduler)
    are kept.

    Args:
        optimizer: the optimizer built on ``network`` before pruning.
        network: the pruned network.
        names: ``id(parameter) -> name`` recorded from ``network.named_parameters()`` before pruning.

    Returns:
        The number of parameters replaced.

    Raises:
        ValueError: when the optimizer holds a parameter that was not the network's, or one the pruning removed.
    """
    current = dict(network.named_parameters())
    replaced = 0
    for group in optimizer.param_groups:
        params = []
        for param in group["params"]:
            name = names.get(id(param))
            if name is None or name not in current:
                raise ValueError(
                    "The optimizer holds a parameter that is not one of the pruned network's "
                    f"({'unknown' if name is None else name!r}); build the optimizer on the network being pruned."
                )
            new = current[name]
            if new is not param:
                optimizer.state.pop(param, None)
                replaced += 1
            params.append(new)
        group["params"] = params
    return replaced
