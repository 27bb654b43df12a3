"""RAAGR2-Net and its three weight-shared variants, composed from :mod:`raagr2_monai.networks.blocks`.

All four share one U-shaped skeleton: five encoder stages (4 -> 32 -> 64 -> 128 -> 256 -> 512, 2x2 max-pooling
between stages), four decoder levels (``UpConv``, ``AttentionGate`` on the skip connection, a block on
``concat[gated skip, upsampled]``) and a 1x1 head. Like MONAI's networks they return logits: the sigmoid is in the
loss (:class:`~raagr2_monai.losses.RAAGR2Loss`) and the inferer (:class:`~raagr2_monai.deploy.BrainSliceInferer`).
The variants differ only in the encoder stage and the decoder block they plug in. Parameter counts at
``out_channels=5``: baseline 8,911,301; depthwise 5,046,221; paired 5,051,061; encdec 6,606,701.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import nn

from .blocks import AttentionGate, ReASPP3, RRCNNBlock, SharedReASPP3, UpConv

__all__ = [
    "RAAGR2Net",
    "DepthwiseSharedRAAGR2Net",
    "PairedSharedRAAGR2Net",
    "EncoderDecoderSharedRAAGR2Net",
    "DEFAULT_FEATURES",
    "HEAD_PRIOR",
]

DEFAULT_FEATURES = (32, 64, 128, 256, 512)

#: Probability every output channel starts at: the head's bias (the network's output is a logit) is initialised to
#: its logit. Tumour regions fill about 1 % of a BraTS slice, so a network that starts at 0.5 everywhere first
#: spends its steps learning "background"; Encoder-Decoder Shared, whose decoder ends in BatchNorm -> ReLU with small
#: activations, took about 400 Adam steps to do so (its loss at 210 steps 0.34 against the baseline's 0.14; with this
#: prior 0.16). The focal-loss prior of Lin et al., "Focal Loss for Dense Object Detection", 2017.
HEAD_PRIOR = 0.01


class RAAGR2Net(nn.Module):
    """The baseline RAAGR2-Net: ReASPP3 encoder stages, RRCNN decoder blocks.

    Args:
        in_channels: input modalities (4 for BraTS: T1ce, T1, T2, FLAIR).
        out_channels: output channels (3 for TC, WT, ET).
        features: widths of the five encoder stages.
        dropout: dropout probability in the decoder blocks.

    The input is ``(B, in_channels, H, W)`` with ``H`` and ``W`` multiples of 16; the output is
    ``(B, out_channels, H, W)`` logits, one independent sigmoid per channel (multi-label, not softmax). Until
    2026-12-07 the network ended in that sigmoid; the weights are the same, so earlier checkpoints load unchanged and
    give the same label maps.

    Example::

        >>> net = RAAGR2Net(in_channels=4, out_channels=3)
        >>> net(torch.zeros(1, 4, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        features: Sequence[int] = DEFAULT_FEATURES,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        self.in_channels = in_channels
        self.network_name: str = type(self).__name__
        self.out_channels = out_channels
        self.size_divisor = 2 ** (len(features) - 1)
        widths = (in_channels,) + features
        self.encoder = nn.ModuleList(self._encoder_stage(widths[i], widths[i + 1]) for i in range(len(features)))
        decoder_widths = features[-2::-1]
        self.up = nn.ModuleList(UpConv(2 * c, c) for c in decoder_widths)
        self.gates = nn.ModuleList(AttentionGate(c) for c in decoder_widths)
        self.decoder = nn.ModuleList(self._decoder_block(c, dropout) for c in decoder_widths)
        self.head = nn.Conv2d(features[0], out_channels, 1)
        nn.init.constant_(self.head.bias, math.log(HEAD_PRIOR / (1 - HEAD_PRIOR)))

    def _encoder_stage(self, in_channels: int, out_channels: int) -> nn.Module:
        return ReASPP3(in_channels, out_channels)

    def _decoder_block(self, channels: int, dropout: float) -> nn.Module:
        return RRCNNBlock(2 * channels, channels, dropout=dropout)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, H, W)`` with ``H`` and ``W`` multiples of 16."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.network_name} expects input of shape (B, {self.in_channels}, H, W); got {list(x.shape)}."
            )
        if x.shape[2] % self.size_divisor != 0 or x.shape[3] % self.size_divisor != 0:
            raise ValueError(
                f"{self.network_name} needs H and W to be multiples of {self.size_divisor} "
                f"(one per 2x2 pooling); got input shape {list(x.shape)}."
            )

    def encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Run the encoder; returns every stage's output, shallowest first."""
        skips: List[torch.Tensor] = []
        h = x
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = nn.functional.max_pool2d(h, 2)
            h = stage(h)
            skips.append(h)
        return skips

    def decode(self, skips: List[torch.Tensor]) -> torch.Tensor:
        """Run the decoder from the encoder outputs; returns the last level's features."""
        h = skips[-1]
        for i, (up, gate, block) in enumerate(zip(self.up, self.gates, self.decoder)):
            d = up(h)
            s = gate(d, skips[-2 - i])
            h = block(torch.cat([s, d], dim=1))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.head(self.decode(self.encode(x)))


