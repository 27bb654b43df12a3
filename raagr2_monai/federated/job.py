"""The NVFlare job folder of a federated training: ``meta.json``, a server app running FedAvg (NVFlare's
``ScatterAndGather`` with ``min_clients``, the weighted in-time aggregator and :class:`.persistor.AtomicBundlePersistor`)
and one app per client, each carrying a copy of the source bundle's configs driven by MONAI's ``MonaiAlgo`` through
``monai_nvflare``'s ``ClientAlgoExecutor``.

Each client's bundle gets an overlay, ``configs/federated.json``, read after ``configs/train.json``: its own datalist,
its own study cache and output folder, the validation handlers without early stopping (whose trainer is set by the
bundle's ``run`` section, which ``MonaiAlgo`` does not execute), the device, and for a scanner-shift split an
intensity scale and offset in its preprocessing. The bundles themselves are not changed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from raagr2_monai.utils import atomic_write_json

from .clients import ClientData

__all__ = ["JobSpec", "OVERLAY", "write_job", "client_overlay", "job_name", "copy_bundle_structure"]

#: The overlay config each client's bundle copy gets.
OVERLAY = "configs/federated.json"
#: What the clients' MonaiAlgo reads: the bundle's training config, then the overlay.
_TRAIN_FILES = ["configs/train.json", OVERLAY]
#: The files of a bundle's ``models/`` a client needs to build the network (a DepGraph-pruned structure).
_STRUCTURE_FILES = ("pruning_history.json",)

_EXECUTOR = "monai_nvflare.client_algo_executor.ClientAlgoExecutor"
_CLIENT_ALGO = "monai.fl.client.MonaiAlgo"
_CONTROLLER = "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
_AGGREGATOR = "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator"
_GENERATOR = "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator"
_PERSISTOR = "raagr2_monai.federated.persistor.AtomicBundlePersistor"
_BYTES_FILTER = "raagr2_monai.federated.bytes.StateDictBytesFilter"


@dataclass
class JobSpec:
    """What a federated job is.

    Attributes:
        source_bundle: the bundle folder the clients train (absolute).
        clients: the clients' data (names, datalists' entries, scanner shifts).
        datalists: client name -> datalist file (absolute).
        rounds: FedAvg rounds in all.
        local_epochs: epochs each client trains per round.
        min_clients: results the server needs per round (a failing client beyond those does not stop the job).
        start_round: the first round to run (a resumed job starts after its last finished round).
        state_dir: where the global model is kept between rounds (absolute).
        bytes_dir: where the clients log the bytes they exchange (absolute).
        work_dir: per-client study caches and run records (absolute).
        seed: seed of the initial weights.
        device: the clients' device (``None``: the bundle's default, CUDA when available).
        overrides: further settings of ``train.json`` for every client (e.g. ``{"roi_size": [32, 32]}``).
        key_metric: the validation metric clients report.
        straggler_wait: seconds the server waits for the other clients once ``min_clients`` answered.
        split: how the studies were dealt (recorded with the global model, so a resume can check it).
    """

    source_bundle: str
    clients: Sequence[ClientData]
    datalists: Mapping[str, str]
    rounds: int
    local_epochs: int = 1
    min_clients: int = 1
    start_round: int = 0
    state_dir: str = ""
    bytes_dir: str = ""
    work_dir: str = ""
    seed: int = 0
    device: Optional[str] = None
    overrides: Dict[str, Any] = field(default_factory=dict)
    key_metric: str = "val_mean_dice"
    straggler_wait: int = 3600
    split: str = "iid"


def job_name(source_bundle: str) -> str:
    """The job's name: ``raagr2-fedavg-`` and the bundle folder's name.

    Example::

        >>> job_name("/repo/bundles/depthwise")
        'raagr2-fedavg-depthwise'
    """
    return f"raagr2-fedavg-{Path(source_bundle).name}"


def _scanner_transforms(transforms: List[Any], scale: float, offset: float) -> List[Any]:
    """``transforms`` with the scanner's scale and offset inserted after the z-score normalisation (before it, the
    normalisation would undo any affine intensity change)."""
    shift = [
        {"_target_": "ScaleIntensityd", "keys": "image", "minv": None, "maxv": None, "factor": scale - 1.0},
        {"_target_": "ShiftIntensityd", "keys": "image", "offset": offset},
    ]
    out = list(transforms)
    names = [t.get("_target_", "") if isinstance(t, dict) else "" for t in out]
    at = next((i + 1 for i, n in enumerate(names) if n.endswith("NormalizeIntensityd")), None)
    if at is None:
        raise ValueError("the bundle's preprocessing has no NormalizeIntensityd to place the scanner shift after.")
    return out[:at] + shift + out[at:]


def client_overlay(train_config: Mapping[str, Any], client: ClientData, datalist: str, spec: JobSpec) -> Dict[str, Any]:
    """The ``configs/federated.json`` of one client (see the module docstring).

    Args:
        train_config: the source bundle's ``train.json`` (parsed JSON).
        client: the client's data.
        datalist: its datalist file.
        spec: the job.

    Returns:
        The overlay, ids as ``monai.bundle`` reads them (``validate#handlers``).
    """
    work = os.path.join(spec.work_dir, client.name)
    overlay: Dict[str, Any] = {
        # MonaiAlgo parses the config once before it sets bundle_root to the client's copy; without a real bundle
        # folder then, a pruned network_def (its history under bundle_root) cannot be built: the source serves
        "bundle_root": spec.source_bundle,
        "datalist": datalist,
        "cache_dir": os.path.join(work, "cache"),
        "output_dir": os.path.join(work, "train"),
        "seed": int(spec.seed),
    }
    if spec.device is not None:
        overlay["device"] = spec.device
    handlers = train_config.get("validate", {}).get("handlers")
    if isinstance(handlers, list):
        overlay["validate#handlers"] = [h for h in handlers if h != "@validate#early_stop"]
    if client.scale != 1.0 or client.offset != 0.0:
        for section in ("train", "validate"):
            transforms = train_config[section]["preprocessing"]["transforms"]
            overlay[f"{section}#preprocessing#transforms"] = _scanner_transforms(transforms, client.scale,
                                                                                 client.offset)
    overlay.update(spec.overrides)
    return overlay


def copy_bundle_structure(source: Path, target: Path) -> None:
    """The source bundle's configs and the structure files of its ``models/`` (not its weights: the server sends
    those every round)."""
    shutil.copytree(source / "configs", target / "configs")
    for name in _STRUCTURE_FILES:
        path = source / "models" / name
        if path.is_file():
            (target / "models").mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / "models" / name)


def _server_config(spec: JobSpec) -> Dict[str, Any]:
    job = {"source_bundle": spec.source_bundle, "rounds": spec.rounds, "local_epochs": spec.local_epochs,
           "clients": [c.name for c in spec.clients], "min_clients": spec.min_clients, "seed": spec.seed,
           "split": spec.split}
    return {
        "format_version": 2,
        "workflows": [{
            "id": "fedavg",
            "path": _CONTROLLER,
            "args": {
                "min_clients": int(spec.min_clients),
                "num_rounds": int(spec.rounds - spec.start_round),
                "start_round": int(spec.start_round),
                # once min_clients answered (a failure counts as an answer), wait this long for the others; the
                # round goes on as soon as every client answered, so only a silent client costs the wait
                "wait_time_after_min_received": int(spec.straggler_wait),
                "aggregator_id": "aggregator",
                "persistor_id": "persistor",
                "shareable_generator_id": "shareable_generator",
                "train_task_name": "train",
                "train_timeout": 0,
                # NVFlare's dynamic mode: a failed client is left out while min_clients can still answer, else the
                # job stops (a round without enough results is never saved)
                "ignore_result_error": None,
                # resuming is the persistor's (its state survives the simulator's workspace cleanup)
                "snapshot_every_n_rounds": 0,
            },
        }],
        "components": [
            {"id": "persistor", "path": _PERSISTOR,
             "args": {"source_bundle": spec.source_bundle, "state_dir": spec.state_dir, "seed": int(spec.seed),
                      "job": job}},
            {"id": "shareable_generator", "path": _GENERATOR, "args": {}},
            # FedAvg's weighting: each client's difference by the local iterations it ran this round (NVFlare's
            # weigh_by_local_iter), every client otherwise alike; named, so that none is weighted by a default
            {"id": "aggregator", "path": _AGGREGATOR,
             "args": {"expected_data_kind": "WEIGHT_DIFF", "weigh_by_local_iter": True,
                      "aggregation_weights": {c.name: 1.0 for c in spec.clients}}},
        ],
    }


def _client_config(spec: JobSpec) -> Dict[str, Any]:
    def bytes_filter(direction: str) -> List[Dict[str, Any]]:
        return [{"tasks": ["train"], "filters": [
            {"path": _BYTES_FILTER, "args": {"log_dir": spec.bytes_dir, "direction": direction}}]}]

    return {
        "format_version": 2,
        "executors": [{
            "tasks": ["train", "submit_model", "validate"],
            "executor": {"path": _EXECUTOR, "args": {"client_algo_id": "client_algo", "key_metric": spec.key_metric}},
        }],
        "task_data_filters": bytes_filter("server_to_client"),
        "task_result_filters": bytes_filter("client_to_server"),
        "components": [{
            "id": "client_algo",
            "path": _CLIENT_ALGO,
            "args": {
                "bundle_root": "bundle",  # relative to the deployed app folder
                "local_epochs": int(spec.local_epochs),
                "send_weight_diff": True,
                "config_train_filename": list(_TRAIN_FILES),
                # the evaluator is the training config's own validate#evaluator, on the client's validation studies
                "config_evaluate_filename": list(_TRAIN_FILES),
                "eval_workflow_name": "train",
            },
        }],
    }


def write_job(spec: JobSpec, job_dir: str) -> str:
    """Write the job folder (replacing one already there).

    Args:
        spec: the job.
        job_dir: the folder to write.

    Returns:
        The folder (absolute).

    Raises:
        ValueError: the source bundle has no ``configs/train.json`` or no ``NormalizeIntensityd`` for a scanner shift.
    """
    source = Path(spec.source_bundle)
    train_path = source / "configs" / "train.json"
    if not train_path.is_file():
        raise ValueError(f"{train_path}: the source bundle has no training config to federate.")
    train_config = json.loads(train_path.read_text())
    root = Path(job_dir).resolve()
    if root.exists():
        shutil.rmtree(root)
    deploy_map = {"app_server": ["server"]}
    server = root / "app_server" / "config"
    server.mkdir(parents=True)
    atomic_write_json(server / "config_fed_server.json", _server_config(spec))
    for client in spec.clients:
        app = root / f"app_{client.name}"
        deploy_map[app.name] = [client.name]
        copy_bundle_structure(source, app / "bundle")
        overlay = client_overlay(train_config, client, spec.datalists[client.name], spec)
        atomic_write_json(app / "bundle" / OVERLAY, overlay)
        atomic_write_json(app / "config" / "config_fed_client.json", _client_config(spec))
    atomic_write_json(root / "meta.json", {
        "name": job_name(spec.source_bundle),
        "resource_spec": {},
        "deploy_map": deploy_map,
        "min_clients": int(spec.min_clients),
        "mandatory_clients": [],
        "raagr2": {"algorithm": "FedAvg", **{k: v for k, v in asdict(spec).items() if k not in ("clients",)}},
    })
    return str(root)
