"""Importance scores of the unstructured methods (magnitude, SNIP) and their registry, :data:`SCORES`.

A score gives every prunable weight (:func:`~raagr2_monai.pruning.mask_sets.prunable_weights`) a non-negative
importance; :func:`~raagr2_monai.pruning.mask_sets.masks_from_scores` then masks the lowest-scoring fraction. As
torch-pruning's importance criteria do for channels, the registry gives every score one signature,
``score(model, data=None, loss_fn=None) -> {parameter name: score tensor}``, so that a new criterion is one function
passed to :func:`register_score`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple

import torch
from torch import nn

from raagr2_monai.utils import model_device

from .mask_sets import MaskSet, check_ratio, masks_from_scores, prunable_weights

__all__ = [
    "ScoreFn",
    "SCORES",
    "register_score",
    "magnitude_scores",
    "magnitude_masks",
    "padded_batches",
    "snip_scores",
    "snip_masks",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ScoreFn(Protocol):
    """The signature of a registered score (see :data:`SCORES`).

    Args:
        model: the network; its weights must be left as they were.
        data: ``(image, label)`` batches, for scores that need them (SNIP); others ignore it.
        loss_fn: ``loss_fn(prediction, label) -> scalar``, for scores that need it; others ignore it.

    Returns:
        Parameter name -> non-negative score tensor of the parameter's shape, one entry per prunable weight.
    """

    def __call__(
        self, model: nn.Module, data: Optional[Iterable[Any]] = None, loss_fn: Optional[LossFn] = None
    ) -> Dict[str, torch.Tensor]: ...


def magnitude_scores(model: nn.Module, exclude: Sequence[str] = ("head",)) -> Dict[str, torch.Tensor]:
    """Magnitude scores: ``|w|`` of every prunable weight (head excluded).

    Args:
        model: the network; not modified.
        exclude: submodules never pruned.

    Returns:
        Parameter name -> ``|w|``, detached, of the parameter's shape.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> net = get_network("depthwise")
        >>> scores = magnitude_scores(net)
        >>> "head.weight" in scores, all(bool((s >= 0).all()) for s in scores.values())
        (False, True)
    """
    return {name: w.detach().abs() for name, w in prunable_weights(model, exclude).items()}


def magnitude_masks(
    model: nn.Module, ratio: float, scope: str = "global", exclude: Sequence[str] = ("head",)
) -> MaskSet:
    """Masks that remove the smallest-magnitude convolution weights (head excluded): :func:`magnitude_scores` ranked
    by :func:`~raagr2_monai.pruning.mask_sets.masks_from_scores`.

    Args:
        model: the network; not modified (call :meth:`MaskSet.apply`).
        ratio: fraction of the prunable weights to remove, strictly between 0 and 1.
        scope: ``"global"`` ranks ``|w|`` over all prunable weights; ``"uniform"`` prunes each tensor by ``ratio``.
        exclude: submodules never pruned.

    Example::

        masks = magnitude_masks(net, 0.2)
        round(masks.sparsity(), 2)
        # 0.2
    """
    return masks_from_scores(magnitude_scores(model, exclude), ratio, scope)


def _split_batch(batch: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        return batch["image"], batch["label"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(f"A batch must be (image, label) or a dict with 'image' and 'label'; got {type(batch).__name__}.")


def padded_batches(batches: Iterable[Any], size: Sequence[int]) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """``(image, label)`` batches zero-padded, centred, to at least ``size`` in-plane (background around them).

    SNIP scores a weight by its gradient on the batches it is given; on small crops the widest dilated taps of the
    deepest layers only ever see the convolutions' zero padding, so their gradient, hence their score, is exactly 0
    and SNIP removes them first whatever their worth. Padded with background to the size of a real slice, every tap
    reaches the crop's data.

    Args:
        batches: ``(image, label)`` pairs or dicts with ``image`` and ``label``, shaped ``(B, C, H, W)``.
        size: the least ``(H, W)``; larger batches are left as they are.

    Returns:
        An iterator of ``(image, label)`` pairs.

    Example::

        >>> image, label = next(padded_batches([(torch.ones(1, 4, 32, 32), torch.ones(1, 3, 32, 32))], (64, 64)))
        >>> tuple(image.shape), float(image.sum()), float(label[:, :, :16].sum())
        ((1, 4, 64, 64), 4096.0, 0.0)
    """
    for batch in batches:
        image, label = _split_batch(batch)
        extra = [max(0, int(s) - int(d)) for s, d in zip(size, image.shape[-2:])]
        pad = (extra[1] // 2, extra[1] - extra[1] // 2, extra[0] // 2, extra[0] - extra[0] // 2)
        yield torch.nn.functional.pad(image, pad), torch.nn.functional.pad(label, pad)


def snip_scores(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: LossFn,
    exclude: Sequence[str] = ("head",),
) -> Dict[str, torch.Tensor]:
    """SNIP connection sensitivity ``|w * dL/dw|`` of every prunable weight (Lee et al., 2019).

    The gradient is that of the loss summed over ``batches``, i.e. the batches act as one larger batch. The model is
    run in train mode, as at the start of training; its weights, BatchNorm running statistics, ``.grad`` fields and
    mode are left as they were. It works at initialisation and on a trained model alike.

    Args:
        model: the network.
        batches: ``(image, label)`` pairs or dicts with ``image`` and ``label``.
        loss_fn: ``loss_fn(prediction, label) -> scalar``.
        exclude: submodules never pruned.

    Returns:
        Parameter name -> score tensor of the parameter's shape.

    Raises:
        ValueError: when ``batches`` is empty.

    Example::

        scores = snip_scores(net, [(image, label)], loss)
    """
    weights = prunable_weights(model, exclude)
    names, params = list(weights), list(weights.values())
    grads: List[torch.Tensor] = [torch.zeros_like(p) for p in params]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    device = model_device(model)
    seen = 0
    model.train()
    try:
        for batch in batches:
            image, label = _split_batch(batch)
            loss = loss_fn(model(image.to(device)), label.to(device))
            step = torch.autograd.grad(loss, params, allow_unused=True)
            for acc, g in zip(grads, step):
                if g is not None:
                    acc.add_(g)
            seen += 1
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    if seen == 0:
        raise ValueError("SNIP needs at least one (image, label) batch; the iterable was empty.")
    return {name: (p.detach() * g).abs() for name, p, g in zip(names, params, grads)}


def snip_masks(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: LossFn,
    ratio: float,
    scope: str = "global",
    exclude: Sequence[str] = ("head",),
) -> MaskSet:
    """Masks that remove the ``ratio`` of prunable weights with the lowest SNIP scores (see :func:`snip_scores`)."""
    ratio = check_ratio(ratio)
    return masks_from_scores(snip_scores(model, batches, loss_fn, exclude), ratio, scope)


def _magnitude_score(
    model: nn.Module, data: Optional[Iterable[Any]] = None, loss_fn: Optional[LossFn] = None
) -> Dict[str, torch.Tensor]:
    """:func:`magnitude_scores` with the registry's signature; ``data`` and ``loss_fn`` are ignored."""
    return magnitude_scores(model)


