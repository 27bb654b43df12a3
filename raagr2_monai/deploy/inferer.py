"""Slice-by-slice inference that spends no network time outside the brain, on windows or on whole slices.

After the bundles' preprocessing everything outside the brain is exactly zero: z-scoring over brain voxels
(``NormalizeIntensityd(nonzero=True)``) leaves the background at 0, and every padding is 0. So every window of
``SliceInferer`` without a brain voxel is the same input, all zeros, and the network gives each the same output.
:class:`BrainSliceInferer` computes that output once per window shape and gives it to every empty window: the
slices above and below the brain and the empty corners of the brain's box cost no network time, and the result is
the one of running every window, up to the last bits of floating point (a window's output may differ in its last
bits with the number of windows batched with it).

The networks return logits; the inferer applies the sigmoid to each network call's output (``sigmoid``), so it
returns region probabilities and overlapping windows blend probabilities, as they did when the networks ended in
the sigmoid themselves.

With ``whole_slice`` (the bundles' default for validation, evaluation and inference) a study's slices are the batch:
``sw_batch_size`` whole slices per network call, a study of 155 slices in a few calls, where ``roi_size`` windows
cost about four overlapping windows per slice and MONAI's per-window bookkeeping.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.utils import convert_to_dst_type

from raagr2_monai.constants import MONTE_CARLO_SAMPLE
from raagr2_monai.networks import SampledProbabilities, batchnorm_in_eval, check_mc_dropout, check_uncertainty
from raagr2_monai.utils import as_flag, retain_freed_memory

__all__ = ["BrainSliceInferer", "SkipEmptyWindows", "check_sampled_network"]


def check_sampled_network(uncertainty: Any, network: Any = None, backend: str = "torch", model: Any = None) -> None:
    """Refuse Monte-Carlo dropout where it cannot apply, before any study is read: behind an exported backend (ONNX
    Runtime and OpenVINO run the graph without dropout) or on a network without dropout layers. Any other
    uncertainty setting passes (:func:`~raagr2_monai.networks.check_uncertainty` checks the values themselves).

    Args:
        uncertainty: the uncertainty mode.
        network: the torch network whose dropout layers ``mc_dropout`` switches on (an inference config's
            ``network_def``); not looked at behind an exported backend.
        backend: ``torch``, ``onnxruntime`` or ``openvino``.
        model: what the message names (the bundle folder); ``None``: the network's class.

    Raises:
        ValueError: ``mc_dropout`` with an exported backend or a network without dropout, in one line naming the
            model.

    Example::

        >>> check_sampled_network("tta", backend="openvino")  # flips apply to any backend
        >>> check_sampled_network("mc_dropout", nn.Conv2d(1, 1, 1))
        Traceback (most recent call last):
        ...
        ValueError: uncertainty mc_dropout needs dropout layers, and Conv2d has none (an exported model runs without dropout); use uncertainty tta instead.
    """
    if uncertainty != "mc_dropout":
        return
    if backend != "torch":
        raise ValueError(f"uncertainty mc_dropout cannot run on the {backend} export of {model or 'the bundle'}: an "
                         "exported model has no dropout layers; use uncertainty tta, or backend torch.")
    check_mc_dropout(network, f"the network of {model} ({type(network).__name__})" if model else None)


class SkipEmptyWindows:
    """A network that runs only on the windows of a batch holding some non-zero input.

    All-zero windows get the network's output for zeros, computed once per window shape (and batched alone, so it
    does not depend on what it was batched with). ``calls`` counts the windows the network really ran on.

    Args:
        network: the network (any callable from ``(B, C, H, W)`` to one tensor ``(B, out, H, W)``).

    Example::

        >>> network = SkipEmptyWindows(lambda x: x.sum(1, keepdim=True) + 1)
        >>> x = torch.zeros(3, 2, 4, 4); x[1, 0, 0, 0] = 5.0
        >>> out = network(x)
        >>> out[:, 0, 0, 0].tolist(), network.calls
        ([1.0, 6.0, 1.0], 2)
    """

    def __init__(self, network: Callable[..., torch.Tensor]) -> None:
        self.network = network
        self.empty_output: Dict[Tuple[int, ...], torch.Tensor] = {}
        self.calls = 0

    def _run(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.calls += int(x.shape[0])
        return self.network(x, *args, **kwargs)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        filled = x.reshape(x.shape[0], -1).ne(0).any(dim=1)
        if bool(filled.all()):
            return self._run(x, *args, **kwargs)
        window = tuple(int(s) for s in x.shape[1:])
        if window not in self.empty_output:
            self.empty_output[window] = self._run(x.new_zeros((1, *window)), *args, **kwargs)
        empty = self.empty_output[window]
        out = empty.expand(x.shape[0], *empty.shape[1:]).clone()
        if bool(filled.any()):
            out[filled] = self._run(x[filled], *args, **kwargs).to(out.dtype)
        return out


class _Sigmoid:
    """A network whose output goes through the sigmoid: logits in, region probabilities out."""

    def __init__(self, network: Callable[..., torch.Tensor]) -> None:
        self.network = network

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.sigmoid(self.network(x, *args, **kwargs))


class BrainSliceInferer(SliceInferer):
    """MONAI's ``SliceInferer`` that runs the network only on windows holding brain (:class:`SkipEmptyWindows`),
    and optionally on whole slices.

    Args:
        roi_size: the in-plane window; ignored with ``whole_slice``.
        sw_batch_size: windows per network call.
        overlap: overlap of neighbouring windows.
        mode: blending of overlapping windows (``constant`` or ``gaussian``).
        spatial_dim: the axis slices are taken across (2: axial slices of an RAS volume).
        skip_empty: give all-zero windows the network's output for zeros instead of running it on each.
        whole_slice: the network on whole slices, ``sw_batch_size`` slices per call (the slices are the batch; no
            window, no overlap to compute twice, no blending), instead of ``roi_size`` windows. The network sees
            another context than with ``roi_size`` windows, so the result is close to, not equal to, the windowed
            one.
        sigmoid: apply the sigmoid to each network call's output, before windows are blended (the networks return
            logits); false: return the network's outputs as they are.
        uncertainty: ``none``; or ``tta`` (the slices and their in-plane flips) or ``mc_dropout`` (the dropout
            layers on): each network call becomes ``samples`` predictions whose probabilities are averaged
            (:class:`~raagr2_monai.networks.SampledProbabilities`), so the output is the mean probability, from which
            :func:`~raagr2_monai.metrics.entropy_map` gives the uncertainty. Needs ``sigmoid``.
        samples: predictions per call for ``uncertainty`` (at least 2; at most 4 for ``tta``).
        kwargs: other arguments of ``SlidingWindowInferer``.

    A network in training mode is being sampled by MONAI Label's epistemic scoring (every engine here evaluates in
    evaluation mode): its BatchNorm layers then run on their running statistics, only dropout samples, and the
    output is marked as such a sample (``meta[MONTE_CARLO_SAMPLE]``), so that the write-back leaves it as
    probabilities, which the scoring averages into an entropy.

    Example::

        >>> inferer = BrainSliceInferer(roi_size=(16, 16), whole_slice=True, sigmoid=False)
        >>> image = torch.zeros(1, 2, 32, 48, 5); image[..., 2] = 1.0
        >>> inferer(image, lambda x: x[:, :1] * 2 + 1)[0, 0, 0, 0].tolist()
        [1.0, 1.0, 3.0, 1.0, 1.0]
    """

    def __init__(
        self,
        roi_size: Union[Sequence[int], int],
        sw_batch_size: int = 1,
        overlap: float = 0.25,
        mode: str = "constant",
        spatial_dim: int = 2,
        skip_empty: Any = True,
        whole_slice: Any = False,
        sigmoid: Any = True,
        uncertainty: str = "none",
        samples: Any = 4,
        **kwargs: Any,
    ) -> None:
        self.skip_empty = as_flag(skip_empty, "skip_empty")
        self.whole_slice = as_flag(whole_slice, "whole_slice")
        self.sigmoid = as_flag(sigmoid, "sigmoid")
        self.uncertainty, self.samples = check_uncertainty(uncertainty, samples)
        if self.uncertainty != "none" and not self.sigmoid:
            raise ValueError("uncertainty averages probabilities: it needs sigmoid true.")
        # an inference process runs pass after pass: its large freed activations are kept for the next one
        retain_freed_memory()
        super().__init__(
            spatial_dim, (-1, -1) if self.whole_slice else roi_size, sw_batch_size, overlap, mode, **kwargs
        )
        #: the windows the network ran on in the last call (with ``skip_empty``), for reports and tests
        self.network_windows: Optional[int] = None

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        sampled = isinstance(network, nn.Module) and network.training
        with batchnorm_in_eval(network) if sampled else contextlib.nullcontext():
            out = self._infer(inputs, network, *args, **kwargs)
        if sampled and isinstance(out, MetaTensor):
            out.meta[MONTE_CARLO_SAMPLE] = True
        return out

    def _infer(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.uncertainty != "none":
            network = SampledProbabilities(network, self.uncertainty, self.samples)
        elif self.sigmoid:
            network = _Sigmoid(network)
        if self.whole_slice:
            return self._whole_slices(inputs, network, *args, **kwargs)
        if not self.skip_empty:
            return super().__call__(inputs, network, *args, **kwargs)
        skipping = SkipEmptyWindows(network)
        out = super().__call__(inputs, skipping, *args, **kwargs)
        self.network_windows = skipping.calls
        return out

    def _whole_slices(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The network on every slice of ``inputs`` (B, C, *spatial), ``sw_batch_size`` slices per call.

        The slices become the batch (no window, no blending), and which of them hold brain is read from the device
        once per volume rather than once per call, so a GPU runs the calls back to back.
        """
        axis = 2 + self.spatial_dim
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        moved = plain.movedim(axis, 1)
        batch, depth = moved.shape[:2]
        slices = moved.reshape(batch * depth, *moved.shape[2:])
        everything = list(range(batch * depth))
        filled = slices.reshape(batch * depth, -1).ne(0).any(dim=1).nonzero().squeeze(1).tolist()
        if not self.skip_empty:
            filled = everything
        empty = sorted(set(everything).difference(filled))
        results = [
            (chunk, network(slices[chunk], *args, **kwargs))
            for chunk in (filled[i : i + self.sw_batch_size] for i in range(0, len(filled), self.sw_batch_size))
        ]
        if empty:
            # computed alone, so the zeros' output does not depend on what it was batched with
            zeros = network(slices[empty[:1]], *args, **kwargs)
            results.append((empty, zeros.expand(len(empty), *zeros.shape[1:])))
        first = results[0][1]
        out = first.new_empty((batch * depth, *first.shape[1:]))
        for chunk, result in results:
            out[chunk] = result.to(out.dtype)
        self.network_windows = len(filled) + int(bool(empty))
        out = out.reshape(batch, depth, *out.shape[1:]).movedim(1, axis)
        if self.device is not None:
            out = out.to(self.device)
        # as sliding_window_inference does: the output carries the input's metadata (Invertd reads the image's)
        return convert_to_dst_type(out, inputs, device=out.device)[0] if isinstance(inputs, MetaTensor) else out
