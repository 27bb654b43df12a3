"""What federated training costs and gains: FedAvg's global model against central training on all clients' data and
against each client training alone, same data, same total epochs, scored on the same held-out test subjects; and the
bytes each round moves for the baseline, Depthwise Shared and a DepGraph-pruned model.

The test subjects are the ``testing`` section of the data's patient-level split (``--seed``); the other studies are
dealt to ``--clients`` clients by patient (:func:`raagr2_monai.federated.clients.split_studies`, ``--split``), each
client's share split into training and validation. Then, with the same ``train.json`` settings for all (``--roi_size``
and the bundle's defaults otherwise):

- **federated**: ``raagr2_monai.federated.run_federated`` on those clients' datalists, ``--rounds`` rounds of
  ``--local_epochs`` epochs each (NVFlare's simulator, MONAI's ``MonaiAlgo``); the global model after the last round;
- **central**: the bundle's ``training`` workflow on every client's training studies, validated on every client's
  validation studies, ``rounds x local_epochs`` epochs; the model it keeps (best on validation);
- **central, a client's steps**: the same, for as many epochs as give it the optimizer steps each client took
  (``rounds x local_epochs`` times a client's share of the training studies): FedAvg's clients step in parallel, so
  at the same epochs the federated model took a third of central training's sequential steps (3 clients);
- **site-N alone**: the same on one client's studies.

Each model is evaluated by the bundle's ``evaluating`` workflow on the test subjects; the table gives the mean Dice over
TC/WT/ET and each model's per-subject paired difference to the federated model (95 % CI, Student t). The bytes come
from each federated job's ``bytes.json`` (the state dicts exchanged, counted by the clients' NVFlare filter): the
comparison's job, and one-round jobs of ``--bytes_bundles`` (e.g. the baseline and a DepGraph-pruned bundle).

Run from the repository root::

    PYTHONPATH=$PWD .venv/bin/python tools/federated_comparison.py --variant depthwise --rounds 5 --local_epochs 3 \\
        --bytes_bundles bundles/baseline results/quick/models/baseline/pruned/depgraph-30-ft
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

from raagr2_monai.data import load_split, resolve_dataset_dir
from raagr2_monai.federated import run_federated
from raagr2_monai.federated.clients import split_studies
from raagr2_monai.networks import count_parameters
from raagr2_monai.bundle import bundle_workflow, load_bundle_network, run_bundle_workflow
from raagr2_monai.report.statistics import paired_difference, read_subject_scores
from raagr2_monai.metrics import subject_mean_dice
from raagr2_monai.utils import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def _workflow(configs: Sequence[Path], workflow: str, bundle: Path, **override: Any) -> float:
    """Run one of the bundle's workflows in this process; its seconds."""
    return run_bundle_workflow(bundle_workflow(configs, workflow, bundle, **override))


def _copy_bundle(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source / "configs", target / "configs")
    (target / "models").mkdir(parents=True)
    return target


def train_alone(source: Path, name: str, training: List[dict], validation: List[dict], test: List[dict],
                work: Path, epochs: int, settings: Dict[str, Any]) -> Path:
    """Train a copy of ``source`` on these studies; the bundle folder (its ``models/model.pt``)."""
    bundle = _copy_bundle(source, work / name)
    datalist = work / f"{name}.json"
    atomic_write_json(datalist, {"training": training, "validation": validation, "testing": test})
    seconds = _workflow([bundle / "configs" / "train.json"], "training", bundle, datalist=str(datalist),
                        output_dir=str(bundle / "runs" / "train"), epochs=epochs, cache_dir=str(work / "cache"),
                        **settings)
    print(f"[compare] {name}: {len(training)} training, {len(validation)} validation studies, {epochs} epochs in "
          f"{seconds:.0f} s", flush=True)
    return bundle


def evaluate(bundle: Path, test_datalist: Path, work: Path, settings: Dict[str, Any]) -> Path:
    """Evaluate ``bundle``'s ``models/model.pt`` on the test subjects; its per-subject CSV."""
    out = work / "eval" / bundle.name
    _workflow([bundle / "configs" / "train.json", bundle / "configs" / "evaluate.json"], "evaluating", bundle,
              datalist=str(test_datalist), output_dir=str(out), ckpt_path=str(bundle / "models" / "model.pt"),
              write_overlays=False, cache_dir=str(work / "cache"), **settings)
    return out / "metrics_per_subject.csv"


