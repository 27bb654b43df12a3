"""Running ``raagr2``: the command line checked (:mod:`.arguments`), then dispatched by Fire to :data:`COMMANDS`; a
refused command line, or a command's user error (:func:`user_error`), ends in one ``error:`` line and its exit status,
anything else (a bug) in its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import List, NoReturn, Optional, Sequence, Tuple

import fire

from .arguments import UsageError, check_command_line
from .commands import COMMANDS

#: Exit status of a command line that does not fit its command (Fire's own usage errors exit with 2 too).
USAGE_ERROR = 2
#: Exit status of a user error raised by a command.
USER_ERROR = 1
#: Shows a user error's traceback; taken off the line before Fire reads it.
_VERBOSE = "--verbose"


def _user_error_types() -> Tuple[type, ...]:
    """What counts as the user's error: bad settings or input (``ValueError``: BraTSDataError,
    CheckpointMismatchError and ExportMismatchError are ones), files that are missing, in the way or not readable,
    and an export that failed its parity check."""
    types: List[type] = [ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                         PermissionError]
    # an ExportParityError can only have been raised once its module was imported: no import here, which would
    # pull torch and the exporters in to print an error
    export = sys.modules.get("raagr2_monai.deploy.export")
    if export is not None:
        types.append(export.ExportParityError)
    return tuple(types)


def user_error(error: BaseException) -> Optional[BaseException]:
    """The user error behind ``error``: itself, or one it was raised from (MONAI's config parser wraps the errors of
    a config's expressions in a ``RuntimeError``); ``None`` for anything else, a bug whose traceback is wanted.

    Args:
        error: what a command raised.

    Returns:
        The user error, or ``None``.
    """
    types = _user_error_types()
    cause: Optional[BaseException] = error
    while cause is not None:
        if isinstance(cause, types) or _is_key_message(cause):
            return cause
        cause = cause.__cause__
    return None


def _is_key_message(error: BaseException) -> bool:
    """A ``KeyError`` that explains itself (a datalist entry without ``image``, masks for another network): its
    argument is a sentence. A bare key (``KeyError: 'x'``) is a failed lookup, a bug whose traceback is wanted."""
    return isinstance(error, KeyError) and len(error.args) == 1 and " " in str(error.args[0])


def _message(error: BaseException) -> str:
    """An error's message: a ``KeyError`` shows its argument, not its ``repr``."""
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    return str(error) or type(error).__name__


def _fail(message: str, status: int) -> NoReturn:
    """End ``raagr2`` with one ``error:`` line on stderr and exit status ``status``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run ``raagr2``: check the command line, then let Fire dispatch it.

    Args:
        argv: the arguments after ``raagr2`` (default ``sys.argv[1:]``).

    Raises:
        SystemExit: 2 for a command line that does not fit its command, 1 for a user error (:func:`user_error`),
            each after one ``error:`` line on stderr; whatever Fire raises for its own errors and help.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = _VERBOSE in args or os.environ.get("RAAGR2_VERBOSE", "").lower() not in ("", "0", "false", "no")
    args = [arg for arg in args if arg != _VERBOSE]
    try:
        args = check_command_line(args)
    except UsageError as err:
        _fail(str(err), USAGE_ERROR)
    try:
        fire.Fire(COMMANDS, command=args, name="raagr2")
    except Exception as err:  # noqa: BLE001 - a user error ends in its message, anything else in its traceback
        cause = user_error(err)
        if verbose or cause is None:
            raise
        _fail(_message(cause), USER_ERROR)
