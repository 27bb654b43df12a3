"""The study's progress line: step count, the time each step took, and an estimate of the time left."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``seconds`` as people read it: ``42 s``, ``7 min 05 s``, ``1 h 03 min``.

    Example::

        >>> format_duration(42.4), format_duration(425), format_duration(3790)
        ('42 s', '7 min 05 s', '1 h 03 min')
    """
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts a study's steps and estimates the time left from the steps finished in this run.

    A step's kind is the part of its name before ``/`` (``train``, ``prune``, ``evaluate``, ``benchmark``): steps of
    one kind take alike, steps of different kinds do not (a training run takes minutes, an evaluation seconds). The
    time left is, for each kind, the mean time of its finished steps times its steps left; a kind none of whose steps
    has finished yet is counted at the mean of all finished steps. Steps finished by an earlier run (resumed study)
    count as done and take no time.

    Args:
        steps: every step of the study, in order.

    Example::

        >>> p = Progress(["train/a", "train/b", "evaluate/a", "evaluate/b"])
        >>> p.finished("train/a", 100.0)
        >>> p.label("train/b"), round(p.seconds_left())
        ('[study 2/4]', 300)
    """

    def __init__(self, steps: Sequence[str]) -> None:
        self.steps: List[str] = list(steps)
        self._left: Dict[str, int] = defaultdict(int)
        for step in self.steps:
            self._left[self.kind(step)] += 1
        self._seconds: Dict[str, List[float]] = defaultdict(list)
        self._done = 0

    @staticmethod
    def kind(step: str) -> str:
        """The step's kind: its name up to the first ``/``."""
        return step.split("/", 1)[0]

    def label(self, step: str) -> str:
        """``[study i/n]`` for ``step``."""
        return f"[study {self.steps.index(step) + 1}/{len(self.steps)}]"

    def skipped(self, step: str) -> None:
        """``step`` was done by an earlier run."""
        self._left[self.kind(step)] -= 1
        self._done += 1

    def finished(self, step: str, seconds: float) -> None:
        """``step`` took ``seconds`` in this run."""
        self._left[self.kind(step)] -= 1
        self._seconds[self.kind(step)].append(seconds)
        self._done += 1

    def seconds_left(self) -> float:
        """The estimated time left, in seconds (0 before any step has finished in this run: nothing to go on)."""
        timed = [s for times in self._seconds.values() for s in times]
        if not timed:
            return 0.0
        overall = sum(timed) / len(timed)
        return sum(
            left * (sum(self._seconds[kind]) / len(self._seconds[kind]) if self._seconds[kind] else overall)
            for kind, left in self._left.items()
        )
