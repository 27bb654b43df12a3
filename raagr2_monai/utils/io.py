"""Files written whole or not at all: every writer goes through a temporary file in the target's folder, then
``os.replace`` (atomic on POSIX), and removes the temporary file when writing fails."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_save", "to_jsonable"]

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write: Callable[[str], None], suffix: str = "") -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file over ``path``.

    The temporary file lies in the target's folder (so the rename stays on one file system), is hidden
    (``.<name>.<random><suffix>``) and is removed if ``write`` raises. Missing parent folders are created. The file
    gets the permissions an ordinary ``open()`` would give it (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.

    Args:
        path: the file to write.
        write: writes the content to the path it is given.
        suffix: ending of the temporary name, for writers that choose the format by extension (``.nii.gz``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example::

        atomic_write("model.pt", lambda tmp: torch.save(state, tmp))
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


def _umask() -> int:
    # Linux reports the umask without changing it; elsewhere it can only be read by setting it (and back at once)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: PathLike, text: str, newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`).

    Args:
        path: the file.
        text: its content.
        newline: passed to ``open`` (``""`` for CSV writers that end their own lines).
    """

    def write(tmp: str) -> None:
        with open(tmp, "w", newline=newline) as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: PathLike, document: Any, indent: int = 2) -> Path:
    """Write ``document`` as JSON (via :func:`to_jsonable`), ending with a newline, atomically."""
    return atomic_write_text(path, json.dumps(to_jsonable(document), indent=indent) + "\n")


def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` atomically: no half-written checkpoint, even when the process dies while writing."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def to_jsonable(value: Any) -> Any:
    """``value`` made JSON-friendly: containers recursively, one-element tensors and numpy scalars as numbers, paths
    and anything else unknown as text.

    Example::

        >>> to_jsonable({"ratio": torch.tensor(0.5), "sizes": (1, 2)})
        {'ratio': 0.5, 'sizes': [1, 2]}
    """
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    return str(value)