def _snip_score(
    model: nn.Module, data: Optional[Iterable[Any]] = None, loss_fn: Optional[LossFn] = None
) -> Dict[str, torch.Tensor]:
    """:func:`snip_scores` with the registry's signature; ``data`` and ``loss_fn`` are required.

    Raises:
        ValueError: when ``data`` or ``loss_fn`` is missing (before any work), or ``data`` is empty.
    """
    if data is None or loss_fn is None:
        raise ValueError("SNIP needs data (an iterable of (image, label) batches) and a loss_fn.")
    return snip_scores(model, data, loss_fn)


#: Registered scores by name, all with the :class:`ScoreFn` signature ``score(model, data=None, loss_fn=None)``.
#: :func:`~raagr2_monai.pruning.prune` ranks a mask method's weights with ``SCORES[method]``; add one with
#: :func:`register_score`.
SCORES: Dict[str, ScoreFn] = {"magnitude": _magnitude_score, "snip": _snip_score}


def register_score(name: str, fn: ScoreFn) -> ScoreFn:
    """Register a pruning score under ``name`` in :data:`SCORES`.

    Args:
        name: a new, non-empty name; an existing one is never replaced.
        fn: ``fn(model, data=None, loss_fn=None) -> {parameter name: non-negative score tensor}``, one entry per
            weight to rank (usually :func:`~raagr2_monai.pruning.mask_sets.prunable_weights`).

    Returns:
        ``fn``, unchanged.

    Raises:
        ValueError: when ``name`` is not a non-empty string or is already registered.
        TypeError: when ``fn`` is not callable.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> from raagr2_monai.pruning.mask_sets import masks_from_scores
        >>> def random_scores(model, data=None, loss_fn=None):
        ...     return {n: torch.rand_like(w) for n, w in prunable_weights(model).items()}
        >>> _ = register_score("random", random_scores)
        >>> round(masks_from_scores(SCORES["random"](get_network("depthwise")), 0.5).sparsity(), 2)
        0.5
        >>> _ = SCORES.pop("random")  # leave the registry as it was
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A pruning score's name must be a non-empty string; got {name!r}.")
    if name in SCORES:
        raise ValueError(f"A pruning score named {name!r} is already registered; registered: {', '.join(SCORES)}.")
    if not callable(fn):
        raise TypeError(f"A pruning score must be callable as fn(model, data, loss_fn); got {type(fn).__name__}.")
    SCORES[name] = fn
    return fn
