"""Bit-packed sparse storage of pruned weights: a tensor becomes its non-zero values plus one bit per entry.

Example::

    packed = to_sparse_state_dict(model.state_dict(), masks)
    model.load_state_dict(from_sparse_state_dict(packed))
"""

from __future__ import annotations

import io
import math
from typing import Any, Dict, Iterable, Mapping, Optional

import torch

__all__ = ["to_sparse_state_dict", "from_sparse_state_dict", "serialized_nbytes"]


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


def to_sparse_state_dict(
    state_dict: Mapping[str, torch.Tensor], names: Optional[Iterable[str]] = None
) -> Dict[str, Any]:
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
    if names is None:
        chosen = {k for k, v in state_dict.items() if torch.is_floating_point(v) and v.dim() >= 2}
    else:
        chosen = set(names)
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
            raise ValueError(
                f"Sparse entry {key!r} is corrupt: {values.numel()} values for {int(nonzero.sum())} bits set."
            )
        tensor = torch.zeros(numel, dtype=values.dtype, device=values.device)
        tensor[nonzero] = values
        state[key] = tensor.view(shape)
    return {key: state[key] for key in packed["keys"]}


def serialized_nbytes(obj: Any) -> int:
    """Bytes ``torch.save`` writes for ``obj`` (a state_dict or a :func:`to_sparse_state_dict` result)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes

