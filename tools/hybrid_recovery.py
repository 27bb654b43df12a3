#!/usr/bin/env python3
"""Which recipe recovers the hybrid model's accuracy? Each recipe prunes a trained architecture of a finished study
with DepGraph and fine-tunes it (the study's own pruning step, :meth:`raagr2_monai.study.StudySteps.prune`), is
evaluated on the study's test subjects, and is compared with the study's baseline by per-subject paired differences
of mean Dice (:func:`raagr2_monai.report.paired_difference`: mean and 95 % CI); its batch-1 latency behind OpenVINO in
fp32 and, where the CPU has a bfloat16 unit, bf16, is timed beside the baseline's eager PyTorch in one run
(:func:`raagr2_monai.benchmark.backend_latencies`, ``time.perf_counter``, median of ``--repeats``).

A recipe is named ``<source>-<ratio>[-ft<epochs>][-r<multiple>][-kd]`` (``--recipes``, comma-separated): the
trained architecture pruned (``baseline``, ``depthwise``, ``paired``, ``encdec``; it must be one the study trained),
DepGraph's channel ratio in percent, the fine-tuning epochs (default: the study's hybrid row's), the channel multiple
(DepGraph's ``round_to``; default: the study's ``hybrid_round_to``) and ``kd`` for distillation from the trained
baseline (weight 0.5, :class:`raagr2_monai.losses.DistillationLoss`); every recipe fine-tunes at the hybrid row's
learning rate. The study's own hybrid row is ``<hybrid_variant>-<hybrid_ratio>``; with ``--threads 1``, the thread
count of the study's steps, it is reproduced to the last digit (another thread count sums in another order and gives
another run). A recipe already evaluated in the study folder is not trained again (``--fresh`` retrains), so a second
run only times.

The rows go to ``<study>/recovery/recovery.json`` and a Markdown table is printed. Run from the repository root on a
finished study::

    .venv/bin/python tools/hybrid_recovery.py --study results/quick --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the source tree, when run from anywhere
    sys.path.insert(0, str(ROOT))

DEFAULT_RECIPES = ("depthwise-60-ft20", "depthwise-60-ft80", "depthwise-60-ft160", "depthwise-60-ft80-kd",
                   "baseline-70-ft80", "paired-60-ft80")


def recipe_spec(name: str, profile: Any) -> Any:
    """The study row a recipe trains (see the module's docstring for the names).

    Raises:
        SystemExit: a name that is not a recipe.
    """
    from raagr2_monai.study import ModelSpec

    parts = name.split("-")
    try:
        source, ratio = parts[0], int(parts[1]) / 100
        epochs = next((int(p[2:]) for p in parts[2:] if p.startswith("ft")), profile.hybrid_finetune_epochs)
        round_to = next((int(p[1:]) for p in parts[2:] if p.startswith("r")), profile.hybrid_round_to)
        if source not in profile.variants or not 0 < ratio < 1 or any(
                p != "kd" and p[:2] != "ft" and p[:1] != "r" for p in parts[2:]):
            raise ValueError(name)
    except (IndexError, ValueError):
        raise SystemExit(f"not a recipe: {name!r}; write <source>-<ratio>[-ft<epochs>][-r<multiple>][-kd] with a source among "
                         f"{', '.join(profile.variants)}, e.g. depthwise-60-ft40-kd.") from None
    return ModelSpec(f"recovery-{name}", kind="pruned", variant=source, method="depgraph", ratio=ratio,
                     finetune_epochs=epochs, distill_weight=0.5 if "kd" in parts[2:] else 0.0,
                     learning_rate=profile.hybrid_learning_rate, round_to=round_to)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, help="a finished study folder (e.g. results/quick)")
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES), help="comma-separated recipes")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the training and the timing")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per latency")
    parser.add_argument("--fresh", action="store_true", help="retrain recipes already evaluated")
    parser.add_argument("--notiming", action="store_true", help="train and evaluate only (e.g. several runs at once)")
    args = parser.parse_args(argv)

    import torch

    from raagr2_monai.benchmark import backend_latencies, runnable_backends
    from raagr2_monai.bundle import load_bundle_network
    from raagr2_monai.report import paired_difference, read_subject_scores
    from raagr2_monai.study import ModelSpec, get_profile
    from raagr2_monai.study.steps import StudySteps
    from raagr2_monai.study.tasks import synthetic_folder
    from raagr2_monai.utils import atomic_write_text

    torch.set_num_threads(args.threads)
    study = Path(args.study).resolve()
    state = json.loads((study / "state.json").read_text())
    settings = state["settings"]
    profile = get_profile(settings["profile"]["name"], **{
        k: tuple(v) if isinstance(v, list) else v for k, v in settings["profile"].items() if k != "name"})
    dataset_dir = settings["data_dir"] or synthetic_folder(profile)
    steps = StudySteps(study, profile, str(Path(dataset_dir).expanduser().resolve()), settings["seed"])
    baseline = ModelSpec("baseline", "architecture", "baseline")
    reference = read_subject_scores(steps.eval_dir(baseline) / "metrics_per_subject.csv")

    rows: List[Dict[str, Any]] = []
    specs = {name: recipe_spec(name, profile) for name in [r.strip() for r in args.recipes.split(",") if r.strip()]}
    for name, spec in specs.items():
        scored = steps.eval_dir(spec) / "metrics_per_subject.csv"
        record = steps.eval_dir(spec) / "recipe.json"
        if args.fresh or not record.is_file():
            print(f"[recovery] {name}: {spec}", flush=True)
            pruned = steps.prune(spec)
            steps.evaluate(spec)
            atomic_write_text(str(record), json.dumps({"spec": spec.__dict__, "train_seconds": pruned["train_seconds"]}))
        rows.append({"recipe": name, **json.loads(record.read_text()),
                     **paired_difference(read_subject_scores(scored), reference)})
    if args.notiming:
        return 0

    models = {"baseline": load_bundle_network(steps.bundle_dir(baseline), require_weights=True).eval()}
    for name, spec in specs.items():
        models[name] = load_bundle_network(steps.bundle_dir(spec), require_weights=True).eval()
    backends, skipped = runnable_backends(("torch", "openvino", "openvino-bf16"))
    latencies = backend_latencies(models, backends, profile.bench_size, (1,), args.repeats, 2, args.threads)
    for row in rows:
        row["latency_b1_ms"] = {b: f["1"]["median"] for b, f in latencies[row["recipe"]]["latency_ms"].items()}
        row["speedup_vs_baseline_torch"] = {b: s["1"] for b, s in
                                            latencies[row["recipe"]]["speedup_vs_baseline_torch"].items()}
    baseline_ms = latencies["baseline"]["latency_ms"]["torch"]["1"]["median"]

    out = study / "recovery"
    out.mkdir(exist_ok=True)
    atomic_write_text(str(out / "recovery.json"), json.dumps({"rows": rows, "baseline_torch_ms": baseline_ms,
                                                               "skipped": skipped, "threads": args.threads}, indent=2))
    print(f"\nbaseline eager PyTorch, batch 1, {profile.bench_size}x{profile.bench_size}, {args.threads} threads: "
          f"{baseline_ms:.1f} ms" + "".join(f"; {b} not timed: {why}" for b, why in skipped.items()))
    shown = [b for b in backends if b != "torch"]
    print("| recipe | subjects | paired Δ mean Dice (95 % CI) | TC / WT / ET Δ | " +
          " | ".join(f"{b} ms (speed-up)" for b in shown) + " | fine-tuning s |")
    print("|---" * (5 + len(shown)) + "|")
    for row in rows:
        ci = row["paired_dice_ci"] or [float("nan")] * 2
        regions = " / ".join(f"{row[f'paired_dice_diff_{r}']:+.3f}" for r in ("TC", "WT", "ET"))
        timing = " | ".join(f"{row['latency_b1_ms'][b]:.1f} ({row['speedup_vs_baseline_torch'][b]:.1f}x)"
                            for b in shown)
        print(f"| {row['recipe']} | {row['paired_n']} | {row['paired_dice_diff']:+.3f} ({ci[0]:+.3f}, {ci[1]:+.3f}) | "
              f"{regions} | {timing} | {row['train_seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
