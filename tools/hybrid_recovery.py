#!/usr/bin/env python3
"""Which recipe recovers the hybrid model's accuracy? Each recipe prunes a trained architecture of a finished study
with DepGraph and fine-tunes it (the study's own pruning step, :meth:`raagr2_monai.study.StudySteps.prune`), is
evaluated on the study's test subjects, and is compared with the study's baseline by per-subject paired differences
of mean Dice (:func:`raagr2_monai.report.paired_difference`: mean and 95 % CI); its batch-1 latency behind OpenVINO in
fp32 and, where the CPU has a bfloat16 unit, bf16, is timed beside the baseline's eager PyTorch in one run
(:func:`raagr2_monai.benchmark.backend_latencies`, ``time.perf_counter``, median of ``--repeats``).

Recipes (``--recipes``, comma-separated; default: all):

- ``plain``: the study's hybrid row (its variant, ratio, fine-tuning epochs and learning rate);
- ``long``: the same with twice the fine-tuning epochs;
- ``kd``: fine-tuned with distillation from the trained baseline (weight 0.5);
- ``long-kd``: both;
- ``baseline-<ratio>``: the baseline as the source, at a ratio in percent (e.g. ``baseline-70``), the study's
  fine-tuning.

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

DEFAULT_RECIPES = ("plain", "long", "kd", "long-kd", "baseline-70")


def recipe_spec(name: str, profile: Any) -> Any:
    """The study row a recipe trains."""
    from raagr2_monai.study import ModelSpec

    base = dict(kind="pruned", method="depgraph", learning_rate=profile.hybrid_learning_rate,
                round_to=profile.hybrid_round_to)
    epochs = profile.hybrid_finetune_epochs
    ratio = profile.hybrid_ratio
    if name.startswith("baseline-"):
        ratio = int(name.split("-", 1)[1]) / 100
        return ModelSpec(f"recovery-{name}", variant="baseline", ratio=ratio, finetune_epochs=epochs, **base)
    recipes = {"plain": (epochs, 0.0), "long": (2 * epochs, 0.0), "kd": (epochs, 0.5), "long-kd": (2 * epochs, 0.5)}
    if name not in recipes:
        raise SystemExit(f"unknown recipe {name!r}; valid: {', '.join(DEFAULT_RECIPES)} or baseline-<percent>.")
    finetune, distill = recipes[name]
    return ModelSpec(f"recovery-{name}", variant=profile.hybrid_variant, ratio=ratio, finetune_epochs=finetune,
                     distill_weight=distill, **base)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, help="a finished study folder (e.g. results/quick)")
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES), help="comma-separated recipes")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the training and the timing")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per latency")
    args = parser.parse_args(argv)

    import torch

    from raagr2_monai.benchmark import backend_latencies, runnable_backends
    from raagr2_monai.bundle import load_bundle_network
    from raagr2_monai.report import paired_difference, read_subject_scores
    from raagr2_monai.study import ModelSpec, get_profile
    from raagr2_monai.study.steps import StudySteps
    from raagr2_monai.study.tasks import synthetic_folder

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
    for name in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        spec = recipe_spec(name, profile)
        print(f"[recovery] {name}: {spec}", flush=True)
        pruned = steps.prune(spec)
        steps.evaluate(spec)
        scores = read_subject_scores(steps.eval_dir(spec) / "metrics_per_subject.csv")
        rows.append({"recipe": name, "spec": spec.__dict__, "train_seconds": pruned["train_seconds"],
                     **paired_difference(scores, reference)})

    models = {"baseline": load_bundle_network(steps.bundle_dir(baseline), require_weights=True).eval()}
    for row in rows:
        spec = recipe_spec(row["recipe"], profile)
        models[row["recipe"]] = load_bundle_network(steps.bundle_dir(spec), require_weights=True).eval()
    backends, skipped = runnable_backends(("torch", "openvino", "openvino-bf16"))
    latencies = backend_latencies(models, backends, profile.bench_size, (1,), args.repeats, 2, args.threads)
    for row in rows:
        row["latency_b1_ms"] = {b: f["1"]["median"] for b, f in latencies[row["recipe"]]["latency_ms"].items()}
        row["speedup_vs_baseline_torch"] = {b: s["1"] for b, s in
                                            latencies[row["recipe"]]["speedup_vs_baseline_torch"].items()}
    baseline_ms = latencies["baseline"]["latency_ms"]["torch"]["1"]["median"]

    out = study / "recovery"
    out.mkdir(exist_ok=True)
    (out / "recovery.json").write_text(json.dumps({"rows": rows, "baseline_torch_ms": baseline_ms,
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