def bytes_row(name: str, report: Path, bundle: Path) -> str:
    """One row of the bytes table from a job's ``bytes.json``: the first round's bytes, summed over the clients, and
    the job's totals (MB, 10^6 bytes)."""
    data = json.loads(report.read_text())
    first = data["rounds"][min(data["rounds"], key=int)]
    down = sum(c.get("server_to_client", 0) for c in first.values())
    up = sum(c.get("client_to_server", 0) for c in first.values())
    params = count_parameters(load_bundle_network(bundle))
    total = data["total"]
    return (f"| {name} | {params:,} | {down / 1e6:.2f} | {up / 1e6:.2f} | "
            f"{total['server_to_client'] / 1e6:.2f} | {total['client_to_server'] / 1e6:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="depthwise")
    parser.add_argument("--data_dir", default=None, help="a BraTS folder (default: the built-in synthetic set)")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local_epochs", type=int, default=3)
    parser.add_argument("--split", default="iid")
    parser.add_argument("--roi_size", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bytes_bundles", nargs="*", default=[], help="bundles to measure one round's bytes of")
    parser.add_argument("--work", type=Path, default=Path("/tmp/raagr2_federated_comparison"))
    parser.add_argument("--resume", action="store_true",
                        help="reuse the federated job finished in --work (same settings) instead of running it again")
    args = parser.parse_args()

    data_dir = resolve_dataset_dir(args.data_dir)
    source = REPO / "bundles" / args.variant
    settings = {"roi_size": [args.roi_size, args.roi_size], "num_workers": 0, "seed": args.seed}
    test = load_split(data_dir, "testing", None, args.seed)
    pool = load_split(data_dir, "training", None, args.seed) + load_split(data_dir, "validation", None, args.seed)
    clients = split_studies(pool, args.clients, args.split, args.seed)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    lists = []
    for client in clients:
        path = work / f"datalist-{client.name}.json"
        atomic_write_json(path, {"training": list(client.training), "validation": list(client.validation)})
        lists.append(str(path))
    epochs = args.rounds * args.local_epochs

    start = time.perf_counter()
    result = run_federated(bundle=str(source), clients=args.clients, rounds=args.rounds,
                           local_epochs=args.local_epochs, split=args.split, datalists=lists,
                           output=str(work / "federated"), seed=args.seed, resume=args.resume,
                           overrides=dict(settings))
    print(f"[compare] federated: {args.clients} clients x {args.rounds} rounds x {args.local_epochs} epochs in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    models = {"federated (FedAvg)": result.bundle}
    everything = [e for c in clients for e in c.training], [e for c in clients for e in c.validation]
    models["central (all clients' data)"] = train_alone(source, "central", *everything, test, work, epochs, settings)
    per_client = sum(len(c.training) for c in clients) / len(clients)
    matched = max(1, round(epochs * per_client / len(everything[0])))
    stepped = f"central, a client's optimizer steps ({matched} epochs)"
    models[stepped] = train_alone(source, "central-steps", *everything, test, work, matched, settings)
    for client in clients:
        models[f"{client.name} alone"] = train_alone(source, client.name, list(client.training),
                                                      list(client.validation), test, work, epochs, settings)

    test_datalist = work / "test.json"
    atomic_write_json(test_datalist, {"training": everything[0], "validation": everything[1], "testing": test})
    scores = {name: read_subject_scores(evaluate(bundle, test_datalist, work, settings))
              for name, bundle in models.items()}
    reference = scores["federated (FedAvg)"]
    lines = ["| model | training studies | mean Dice (TC/WT/ET) | paired difference to federated (95 % CI) |",
             "|---|---|---|---|"]
    counts = {"federated (FedAvg)": len(everything[0]), "central (all clients' data)": len(everything[0]),
              stepped: len(everything[0])}
    counts.update({f"{c.name} alone": len(c.training) for c in clients})
    for name, subject in scores.items():
        dice = [subject_mean_dice(s) for s in subject.values()]
        dice = [d for d in dice if d == d]
        mean = sum(dice) / len(dice)
        if name == "federated (FedAvg)":
            diff = "-"
        else:
            d = paired_difference(subject, reference)
            low, high = d["paired_dice_ci"]
            diff = f"{d['paired_dice_diff']:+.3f} [{low:+.3f}, {high:+.3f}] (n = {d['paired_n']})"
        lines.append(f"| {name} | {counts[name]} | {mean:.3f} | {diff} |")
    print("\n".join(lines))
    print(f"\n{len(test)} test subjects; {args.variant}; {epochs} epochs each ({args.rounds} rounds x "
          f"{args.local_epochs} local epochs federated); roi {args.roi_size}; split {args.split}; seed {args.seed}.")

    rows = ["| model | parameters | MB to clients per round | MB to server per round | MB to clients in all | "
            "MB to server in all |", "|---|---|---|---|---|---|"]
    rows.append(bytes_row(f"{args.variant} ({args.rounds} rounds)", result.bytes_report, result.bundle))
    for path in args.bytes_bundles:
        bundle = Path(path)
        one = run_federated(bundle=str(bundle), clients=args.clients, rounds=1, local_epochs=1, split=args.split,
                            datalists=lists, output=str(work / "bytes" / bundle.name), seed=args.seed, resume=False,
                            overrides=dict(settings))
        rows.append(bytes_row(f"{bundle.name} (1 round)", one.bytes_report, one.bundle))
    print("\n".join(rows))
    print(f"\n{args.clients} clients; bytes: the nbytes of the state dicts each client received and sent "
          f"(raagr2_monai.federated.bytes), NVFlare's framing not counted.")


if __name__ == "__main__":
    main()
