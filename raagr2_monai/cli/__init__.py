"""The ``raagr2`` command line (Python Fire): one sub-command per job.

Each command imports what it needs when it runs, so ``raagr2 --help`` stays fast and a mistyped command line is
refused at once. Before Fire dispatches, :func:`check_command_line` checks the line against the chosen command's
signature: an unknown command or option, or a value with no parameter to take it, ends in one ``error:`` line (exit
status 2) before anything runs. A command's user error (a missing file, a bad setting: :func:`user_error`) ends in
one ``error:`` line too (exit status 1); ``--verbose`` anywhere on the line, or ``RAAGR2_VERBOSE=1``, shows its
traceback instead.

The modules: :mod:`.commands` (the commands and :data:`COMMANDS`), :mod:`.arguments` (the command line checked
against their signatures) and :mod:`.entry` (:func:`main`: Fire's dispatch, and user errors told from bugs). This
package re-exports their names, so ``raagr2 = raagr2_monai.cli:main`` and ``from raagr2_monai.cli import ...`` stay
as they were; ``python -m raagr2_monai.cli`` runs :func:`main` too.
"""

from .arguments import UsageError, check_arguments, check_command_line
from .commands import (
    COMMANDS, benchmark, benchmark_data, benchmark_metrics, bundles, datalist, export, segment, study, summary, synth,
)
from .entry import USAGE_ERROR, USER_ERROR, main, user_error

__all__ = [
    "COMMANDS", "USAGE_ERROR", "USER_ERROR", "UsageError", "benchmark", "benchmark_data", "benchmark_metrics",
    "bundles", "check_arguments", "check_command_line", "datalist", "export", "main", "segment", "study", "summary",
    "synth", "user_error",
]
