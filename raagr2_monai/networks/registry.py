"""The RAAGR2-Net variants by name."""

from __future__ import annotations

from typing import Dict, Type

from torch import nn

from .raagr2net import DepthwiseSharedRAAGR2Net, EncoderDecoderSharedRAAGR2Net, PairedSharedRAAGR2Net, RAAGR2Net

__all__ = ["NETWORKS", "get_network", "variant_of"]

#: Variant name -> network class. Bundle configs name the classes by dotted path, e.g.
#: ``raagr2_monai.networks.DepthwiseSharedRAAGR2Net``.
NETWORKS: Dict[str, Type[RAAGR2Net]] = {
    "baseline": RAAGR2Net,
    "depthwise": DepthwiseSharedRAAGR2Net,
    "paired": PairedSharedRAAGR2Net,
    "encdec": EncoderDecoderSharedRAAGR2Net,
}


def get_network(name: str, in_channels: int = 4, out_channels: int = 3, **kwargs) -> nn.Module:
    """Build a RAAGR2-Net variant by name.

    Args:
        name: one of ``baseline``, ``depthwise``, ``paired``, ``encdec``.
        in_channels: input modalities.
        out_channels: output channels.
        kwargs: passed on to the class (``features``, ``dropout``).

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.

    Example::

        >>> net = get_network("paired", out_channels=5)
        >>> sum(p.numel() for p in net.parameters())
        5051061
    """
    try:
        cls = NETWORKS[name]
    except KeyError:
        raise ValueError(f"Unknown network {name!r}; valid names: {', '.join(NETWORKS)}.") from None
    return cls(in_channels=in_channels, out_channels=out_channels, **kwargs)


def variant_of(model: nn.Module) -> str:
    """The registry name of a network instance (``baseline``, ``depthwise``, ...)."""
    for name, cls in NETWORKS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a RAAGR2-Net variant; known: {', '.join(NETWORKS)}.")
