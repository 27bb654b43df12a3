"""The steps of a study, each a MONAI bundle workflow run in-process (``monai.bundle.ConfigWorkflow``):
:class:`StudySteps` trains an architecture, prunes a trained model into a bundle of its own, evaluates a row on the
test subjects and benchmarks every row.

The steps hold nothing of the study's progress (what is done, the MLflow runs: :class:`~.runner.Study`'s), so that
a worker process can run one from a pickled :class:`StudySteps` alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from monai.bundle import ConfigParser

from raagr2_monai.benchmark import BenchmarkSettings, add_backend_latencies, benchmark_models
from raagr2_monai.bundle import bundle_workflow, load_bundle_network, run_bundle_workflow
from raagr2_monai.generator.generate import write_bundle
from raagr2_monai.data import fill_cache, load_split
from raagr2_monai.handlers import FAILURE_JSON, RELIABILITY_PNG, EpochHistory
from raagr2_monai.networks import count_flops, load_weights
from raagr2_monai.utils import atomic_write_text, resolve_device

from .profiles import ModelSpec, Profile

__all__ = ["FAILURE_SAMPLES", "FAILURE_UNCERTAINTY", "StudySteps", "TrainerHook", "trainer_hooks",
           "finetune_val_interval"]

PathLike = Union[str, os.PathLike]

#: What the study step under way attaches to its trainer (the live MLflow curves, a progress bar), each called with
#: the trainer and its EpochHistory; set around a training or pruning step by the study (:func:`trainer_hooks`).
TrainerHook = Callable[[Any, EpochHistory], None]
#: How the study's failure-prediction evaluations sample each slice: test-time flips (every network has them;
#: Monte-Carlo dropout needs dropout layers), the slice and its three in-plane flips.
FAILURE_UNCERTAINTY = "tta"
FAILURE_SAMPLES = 4
_TRAINER_HOOKS: ContextVar[Tuple[TrainerHook, ...]] = ContextVar("raagr2_study_trainer_hooks", default=())


@contextmanager
def trainer_hooks(*hooks: TrainerHook) -> Iterator[None]:
    """Have :func:`_run_with_history` attach ``hooks`` to the trainers it runs inside the block."""
    token = _TRAINER_HOOKS.set(hooks)
    try:
        yield
    finally:
        _TRAINER_HOOKS.reset(token)


def _write_bundle(root: Path, variant: str) -> None:
    license_file = Path(__file__).resolve().parents[2] / "LICENSE"
    license_text = license_file.read_text() if license_file.is_file() else "See the raagr2_monai package's licence.\n"
    write_bundle(str(root), variant, license_text)


def _run_with_history(wf: Any, run_dir: Path) -> float:
    """Run a training-type workflow with an :class:`EpochHistory` writing ``run_dir/history.json``, and the hooks of
    the study step under way (:func:`trainer_hooks`) after it; returns seconds."""
    history = EpochHistory(run_dir / "history.json", wf.parser.get_parsed_content("validate#evaluator"),
                           wf.parser.get_parsed_content("optimizer"))
    trainer = wf.parser.get_parsed_content("train#trainer")
    history.attach(trainer)
    for hook in _TRAINER_HOOKS.get():
        hook(trainer, history)
    return run_bundle_workflow(wf)


def finetune_val_interval(val_interval: int, finetune_epochs: int) -> int:
    """How often a fine-tuning of ``finetune_epochs`` validates: at most as often as a training (every
    ``val_interval`` epochs), and always at its last epoch, whose checkpoint may be the one kept; i.e. the largest
    divisor of ``finetune_epochs`` not above ``val_interval``.

    Example::

        >>> finetune_val_interval(15, 20), finetune_val_interval(10, 2), finetune_val_interval(10, 0)
        (10, 2, 1)
    """
    epochs = max(1, int(finetune_epochs))
    return max(d for d in range(1, min(val_interval, epochs) + 1) if epochs % d == 0)


class StudySteps:
    """The steps of one study: where each row's bundle, runs and evaluation go, and the workflows that make them.

    Args:
        root: the study folder.
        profile: the settings.
        dataset_dir: the data folder (BraTS, or the synthetic set), resolved.
        seed: seed of the data split, the training and the pruning.
    """

    def __init__(self, root: PathLike, profile: Profile, dataset_dir: str, seed: int) -> None:
        self.root = Path(root)
        self.profile = profile
        self.dataset_dir = dataset_dir
        self.seed = int(seed)

    def bundle_dir(self, spec: ModelSpec) -> Path:
        """The bundle folder of a row."""
        if spec.kind == "architecture":
            return self.root / "models" / spec.variant
        return self.root / "models" / spec.variant / "pruned" / spec.name

    def run_dir(self, spec: ModelSpec) -> Path:
        """The folder of the row's training or pruning run (``run.json``, ``history.json``)."""
        return self.bundle_dir(spec) / "runs" / ("train" if spec.kind == "architecture" else "prune")

    def eval_dir(self, spec: ModelSpec) -> Path:
        """The folder of the row's evaluation on the test subjects."""
        return self.root / "eval" / spec.name

    def _rel(self, path: PathLike) -> str:
        return os.path.relpath(str(path), str(self.root))

    def _data_override(self) -> Dict[str, Any]:
        p = self.profile
        window = p.window_size or p.roi_size
        return {
            "dataset_dir": self.dataset_dir,
            "split": list(p.split),
            # one cache for every step: each study is preprocessed once, by the first step that reads it
            "cache_dir": str(self.cache_dir),
            "num_workers": p.num_workers,
            "roi_size": [p.roi_size, p.roi_size],
            # validation and evaluation on whole slices, or windows of their own size (whole_slice false)
            "whole_slice": p.whole_slice,
            "validate#inferer#roi_size": [window, window],
            "sw_batch_size": p.sw_batch_size,
            "batch_size": p.batch_size,
            "num_samples": p.num_samples,
            "seed": self.seed,
            "device": str(resolve_device(p.device)),
        }

    @property
    def cache_dir(self) -> Path:
        """The study's cache of preprocessed studies, shared by all its steps."""
        return self.root / "cache"

    def fill_cache(self, num_workers: int) -> Dict[str, Any]:
        """Preprocess every study into :attr:`cache_dir` before the steps start, in ``num_workers`` processes, so
        that steps running at once do not each preprocess the same studies.

        The datasets are the baseline bundle's, with the steps' overrides (the cache entries the steps will look
        for): ``train#dataset`` and ``validate#dataset`` of train.json (compact), and the test studies of
        evaluate.json (float32).

        Returns:
            Per dataset (``train``, ``validation``, ``testing``): studies, studies built now, seconds, MB per study.
        """
        bundle = self.bundle_dir(ModelSpec("baseline", "architecture", "baseline"))
        _write_bundle(bundle, "baseline")
        filled = {}
        for name, configs, section in (("train", ["train"], "train"), ("validation", ["train"], "validate"),
                                       ("testing", ["train", "evaluate"], "validate")):
            parser = ConfigParser()
            parser.read_config([str(bundle / "configs" / f"{c}.json") for c in configs])
            parser.update({"bundle_root": str(bundle), "val_cases": self.profile.val_cases, **self._data_override()})
            dataset = parser.get_parsed_content(f"{section}#dataset")
            filled[name] = dataclasses.asdict(fill_cache(dataset, num_workers, name))
        return filled

    def train(self, spec: ModelSpec) -> Dict[str, Any]:
        """Train an architecture (its bundle's ``training`` workflow); an interrupted run resumes from ``last.pt``."""
        bundle = self.bundle_dir(spec)
        _write_bundle(bundle, spec.variant)
        run_dir = self.run_dir(spec)
        p = self.profile
        wf = bundle_workflow(
            [bundle / "configs" / "train.json"], "training", bundle, output_dir=str(run_dir),
            epochs=p.epochs, val_interval=p.val_interval, val_cases=p.val_cases, learning_rate=p.learning_rate, lr_schedule=p.lr_schedule,
            resume=True,
            **self._data_override(),
        )
        seconds = _run_with_history(wf, run_dir)
        model = bundle / "models" / "model.pt"
        if not model.is_file():
            raise RuntimeError(f"Training {spec.name} wrote no {model}: no validation ran (check val_interval).")
        # the full training state only serves to resume an interrupted run; a finished one drops it (3x the model)
        (run_dir / "last.pt").unlink(missing_ok=True)
        return {
            "bundle": self._rel(bundle),
            "model": self._rel(model),
            "run_json": self._rel(run_dir / "run.json"),
            "history": self._rel(run_dir / "history.json"),
            "train_seconds": seconds,
            "epochs": p.epochs,
        }

    def sparsify(self, variant: str, out: PathLike, weight: float, epochs: int, learning_rate: float) -> Dict[str, Any]:
        """Train a trained architecture on with group-norm sparsity regularisation (the ``group_sparsity`` of its
        ``training`` workflow), into a bundle at ``out`` that :meth:`prune` can take as its ``source``: sparsity
        training before DepGraph (Fang et al. 2023).

        Args:
            variant: the trained architecture, whose ``models/model.pt`` is the start.
            out: the new bundle's folder.
            weight: the regularisation coefficient (> 0).
            epochs: training epochs.
            learning_rate: their learning rate.
        """
        out = Path(out)
        _write_bundle(out, variant)
        run_dir = out / "runs" / "train"
        p = self.profile
        wf = bundle_workflow(
            [out / "configs" / "train.json"], "training", out, output_dir=str(run_dir), epochs=epochs,
            val_interval=finetune_val_interval(p.val_interval, epochs), val_cases=p.val_cases,
            learning_rate=learning_rate, lr_schedule=p.lr_schedule, group_sparsity=weight, **self._data_override(),
        )
        source = self.bundle_dir(ModelSpec(variant, "architecture", variant)) / "models" / "model.pt"
        load_weights(wf.parser.get_parsed_content("network"), str(source))
        seconds = _run_with_history(wf, run_dir)
        (run_dir / "last.pt").unlink(missing_ok=True)
        return {"bundle": self._rel(out), "train_seconds": seconds, "epochs": epochs}

    def prune(self, spec: ModelSpec, source: Optional[PathLike] = None) -> Dict[str, Any]:
        """Prune a trained bundle (its ``pruning`` workflow) into a pruned bundle of its own.

        Args:
            spec: the pruned row.
            source: the bundle pruned: the trained architecture ``spec.variant`` by default; a DepGraph-pruned bundle
                is pruned again (a step of iterative pruning).
        """
        source = Path(source) if source is not None else self.bundle_dir(
            ModelSpec(spec.variant, "architecture", spec.variant))
        out = self.bundle_dir(spec)
        run_dir = out / "runs" / "prune"
        p = self.profile
        override = dict(
            method=spec.method, ratio=spec.ratio, finetune_epochs=spec.finetune_epochs,
            from_scratch=spec.from_scratch, snip_batches=p.snip_batches, snip_size=[p.snip_size, p.snip_size],
            output_dir=str(out),
            source_ckpt=str(source / "models" / "model.pt"), overwrite=True, lr_schedule=p.lr_schedule,
            val_interval=finetune_val_interval(p.val_interval, spec.finetune_epochs),
            val_cases=p.val_cases,
            **self._data_override(),
        )
        if spec.learning_rate is not None:
            override["learning_rate"] = spec.learning_rate
        if spec.round_to is not None:
            override["round_to"] = spec.round_to
        if spec.distill_weight:
            override["teacher_bundle"] = str(self.bundle_dir(ModelSpec("baseline", "architecture", "baseline")))
            override["distill_weight"] = spec.distill_weight
        wf = bundle_workflow([source / "configs" / "train.json", source / "configs" / "prune.json"], "pruning", source,
                             **override)
        seconds = _run_with_history(wf, run_dir)
        (run_dir / "last.pt").unlink(missing_ok=True)
        return {
            "bundle": self._rel(out),
            "model": self._rel(out / "models" / "model.pt"),
            "run_json": self._rel(run_dir / "run.json"),
            "pruning_json": self._rel(out / "pruning.json"),
            "history": self._rel(run_dir / "history.json"),
            "train_seconds": seconds,
            "epochs": spec.finetune_epochs,
        }

    def evaluate(self, spec: ModelSpec) -> Dict[str, Any]:
        """Evaluate a row's bundle on the test subjects (its ``evaluating`` workflow), without the per-subject overlay
        pictures: the report draws its own figures from the written predictions."""
        bundle = self.bundle_dir(spec)
        out = self.eval_dir(spec)
        wf = bundle_workflow([bundle / "configs" / "train.json", bundle / "configs" / "evaluate.json"], "evaluating",
                             bundle, output_dir=str(out), ckpt_path=str(bundle / "models" / "model.pt"),
                             write_overlays=False, **self._data_override())
        run_bundle_workflow(wf)
        cases = [e["case"] for e in self.test_entries()]
        return {
            "per_subject_csv": self._rel(out / "metrics_per_subject.csv"),
            "summary_csv": self._rel(out / "metrics_summary.csv"),
            "run_json": self._rel(out / "run.json"),
            "cases": cases,
        }

    def uncertainty_dir(self, spec: ModelSpec) -> Path:
        """The folder of the row's evaluation with an uncertainty (:meth:`evaluate_uncertainty`)."""
        return self.root / "uncertainty" / spec.name

    def evaluate_uncertainty(self, spec: ModelSpec) -> Dict[str, Any]:
        """Evaluate a row's bundle on the test subjects again, each slice predicted :data:`FAILURE_SAMPLES` times
        (:data:`FAILURE_UNCERTAINTY`) and averaged, into :meth:`uncertainty_dir`: each subject's uncertainty and how
        well it predicts failure (``failure_prediction.json``, ``reliability.png``; the report's failure
        prediction). Without lesion-wise scores or overlays: the failure prediction needs neither."""
        bundle = self.bundle_dir(spec)
        out = self.uncertainty_dir(spec)
        if "uncertainty" not in json.loads((bundle / "configs" / "train.json").read_text()):
            raise RuntimeError(f"{bundle}'s configs were written before evaluation with an uncertainty: they would "
                               "evaluate without it. Rerun the study with --fresh.")
        wf = bundle_workflow([bundle / "configs" / "train.json", bundle / "configs" / "evaluate.json"], "evaluating",
                             bundle, output_dir=str(out), ckpt_path=str(bundle / "models" / "model.pt"),
                             write_overlays=False, lesionwise=None, uncertainty=FAILURE_UNCERTAINTY,
                             uncertainty_samples=FAILURE_SAMPLES, **self._data_override())
        run_bundle_workflow(wf)
        return {
            "model": spec.name,
            "mode": FAILURE_UNCERTAINTY,
            "samples": FAILURE_SAMPLES,
            "eval_dir": self._rel(out),
            "failure_json": self._rel(out / FAILURE_JSON),
            "reliability_png": self._rel(out / RELIABILITY_PNG),
            "per_subject_csv": self._rel(out / "metrics_per_subject.csv"),
            "summary_csv": self._rel(out / "metrics_summary.csv"),
            "run_json": self._rel(out / "run.json"),
        }

    def test_entries(self) -> List[Dict[str, Any]]:
        """The test subjects' datalist entries, as the evaluation reads them (the ``testing`` split of the seed)."""
        return load_split(self.dataset_dir, "testing", None, self.seed, self.profile.split)

    def benchmark(self, rows: Sequence[ModelSpec]) -> Dict[str, Any]:
        """Benchmark the bundles of ``rows`` in one run (ratios against the baseline of that run): counts per model, time
        and memory once per structure (mask-pruned and fine-tuned copies compute what their source computes), the
        training step at the study's own batch and crop (``train_epoch_s``: one step times the steps of an epoch),
        the ``bench_backends`` at batch 1 beside eager PyTorch, and FLOPs also at ``flops_size``."""
        p = self.profile
        models, sparse = {}, {}
        for spec in rows:
            bundle = self.bundle_dir(spec)
            models[spec.name] = load_bundle_network(bundle)
            packed = bundle / "models" / "model_sparse.pt"
            if packed.is_file():
                sparse[spec.name] = packed.stat().st_size / 1e6
        result = benchmark_models(
            models, size=p.bench_size, batches=p.bench_batches, repeats=p.bench_repeats, warmup=p.bench_warmup,
            device=resolve_device(p.device), measure_memory=p.bench_memory, train_step=p.bench_train_step,
            sparse_sizes=sparse,
            train_shape=(p.batch_size, 4, p.roi_size, p.roi_size), share_structure=True,
        )
        steps_per_epoch = math.ceil(len(load_split(self.dataset_dir, "training", None, self.seed, p.split)) * p.num_samples
                                    / p.batch_size)
        for name, model in models.items():
            result[name]["flops_at_flops_size"] = (
                result[name]["flops"] if p.flops_size == p.bench_size
                else count_flops(model, (1, 4, p.flops_size, p.flops_size))
            )
            step_ms = result[name]["train_step_ms"]
            result[name]["train_epoch_s"] = None if step_ms is None else step_ms * steps_per_epoch / 1e3
        result["_meta"]["flops_size"] = p.flops_size
        result["_meta"]["methods"]["train_epoch_s"] = (
            f"train_step_ms x {steps_per_epoch} steps per epoch (training cases x num_samples / batch_size); "
            "measured in the benchmark, not the wall time of the study's training"
        )
        if p.bench_backends:
            latency = BenchmarkSettings(size=p.bench_size, batches=(1,), repeats=p.bench_backend_repeats,
                                        warmup=p.bench_warmup, backends=("torch", *p.bench_backends))
            add_backend_latencies(result, models, latency)
        path = self.root / "benchmark.json"
        atomic_write_text(str(path), json.dumps(result, indent=2))
        return {"benchmark_json": self._rel(path)}
