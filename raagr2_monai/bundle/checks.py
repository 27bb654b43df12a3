"""The checks a bundle workflow runs first, in ``initialize``: its settings, its overrides on the command line, the
weights it will load, and where its bundle is. A failed check ends a ``python -m monai.bundle`` run in one line
(:func:`checked`).
"""

from __future__ import annotations

import ast
import difflib
import pydoc
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, Union

from raagr2_monai.handlers import WeightsLoader
from raagr2_monai.networks import check_weights

__all__ = [
    "config_files_from_argv",
    "check_overrides",
    "find_bundle_root",
    "checked",
    "check_validation_settings",
    "check_loader_weights",
]


def config_files_from_argv(argv: Optional[Sequence[str]] = None) -> List[str]:
    """The config files given to ``python -m monai.bundle run`` as ``--config_file`` (one path or a list literal)."""
    argv = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(argv):
        value = None
        if arg == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        if value is not None:
            value = value.strip()
            if value.startswith("["):
                return [str(v) for v in ast.literal_eval(value)]
            return [p.strip() for p in value.split(",")] if "," in value else [value]
    return []


#: The parameters of ``python -m monai.bundle run`` and of the workflow it makes; any other ``--key`` overrides a
#: config id.
_RUN_PARAMETERS = frozenset({"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking",
                             "args_file", "workflow_type", "workflow_name", "properties_path"})


def _ids(config: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(config, dict):
        for key, value in config.items():
            yield f"{prefix}{key}"
            yield from _ids(value, f"{prefix}{key}#")
    elif isinstance(config, list):
        for i, value in enumerate(config):
            yield f"{prefix}{i}"
            yield from _ids(value, f"{prefix}{i}#")


def check_overrides(argv: Optional[Sequence[str]] = None) -> None:
    """Refuse an override on the ``python -m monai.bundle run`` command line that names no id of its config files.

    MONAI adds such a key (``--epoch 1`` for ``--epochs 1``) to the config as a new id that nothing reads, so the run
    would go on with the setting it was meant to change. Outside that command line (``ConfigWorkflow``, MONAI Label,
    the ``raagr2`` commands, which check their own options) it does nothing.

    Raises:
        ValueError: naming each unknown ``--key`` and the closest id of the config files.

    Example::

        check_overrides(["monai.bundle", "run", "training", "--config_file", "train.json", "--epoch", "1"])
        # ValueError: --epoch is not a setting of train.json (did you mean --epochs?) ...
    """
    from monai.bundle import ConfigParser
    from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

    argv = list(sys.argv if argv is None else argv)
    files = config_files_from_argv(argv)
    if not files:
        return
    parser = ConfigParser()
    parser.read_config(files)
    known = set(_ids(parser.get()))
    if any(arg == "--tracking" or arg.startswith("--tracking=") for arg in argv):
        known.update(DEFAULT_MLFLOW_SETTINGS["configs"])
    keys = [arg[2:].split("=", 1)[0] for arg in argv[1:] if arg.startswith("--") and len(arg) > 2]
    unknown = [key for key in keys if key not in _RUN_PARAMETERS and key not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hints.append(f"--{key}" + (f" (did you mean --{close[0]}?)" if close else ""))
        raise ValueError(
            f"{', '.join(hints)}: not a setting of {', '.join(files)}; MONAI would add it as a new id and the run would "
            "ignore it."
        )


def find_bundle_root(default: str = ".") -> str:
    """The bundle folder of the config being run: the parent of the ``configs/`` folder of the first config file.

    ``python -m monai.bundle run training --config_file bundles/depthwise/configs/train.json`` then works from any
    working directory. Without a ``--config_file`` on the command line (MONAI Label, ``ConfigWorkflow`` in tests),
    those tools set ``bundle_root`` themselves; the fallback is ``default``, the model zoo's ``"."``.
    """
    files = config_files_from_argv()
    if not files:
        return default
    folder = Path(files[0]).resolve().parent
    return str(folder.parent if folder.name == "configs" else folder)


def checked(check: Union[str, Callable[..., Any]], *args: Any, **kwargs: Any) -> Any:
    """Run a check of a workflow's settings, as its first step.

    On the ``python -m monai.bundle`` command line a failed check ends the run with its message alone, where MONAI
    would bury it under the config parser's traceback; elsewhere (``ConfigWorkflow``, MONAI Label) the error
    propagates as raised.

    Args:
        check: the check, or its dotted path, so that a config names it as data:
            ``{"_target_": "raagr2_monai.bundle.checked", "check": "raagr2_monai.data.check_roi_size",
            "roi_size": "@roi_size"}``.
        args, kwargs: what ``check`` takes.

    Returns:
        What ``check`` returns.
    """
    if isinstance(check, str):
        found = pydoc.locate(check)
        if not callable(found):
            raise ValueError(f"{check!r} names no function to check a setting with.")
        check = found
    try:
        return check(*args, **kwargs)
    except (ValueError, FileNotFoundError) as err:
        if config_files_from_argv():
            raise SystemExit(f"error: {err}") from err
        raise


def check_validation_settings(val_interval: Any, val_cases: Any) -> None:
    """Check how often and on how many studies a training validates.

    Args:
        val_interval: validate every this many epochs (a positive integer).
        val_cases: validate on the first this many validation studies (a positive integer), or ``None`` for all.

    Raises:
        ValueError: naming the setting and its value.

    Example::

        >>> check_validation_settings(1, None)
    """
    for name, value, optional in (("val_interval", val_interval, False), ("val_cases", val_cases, True)):
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            allowed = "a positive integer or null (all studies)" if optional else "a positive integer"
            raise ValueError(f"{name} must be {allowed}, got {value!r}.")


def check_loader_weights(handlers: Iterable[Any]) -> List[str]:
    """Check that the weights each ``WeightsLoader`` among a workflow's ``handlers`` will load exist (a step of
    ``initialize``, through :func:`checked`); a workflow whose loader is replaced (stand-in networks, exported
    backends) asks for none.

    Returns:
        The checked paths.

    Raises:
        FileNotFoundError: naming the missing file and the setting to change (:func:`raagr2_monai.networks.check_weights`).
    """
    return [check_weights(handler.load_path) for handler in handlers if isinstance(handler, WeightsLoader)]
