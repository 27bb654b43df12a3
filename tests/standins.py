"""Stand-in networks that test data paths independently of training: their output is known everywhere.

Like the real networks they return logits; +-20 stand for certainty (a sigmoid of 1 - 2e-9 or 2e-9)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

_CERTAIN = 20.0


class ConstantRegions(nn.Module):
    """Predicts the same probability for each of TC, WT, ET at every pixel, e.g. ``(1, 1, 1)``: tumour everywhere.

    Args:
        probabilities: one value per output channel.
    """

    def __init__(self, probabilities: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__()
        p = torch.tensor([float(p) for p in probabilities]).view(1, -1, 1, 1)
        self.register_buffer("values", torch.logit(p).clamp(-_CERTAIN, _CERTAIN))
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so that device and optimizer code works

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values.expand(x.shape[0], -1, *x.shape[2:]) + 0.0 * self.anchor


class BrightChannel(nn.Module):
    """Predicts every region where input channel ``channel`` is above ``level`` (z-scored intensities): a
    prediction tied to the anatomy, so that a wrong flip, shift or resampling of the write-back shows.

    Args:
        channel: the input channel to threshold.
        level: the z-score above which every region is predicted.
    """

    def __init__(self, channel: int = 0, level: float = 0.5) -> None:
        super().__init__()
        self.channel = channel
        self.level = level
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x[:, self.channel : self.channel + 1] > self.level).float()
        return (2 * bright - 1).expand(-1, 3, -1, -1) * _CERTAIN + 0.0 * self.anchor
