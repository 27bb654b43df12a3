#!/usr/bin/env python3
"""Which recipe recovers the hybrid model's accuracy? Each recipe prunes a trained architecture of a finished study
with DepGraph and fine-tunes it (the study's own pruning step, :meth:`raagr2_monai.study.StudySteps.prune`), is
evaluated on the study's test subjects, and is compared with the study's baseline by per-subject paired differences
of mean Dice (:func:`raagr2_monai.report.paired_difference`: mean and 95 % CI); its batch-1 latency behind OpenVINO in
fp32 and, where the CPU has a bfloat16 unit, bf16, is timed beside the baseline's eager PyTorch in one run
(:func:`raagr2_monai.benchmark.backend_latencies`, ``time.perf_counter``, median of ``--repeats``).

A recipe is named ``<source>-<ratio>[-ft<epochs>][-r<multiple>][-i<steps>][-gs<epochs>][-kd]`` (``--recipes``, comma-separated): the
trained architecture pruned (``baseline``, ``depthwise``, ``paired``, ``encdec``; it must be one the study trained),
DepGraph's channel ratio in percent, the fine-tuning epochs (default: the study's hybrid row's), the channel multiple
(DepGraph's ``round_to``; default: the study's ``hybrid_round_to``), ``i<steps>`` for iterative pruning (each step
prunes the bundle the last one fine-tuned, on torch-pruning's linear schedule, the fine-tuning epochs split between
the steps), ``gs<epochs>`` for that many epochs of group-norm sparsity training of the source before pruning
(:class:`raagr2_monai.pruning.GroupSparsity` at :data:`GROUP_SPARSITY`) and ``kd`` for distillation from the trained
baseline (weight 0.5, :class:`raagr2_monai.losses.DistillationLoss`); every recipe trains at the hybrid row's
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
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the source tree, when run from anywhere
    sys.path.insert(0, str(ROOT))

DEFAULT_RECIPES = ("depthwise-60-ft20", "depthwise-60-ft80", "depthwise-60-ft160", "depthwise-60-ft80-kd",
                   "baseline-70-ft80", "paired-60-ft80")


#: torch-pruning's regularisation coefficient of the ``gs`` recipes (``reg``; its examples use 1e-4 to 5e-4 with SGD).
GROUP_SPARSITY = 5e-4

_PART = re.compile(r"(?P<kd>kd)|ft(?P<ft>\d+)|r(?P<r>\d+)|i(?P<i>\d+)|gs(?P<gs>\d+)")


@dataclass
class Recipe:
    """A recipe: the study row it ends in, its DepGraph steps and its sparsity-training epochs."""

    spec: Any
    steps: int = 1
    sparsity_epochs: int = 0

    def step_ratios(self) -> List[float]:
        """Each step's channel ratio of the network the earlier steps left, so that step ``k`` of ``n`` has removed
        ``ratio * k / n`` of the channels (torch-pruning's linear ``iterative_steps`` schedule): 60 % in 3 steps is
        0.2, 0.25 and 0.333."""
        r, n = self.spec.ratio, self.steps
        return [1 - (1 - r * k / n) / (1 - r * (k - 1) / n) for k in range(1, n + 1)]

    def step_epochs(self) -> List[int]:
        """The fine-tuning epochs split over the steps, the rest to the last (the same budget as one step)."""
        share = self.spec.finetune_epochs // self.steps
        return [share] * (self.steps - 1) + [self.spec.finetune_epochs - share * (self.steps - 1)]


def recipe_spec(name: str, profile: Any) -> Recipe:
    """The recipe of a name (see the module's docstring for the names).

    Raises:
        SystemExit: a name that is not a recipe.
    """
    from raagr2_monai.study import ModelSpec

    parts = name.split("-")
    found: Dict[str, str] = {}
    try:
        source, ratio = parts[0], int(parts[1]) / 100
        for part in parts[2:]:
            match = _PART.fullmatch(part)
            if match is None:
                raise ValueError(part)
            found.update({key: value for key, value in match.groupdict().items() if value is not None})
        if source not in profile.variants or not 0 < ratio < 1 or int(found.get("i", 1)) < 1:
            raise ValueError(name)
    except (IndexError, ValueError):
        raise SystemExit(f"not a recipe: {name!r}; write <source>-<ratio>[-ft<epochs>][-r<multiple>][-i<steps>]"
                         f"[-gs<epochs>][-kd] with a source among {', '.join(profile.variants)}, e.g. "
                         "depthwise-60-i3-ft160.") from None
    spec = ModelSpec(f"recovery-{name}", kind="pruned", variant=source, method="depgraph", ratio=ratio,
                     finetune_epochs=int(found.get("ft", profile.hybrid_finetune_epochs)),
                     distill_weight=0.5 if "kd" in found else 0.0, learning_rate=profile.hybrid_learning_rate,
                     round_to=int(found.get("r", profile.hybrid_round_to)))
    return Recipe(spec, steps=int(found.get("i", 1)), sparsity_epochs=int(found.get("gs", 0)))


def train_recipe(steps: Any, recipe: Recipe) -> float:
    """Sparsity training (``gs``), then each DepGraph step with its fine-tuning, each step pruning the bundle the
    last one wrote; returns the seconds of all the training."""
    from dataclasses import replace

    spec, source, seconds = recipe.spec, None, 0.0
    if recipe.sparsity_epochs:
        source = steps.root / "models" / spec.variant / "sparse" / spec.name
        seconds += steps.sparsify(spec.variant, source, GROUP_SPARSITY, recipe.sparsity_epochs,
                                  spec.learning_rate)["train_seconds"]
    for k, (ratio, epochs) in enumerate(zip(recipe.step_ratios(), recipe.step_epochs()), start=1):
        last = k == recipe.steps
        step = replace(spec, name=spec.name if last else f"{spec.name}-step{k}", ratio=ratio, finetune_epochs=epochs)
        seconds += steps.prune(step, source=source)["train_seconds"]
        source = steps.bundle_dir(step)
    return seconds


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

    from raagr2_monai.benchmark import BenchmarkSettings, backend_latencies, runnable_backends
    from raagr2_monai.bundle import load_bundle_network
    from raagr2_monai.networks import count_parameters
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
    recipes = {name: recipe_spec(name, profile) for name in [r.strip() for r in args.recipes.split(",") if r.strip()]}
    specs = {name: recipe.spec for name, recipe in recipes.items()}
    for name, recipe in recipes.items():
        spec = recipe.spec
        scored = steps.eval_dir(spec) / "metrics_per_subject.csv"
        record = steps.eval_dir(spec) / "recipe.json"
        if args.fresh or not record.is_file():
            print(f"[recovery] {name}: {recipe}", flush=True)
            seconds = train_recipe(steps, recipe)
            steps.evaluate(spec)
            atomic_write_text(str(record), json.dumps({
                "spec": spec.__dict__, "steps": recipe.steps, "step_ratios": recipe.step_ratios(),
                "step_epochs": recipe.step_epochs(), "sparsity_epochs": recipe.sparsity_epochs,
                "group_sparsity": GROUP_SPARSITY if recipe.sparsity_epochs else 0.0, "train_seconds": seconds}))
        rows.append({"recipe": name, **json.loads(record.read_text()),
                     **paired_difference(read_subject_scores(scored), reference)})
    if args.notiming:
        return 0

    models = {"baseline": load_bundle_network(steps.bundle_dir(baseline), require_weights=True).eval()}
    for name, spec in specs.items():
        models[name] = load_bundle_network(steps.bundle_dir(spec), require_weights=True).eval()
    backends, skipped = runnable_backends(("torch", "openvino", "openvino-bf16"))
    timing = BenchmarkSettings(size=profile.bench_size, batches=(1,), repeats=args.repeats, warmup=2, backends=backends,
                               threads=args.threads)
    latencies = backend_latencies(models, timing)
    for row in rows:
        row["parameters"] = count_parameters(models[row["recipe"]])
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
    print("| recipe | parameters | subjects | paired Δ mean Dice (95 % CI) | TC / WT / ET Δ | " +
          " | ".join(f"{b} ms (speed-up)" for b in shown) + " | fine-tuning s |")
    print("|---" * (6 + len(shown)) + "|")
    for row in rows:
        ci = row["paired_dice_ci"] or [float("nan")] * 2
        regions = " / ".join(f"{row[f'paired_dice_diff_{r}']:+.3f}" for r in ("TC", "WT", "ET"))
        timing = " | ".join(f"{row['latency_b1_ms'][b]:.1f} ({row['speedup_vs_baseline_torch'][b]:.1f}x)"
                            for b in shown)
        print(f"| {row['recipe']} | {row['parameters']:,} | {row['paired_n']} | {row['paired_dice_diff']:+.3f} ({ci[0]:+.3f}, {ci[1]:+.3f}) | "
              f"{regions} | {timing} | {row['train_seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
