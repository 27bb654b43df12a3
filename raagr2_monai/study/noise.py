"""The notices a study would print again for every model, silenced while it runs and counted in one summary line.

Each of the study's workflows is a ``monai.bundle.ConfigWorkflow`` run in-process, and each says the same things
that do not concern the study: MONAI's "No workflow type and property file specified" and "Logging file is set to
False" (the study passes both on purpose), Ignite's deprecation of ``EarlyStopping``'s ``min_delta`` and
``cumulative_delta`` (MONAI's ``EarlyStopHandler`` passes them), and MLflow's lines on creating its database. Only
those messages, matched by logger and text or by warning category and text, are dropped, only inside
:class:`Silenced`, and counted; everything else passes, and on leaving the filters are removed.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type

__all__ = ["Notice", "STUDY_NOTICES", "ITERATION_LINES", "Silenced"]


@dataclass(frozen=True)
class Notice:
    """A message to silence: a log record of ``logger``, or (``logger`` ``None``) a Python warning of ``category``,
    whose text matches ``pattern`` (``re.search``).

    Attributes:
        label: how the summary line names it.
        pattern: a regular expression searched in the message.
        logger: the logger's name, or ``None`` for a warning.
        category: the warning's category (a subclass matches too).
    """

    label: str
    pattern: str
    logger: Optional[str] = None
    category: Type[Warning] = Warning

    def matches_record(self, record: logging.LogRecord) -> bool:
        """Whether a log record of this notice's logger is this notice."""
        return re.search(self.pattern, record.getMessage()) is not None

    def matches_warning(self, message: Any, category: Type[Warning]) -> bool:
        """Whether a warning is this notice."""
        return self.logger is None and issubclass(category, self.category) and \
            re.search(self.pattern, str(message)) is not None


_WORKFLOWS = "monai.bundle.workflows"
#: What every workflow of a study says that does not concern the study.
STUDY_NOTICES: Tuple[Notice, ...] = (
    Notice("MONAI 'No workflow type ... specified'", r"^No workflow type and property file specified", _WORKFLOWS),
    Notice("MONAI 'Logging file is set to False'", r"^Logging file is set to False", _WORKFLOWS),
    Notice("Ignite EarlyStopping deprecation warnings", r"^'(min_delta|cumulative_delta)' is deprecated",
           category=DeprecationWarning),
    Notice("MLflow database set-up lines", r"^(Creating initial MLflow database tables|Updating database tables)",
           "mlflow.store.db.utils"),
)
#: MONAI's line per training iteration, which a progress bar on the terminal shows instead.
ITERATION_LINES = Notice("training iteration lines (shown by the progress bar)", r"^Epoch: \d+/\d+, Iter: \d+/\d+ ",
                         "monai.handlers.StatsHandler")


def _logger(name: str) -> logging.Logger:
    """The logger ``name``; a MONAI logger not made yet is made MONAI's way (``monai.apps.utils.get_logger``), since
    MONAI gives a logger its handler to stdout only when it is the one that makes it."""
    if name.split(".")[0] == "monai" and name not in logging.root.manager.loggerDict:
        from monai.apps.utils import get_logger

        return get_logger(name)
    return logging.getLogger(name)


class Silenced:
    """Context manager dropping the given notices and counting them; :meth:`summary` is one line on what it dropped.

    Log records are filtered on their own logger (a logger filter, removed on exit); warnings that Python's warning
    filters let through are passed to the ``warnings.showwarning`` found on entry unless they are a notice (the
    warning machinery is restored on exit, as ``warnings.catch_warnings`` does). A warning the filters ignore is not
    counted: it would not have been shown.

    Args:
        notices: what to silence.

    Example::

        >>> import logging
        >>> with Silenced(STUDY_NOTICES) as silenced:
        ...     logging.getLogger("monai.bundle.workflows").warning("Logging file is set to False, skipping logging.")
        >>> silenced.counts["MONAI 'Logging file is set to False'"], silenced.summary()
        (1, "Silenced: MONAI 'Logging file is set to False' x1.")
    """

    def __init__(self, notices: Sequence[Notice]) -> None:
        self.notices = tuple(notices)
        self.counts: Counter = Counter()
        self._filters: List[Tuple[logging.Logger, Callable[[logging.LogRecord], bool]]] = []
        self._warnings: Optional[warnings.catch_warnings] = None

    def __enter__(self) -> "Silenced":
        for name in dict.fromkeys(n.logger for n in self.notices if n.logger is not None):
            logger = _logger(name)
            notices = [n for n in self.notices if n.logger == name]
            log_filter = self._log_filter(notices)
            logger.addFilter(log_filter)
            self._filters.append((logger, log_filter))
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        shown = warnings.showwarning

        def showwarning(message: Any, category: Type[Warning], *args: Any, **kwargs: Any) -> None:
            notice = next((n for n in self.notices if n.matches_warning(message, category)), None)
            if notice is None:
                shown(message, category, *args, **kwargs)
            else:
                self.counts[notice.label] += 1

        warnings.showwarning = showwarning
        return self

    def _log_filter(self, notices: Sequence[Notice]) -> Callable[[logging.LogRecord], bool]:
        def keep(record: logging.LogRecord) -> bool:
            notice = next((n for n in notices if n.matches_record(record)), None)
            if notice is not None:
                self.counts[notice.label] += 1
            return notice is None

        return keep

    def __exit__(self, kind: Optional[Type[BaseException]], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        for logger, log_filter in self._filters:
            logger.removeFilter(log_filter)
        self._filters = []
        if self._warnings is not None:
            self._warnings.__exit__(kind, error, trace)
            self._warnings = None

    def summary(self) -> Optional[str]:
        """``Silenced: <label> xN, ...`` in the notices' order, or ``None`` when nothing was silenced."""
        parts = [f"{n.label} x{self.counts[n.label]}" for n in self.notices if self.counts[n.label]]
        return f"Silenced: {', '.join(parts)}." if parts else None
