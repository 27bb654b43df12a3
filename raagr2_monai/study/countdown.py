"""The study's progress line: step count, the time each step took, and an estimate of the time left."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional, Sequence

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

    A step's kind is the part of its name before ``/`` (``train``, ``prune``, ``evaluate``, ``benchmark``), and each
    step has a size in units of work (e.g. its epochs): steps of one kind take time in proportion to their size, steps
    of different kinds do not (a training epoch takes longer than an evaluation). The time left is, for each kind, its
    seconds per unit (measured on its finished steps) times its units left; a kind none of whose steps has finished yet
    is counted at the seconds per unit of all finished steps. Steps finished by an earlier run (resumed study) count as
    done and take no time.

    Steps may run ``lanes`` at a time (each then takes longer than alone, which its measured seconds show): the time
    left of the kinds that do is divided by ``lanes``, that of the kinds in ``alone`` is not.

    Args:
        steps: every step of the study, in order.
        units: each step's size (default 1 each); the study gives training and fine-tuning their epochs.
        lanes: how many steps run at once.
        alone: the kinds of step that run on their own all the same (the study's benchmark).

    Example::

        >>> p = Progress(["train/a", "train/b", "prune/p", "evaluate/a"], units=[10, 10, 2, 1])
        >>> p.finished("train/a", 100.0)
        >>> p.label("train/b"), round(p.seconds_left())  # 10 s per unit: 100 + 20 + 10
        ('[study 2/4]', 130)
        >>> q = Progress(["train/a", "train/b", "benchmark"], units=[10, 10, 5], lanes=2, alone=["benchmark"])
        >>> q.finished("train/a", 100.0)
        >>> round(q.seconds_left())  # train/b beside another step: 100 / 2; the benchmark alone: 5 x 10
        100
    """

    def __init__(self, steps: Sequence[str], units: Optional[Sequence[float]] = None, lanes: int = 1,
                 alone: Sequence[str] = ()) -> None:
        self.steps: List[str] = list(steps)
        sizes = [1.0] * len(self.steps) if units is None else [float(u) for u in units]
        if len(sizes) != len(self.steps) or any(u <= 0 for u in sizes):
            raise ValueError(f"Progress: one positive size per step is needed; got {list(sizes)} for {len(steps)}.")
        if lanes < 1:
            raise ValueError(f"Progress: lanes must be >= 1; got {lanes}.")
        self.lanes = int(lanes)
        self.alone = frozenset(alone)
        self._units = dict(zip(self.steps, sizes))
        self._left: Dict[str, float] = defaultdict(float)
        for step in self.steps:
            self._left[self.kind(step)] += self._units[step]
        self._seconds: Dict[str, float] = defaultdict(float)
        self._done_units: Dict[str, float] = defaultdict(float)

    @staticmethod
    def kind(step: str) -> str:
        """The step's kind: its name up to the first ``/``."""
        return step.split("/", 1)[0]

    def label(self, step: str) -> str:
        """``[study i/n]`` for ``step``."""
        return f"[study {self.steps.index(step) + 1}/{len(self.steps)}]"

    def skipped(self, step: str) -> None:
        """``step`` was done by an earlier run."""
        self._left[self.kind(step)] -= self._units[step]

    def finished(self, step: str, seconds: float) -> None:
        """``step`` took ``seconds`` in this run."""
        kind = self.kind(step)
        self._left[kind] -= self._units[step]
        self._seconds[kind] += seconds
        self._done_units[kind] += self._units[step]

    def seconds_left(self) -> float:
        """The estimated time left, in seconds (0 before any step has finished in this run: nothing to go on)."""
        done = sum(self._done_units.values())
        if not done:
            return 0.0
        overall = sum(self._seconds.values()) / done
        return sum(
            left * (self._seconds[kind] / self._done_units[kind] if self._done_units[kind] else overall)
            / (1 if kind in self.alone else self.lanes)
            for kind, left in self._left.items()
            if left > 0
        )
