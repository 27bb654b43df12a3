"""Unstructured pruning through masks: magnitude and SNIP.

Masks are kept outside the model in a :class:`MaskSet` and applied by multiplying the weights in place. This is
chosen over ``torch.nn.utils.prune``: its reparametrisation replaces ``weight`` by a computed attribute, which the
functional users of the shared depthwise kernels (``SharedReASPP3`` and the Encoder-Decoder decoder read
``DepthwiseKernel.weight`` and pass it to ``F.conv2d``) would keep seeing only as long as every forward pass went
through the owning module's hook; multiplying in place keeps a shared kernel one tensor, keeps ``state_dict`` keys
plain (a pruned model loads into the base network) and saves the zeros with the weights. Fine-tuning keeps the
masks in force by re-applying them after every optimizer step (:meth:`MaskSet.attach`).
"""

from __future__ import annotations

import io
import math
import numbers
import os
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from raagr2_monai.networks.blocks import DepthwiseKernel
from raagr2_monai.utils import model_device

__all__ = [
    "check_ratio",
    "prunable_weights",
    "check_scope",
    "MaskSet",
    "load_masks",
    "magnitude_masks",
    "snip_scores",
    "snip_masks",
    "padded_batches",
    "masks_from_scores",
    "recalibrate_bn",
    "to_sparse_state_dict",
    "from_sparse_state_dict",
    "serialized_nbytes",
]

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
    """Raise ``ValueError`` unless ``scope`` is ``"global"`` (one ranking for all layers) or ``"uniform"`` (per layer)."""
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

        masks = magnitude_masks(model, 0.3)
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


def magnitude_masks(model: nn.Module, ratio: float, scope: str = "global", exclude: Sequence[str] = ("head",)) -> MaskSet:
    """Masks that remove the smallest-magnitude convolution weights (head excluded).

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
    weights = prunable_weights(model, exclude)
    return masks_from_scores({name: w.detach().abs() for name, w in weights.items()}, ratio, scope)


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
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
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
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ratio: float,
    scope: str = "global",
    exclude: Sequence[str] = ("head",),
) -> MaskSet:
    """Masks that remove the ``ratio`` of prunable weights with the lowest SNIP scores (see :func:`snip_scores`)."""
    ratio = check_ratio(ratio)
    return masks_from_scores(snip_scores(model, batches, loss_fn, exclude), ratio, scope)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Any], num_batches: int = 10) -> int:
    """Re-estimate every BatchNorm's running statistics, e.g. after pruning.

    Statistics are reset and accumulated as a plain average (``momentum=None``) over up to ``num_batches`` batches,
    with BatchNorm layers in train mode and everything else in eval mode (dropout off, as at inference). No weight
    changes; modes and momenta are restored.

    Args:
        model: the network.
        batches: images, ``(image, label)`` pairs or dicts with ``image``.
        num_batches: the most batches to use, at least 1.

    Returns:
        The number of batches used.

    Raises:
        ValueError: for ``num_batches < 1`` or when ``batches`` yields nothing.

    Example::

        recalibrate_bn(net, loader, num_batches=20)
        # 20
    """
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer; got {num_batches!r}.")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    device = model_device(model)
    used = 0
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for batch in batches:
            if used >= num_batches:
                break
            image = batch if isinstance(batch, torch.Tensor) else (batch["image"] if isinstance(batch, Mapping) else batch[0])
            model(image.to(device))
            used += 1
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, training in modes.items():
            m.train(training)
    if used == 0:
        raise ValueError("BatchNorm recalibration needs at least one batch; the iterable was empty.")
    return used


def _pack_bits(mask: torch.Tensor) -> torch.Tensor:
    flat = mask.flatten().to(torch.uint8)
    pad = (-flat.numel()) % 8
    flat = torch.cat([flat, flat.new_zeros(pad)]).view(-1, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=flat.device)
    return (flat * weights).sum(dim=1).to(torch.uint8)


def _unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    shifts = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(1) >> shifts) & 1
    return bits.flatten()[:numel].to(torch.bool)


def to_sparse_state_dict(state_dict: Mapping[str, torch.Tensor], names: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Compress a pruned state_dict: chosen tensors become their non-zero values plus a packed bit mask.

    A non-zero costs its value (4 bytes in float32) and every entry one bit, so a float32 tensor with sparsity ``s``
    shrinks to about ``(1 - s) + 1/32`` of its size (COO or CSR with int64 indices would grow it below ~67 % sparsity).
    The result holds only tensors, strings, ints and lists: ``torch.save`` it and read it back with
    ``torch.load(..., weights_only=True)``.

    Args:
        state_dict: a model's state_dict.
        names: keys to compress (e.g. a :class:`MaskSet`'s names); ``None`` compresses every floating-point tensor
            with at least two dimensions.

    Returns:
        ``{"format": "raagr2_monai.sparse/1", "keys": [...], "dense": {...},
        "sparse": {key: {"shape", "values", "bitmask"}}}``.

    Raises:
        KeyError: for a name that is not in ``state_dict``.

    Example::

        packed = to_sparse_state_dict(model.state_dict(), masks)
        model.load_state_dict(from_sparse_state_dict(packed))
    """
    chosen = (
        {k for k, v in state_dict.items() if torch.is_floating_point(v) and v.dim() >= 2} if names is None else set(names)
    )
    unknown = sorted(chosen - set(state_dict))
    if unknown:
        raise KeyError(f"Cannot compress {unknown}: not in the state_dict.")
    dense: Dict[str, torch.Tensor] = {}
    sparse: Dict[str, Dict[str, Any]] = {}
    for key, value in state_dict.items():
        if key in chosen:
            tensor = value.detach()
            nonzero = tensor != 0
            sparse[key] = {
                "shape": list(tensor.shape),
                "values": tensor[nonzero].clone(),
                "bitmask": _pack_bits(nonzero),
            }
        else:
            dense[key] = value.detach().clone()
    return {"format": "raagr2_monai.sparse/1", "keys": list(state_dict), "dense": dense, "sparse": sparse}


def from_sparse_state_dict(packed: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`to_sparse_state_dict`: the dense state_dict, exactly, in its original key order.

    Raises:
        ValueError: when ``packed`` is not in the format :func:`to_sparse_state_dict` writes.
    """
    if not isinstance(packed, Mapping) or packed.get("format") != "raagr2_monai.sparse/1":
        raise ValueError("Not a sparse state_dict written by to_sparse_state_dict (format 'raagr2_monai.sparse/1').")
    state: Dict[str, torch.Tensor] = dict(packed["dense"])
    for key, entry in packed["sparse"].items():
        shape = tuple(entry["shape"])
        numel = math.prod(shape)
        nonzero = _unpack_bits(entry["bitmask"], numel)
        values = entry["values"]
        if int(nonzero.sum()) != values.numel():
            raise ValueError(f"Sparse entry {key!r} is corrupt: {values.numel()} values for {int(nonzero.sum())} bits set.")
        tensor = torch.zeros(numel, dtype=values.dtype, device=values.device)
        tensor[nonzero] = values
        state[key] = tensor.view(shape)
    return {key: state[key] for key in packed["keys"]}


def serialized_nbytes(obj: Any) -> int:
    """Bytes ``torch.save`` writes for ``obj`` (a state_dict or a :func:`to_sparse_state_dict` result)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


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
