"""Several predictions of one trained network per input, for uncertainty: test-time flips and Monte-Carlo dropout.

Test-time augmentation (``tta``) runs the network on the input and on its in-plane flips (left-right,
anterior-posterior, both), flips each output back and averages the probabilities. Monte-Carlo dropout
(``mc_dropout``, Gal and Ghahramani, 2016) runs it ``samples`` times with its dropout layers active and everything
else, BatchNorm above all, as in evaluation: each pass is a sample of the trained network, not of a network whose
normalisation drifts with the batch. Either way the caller gets the mean probability per voxel, from which an
uncertainty map follows (:mod:`raagr2_monai.metrics.uncertainty`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

__all__ = [
    "UNCERTAINTY_MODES",
    "TTA_FLIPS",
    "check_uncertainty",
    "without_uncertainty",
    "dropout_layers",
    "check_mc_dropout",
    "batchnorm_in_eval",
    "SampledProbabilities",
]

#: ``none`` (one prediction), ``tta`` (flips) or ``mc_dropout``.
UNCERTAINTY_MODES: Tuple[str, ...] = ("none", "tta", "mc_dropout")
#: The in-plane flips of test-time augmentation, as dimensions of a ``(B, C, H, W)`` batch: none first.
TTA_FLIPS: Tuple[Tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


def check_uncertainty(mode: Any, samples: Any) -> Tuple[str, int]:
    """Check an uncertainty setting before any work.

    Args:
        mode: one of :data:`UNCERTAINTY_MODES`.
        samples: predictions per input (at least 2; at most 4 for ``tta``, the flips there are). Ignored for
            ``none``.

    Returns:
        ``(mode, samples)``, ``samples`` as an integer (1 for ``none``).

    Raises:
        ValueError: an unknown mode or a bad sample count, in one line.

    Example::

        >>> check_uncertainty("tta", "4")
        ('tta', 4)
    """
    if mode not in UNCERTAINTY_MODES:
        raise ValueError(f"uncertainty must be one of {', '.join(UNCERTAINTY_MODES)}; got {mode!r}.")
    if mode == "none":
        return mode, 1
    try:
        count = int(samples)
    except (TypeError, ValueError):
        count = None
    if isinstance(samples, bool) or count is None or str(count) != str(samples).strip() or count < 2:
        raise ValueError(f"uncertainty_samples must be a whole number >= 2 (an uncertainty needs two predictions at "
                         f"least); got {samples!r}.")
    if mode == "tta" and count > len(TTA_FLIPS):
        raise ValueError(f"uncertainty_samples for tta is at most {len(TTA_FLIPS)} (the input and its in-plane "
                         f"flips); got {count}.")
    return mode, count


def without_uncertainty(mode: Any) -> bool:
    """Whether an uncertainty setting is ``none``: one prediction, and nothing of uncertainty computed or written (a
    config's ``_disabled_`` reads it, so the parts that only uncertainty needs are left out).

    Args:
        mode: one of :data:`UNCERTAINTY_MODES`.

    Returns:
        ``True`` for ``none``.

    Raises:
        ValueError: an unknown mode, in one line.

    Example::

        >>> without_uncertainty("none"), without_uncertainty("tta")
        (True, False)
    """
    return check_uncertainty(mode, 2)[0] == "none"


def dropout_layers(network: Any) -> List[nn.Module]:
    """The dropout layers of ``network`` that drop something (``p > 0``); none for what is not a ``torch.nn.Module``
    (an exported model behind ONNX Runtime or OpenVINO)."""
    if not isinstance(network, nn.Module):
        return []
    return [m for m in network.modules() if isinstance(m, _DropoutNd) and m.p > 0]


def check_mc_dropout(network: Any, name: Optional[str] = None) -> None:
    """Refuse Monte-Carlo dropout on a network it cannot apply to, naming it.

    Raises:
        ValueError: ``network`` has no dropout layer with ``p > 0`` (an exported model runs its graph in evaluation
            mode, without dropout).
    """
    if not dropout_layers(network):
        what = name or type(network).__name__
        raise ValueError(f"uncertainty mc_dropout needs dropout layers, and {what} has none (an exported model runs "
                         "without dropout); use uncertainty tta instead.")


#: Networks inside :func:`batchnorm_in_eval` (by ``id``): how many callers, and the layers switched by the first.
_IN_EVAL: Dict[int, Tuple[int, List[nn.Module]]] = {}
_IN_EVAL_LOCK = threading.Lock()


@contextlib.contextmanager
def batchnorm_in_eval(network: Any) -> Iterator[None]:
    """Run a network that is in training mode with every BatchNorm on its running statistics (dropout stays on).

    MONAI Label's epistemic scoring samples a bundle's inference network by putting it in training mode; without
    this, each sample would also normalise by the statistics of its own batch of slices, which is not the trained
    network. Restores the layers' modes on exit; does nothing to a network in evaluation mode.

    Safe for threads sharing one network (the scoring runs two studies at a time on one cached network by
    default): the first caller to enter switches the layers, the last to leave switches them back, so no caller's
    pass runs with BatchNorm in training mode because another's ended.

    Example::

        >>> net = nn.Sequential(nn.BatchNorm2d(2), nn.Dropout(0.5)).train()
        >>> with batchnorm_in_eval(net):
        ...     net[0].training, net[1].training
        (False, True)
        >>> net[0].training
        True
    """
    if not isinstance(network, nn.Module):
        yield
        return
    key = id(network)
    with _IN_EVAL_LOCK:
        callers, layers = _IN_EVAL.get(key, (0, []))
        if not callers:
            layers = [m for m in network.modules() if isinstance(m, _BatchNorm) and m.training]
            for layer in layers:
                layer.eval()
        _IN_EVAL[key] = (callers + 1, layers)
    try:
        yield
    finally:
        with _IN_EVAL_LOCK:
            callers, layers = _IN_EVAL.pop(key)
            if callers > 1:
                _IN_EVAL[key] = (callers - 1, layers)
            else:
                for layer in layers:
                    layer.train()


class SampledProbabilities(nn.Module):
    """A network whose every call is several predictions, averaged: the mean probability per voxel.

    Args:
        network: the network (logits out), or any callable from ``(B, C, H, W)`` to ``(B, out, H, W)``.
        mode: ``tta`` or ``mc_dropout`` (:func:`check_uncertainty`).
        samples: predictions per call.

    Raises:
        ValueError: as :func:`check_uncertainty`; ``mc_dropout`` on a network without dropout layers.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Dropout(0.5))
        >>> mean = SampledProbabilities(net, "mc_dropout", 8).eval()(torch.ones(1, 1, 4, 4))
        >>> mean.shape, bool(((mean > 0) & (mean < 1)).all())
        (torch.Size([1, 1, 4, 4]), True)
    """

    def __init__(self, network: Callable[..., torch.Tensor], mode: str, samples: int) -> None:
        super().__init__()
        self.mode, self.samples = check_uncertainty(mode, samples)
        if self.mode == "none":
            raise ValueError("SampledProbabilities needs uncertainty tta or mc_dropout; got none.")
        if self.mode == "mc_dropout":
            check_mc_dropout(network)
        self.network = network
        self._dropouts = dropout_layers(network)

    def _sample(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.sigmoid(self.network(x, *args, **kwargs).float())

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.mode == "tta":
            total = sum(self._sample(x.flip(d), *args, **kwargs).flip(d) if d else self._sample(x, *args, **kwargs)
                        for d in TTA_FLIPS[: self.samples])
            return total / self.samples
        # MONAI's evaluators put the network in eval mode each iteration: the dropout layers are switched on here,
        # for these passes only
        states = [m.training for m in self._dropouts]
        for module in self._dropouts:
            module.train()
        try:
            total = sum(self._sample(x, *args, **kwargs) for _ in range(self.samples))
        finally:
            for module, state in zip(self._dropouts, states):
                module.train(state)
        return total / self.samples
