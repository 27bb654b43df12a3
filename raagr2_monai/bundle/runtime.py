"""Functions the bundle configs call while they run: where the bundle is, loading weights (re-exported from
:mod:`raagr2_monai.networks` for the configs), recording the run.

Configs name them by dotted path (``$raagr2_monai.bundle.find_bundle_root()``) so that a bundle carries no Python
of its own (a ``scripts`` package in the working directory would shadow a bundle's own).
"""

from __future__ import annotations

import ast
import difflib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from raagr2_monai.networks import load_weights
from raagr2_monai.utils import DeviceLike, atomic_write_json, distributed_backend, resolve_device, to_jsonable, versions

__all__ = [
    "find_bundle_root",
    "checked",
    "check_validation_settings",
    "config_files_from_argv",
    "check_overrides",
    "load_weights",
    "record_run",
    "handlers_for_rank",
    "check_rank_share",
    "start_distributed",
    "end_distributed",
    "complete_mlflow_run",
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


def _mlflow_params(settings: Mapping[str, Any], prefix: str = "") -> Dict[str, str]:
    params: Dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            params.update(_mlflow_params(value, f"{prefix}{key}."))
        else:
            params[f"{prefix}{key}"] = str(value)[:6000]  # MLflow's limit on a parameter's value
    return params


def complete_mlflow_run(
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    paths: Sequence[str],
    settings: Optional[Mapping[str, Any]] = None,
) -> bool:
    """Attach the trained model and the run's settings to the MLflow run ``run_name`` that MONAI's
    ``--tracking mlflow`` made.

    MONAI's MLFlowHandler logs metrics, the executed config and, as parameters, only ``max_epochs`` and
    ``epoch_length``; the settings (learning rate, batch size, crop size, variant, ...; nested ones as ``a.b``) become
    parameters here, so that runs can be compared in MLflow's table. Does nothing (returns ``False``) when tracking
    was off, that is when no such run exists.
    """
    import mlflow
    from mlflow.entities import Param

    if not tracking_uri.startswith("sqlite:///") or not os.path.isfile(tracking_uri[len("sqlite:///") :]):
        return False
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return False
    runs = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
    if not runs:
        return False
    run_id = runs[0].info.run_id
    for path in paths:
        if os.path.isfile(path):
            client.log_artifact(run_id, path, artifact_path="model")
    logged = runs[0].data.params
    params = [Param(k, v) for k, v in _mlflow_params(to_jsonable(dict(settings or {}))).items() if k not in logged]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
        client.log_batch(run_id, params=params[start:start + 100])
    return True
