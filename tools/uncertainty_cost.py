"""The cost of each uncertainty mode: seconds per study of the baseline and the hybrid model, side by side, on CPU.

Takes the two trained models of a finished study (``--study``: its ``state.json`` names the baseline's bundle,
``train/baseline``, and the hybrid's, the first ``prune/hybrid-*`` step), puts each behind the inference config the
generator writes now (``bundles/<variant>/configs``, the model's own ``network_def`` and weights: a study's bundles
may predate the uncertainty setting), and segments one synthetic BraTS-size study (``--shape``, 240x240x155 by
default) with :class:`raagr2_monai.deploy.Segmenter`, what ``raagr2 segment`` runs, under each ``--modes`` entry:
``none`` (one prediction), ``tta`` (the slices and their in-plane flips) and ``mc_dropout`` (dropout on), the last two
with ``--samples`` predictions per slice. One untimed run per model warms up first; then, ``--repeat`` rounds, every
mode once per round, the two models one after the other under each (so that a change in the machine's load touches
both models' cells alike).

Each cell is the median over the rounds of ``time.perf_counter`` around one ``Segmenter`` call: the whole study end to
end (load, preprocess, network, invert, write the label map; with an uncertainty setting also the entropy map and
score), on the CPU in fp32. Beside it, the process's CPU seconds over the same call (``time.process_time``, all
threads; median over the rounds), which a machine shared with other work inflates less than the wall clock, and the
ratio of each to the same model's ``none``. Each run's line also gives the network stage alone.

Run from the repository root::

    PYTHONPATH=$PWD .venv/bin/python tools/uncertainty_cost.py --study results/quick --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from raagr2_monai.data import generate, inference_cases
from raagr2_monai.deploy import Segmenter
from raagr2_monai.utils import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
MODES = ("none", "tta", "mc_dropout")


def study_models(study: Path) -> Dict[str, Path]:
    """The baseline's and the hybrid model's bundle folders in a finished study, from its ``state.json``.

    Example::

        study_models(Path("results/quick"))  # {'baseline': .../models/baseline, 'hybrid-60': .../hybrid-60}
    """
    steps = json.loads((study / "state.json").read_text())["steps"]
    hybrids = sorted(name for name in steps if name.startswith("prune/hybrid") and steps[name].get("bundle"))
    if "train/baseline" not in steps or not hybrids:
        raise SystemExit(f"{study}/state.json names no trained baseline or no hybrid model.")
    return {"baseline": study / steps["train/baseline"]["bundle"],
            hybrids[0].split("/", 1)[1]: study / steps[hybrids[0]]["bundle"]}


def current_bundle(model: Path, work: Path) -> Path:
    """A bundle folder in ``work`` with the inference config the generator writes now and ``model``'s network
    definition, its ``models/`` a link to ``model``'s (weights, pruning history)."""
    source = json.loads((model / "configs" / "inference.json").read_text())
    config = json.loads((REPO / "bundles" / "baseline" / "configs" / "inference.json").read_text())
    config["network_def"] = source["network_def"]  # the bundles differ in their network alone
    root = work / "bundles" / model.name
    (root / "configs").mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "configs" / "inference.json", config)
    link = root / "models"
    if not link.exists():
        link.symlink_to((model / "models").resolve(), target_is_directory=True)
    return root


Cells = Dict[Tuple[str, str], List[float]]


def table(wall: Cells, cpu: Cells, models: List[str], modes: List[str], samples: int) -> str:
    """The markdown table: a row per mode; per model its wall-clock and CPU seconds per study (medians over the
    rounds), each with its ratio to the same model's ``none``.

    Example::

        >>> wall, cpu = {("a", "none"): [2.0], ("a", "tta"): [8.0]}, {("a", "none"): [3.0], ("a", "tta"): [9.0]}
        >>> print(table(wall, cpu, ["a"], ["none", "tta"], 4))
        | uncertainty | a s/study | a x none | a CPU s/study | a CPU x none |
        |---|---|---|---|---|
        | none | 2.0 | 1.00 | 3.0 | 1.00 |
        | tta (4) | 8.0 | 4.00 | 9.0 | 3.00 |
    """
    header = ["uncertainty"] + [f"{m} {what}" for m in models
                                for what in ("s/study", "x none", "CPU s/study", "CPU x none")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode in modes:
        row = [mode if mode == "none" else f"{mode} ({samples})"]
        for model in models:
            for cells in (wall, cpu):
                total = statistics.median(cells[model, mode])
                base = statistics.median(cells[model, "none"]) if (model, "none") in cells else float("nan")
                row += [f"{total:.1f}", f"{total / base:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="results/quick", help="a finished study folder (its state.json)")
    parser.add_argument("--work", default="/tmp/raagr2_uncertainty_cost", help="where the study and maps go")
    parser.add_argument("--shape", default="240,240,155")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--samples", type=int, default=4, help="predictions per slice of tta and mc_dropout")
    parser.add_argument("--repeat", type=int, default=1, help="timed rounds (each cell: the median)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    work = Path(args.work)
    modes = args.modes.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = work / "study"
    if not folder.is_dir():
        generate(str(folder), cases=1, seed=args.seed, shape=args.shape)
    (entry,) = inference_cases(str(folder), None)
    bundles = {name: current_bundle(path, work) for name, path in study_models(Path(args.study)).items()}
    segmenters = {
        (name, mode): Segmenter(bundle, work / "maps" / name / mode, device="cpu", backend="torch",
                                uncertainty=mode, uncertainty_samples=args.samples)
        for mode in modes for name, bundle in bundles.items()
    }
    for name in bundles:  # warm-up: first allocations, lazy initialisation
        segmenters[name, modes[0]](entry)
    wall: Cells = {key: [] for key in segmenters}
    cpu: Cells = {key: [] for key in segmenters}
    for round_ in range(args.repeat):
        for key, segmenter in segmenters.items():
            cpu_start, start = time.process_time(), time.perf_counter()
            timing = segmenter(entry)
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - cpu_start)
            score = "" if timing.uncertainty is None else f", study uncertainty {timing.uncertainty:.4f}"
            print(f"round {round_ + 1}: {key[0]} {key[1]}: {wall[key][-1]:.2f} s (network "
                  f"{timing.seconds['network']:.2f} s, CPU {cpu[key][-1]:.2f} s){score}", flush=True)
    print()
    print(table(wall, cpu, list(bundles), modes, args.samples))
    print()
    print(f"One synthetic study of {args.shape.replace(',', 'x')} voxels ({entry['case']}), CPU fp32, "
          f"{torch.get_num_threads()} intra-op threads, whole slices (sw_batch_size 8); seconds per study: median of "
          f"{args.repeat} round(s) of time.perf_counter (CPU: time.process_time) around raagr2_monai.deploy.Segmenter "
          f"(load to written maps); "
          f"models: {', '.join(f'{n} ({p})' for n, p in study_models(Path(args.study)).items())}.")


if __name__ == "__main__":
    main()
