"""Progress bars for long commands, shown only on a terminal: a log file or CI output gets no bar."""

from __future__ import annotations

import sys
from typing import Any, Iterable, Optional, TextIO, TypeVar

from tqdm.auto import tqdm

__all__ = ["is_terminal", "progress_bar"]

T = TypeVar("T")


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an open terminal (a file, a pipe, a closed or missing stream is not).

    Example::

        >>> import io
        >>> is_terminal(io.StringIO()), is_terminal(None)
        (False, False)
    """
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(
    items: Iterable[T], desc: str, unit: str = "it", total: Optional[int] = None, stream: Optional[TextIO] = None
) -> "tqdm[T]":
    """A tqdm bar over ``items`` (count, rate, time left) on ``stream``, disabled unless ``stream`` is a terminal or
    when there are fewer than two items (a bar of one step says nothing the command's own output does not).

    A disabled bar still yields every item, and writes nothing.

    Args:
        items: what the command works through.
        desc: the bar's label, e.g. ``"benchmark"``.
        unit: what one item is, e.g. ``"model"``.
        total: the number of items (default ``len(items)`` where it has one).
        stream: where the bar is drawn (default ``sys.stderr``, so that a command's printed result stays clean).

    Returns:
        The bar; iterate over it, and close it (or use it as a context manager).

    Example::

        >>> import io
        >>> log = io.StringIO()
        >>> with progress_bar(["a", "b", "c"], "models", stream=log) as bar:
        ...     done = list(bar)
        >>> done, bar.total, log.getvalue()
        (['a', 'b', 'c'], 3, '')
    """
    stream = sys.stderr if stream is None else stream
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    few = total is not None and total < 2
    return tqdm(items, desc=desc, unit=unit, total=total, file=stream, disable=few or not is_terminal(stream),
                leave=False, dynamic_ncols=True)
