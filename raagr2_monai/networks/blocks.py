"""Building blocks of RAAGR2-Net and its weight-shared variants.

Every block is 2D, keeps the spatial size (3x3 convolutions are padded by their dilation) and uses
out-of-place activations: in-place ReLUs break torch-pruning's dependency tracing.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "conv_bn_relu",
    "SeparableConv",
    "ReASPP3",
    "DepthwiseKernel",
    "depthwise_conv",
    "SharedDepthwiseBlock",
    "SharedReASPP3",
    "UpConv",
    "AttentionGate",
    "RecurrentBlock",
    "RRCNNBlock",
]


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1, groups: int = 1, bias: bool = True
) -> nn.Sequential:
    """Conv2d (padded to keep the size) -> BatchNorm2d -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
            groups=groups,
            bias=bias,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class SeparableConv(nn.Sequential):
    """Grouped 3x3 convolution with a channel multiplier (``groups = in_channels``), then 1x1, BN, ReLU.

    One module rather than two, so that structured pruning can treat it as a unit: dropping input channel ``j``
    drops the ``m = out_channels / in_channels`` grouped filters of group ``j`` and the matching columns of the 1x1
    (:class:`raagr2_monai.pruning.structured.SeparableConvPruner`; torch-pruning 1.6.1 mis-prunes the grouped
    convolution on its own).

    Args:
        in_channels: input channels (the groups).
        out_channels: output channels, a multiple of ``in_channels``.
        dilation: dilation of the 3x3 convolution.
    """

    # accessors for the pruner; TorchScript need not compile them
    __jit_unused_properties__ = ["grouped", "pointwise", "norm"]

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        if out_channels % in_channels:
            raise ValueError(
                f"SeparableConv needs out_channels ({out_channels}) to be a multiple of in_channels ({in_channels})."
            )
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, groups=in_channels),
            conv_bn_relu(out_channels, out_channels),
        )

    @property
    def grouped(self) -> nn.Conv2d:
        return self[0]

    @property
    def pointwise(self) -> nn.Conv2d:
        return self[1][0]

    @property
    def norm(self) -> nn.BatchNorm2d:
        return self[1][1]


class _RefinedBranch(nn.Module):
    """A ReASPP3 branch: ``u = stem(x)``, then ``u + ReLU(BN(1x1(u)))``."""

    def __init__(self, stem: nn.Module, channels: int) -> None:
        super().__init__()
        self.stem = stem
        self.refine = conv_bn_relu(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.stem(x)
        return u + self.refine(u)


class ReASPP3(nn.Module):
    """Residual atrous spatial pyramid pooling with dilation base ``r`` (the baseline's encoder stage).

    Four parallel branches see the same input. Dilations 1 and ``r`` use a grouped 3x3 convolution
    (``groups = in_channels``) followed by a 1x1 convolution; dilations ``2r`` and ``3r`` use a dense dilated 3x3
    convolution. Each branch ends with a residual 1x1 refinement; the branches and the input are concatenated and
    fused by a 1x1 convolution. Parameters: ``10 Co^2 + 19 Ci Co + 47 Co``.

    Args:
        in_channels: input channels ``Ci``; ``out_channels`` must be a multiple of it.
        out_channels: output channels ``Co``.
        rate: dilation base ``r``.

    Example::

        >>> ReASPP3(4, 32)(torch.zeros(1, 4, 16, 16)).shape
        torch.Size([1, 32, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int = 3) -> None:
        super().__init__()
        separable = [SeparableConv(in_channels, out_channels, d) for d in (1, rate)]
        dense = [conv_bn_relu(in_channels, out_channels, 3, dilation=d) for d in (2 * rate, 3 * rate)]
        self.branches = nn.ModuleList(_RefinedBranch(stem, out_channels) for stem in separable + dense)
        self.fuse = conv_bn_relu(4 * out_channels + in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: List[torch.Tensor] = []
        for branch in self.branches:
            features.append(branch(x))
        features.append(x)
        return self.fuse(torch.cat(features, dim=1))


class DepthwiseKernel(nn.Module):
    """A depthwise 3x3 kernel and its bias, owned here and applied by other modules.

    Initialised as ``nn.Conv2d(channels, channels, 3, groups=channels)`` would be.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, 3, 3))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in = self.weight[0].numel()
        nn.init.uniform_(self.bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[0]}"


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int) -> torch.Tensor:
    """Apply a depthwise 3x3 kernel; ``groups`` comes from the kernel's shape so structured pruning can shrink it."""
    return F.conv2d(x, weight, bias, padding=dilation, dilation=dilation, groups=weight.shape[0])


