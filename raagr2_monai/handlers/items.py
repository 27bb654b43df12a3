"""Reading one subject's values out of an evaluator's decollated output, for the handlers that write per-subject
files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ignite.engine import Engine
from monai.data import MetaTensor

__all__ = ["item_value", "source_file"]


def item_value(engine: Engine, item: Mapping[str, Any], index: int, key: str) -> Any:
    """A datalist value of subject ``index`` of the current iteration (``case``, ``label_convention``, ...): from its
    output item, else from the batch (MONAI carries the datalist's extra keys through), else ``None``.

    Example::

        case = item_value(evaluator, output[0], 0, "case")
    """
    if key in item:
        return item[key]
    batch = engine.state.batch
    if isinstance(batch, list) and index < len(batch) and isinstance(batch[index], Mapping):
        return batch[index].get(key)
    if isinstance(batch, Mapping) and key in batch:
        return batch[key][index]
    return None


def source_file(item: Mapping[str, Any], key: str) -> str | None:
    """The file a loaded MetaTensor came from (``meta["filename_or_obj"]``; the first of several), or ``None``."""
    value = item.get(key)
    name = value.meta.get("filename_or_obj") if isinstance(value, MetaTensor) else None
    if isinstance(name, (list, tuple)):
        name = name[0] if name else None
    return os.fspath(name) if name else None
