"""Checking a ``raagr2`` command line against the chosen command's signature, as Fire will read it, before anything
runs: an unknown command or option, an ambiguous or value-less option, or a value with no parameter to take it is a
:class:`UsageError`, whose message is the whole error line.
"""

from __future__ import annotations

import difflib
import inspect
import re
import typing
from typing import Any, Callable, List, Mapping, Optional, Sequence

from .commands import COMMANDS

#: Fire's help flags, which Fire also takes after a lone ``--`` (``raagr2 summary -- --help``).
_HELP = ("-h", "--help")


class UsageError(Exception):
    """A command line that does not fit the chosen command; the message is the whole error line."""


def _is_flag(token: str) -> bool:
    """Fire's test for a flag (``--name``, ``-n``), which leaves negative numbers as values."""
    return token.startswith("--") or re.match(r"^-[a-zA-Z]", token) is not None


def _closest(word: str, choices: Sequence[str]) -> Optional[str]:
    """The choice closest to a misspelt ``word`` (``difflib``), or ``None`` when none is close."""
    matches = difflib.get_close_matches(word, choices, n=1)
    return matches[0] if matches else None


def _keyword(command: str, flag: str, is_alone: bool, names: Sequence[str], booleans: Sequence[str]) -> str:
    """The parameter a flag sets, resolved as Fire does (``fire.core._ParseKeywordArgs``).

    Args:
        command: ``raagr2 <command>``, for messages.
        flag: the flag as given, without ``=value``.
        is_alone: no value follows (the last token, or a flag follows): ``--name`` is true, ``--noname`` false.
        names: the command's parameters.
        booleans: the switches (:func:`_switches`), the only parameters a flag alone sets (``--name`` true,
            ``--noname`` false).

    Returns:
        The parameter's name.

    Raises:
        UsageError: no parameter fits, naming the closest one (or listing them all); a one-letter flag that
            several parameters start with; a flag without a value for a parameter that is not boolean.
    """
    key = flag.lstrip("-").replace("-", "_")
    if is_alone and key.startswith("no") and key[2:] in booleans and key not in names:
        return key[2:]
    short = [name for name in names if len(key) == 1 and name[0] == key]
    if len(short) > 1:
        raise UsageError(f"{command}: {flag} is ambiguous; use one of {', '.join('--' + n for n in short)}.")
    keyword = key if key in names else short[0] if short else None
    if keyword is not None:
        # Fire would pass True (``bundles --root`` builds paths from a bool): a forgotten value, not a switch
        if is_alone and keyword not in booleans:
            raise UsageError(f"{command}: {flag} needs a value ({flag} VALUE or {flag}=VALUE).")
        return keyword
    close = _closest(key, [*names, *("no" + name for name in booleans)])
    if close is not None:
        raise UsageError(f"{command} has no option {flag}; did you mean --{close}?")
    raise UsageError(f"{command} has no option {flag}; its options: {', '.join('--' + n for n in names) or 'none'}.")


def _switches(function: Callable[..., Any], params: Sequence[inspect.Parameter]) -> List[str]:
    """The parameters a flag alone sets, as Fire reads ``--name`` and ``--noname``: those with a boolean default, and
    the optional booleans (``bool | None``, unset meaning "the bundle's setting": ``segment --whole_slice``)."""
    hints = typing.get_type_hints(inspect.unwrap(function))
    return [p.name for p in params
            if isinstance(p.default, bool) or set(typing.get_args(hints.get(p.name))) == {bool, type(None)}]


def check_arguments(command: str, function: Callable[..., Any], args: Sequence[str]) -> None:
    """Check a command's arguments against its signature, as Fire will read them, without running it.

    Fire's forms: ``--name value``, ``--name=value``, ``--name`` alone (true), ``--noname`` (false), ``-n`` for the
    only parameter starting with ``n``, hyphens for underscores; values without a flag fill, in order, the parameters
    not named.

    Args:
        command: ``raagr2 <command>``, for messages.
        function: the command's function.
        args: the arguments after the command's name (and before a lone ``--``).

    Raises:
        UsageError: an unknown or ambiguous option, an option of a parameter that is not boolean without a value,
            more values than parameters left to take them, or a required parameter without a value.
    """
    params = list(inspect.signature(function).parameters.values())
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    booleans = _switches(function, params)
    any_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
    named, values = set(), []
    skip_value = False
    for index, token in enumerate(args):
        if skip_value:
            skip_value = False
        elif not _is_flag(token):
            values.append(token)
        else:
            has_value = "=" in token
            is_alone = not has_value and (index + 1 == len(args) or _is_flag(args[index + 1]))
            flag = token.split("=", 1)[0]
            if not any_keyword:
                named.add(_keyword(command, flag, is_alone, names, booleans))
            skip_value = not has_value and not is_alone
    open_slots = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in named]
    if len(values) > len(open_slots) and not any(p.kind is p.VAR_POSITIONAL for p in params):
        slots = ", ".join(p.name for p in open_slots) or "its parameters are all named"
        raise UsageError(
            f"{command} takes at most {len(open_slots)} value(s) without an option here ({slots}); "
            f"got {len(values)}: {' '.join(values)}."
        )
    filled = named | {p.name for p in open_slots[: len(values)]}
    missing = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and p.name not in filled]
    if missing:
        raise UsageError(f"{command} needs {', '.join('--' + name for name in missing)}.")


def check_command_line(args: Sequence[str], commands: Mapping[str, Callable[..., Any]] = COMMANDS) -> List[str]:
    """Refuse, before anything runs, a command line that Fire would not run as meant.

    Args:
        args: the arguments after ``raagr2``.
        commands: the commands by name.

    Returns:
        The arguments for Fire: ``args``, except that a help flag after a command gives ``<command> --help``
        (Fire shows help only for a help flag right after the command; further on it would run the command with
        the other values first).

    Raises:
        UsageError: an unknown command, or arguments that do not fit it (:func:`check_arguments`); help requests
            (``--help``, ``-h``) and a bare ``raagr2`` pass, for Fire to answer.

    Example::

        >>> check_command_line(["summary", "--size", "32", "--format=json"])
        ['summary', '--size', '32', '--format=json']
        >>> check_command_line(["summary", "--size", "32", "--help"])
        ['summary', '--help']
        >>> check_command_line(["summary", "--out_channel", "3"])
        Traceback (most recent call last):
        ...
        raagr2_monai.cli.arguments.UsageError: raagr2 summary has no option --out_channel; did you mean --out_channels?
    """
    args = list(args)
    mine = args
    if "--" in args:  # Fire's own flags follow the last lone "--"
        mine = args[: len(args) - 1 - args[::-1].index("--")]
    if not mine or mine[0] in _HELP:
        return args
    name, rest = mine[0], mine[1:]
    if name not in commands:
        close = None if _is_flag(name) else _closest(name, list(commands))
        hint = f"did you mean {close}?" if close else f"commands: {', '.join(commands)}."
        raise UsageError(f"raagr2 has no command {name}; {hint}")
    if any(token in _HELP for token in rest):
        return [name, "--help"]
    check_arguments(f"raagr2 {name}", commands[name], rest)
    return args
