"""Size and cost of a network: parameters (in total and per part), FLOPs, state_dict size."""

from __future__ import annotations

import io
from typing import Dict, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from raagr2_monai.utils import model_device

__all__ = ["count_parameters", "parameters_per_part", "count_flops", "state_dict_mb", "PARTS"]

#: The parts of a RAAGR2-Net, by attribute name, and how reports call them.
PARTS = {"encoder": "encoder", "up": "up-convs", "gates": "gates", "decoder": "decoder blocks", "head": "head"}


def count_parameters(model: nn.Module) -> int:
    """Parameters counted once per tensor, as ``model.parameters()`` yields them (shared tensors once)."""
    return sum(p.numel() for p in model.parameters())


def parameters_per_part(model: nn.Module) -> Dict[str, int]:
    """Parameters of each RAAGR2-Net part (see :data:`PARTS`); a tensor shared between parts counts in its owner."""
    return {label: count_parameters(getattr(model, attr)) for attr, label in PARTS.items()}


def count_flops(model: nn.Module, shape: Sequence[int] = (1, 4, 192, 192)) -> int:
    """Floating-point operations of one forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    The counter sees every convolution, functional ones included, and counts a multiply-add as two FLOPs; it ignores
    element-wise operations, pooling and interpolation. The baseline with 5 output channels at ``(1, 4, 192, 192)``
    gives 15,460,761,600.

    Args:
        model: the network; it is run once in eval mode on zeros, without gradients, and left in its former mode.
        shape: input shape ``(B, C, H, W)``.

    Returns:
        The FLOP count.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> count_flops(get_network("baseline", out_channels=5), (1, 4, 32, 32))  # 15,460,761,600 at 192 x 192
        429465600
    """
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(tuple(shape), device=model_device(model)))
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def state_dict_mb(model: nn.Module) -> float:
    """Size in MB (10^6 bytes) of the model's state_dict as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6
