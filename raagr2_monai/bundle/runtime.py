"""Functions the bundle configs call while they run: where the bundle is, loading weights (re-exported from
:mod:`raagr2_monai.networks` for the configs), recording the run.

Configs name them by dotted path (``$raagr2_monai.bundle.find_bundle_root()``) so that a bundle carries no Python
of its own (a ``scripts`` package in the working directory would shadow a bundle's own).
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence

from raagr2_monai.networks import load_weights
from raagr2_monai.utils import DeviceLike, atomic_write_json, distributed_backend, resolve_device, versions

__all__ = [
    "find_bundle_root",
    "checked",
    "check_validation_settings",
    "config_files_from_argv",
    "load_weights",
    "record_run",
    "handlers_for_rank",
    "check_rank_share",
    "start_distributed",
    "end_distributed",
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
        "settings": dict(settings),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "config_copies": copies,
        "versions": versions(),
    }
    path = os.path.join(output_dir, "run.json")
    atomic_write_json(path, record)
    return path


# Handlers that only log or write files: in a multi-GPU run only rank 0 keeps them. TrainingCheckpoint (every rank
# loads it on resume) and BraTSMetricsWriter (every rank takes part in gathering the rows) stay on every rank and write
# on rank 0 themselves.
_RANK_ZERO_ONLY = ("StatsHandler", "CheckpointSaver", "MLFlowHandler")


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


def check_rank_share(entries: Sequence[Any], world_size: int) -> None:
    """Refuse a multi-process run in which a process would have no subject to validate or evaluate.

    The validation and evaluation samplers do not repeat subjects (a repeat would count twice in the metrics), so
    every process needs one of its own. MONAI's ``DistributedSampler`` refuses such a split too, but only once the
    evaluator is built, under some ninety lines of config-parser traceback per rank; this check says it in one line
    at ``initialize``, with the way out.

    Args:
        entries: the datalist that the processes share.
        world_size: the number of processes.

    Raises:
        ValueError: fewer entries than processes.
    """
    if len(entries) < world_size:
        raise ValueError(
            f"{len(entries)} subject(s) to validate or evaluate for {world_size} processes: every process needs at "
            "least one (start fewer with torchrun --nproc_per_node, or give more subjects)"
        )


def start_distributed(device: DeviceLike, local_rank: int = 0) -> None:
    """Join a torchrun run's process group for a process on ``device``: NCCL between GPUs, gloo between CPUs
    (:func:`raagr2_monai.utils.distributed_backend`). A GPU process also makes its GPU the current one, the GPU of
    its ``local_rank`` where ``device`` names none (``--device cuda``), so that the network, the batches, DDP and NCCL
    all use that GPU rather than GPU 0. Does nothing to a group already joined.
    """
    import torch
    import torch.distributed as dist

    dev = resolve_device(device, index=local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=distributed_backend(dev))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)


def end_distributed() -> None:
    """Leave a torchrun run's process group: wait until every rank is done, then destroy the group.

    Without the barrier, a rank that finishes first (it has no files to write) exits straight after its last
    collective. On CPU, a gloo worker thread may then still hold that collective's tensors and free them while the
    interpreter shuts down; the rank aborts ("terminate called without an active exception") and torchrun reports the
    whole run as failed although every file was written. Does nothing outside a process group.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()


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
