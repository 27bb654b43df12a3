"""Binary pruning masks: which weights may be pruned, the :class:`MaskSet` that holds masks and applies them, and how
masks are made from importance scores (:func:`masks_from_scores`; the scores themselves are in :mod:`.scores`).

Masks are kept outside the model in a :class:`MaskSet` and applied by multiplying the weights in place. This is
chosen over ``torch.nn.utils.prune``: its reparametrisation replaces ``weight`` by a computed attribute, which the
functional users of the shared depthwise kernels (``SharedReASPP3`` and the Encoder-Decoder decoder read
``DepthwiseKernel.weight`` and pass it to ``F.conv2d``) would keep seeing only as long as every forward pass went
through the owning module's hook; multiplying in place keeps a shared kernel one tensor, keeps ``state_dict`` keys
plain (a pruned model loads into the base network) and saves the zeros with the weights. Fine-tuning keeps the
masks in force by re-applying them after every optimizer step (:meth:`MaskSet.attach`).
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from raagr2_monai.networks.blocks import DepthwiseKernel

__all__ = [
    "SCOPES",
    "check_ratio",
    "check_scope",
    "prunable_weights",
    "MaskSet",
    "masks_from_scores",
    "load_masks",
]

#: Pruning scopes: ``global`` ranks all prunable weights together, ``uniform`` prunes each tensor by the same ratio.
SCOPES = ("global", "uniform")


def check_ratio(ratio: Any) -> float:
    """Validate a pruning ratio.

    Args:
        ratio: the fraction to prune; a real number strictly between 0 and 1.

    Returns:
        ``ratio`` as a float.

    Raises:
        ValueError: for anything else (0, 1, negatives, NaN, infinities, booleans, strings, ...).

    Example::

        >>> check_ratio(0.3)
        0.3
    """
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 < float(ratio) < 1.0:
        raise ValueError(f"Pruning ratio must be a number strictly between 0 and 1; got {ratio!r}.")
    return float(ratio)


def check_scope(scope: str) -> str:
    """Validate a pruning scope.

    Raises ``ValueError`` unless ``scope`` is ``"global"`` (one ranking for all layers) or ``"uniform"`` (per layer).
    """
    if scope not in SCOPES:
        raise ValueError(f"Unknown pruning scope {scope!r}; valid scopes: {', '.join(SCOPES)}.")
    return scope


def prunable_weights(model: nn.Module, exclude: Sequence[str] = ("head",)) -> Dict[str, nn.Parameter]:
    """The weights unstructured pruning may zero: every ``Conv2d`` weight and every shared depthwise kernel.

    Args:
        model: the network.
        exclude: names of submodules left alone, with everything below them (the output head by default).

    Returns:
        Parameter name (as in ``model.state_dict()``) -> parameter; a shared tensor appears once, under its owner.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> "head.weight" in prunable_weights(get_network("baseline"))
        False
    """
    excluded = tuple(name + "." for name in exclude)
    found: Dict[str, nn.Parameter] = {}
    seen = set()
    for name, module in model.named_modules():
        if name in exclude or (name + ".").startswith(excluded):
            continue
        if isinstance(module, (nn.Conv2d, DepthwiseKernel)) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            found[f"{name}.weight" if name else "weight"] = module.weight
    return found


class MaskSet:
    """Binary masks over named weights, applied by multiplying the weights in place.

    Args:
        masks: parameter name -> boolean tensor of the parameter's shape (``True`` keeps the weight).

    Example::

        masks = magnitude_masks(model, 0.3)  # raagr2_monai.pruning.scores
        masks.apply(model)
        handle = masks.attach(model, optimizer)  # re-apply after every optimizer.step()
    """

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self.masks: Dict[str, torch.Tensor] = {name: mask.detach().to(torch.bool) for name, mask in masks.items()}

    def __len__(self) -> int:
        return len(self.masks)

    def __iter__(self) -> Iterator[str]:
        return iter(self.masks)

    def _parameters(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        missing = [name for name in self.masks if name not in params]
        if missing:
            raise KeyError(f"The model has no parameters named {missing}; the masks were made for another network.")
        for name, mask in self.masks.items():
            if params[name].shape != mask.shape:
                raise ValueError(
                    f"Mask {name!r} has shape {list(mask.shape)} but the parameter has {list(params[name].shape)}."
                )
        return params

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the masked weights of ``model`` in place (the tensors stay the same objects).

        A mask is moved to its parameter's device the first time it meets it and kept there, so that re-applying
        after every optimizer step (:meth:`attach`) copies nothing between devices.
        """
        params = self._parameters(model)
        for name, mask in self.masks.items():
            param = params[name]
            if mask.device != param.device:
                mask = self.masks[name] = mask.to(param.device)
            param.mul_(mask)

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
        """Re-apply the masks after every ``optimizer.step()``, so that fine-tuning keeps zeros at zero.

        Momentum-based optimizers (Adam) move a weight whose gradient is zero; re-applying after the step undoes it.

        Returns:
            The hook handle; ``handle.remove()`` detaches it.
        """
        self.apply(model)

        def _reapply(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.apply(model)

        return optimizer.register_step_post_hook(_reapply)

    def sparsity(self, model: Optional[nn.Module] = None) -> float:
        """Fraction of the masked weights that are zero: in ``model`` if given, else as the masks prescribe."""
        total = sum(mask.numel() for mask in self.masks.values())
        if total == 0:
            return 0.0
        if model is None:
            return sum(int((~mask).sum()) for mask in self.masks.values()) / total
        params = self._parameters(model)
        return sum(int((params[name] == 0).sum()) for name in self.masks) / total

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The masks as a plain dict of boolean CPU tensors (loadable with ``torch.load(..., weights_only=True)`` on
        any machine, with or without the GPU they were applied on)."""
        return {name: mask.to("cpu", copy=True) for name, mask in self.masks.items()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> "MaskSet":
        """Inverse of :meth:`state_dict`."""
        return cls(state)

    @classmethod
    def from_model(cls, model: nn.Module, exclude: Sequence[str] = ("head",)) -> "MaskSet":
        """Recover masks from the zeros of a pruned model's prunable weights (e.g. after loading its state_dict).

        A kept weight that training happened to leave at exactly 0.0 reads as pruned (rare); save
        :meth:`state_dict` next to the weights where the exact masks matter.
        """
        return cls({name: param.detach() != 0 for name, param in prunable_weights(model, exclude).items()})


def masks_from_scores(scores: Mapping[str, torch.Tensor], ratio: float, scope: str = "global") -> MaskSet:
    """Mask the lowest-scoring fraction of weights.

    Args:
        scores: parameter name -> non-negative score tensor of the parameter's shape.
        ratio: fraction to mask, strictly between 0 and 1; exactly ``round(ratio * n)`` weights are masked.
        scope: ``"global"`` ranks all weights together; ``"uniform"`` masks ``ratio`` of every tensor.

    Returns:
        The masks (ties are broken by position, so the count is exact).
    """
    ratio = check_ratio(ratio)
    check_scope(scope)
    if scope == "uniform":
        return MaskSet({name: _keep_mask(score.flatten(), ratio).view_as(score) for name, score in scores.items()})
    flat = torch.cat([score.detach().flatten().float().cpu() for score in scores.values()])
    keep = _keep_mask(flat, ratio)
    masks: Dict[str, torch.Tensor] = {}
    offset = 0
    for name, score in scores.items():
        masks[name] = keep[offset : offset + score.numel()].view(score.shape).to(score.device)
        offset += score.numel()
    return MaskSet(masks)


def _keep_mask(flat: torch.Tensor, ratio: float) -> torch.Tensor:
    n_pruned = int(round(ratio * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat.detach(), stable=True)[:n_pruned]] = False
    return keep


def load_masks(path: Union[str, os.PathLike]) -> MaskSet:
    """Read a :class:`MaskSet` saved with ``torch.save(masks.state_dict(), path)``.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a dict of boolean tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Mask file {path} does not exist.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not state or not all(
        isinstance(v, torch.Tensor) and v.dtype == torch.bool for v in state.values()
    ):
        raise ValueError(f"{path} holds no masks: expected a dict of parameter name -> boolean tensor.")
    return MaskSet.from_state_dict(state)
