"""Functions the bundle configs call while they run: where the bundle is, loading weights, recording the run.

Configs name them by dotted path (``$raagr2_monai.bundle.find_bundle_root()``) so that a bundle carries no Python
of its own (a ``scripts`` package in the working directory would shadow a bundle's own, SPEC §5).
"""

from __future__ import annotations

import ast
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
from torch import nn

__all__ = [
    "find_bundle_root",
    "checked",
    "config_files_from_argv",
    "load_weights",
    "CheckpointMismatchError",
    "versions",
    "record_run",
    "atomic_save",
    "atomic_write_text",
    "to_jsonable",
    "handlers_for_rank",
    "log_mlflow_artifacts",
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


def checked(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a check of a workflow's settings, as its first step.

    On the ``python -m monai.bundle`` command line a failed check ends the run with its message alone, where MONAI
    would bury it under the config parser's traceback; elsewhere (``ConfigWorkflow``, MONAI Label) the error
    propagates as raised.

    Returns:
        What ``check`` returns.
    """
    try:
        return check(*args, **kwargs)
    except (ValueError, FileNotFoundError) as err:
        if config_files_from_argv():
            raise SystemExit(f"error: {err}") from err
        raise


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the network it is loaded into (another variant, a pruned model, ...)."""


def load_weights(network: nn.Module, path: str, map_location: Any = "cpu") -> nn.Module:
    """Load a plain state_dict (``torch.load(weights_only=True)``) into ``network``, strictly.

    Args:
        network: the network (a ``DistributedDataParallel`` wrapper is unwrapped).
        path: the checkpoint, a plain state_dict as the bundles write it.
        map_location: passed to ``torch.load``.

    Returns:
        ``network``, with the weights loaded.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        CheckpointMismatchError: the checkpoint was written by another architecture; the message names the variant
            it fits, where one does.
    """
    from raagr2_monai.networks import NETWORKS

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist: train the bundle first or set ckpt_path.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointMismatchError(f"Checkpoint {path} cannot be read as a plain state_dict: {err}") from err
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    model = network.module if hasattr(network, "module") else network
    expected = model.state_dict()
    mismatched = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if set(state) != set(expected) or mismatched:
        keys = set(state)
        matches = [
            name
            for name, cls in NETWORKS.items()
            if set(cls(in_channels=model.in_channels, out_channels=model.out_channels).state_dict()) == keys
        ]
        what = f"it fits the {matches[0]!r} variant" if matches else "it fits none of the RAAGR2-Net variants"
        detail = (
            f"{len(keys - set(expected))} unexpected and {len(set(expected) - keys)} missing keys, "
            f"{len(mismatched)} shape mismatches"
        )
        raise CheckpointMismatchError(
            f"Checkpoint {path} does not fit {type(model).__name__} ({detail}); {what}. "
            "Use the bundle of the variant that wrote it (or the pruned bundle, for a pruned model)."
        )
    model.load_state_dict(state, strict=True)
    return network


def versions() -> Dict[str, str]:
    """Versions of Python, the stack and this package, and the git commit of the working tree when there is one."""
    import ignite
    import monai
    import numpy

    import raagr2_monai

    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "pytorch-ignite": ignite.__version__,
        "numpy": numpy.__version__,
        "raagr2_monai": raagr2_monai.__version__,
    }
    for package in ("torch_pruning", "mlflow", "nibabel"):
        try:
            found[package] = __import__(package).__version__
        except ImportError:
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(raagr2_monai.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode == 0:
            found["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return found


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` through a temporary file in the same folder, then rename: no half-written checkpoint."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def record_run(output_dir: str, settings: Mapping[str, Any], seed: int) -> str:
    """Record what a run was: its settings, seed, command line, versions, and a copy of its config files.

    Writes ``<output_dir>/run.json`` and ``<output_dir>/configs/`` (the files named by ``--config_file``), so every
    output folder says how it was made.

    Returns:
        The path of ``run.json``.
    """
    os.makedirs(output_dir, exist_ok=True)
    copies = []
    for file in config_files_from_argv():
        if os.path.isfile(file):
            target = os.path.join(output_dir, "configs", os.path.basename(file))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(file, target)
            copies.append(target)
    record = {
        "seed": seed,
        "settings": to_jsonable(dict(settings)),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "config_copies": copies,
        "versions": versions(),
    }
    path = os.path.join(output_dir, "run.json")
    atomic_write_text(path, json.dumps(record, indent=2))
    return path


def to_jsonable(value: Any) -> Any:
    """``value`` with containers made JSON-friendly: one-element tensors as numbers, anything else unknown as text."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


# Handlers that log or write files: in a multi-GPU run only rank 0 keeps them.
_RANK_ZERO_ONLY = ("StatsHandler", "CheckpointSaver", "TrainingCheckpoint", "MLFlowHandler", "BraTSMetricsWriter")


def handlers_for_rank(handlers: Optional[Iterable[Any]]) -> List[Any]:
    """The handlers this process should attach: all on rank 0, and on other ranks all but logging/saving ones.

    Validation, early stopping and LR scheduling must run on every rank (their metrics are all-reduced, so every
    rank takes the same decision); logging and checkpoint writing happen once.
    """
    import torch.distributed as dist

    handlers = list(handlers or [])
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        return handlers
    return [h for h in handlers if type(h).__name__ not in _RANK_ZERO_ONLY]


def log_mlflow_artifacts(tracking_uri: str, experiment_name: str, run_name: str, paths: Sequence[str]) -> bool:
    """Attach files (the trained model) to the MLflow run ``run_name`` that MONAI's ``--tracking mlflow`` made.

    MONAI's MLFlowHandler logs parameters, metrics and the executed config but not the model. Does nothing (returns
    ``False``) when tracking was off, that is when no such run exists.
    """
    import mlflow

    if not tracking_uri.startswith("sqlite:///") or not os.path.isfile(tracking_uri[len("sqlite:///") :]):
        return False
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return False
    runs = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
    if not runs:
        return False
    for path in paths:
        if os.path.isfile(path):
            client.log_artifact(runs[0].info.run_id, path, artifact_path="model")
    return True
