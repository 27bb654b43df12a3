"""What a bundle run leaves behind about itself: ``run.json`` with its settings, seed, command line and versions, a
copy of its configs, and, with ``--tracking mlflow``, its settings and model in the MLflow run."""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any, Dict, Mapping, Optional, Sequence

from raagr2_monai.utils import atomic_write_json, to_jsonable, versions

from .checks import config_files_from_argv
from .ranks import is_rank_zero

__all__ = ["run_settings", "run_name", "tracking_uri", "record_run", "complete_mlflow_run"]


def run_settings(settings: Mapping[str, Any], datasets: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The settings a run records (``run.json``, MLflow parameters, a pruned bundle's report): ``settings`` as the
    config gives them, with what only the run knows.

    Args:
        settings: the config's settings by name. A ``split`` is recorded as ``None`` where a ``datalist`` chose the
            studies instead; a ``device`` as its name.
        datasets: the run's datasets by name; each adds ``<name>_cases``, the number of studies it holds (what ran,
            also where MONAI Label replaces the data).

    Returns:
        A new dictionary.

    Example::

        >>> run_settings({"datalist": "d.json", "split": [0.7, 0.15, 0.15]}, {"training": [1, 2]})
        {'datalist': 'd.json', 'split': None, 'training_cases': 2}
    """
    recorded = dict(settings)
    if recorded.get("datalist") and "split" in recorded:
        recorded["split"] = None
    if "device" in recorded:
        recorded["device"] = str(recorded["device"])
    for name, dataset in (datasets or {}).items():
        recorded[f"{name}_cases"] = len(getattr(dataset, "data", dataset))
    return recorded


def run_name(parts: Sequence[Any]) -> str:
    """A run's name in MLflow: ``parts`` and the time, joined by ``-`` (``depthwise-train-20261207-101500``)."""
    return "-".join([*map(str, parts), time.strftime("%Y%m%d-%H%M%S")])


def tracking_uri(folder: str) -> str:
    """The MLflow store of a run's output ``folder``: ``mlruns.db`` in it, as a SQLite URI (MLflow 3 takes no file
    store)."""
    from monai.utils import path_to_sqlite_uri

    return path_to_sqlite_uri(os.path.join(folder, "mlruns.db"))


def record_run(output_dir: str, settings: Mapping[str, Any], seed: int) -> Optional[str]:
    """Record what a run was: its settings, seed, command line, versions, and a copy of its config files.

    Writes ``<output_dir>/run.json`` and ``<output_dir>/configs/`` (the files named by ``--config_file``), so every
    output folder says how it was made.

    In a multi-process run only rank 0 writes.

    Returns:
        The path of ``run.json``; ``None`` on the other ranks.
    """
    if not is_rank_zero():
        return None
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
