"""Command-line and config values that come as text or as sequences: ``"1,8"``, ``(1, 8)`` (as Fire parses
``1,8``), ``"(0.7,0.15,0.15)"``, and switches: ``true``, ``False``, ``0``."""

from __future__ import annotations

from typing import Any, Callable, List, Sequence, TypeVar

__all__ = ["as_flag", "parse_sequence"]

T = TypeVar("T")


def parse_sequence(value: Any, what: str, convert: Callable[[Any], T] = str, length: int | None = None) -> List[T]:
    """A list from ``"a,b"``, ``"(a, b)"``, a sequence, a single value, or ``None`` (an empty list).

    Args:
        value: the value as given.
        what: the setting's name, for error messages.
        convert: applied to every item (``int``, ``float``, ``str``).
        length: the number of items required, if any.

    Raises:
        ValueError: an empty item, an item ``convert`` refuses, or the wrong number of items; the message names
            ``what`` and the value.

    Example::

        >>> parse_sequence("(96, 96, 64)", "shape", int, length=3)
        [96, 96, 64]
    """
    if value is None:
        items: Sequence[Any] = []
    elif isinstance(value, str):
        text = value.strip().strip("()[]")
        items = [part.strip() for part in text.split(",")] if text else []
        if any(not item for item in items):
            raise ValueError(f"{what}: empty entry in {value!r}.")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    try:
        out = [convert(item) for item in items]
    except (TypeError, ValueError):
        raise ValueError(f"{what}: cannot read {value!r} as a list of {getattr(convert, '__name__', 'values')}.") from None
    if length is not None and len(out) != length:
        raise ValueError(f"{what} needs {length} values; got {value!r}.")
    return out


def as_flag(value: Any, name: str) -> bool:
    """A switch given as a bool or as the text a command line passes (``true``/``false``, ``1``/``0``).

    Raises:
        ValueError: anything else, naming the setting.

    Example::

        >>> as_flag("False", "whole_slice"), as_flag(True, "skip_empty")
        (False, True)
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{name} must be true or false; got {value!r}.")
