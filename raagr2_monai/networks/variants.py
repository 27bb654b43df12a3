"""The four variants as their bundles and reports describe them: the network class and the words for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

from .registry import NETWORKS

__all__ = ["Variant", "VARIANTS"]


@dataclass(frozen=True)
class Variant:
    """What differs between the bundles: the network class (by registry name) and the words that describe it.

    Example::

        >>> VARIANTS["depthwise"].network
        'raagr2_monai.networks.DepthwiseSharedRAAGR2Net'
    """

    name: str
    title: str
    summary: str

    @property
    def network(self) -> str:
        """The class's dotted path as configs name it (the package exports every network class)."""
        return f"{__package__}.{NETWORKS[self.name].__name__}"


VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "baseline",
            "RAAGR2-Net (baseline)",
            "the uncompressed RAAGR2-Net: ReASPP3 encoder stages, attention-gated skip connections and recurrent "
            "residual (RRCNN) decoder blocks",
        ),
        Variant(
            "depthwise",
            "Depthwise Shared RAAGR2-Net",
            "RAAGR2-Net whose encoder stages are redesigned around one depthwise 3x3 kernel per stage, shared by "
            "the stage's four dilated branches",
        ),
        Variant(
            "paired",
            "Paired Shared RAAGR2-Net",
            "RAAGR2-Net whose encoder stages share two depthwise 3x3 kernels per stage, one for dilations 1 and 3 "
            "and one for dilations 6 and 9",
        ),
        Variant(
            "encdec",
            "Encoder-Decoder Shared RAAGR2-Net",
            "RAAGR2-Net with Depthwise Shared encoder stages whose kernels are reused by the decoder: each decoder "
            "level applies the kernel of the encoder stage of its width",
        ),
    )
}
