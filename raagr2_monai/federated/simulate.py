"""A federated training end to end: check the inputs, split the data across clients, write the NVFlare job, run
NVFlare's simulator, then write the global model as a bundle beside the bytes report.

Output folder::

    <output>/datalists/site-<n>.json   each client's datalist (training, validation)
    <output>/job/                      the NVFlare job (meta.json, app_server, app_site-<n>)
    <output>/workspace/                the simulator's workspace (server and client logs); wiped by each run
    <output>/global/model.pt           the global model after the last finished round, and state.json (rounds done)
    <output>/clients/site-<n>/         each client's study cache and run records
    <output>/bytes/site-<n>.jsonl      the bytes each client received and sent, one line per exchange
    <output>/bytes.json                those bytes per round, per client, per direction, and in total
    <output>/bundle/                   the global model as a bundle: the source's configs + models/model.pt
    <output>/federated.json            what was run
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from raagr2_monai.bundle.load import check_bundle, load_bundle_network
from raagr2_monai.data import check_data_source, load_split, resolve_dataset_dir
from raagr2_monai.networks import VARIANTS
from raagr2_monai.utils import atomic_write_json, parse_sequence

from .bytes import summarise_bytes
from .job import JobSpec, copy_bundle_structure, write_job
from .persistor import GLOBAL_MODEL, read_state
from .clients import (
    ClientData,
    check_client_studies,
    client_names,
    load_folder_studies,
    split_studies,
    write_client_datalists,
)

__all__ = ["FederatedResult", "resolve_source_bundle", "prepare_clients", "run_federated", "write_global_bundle"]

@dataclass(frozen=True)
class FederatedResult:
    """What a federated run wrote.

    Attributes:
        bundle: the global bundle folder.
        bytes_report: ``bytes.json``.
        job_dir: the NVFlare job folder.
        rounds_done: rounds finished (all of them on success).
        ran_rounds: rounds run by this call (fewer on a resume).
    """

    bundle: Path
    bytes_report: Path
    job_dir: Path
    rounds_done: int
    ran_rounds: int


def resolve_source_bundle(variant: Optional[str] = None, bundle: Optional[str] = None,
                          bundles_root: Optional[str] = None) -> Path:
    """The bundle folder to federate: a variant's shipped bundle or any bundle folder (a pruned one included).

    Args:
        variant: a variant name (``baseline``, ``depthwise``, ...).
        bundle: a bundle folder; exclusive with ``variant``.
        bundles_root: where the variants' bundles are (default ``bundles`` under the working directory, else the
            repository's).

    Raises:
        ValueError: neither or both given, or an unknown variant.
        FileNotFoundError: the folder is not a bundle.

    Example::

        >>> resolve_source_bundle("depthwise").name
        'depthwise'
    """
    if (variant is None) == (bundle is None):
        raise ValueError("give exactly one of --variant (a shipped bundle) or --bundle (a bundle folder).")
    if bundle is not None:
        return check_bundle(os.path.abspath(os.path.expanduser(str(bundle)))).resolve()
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}.")
    roots = [Path(bundles_root)] if bundles_root else [Path("bundles"), Path(__file__).resolve().parents[2] / "bundles"]
    for root in roots:
        if (root / variant).is_dir():
            return check_bundle(root / variant).resolve()
    raise FileNotFoundError(f"no bundle folder for variant {variant!r} under {', '.join(map(str, roots))}.")


def _datalist_clients(datalists: Sequence[str], read_voxels: bool) -> List[ClientData]:
    """Clients from given datalists, one per client, each checked."""
    clients = []
    for name, path in zip(client_names(len(datalists)), datalists):
        path = check_data_source(None, path)
        try:
            training = load_split(None, "training", path)
            validation = load_split(None, "validation", path)
        except (KeyError, ValueError, OSError) as error:
            raise ValueError(f"client {name}: {path}: cannot be read as a datalist ({error}).") from None
        if not training or not validation:
            raise ValueError(f"client {name}: {path}: needs studies in both 'training' and 'validation'.")
        check_client_studies(name, training + validation, path, read_voxels)
        clients.append(ClientData(name, tuple(training), tuple(validation)))
    return clients


def prepare_clients(
    clients: int, split: str = "iid", data_dir: Optional[str] = None, seed: int = 0,
    datalists: Optional[Sequence[str]] = None, read_voxels: bool = True,
) -> Tuple[List[ClientData], Optional[str]]:
    """The clients' data, checked before anything runs.

    Args:
        clients: number of clients.
        split: ``iid``, ``grade`` or ``scanner`` (see :data:`raagr2_monai.federated.clients.SPLITS`).
        data_dir: a BraTS folder (``None``: the built-in synthetic set, generated on first use).
        seed: seed of the split.
        datalists: one datalist per client instead of splitting ``data_dir``.
        read_voxels: read every volume of every study (NaN, labels) rather than the headers only.

    Returns:
        The clients and the data folder (``None`` with ``datalists``).

    Raises:
        ValueError: too few studies for the clients, a bad split name, a bad study (``client <name>: <file>: ...``).
        FileNotFoundError: the folder or a datalist does not exist.
    """
    if datalists:
        if len(datalists) != int(clients):
            raise ValueError(f"{len(datalists)} datalists given for {clients} clients; give one per client.")
        return _datalist_clients(datalists, read_voxels), None
    check_data_source(data_dir)
    folder, entries = load_folder_studies(resolve_dataset_dir(data_dir))
    parts = split_studies(entries, int(clients), split, seed)
    for part in parts:
        check_client_studies(part.name, part.training + part.validation, folder, read_voxels)
    return parts, folder


def write_global_bundle(source_bundle: Path, weights: Path, target: Path) -> Path:
    """The global model as a bundle: the source's configs (and docs, LICENSE, structure files) and
    ``models/model.pt`` (a plain state_dict), assembled in a temporary folder and renamed into place.

    Raises:
        raagr2_monai.networks.CheckpointMismatchError: the weights do not fit the bundle's network (checked by loading
            it strictly before the folder is put in place).
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    copy_bundle_structure(source_bundle, tmp)
    for extra in ("docs", "LICENSE"):
        path = source_bundle / extra
        if path.is_dir():
            shutil.copytree(path, tmp / extra)
        elif path.is_file():
            shutil.copy2(path, tmp / extra)
    (tmp / "models").mkdir(exist_ok=True)
    shutil.copy2(weights, tmp / "models" / "model.pt")
    load_bundle_network(tmp, require_weights=True)  # strict: exact keys and shapes
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)
    return target