class SharedDepthwiseBlock(nn.Module):
    """Depthwise 3x3 with a kernel it does not own, then two 1x1 projections.

    ``y = depthwise(x, W, b)``; ``out = ReLU(BN(1x1(y))) + 1x1_nobias(y)``. When the input comes in several parts,
    the kernel is applied to each part and the results are concatenated: the same as applying the kernel repeated
    over the concatenated input, in a form torch-pruning can trace.

    Args:
        in_channels: channels of ``y`` (all parts together).
        out_channels: output channels.
        dilation: dilation of the depthwise kernel.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.project = conv_bn_relu(in_channels, out_channels)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, parts: List[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        filtered: List[torch.Tensor] = []
        for part in parts:
            filtered.append(depthwise_conv(part, weight, bias, self.dilation))
        y = torch.cat(filtered, dim=1)
        return self.project(y) + self.shortcut(y)


class SharedReASPP3(nn.Module):
    """ReASPP3 redesigned around shared depthwise kernels (the weight-shared variants' stage).

    Four :class:`SharedDepthwiseBlock` branches with dilations 1, 3, 6, 9; the branches and the input are concatenated
    and fused by a 1x1 convolution without bias, BN and ReLU. Branch ``i`` uses kernel ``kernel_index[i]``.

    Args:
        in_channels: input channels ``Ci`` (all input parts together).
        out_channels: output channels ``Co``.
        kernel_index: which of the stage's kernels each branch uses: ``(0, 0, 0, 0)`` shares one kernel across the
            four dilations, ``(0, 0, 1, 1)`` pairs them.
        own_kernels: ``False`` for a stage that borrows another module's kernel (passed to ``forward``).
        dilations: the branches' dilations.

    Parameters: ``4 Co^2 + 9 Ci Co + 14 Co`` plus ``10 Ci`` per owned kernel.

    Example::

        >>> stage = SharedReASPP3(32, 64, kernel_index=(0, 0, 1, 1))
        >>> stage(torch.zeros(1, 32, 16, 16)).shape
        torch.Size([1, 64, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_index: Sequence[int] = (0, 0, 0, 0),
        own_kernels: bool = True,
        dilations: Sequence[int] = (1, 3, 6, 9),
    ) -> None:
        super().__init__()
        if len(kernel_index) != len(dilations):
            raise ValueError(f"kernel_index {tuple(kernel_index)} needs one entry per dilation {tuple(dilations)}.")
        self.kernel_index: List[int] = [int(i) for i in kernel_index]
        self.kernels = nn.ModuleList(
            DepthwiseKernel(in_channels) for _ in range(max(self.kernel_index) + 1 if own_kernels else 0)
        )
        self.branches = nn.ModuleList(SharedDepthwiseBlock(in_channels, out_channels, d) for d in dilations)
        self.fuse = conv_bn_relu(4 * out_channels + in_channels, out_channels, bias=False)

    def forward(
        self,
        x: Union[torch.Tensor, List[torch.Tensor]],
        weight: Optional[torch.Tensor] = None,
        bias: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Run the stage on ``x``.

        Args:
            x: the input, as one tensor or as the parts a decoder would concatenate along channels.
            weight: a borrowed depthwise kernel ``(C, 1, 3, 3)``, applied to every part; ``None`` uses the stage's own.
            bias: its bias ``(C,)``.
        """
        parts = [x] if isinstance(x, torch.Tensor) else x
        weights: List[torch.Tensor] = []
        biases: List[torch.Tensor] = []
        if weight is not None and bias is not None:
            for _ in self.kernel_index:
                weights.append(weight)
                biases.append(bias)
        else:
            owned_w: List[torch.Tensor] = []
            owned_b: List[torch.Tensor] = []
            for kernel in self.kernels:
                owned_w.append(kernel.weight)
                owned_b.append(kernel.bias)
            if len(owned_w) == 0:
                raise ValueError("This SharedReASPP3 owns no kernel: pass the borrowed weight and bias to forward().")
            for i in self.kernel_index:
                weights.append(owned_w[i])
                biases.append(owned_b[i])
        features: List[torch.Tensor] = []
        for i, branch in enumerate(self.branches):
            features.append(branch(parts, weights[i], biases[i]))
        features.extend(parts)
        return self.fuse(torch.cat(features, dim=1))


class UpConv(nn.Module):
    """Bilinear x2 upsampling (``align_corners=True``), dense 3x3, BN, ReLU. Parameters ``9 Ci Co + 3 Co``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = conv_bn_relu(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(x))


class AttentionGate(nn.Module):
    """Additive attention gate with a per-channel, per-pixel gate.

    ``g' = BN(1x1(g))``, ``x' = BN(1x1(x))`` with ``F = C / 2`` channels;
    ``alpha = sigmoid(BN(1x1_{F -> C}(ReLU(g' + x'))))``; output ``x * alpha``. Unlike Attention U-Net's
    single-channel map, ``alpha`` has ``C`` channels, which also keeps the gate prunable. Parameters ``6F^2 + 12F``.

    Args:
        channels: channels ``C`` of the gating signal and of the skip connection.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inter = channels // 2
        self.gate = nn.Sequential(nn.Conv2d(channels, inter, 1), nn.BatchNorm2d(inter))
        self.skip = nn.Sequential(nn.Conv2d(channels, inter, 1), nn.BatchNorm2d(inter))
        self.psi = nn.Sequential(nn.Conv2d(inter, 2 * inter, 1), nn.BatchNorm2d(2 * inter), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        alpha = self.psi(F.relu(self.gate(g) + self.skip(x)))
        return x * alpha


class RecurrentBlock(nn.Module):
    """Recurrent convolution with ``t`` recurrences: ``f(x + f(x + f(x)))`` for ``t = 2``, one set of weights.

    ``f`` is depthwise 3x3 (bias), pointwise 1x1 (bias), BN, ReLU.
    """

    def __init__(self, channels: int, t: int = 2) -> None:
        super().__init__()
        self.t = t
        self.conv = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
            conv_bn_relu(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        for _ in range(self.t):
            h = self.conv(x + h)
        return h


class RRCNNBlock(nn.Module):
    """Recurrent residual block: 1x1 (bias), dropout, two :class:`RecurrentBlock`, residual sum.

    Parameters ``4 C^2 + 27 C`` for ``2C -> C``.

    Args:
        in_channels: input channels (the decoder's concatenation, ``2C``).
        out_channels: output channels ``C``.
        t: recurrences per recurrent block.
        dropout: dropout probability after the 1x1 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, t: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, out_channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.recurrent = nn.Sequential(RecurrentBlock(out_channels, t), RecurrentBlock(out_channels, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.reduce(x))
        return x + self.recurrent(x)
