"""The four bundle variants: what differs between the bundles (the network class and the words that describe it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

__all__ = ["Variant", "VARIANTS"]


@dataclass(frozen=True)
class Variant:
    """What differs between the bundles: the network class and the words that describe it."""

    name: str
    network: str
    title: str
    summary: str


VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "baseline",
            "raagr2_monai.networks.RAAGR2Net",
            "RAAGR2-Net (baseline)",
            "the uncompressed RAAGR2-Net: ReASPP3 encoder stages, attention-gated skip connections and recurrent "
            "residual (RRCNN) decoder blocks",
        ),
        Variant(
            "depthwise",
            "raagr2_monai.networks.DepthwiseSharedRAAGR2Net",
            "Depthwise Shared RAAGR2-Net",
            "RAAGR2-Net whose encoder stages are redesigned around one depthwise 3x3 kernel per stage, shared by "
            "the stage's four dilated branches",
        ),
        Variant(
            "paired",
            "raagr2_monai.networks.PairedSharedRAAGR2Net",
            "Paired Shared RAAGR2-Net",
            "RAAGR2-Net whose encoder stages share two depthwise 3x3 kernels per stage, one for dilations 1 and 3 "
            "and one for dilations 6 and 9",
        ),
        Variant(
            "encdec",
            "raagr2_monai.networks.EncoderDecoderSharedRAAGR2Net",
            "Encoder-Decoder Shared RAAGR2-Net",
            "RAAGR2-Net with Depthwise Shared encoder stages whose kernels are reused by the decoder: each decoder "
            "level applies the kernel of the encoder stage of its width",
        ),
    )
}