def _run_simulator(job_dir: str, workspace: str, names: Sequence[str]) -> int:
    """Run NVFlare's simulator in this process's API (it forks its server and starts a worker per client task);
    the working directory it changes is restored."""
    from nvflare.private.fed.app.simulator.simulator_runner import SimulatorRunner

    cwd = os.getcwd()
    try:
        runner = SimulatorRunner(job_folder=job_dir, workspace=workspace, clients=",".join(names),
                                 threads=len(names))
        return int(runner.run() or 0)
    finally:
        os.chdir(cwd)


def run_federated(
    variant: Optional[str] = None, bundle: Optional[str] = None, clients: int = 3, rounds: int = 5,
    local_epochs: int = 1, split: str = "iid", data_dir: Optional[str] = None, output: Optional[str] = None,
    seed: int = 0, min_clients: Optional[int] = None, resume: bool = True, device: Optional[str] = None,
    datalists: Optional[Sequence[str] | str] = None, overrides: Optional[Dict[str, Any]] = None,
    read_voxels: bool = True,
) -> FederatedResult:
    """Train a bundle with FedAvg across simulated clients and write the global model as a bundle.

    Every input is checked before the simulator starts (the bundle, the numbers, each client's studies); a client
    that fails in a round is left out of that round's average as long as ``min_clients`` others answered.

    Args:
        variant: a shipped variant's bundle, or
        bundle: any bundle folder (a DepGraph-pruned bundle federates with its pruned structure).
        clients: number of simulated clients (``site-1`` ...).
        rounds: FedAvg rounds in all.
        local_epochs: epochs each client trains per round.
        split: ``iid``, ``grade`` (non-IID by grade) or ``scanner`` (per-client intensity scale and offset).
        data_dir: a BraTS folder to split by patient (default: the built-in synthetic set).
        output: the output folder (default ``results/federated/<bundle name>``).
        seed: seed of the split, the shifts and the initial weights.
        min_clients: results the server needs per round (default: all clients).
        resume: continue from the last finished round found in ``output``; ``False`` starts over.
        device: the clients' device (``cpu``, ``cuda``; default: the bundle's).
        datalists: one datalist per client (a list or ``"a.json,b.json"``) instead of splitting ``data_dir``.
        overrides: further ``train.json`` settings for every client (e.g. ``{"roi_size": [32, 32]}``).
        read_voxels: check every voxel of every study before starting (``False``: headers only).

    Returns:
        A :class:`FederatedResult`.

    Raises:
        ValueError: bad settings or data, in one line (a bad study names its client and file).
        FileNotFoundError: the bundle, the data folder or a datalist does not exist.
        RuntimeError: the simulator ended before all rounds finished (the message names its log).
    """
    source = resolve_source_bundle(variant, bundle)
    clients, rounds, local_epochs = int(clients), int(rounds), int(local_epochs)
    min_clients = clients if min_clients is None else int(min_clients)
    for name, value, low in (("clients", clients, 1), ("rounds", rounds, 1), ("local_epochs", local_epochs, 1)):
        if value < low:
            raise ValueError(f"{name} must be at least {low}; got {value}.")
    if not 1 <= min_clients <= clients:
        raise ValueError(f"min_clients must be between 1 and clients ({clients}); got {min_clients}.")
    lists = [str(p) for p in parse_sequence(datalists, "datalists", str)] if datalists else None
    parts, folder = prepare_clients(clients, split, data_dir, seed, lists, read_voxels)

    out = Path(output or Path("results") / "federated" / source.name).resolve()
    state_dir, bytes_dir = out / "global", out / "bytes"
    job_id = {"source_bundle": str(source), "rounds": rounds, "local_epochs": local_epochs,
              "clients": [p.name for p in parts], "min_clients": min_clients, "seed": int(seed), "split": split}
    state = read_state(str(state_dir)) if resume else None
    if state is not None:
        recorded = {k: state.get("job", {}).get(k) for k in ("source_bundle", "clients", "seed", "split")}
        if recorded != {k: job_id[k] for k in recorded}:
            raise ValueError(f"{out} holds another job ({recorded}); pass --noresume to start over or another --output.")
    else:
        for stale in (state_dir, bytes_dir):
            shutil.rmtree(stale, ignore_errors=True)
    start = 0 if state is None else min(int(state["rounds_done"]), rounds)

    lists_by_client = write_client_datalists(parts, str(out / "datalists"), folder)
    spec = JobSpec(source_bundle=str(source), clients=parts, datalists=lists_by_client, rounds=rounds,
                   local_epochs=local_epochs, min_clients=min_clients, start_round=start, state_dir=str(state_dir),
                   bytes_dir=str(bytes_dir), work_dir=str(out / "clients"), seed=int(seed), device=device,
                   overrides=dict(overrides or {}), split=split)
    job_dir = write_job(spec, str(out / "job"))
    if start < rounds:
        status = _run_simulator(job_dir, str(out / "workspace"), [p.name for p in parts])
        state = read_state(str(state_dir))
        done = 0 if state is None else int(state["rounds_done"])
        if done < rounds:
            raise RuntimeError(f"the federated job stopped after {done} of {rounds} rounds (simulator status {status});"
                               f" see {out / 'workspace' / 'server' / 'log.txt'}; rerun to resume.")
    report = summarise_bytes(str(bytes_dir), str(out / "bytes.json"))
    target = write_global_bundle(source, state_dir / GLOBAL_MODEL, out / "bundle")
    atomic_write_json(out / "federated.json", {
        **job_id, "algorithm": "FedAvg", "data_dir": folder, "datalists": lists_by_client,
        "device": device, "overrides": dict(overrides or {}), "resumed_from_round": start,
        "scanner_shift": {p.name: {"scale": p.scale, "offset": p.offset} for p in parts},
        "studies": {p.name: {"training": len(p.training), "validation": len(p.validation)} for p in parts},
        "bytes_total": report["total"], "bundle": str(target),
    })
    return FederatedResult(target, out / "bytes.json", Path(job_dir), rounds, rounds - start)