class _SharedEncoderRAAGR2Net(RAAGR2Net):
    """RAAGR2-Net whose encoder stages are :class:`SharedReASPP3`, each branch using ``kernel_index``."""

    kernel_index: Sequence[int] = (0, 0, 0, 0)

    def _encoder_stage(self, in_channels: int, out_channels: int) -> nn.Module:
        return SharedReASPP3(in_channels, out_channels, kernel_index=self.kernel_index)


class DepthwiseSharedRAAGR2Net(_SharedEncoderRAAGR2Net):
    """Depthwise Shared RAAGR2-Net: each encoder stage has one depthwise kernel shared by its four dilations.

    The decoder is the baseline's. 5,046,221 parameters at ``out_channels=5``. Arguments as :class:`RAAGR2Net`.
    """

    kernel_index = (0, 0, 0, 0)


class PairedSharedRAAGR2Net(_SharedEncoderRAAGR2Net):
    """Paired Shared RAAGR2-Net: two kernels per encoder stage, one for dilations 1 and 3, one for 6 and 9.

    5,051,061 parameters at ``out_channels=5``. Arguments as :class:`RAAGR2Net`.
    """

    kernel_index = (0, 0, 1, 1)


class EncoderDecoderSharedRAAGR2Net(_SharedEncoderRAAGR2Net):
    """Encoder-Decoder Shared RAAGR2-Net: the decoder reuses the encoder's depthwise kernels.

    The encoder is Depthwise Shared. Each decoder level of width ``C`` replaces the RRCNN block with a
    ``SharedReASPP3(2C -> C)`` that owns no kernel: it applies the kernel of the encoder stage whose input width is
    ``C`` to the gated skip and to the upsampled features, separately, before concatenating them. 6,606,701 parameters
    at ``out_channels=5``. With no RRCNN block to hold it, ``dropout`` acts after each decoder block (the other
    variants drop inside theirs): the same regularisation in training, and layers for Monte-Carlo dropout to sample
    (:mod:`raagr2_monai.networks.sampling`). Arguments as :class:`RAAGR2Net`.
    """

    kernel_index = (0, 0, 0, 0)

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        features: Sequence[int] = DEFAULT_FEATURES,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(in_channels, out_channels, features, dropout)
        self.decoder_dropout = nn.Dropout(dropout)

    def _decoder_block(self, channels: int, dropout: float) -> nn.Module:
        return SharedReASPP3(2 * channels, channels, kernel_index=self.kernel_index, own_kernels=False)

    def decode(self, skips: List[torch.Tensor]) -> torch.Tensor:
        weights: List[torch.Tensor] = []
        biases: List[torch.Tensor] = []
        for stage in self.encoder:
            weights.append(stage.kernels[0].weight)
            biases.append(stage.kernels[0].bias)
        h = skips[-1]
        for i, (up, gate, block) in enumerate(zip(self.up, self.gates, self.decoder)):
            d = up(h)
            # decoder level i has width features[-2 - i]: the input width of encoder stage len - 1 - i
            source = len(weights) - 1 - i
            h = self.decoder_dropout(block([gate(d, skips[-2 - i]), d], weights[source], biases[source]))
        return h
