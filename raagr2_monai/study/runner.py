"""Running a study: each model is a MONAI bundle of its own, driven in-process through
``monai.bundle.ConfigWorkflow`` (train, prune, evaluate), then benchmarked, reported and logged to MLflow.

:class:`Study` runs every step not yet recorded in the study's state; :func:`run_study` prepares the folder and runs
one (``raagr2 study``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from monai.bundle import ConfigWorkflow

from raagr2_monai.benchmark import add_backend_latencies, benchmark_models
from raagr2_monai.bundle import load_bundle_network
from raagr2_monai.bundle.generate import write_bundle
from raagr2_monai.data import load_split
from raagr2_monai.data.synthetic import DEFAULT_CASES, DEFAULT_SHAPE, default_dataset_dir, ensure_synthetic
from raagr2_monai.handlers import EpochHistory, MLflowEpochLogger, attach_progress_bar
from raagr2_monai.networks import count_flops
from raagr2_monai.report import collect_rows, record_mlflow_runs, step_name, write_report
from raagr2_monai.utils import atomic_write_text, is_terminal

from .noise import ITERATION_LINES, STUDY_NOTICES, Silenced
from .profiles import ModelSpec, Profile, experiment_matrix, get_profile
from .progress import Progress, format_duration
from .state import STATE_FILE, StudyState
from .tracking import StudyTracker

__all__ = ["Study", "run_study"]

PathLike = Union[str, os.PathLike]

#: What the study step under way attaches to its trainer (the live MLflow curves, a progress bar), each called with
#: the trainer and its EpochHistory; set by Study._step around a training or pruning step.
TrainerHook = Callable[[Any, EpochHistory], None]
_TRAINER_HOOKS: ContextVar[Tuple[TrainerHook, ...]] = ContextVar("raagr2_study_trainer_hooks", default=())


@contextmanager
def _trainer_hooks(*hooks: TrainerHook) -> Iterator[None]:
    """Have :func:`_run_with_history` attach ``hooks`` to the trainers it runs inside the block."""
    token = _TRAINER_HOOKS.set(hooks)
    try:
        yield
    finally:
        _TRAINER_HOOKS.reset(token)


def _workflow(config_files: Sequence[PathLike], run_id: str, bundle_root: PathLike, **override: Any):
    wf = ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        meta_file=str(Path(bundle_root) / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=None,
        run_id=run_id,
        bundle_root=str(bundle_root),
        **override,
    )
    wf.initialize()
    return wf


def _write_bundle(root: Path, variant: str) -> None:
    license_file = Path(__file__).resolve().parents[2] / "LICENSE"
    license_text = license_file.read_text() if license_file.is_file() else "See the raagr2_monai package's licence.\n"
    write_bundle(str(root), variant, license_text)


def _run_with_history(wf: Any, run_dir: Path) -> float:
    """Run a training-type workflow with an :class:`EpochHistory` writing ``run_dir/history.json``, and the hooks of
    the study step under way (:func:`_trainer_hooks`) after it; returns seconds."""
    history = EpochHistory(run_dir / "history.json", wf.parser.get_parsed_content("validate#evaluator"),
                           wf.parser.get_parsed_content("optimizer"))
    trainer = wf.parser.get_parsed_content("train#trainer")
    history.attach(trainer)
    for hook in _TRAINER_HOOKS.get():
        hook(trainer, history)
    start = time.perf_counter()
    try:
        wf.run()
    finally:
        wf.finalize()
    return time.perf_counter() - start


class Study:
    """One study: its folder, profile, data and state; :meth:`run` does every step not yet done.

    Args:
        output: the study folder.
        profile: the settings.
        data_dir: BraTS folder, or ``None`` for the synthetic set of the profile.
        seed: seed of the data split, the training and the pruning.
        echo: where progress lines go (``print`` by default).
    """

    def __init__(
        self, output: PathLike, profile: Profile, data_dir: Optional[str], seed: int = 0,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.root = Path(output).resolve()
        self.profile = profile
        self.data_dir = data_dir
        self.seed = int(seed)
        self.echo = echo
        self.models = experiment_matrix(profile)
        self.settings = {"profile": profile.settings(), "data_dir": data_dir, "seed": self.seed}
        self.state = StudyState(self.root / STATE_FILE, self.settings)
        self.state.save()  # from now on the folder is recognisably a study's
        self.tracker = StudyTracker(self.root, self.state)
        self.counts = {"train": 0, "prune": 0, "evaluate": 0, "benchmark": 0}
        self.dataset_dir = ""

    # ------------------------------------------------------------------ paths
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
            "roi_size": [p.roi_size, p.roi_size],
            # validation (and, through train.json, evaluation) slides windows of their own size over whole slices
            "validate#inferer#roi_size": [window, window],
            "batch_size": p.batch_size,
            "num_samples": p.num_samples,
            "seed": self.seed,
            **({"device": f"$torch.device('{p.device}')"} if p.device else {}),
        }

    # ------------------------------------------------------------------ steps
    def _step(self, step: str, action: Callable[[], Dict[str, Any]], made: Optional[ModelSpec] = None
              ) -> Dict[str, Any]:
        """Run ``step`` unless it is done, with its progress lines; ``made``: the model a training or pruning step
        makes, whose MLflow child run is open while the step runs and gets the curves epoch by epoch."""
        if self.state.done(step):
            self.progress.skipped(step)
            return self.state.get(step)
        label = self.progress.label(step)
        self.echo(f"{label} {step} ...")
        start = time.perf_counter()
        if made is None:
            outputs = action()
        else:
            with self.tracker.model_run(made) as run_id, _trainer_hooks(
                lambda trainer, history: MLflowEpochLogger(history, self.tracking_uri, run_id).attach(trainer),
                lambda trainer, history: attach_progress_bar(trainer, step),
            ):
                outputs = action()
        outputs["step_seconds"] = time.perf_counter() - start
        self.state.record(step, outputs)
        if step == "benchmark":
            self.tracker.outdated([spec.name for spec in self.models])
        elif Progress.kind(step) == "evaluate":
            self.tracker.outdated([step.split("/", 1)[1]])
        self.progress.finished(step, outputs["step_seconds"])
        left = self.progress.seconds_left()
        estimate = f"; about {format_duration(left)} left" if left > 0 else ""
        self.echo(f"{label} {step} done in {format_duration(outputs['step_seconds'])}{estimate}")
        return outputs

    def train(self, spec: ModelSpec) -> Dict[str, Any]:
        """Train an architecture (its bundle's ``training`` workflow); an interrupted run resumes from ``last.pt``."""
        bundle = self.bundle_dir(spec)
        _write_bundle(bundle, spec.variant)
        run_dir = self.run_dir(spec)
        p = self.profile
        wf = _workflow(
            [bundle / "configs" / "train.json"], "training", bundle, output_dir=str(run_dir),
            epochs=p.epochs, val_interval=p.val_interval, learning_rate=p.learning_rate, lr_schedule=p.lr_schedule,
            resume=True,
            **self._data_override(),
        )
        seconds = _run_with_history(wf, run_dir)
        self.counts["train"] += 1
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

    def prune(self, spec: ModelSpec) -> Dict[str, Any]:
        """Prune the trained baseline (its bundle's ``pruning`` workflow) into a pruned bundle of its own."""
        source = self.bundle_dir(ModelSpec(spec.variant, "architecture", spec.variant))
        out = self.bundle_dir(spec)
        run_dir = out / "runs" / "prune"
        p = self.profile
        override = dict(
            method=spec.method, ratio=spec.ratio, finetune_epochs=spec.finetune_epochs,
            from_scratch=spec.from_scratch, snip_batches=p.snip_batches, snip_size=[p.snip_size, p.snip_size],
            output_dir=str(out),
            source_ckpt=str(source / "models" / "model.pt"), overwrite=True, lr_schedule=p.lr_schedule,
            # a fine-tuning validates at most as often as a training, and always at its last epoch
            val_interval=math.gcd(p.val_interval, max(1, spec.finetune_epochs)),
            **self._data_override(),
        )
        if spec.learning_rate is not None:
            override["learning_rate"] = spec.learning_rate
        if spec.distill_weight:
            override["teacher_bundle"] = str(self.bundle_dir(ModelSpec("baseline", "architecture", "baseline")))
            override["distill_weight"] = spec.distill_weight
        wf = _workflow([source / "configs" / "train.json", source / "configs" / "prune.json"], "pruning", source,
                       **override)
        seconds = _run_with_history(wf, run_dir)
        self.counts["prune"] += 1
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
        wf = _workflow([bundle / "configs" / "train.json", bundle / "configs" / "evaluate.json"], "evaluating",
                       bundle, output_dir=str(out), ckpt_path=str(bundle / "models" / "model.pt"),
                       write_overlays=False, **self._data_override())
        try:
            wf.run()
        finally:
            wf.finalize()
        self.counts["evaluate"] += 1
        cases = [e["case"] for e in self.test_entries()]
        return {
            "per_subject_csv": self._rel(out / "metrics_per_subject.csv"),
            "summary_csv": self._rel(out / "metrics_summary.csv"),
            "run_json": self._rel(out / "run.json"),
            "cases": cases,
        }

    def test_entries(self) -> List[Dict[str, Any]]:
        """The test subjects' datalist entries, as the evaluation reads them (the ``testing`` split of the seed)."""
        return load_split(self.dataset_dir, "testing", None, self.seed)

    def benchmark(self) -> Dict[str, Any]:
        """Benchmark every row's bundle in one run (ratios against the baseline of that run): counts per model, time
        and memory once per structure (mask-pruned and fine-tuned copies compute what their source computes), the
        training step at the study's own batch and crop (``train_epoch_s``: one step times the steps of an epoch),
        the ``bench_backends`` at batch 1 beside eager PyTorch, and FLOPs also at ``flops_size``."""
        p = self.profile
        models, sparse = {}, {}
        for spec in self.models:
            bundle = self.bundle_dir(spec)
            models[spec.name] = load_bundle_network(bundle)
            packed = bundle / "models" / "model_sparse.pt"
            if packed.is_file():
                sparse[spec.name] = packed.stat().st_size / 1e6
        result = benchmark_models(
            models, size=p.bench_size, batches=p.bench_batches, repeats=p.bench_repeats, warmup=p.bench_warmup,
            device=p.device, measure_memory=p.bench_memory, train_step=p.bench_train_step, sparse_sizes=sparse,
            train_shape=(p.batch_size, 4, p.roi_size, p.roi_size), share_structure=True,
        )
        steps_per_epoch = math.ceil(len(load_split(self.dataset_dir, "training", None, self.seed)) * p.num_samples
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
            add_backend_latencies(result, models, ("torch", *p.bench_backends), p.bench_size, (1,), p.bench_repeats,
                                  p.bench_warmup)
        path = self.root / "benchmark.json"
        atomic_write_text(str(path), json.dumps(result, indent=2))
        self.counts["benchmark"] += 1
        return {"benchmark_json": self._rel(path)}

    # ------------------------------------------------------------------ the whole study
    def resolve_data(self) -> None:
        """Set ``dataset_dir``: the given BraTS folder, or the profile's synthetic set (generated when absent)."""
        p = self.profile
        if self.data_dir is not None:
            if not Path(self.data_dir).is_dir():
                raise FileNotFoundError(f"--data_dir {self.data_dir} does not exist or is not a folder.")
            self.dataset_dir = str(Path(self.data_dir).resolve())
            return
        if p.needs_data_dir:
            raise ValueError(
                f"The {p.name!r} profile runs on real BraTS data: pass --data_dir /path/to/BraTS (a folder of "
                "<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz); the 'quick' profile uses the built-in synthetic set."
            )
        default = default_dataset_dir()
        same = p.synthetic_cases == DEFAULT_CASES and tuple(p.synthetic_shape) == tuple(DEFAULT_SHAPE)
        # another size of set gets its own folder, so the default set is never replaced
        folder = default if same else f"{default}-{p.synthetic_cases}x{'x'.join(map(str, p.synthetic_shape))}"
        self.dataset_dir = ensure_synthetic(folder, cases=p.synthetic_cases, seed=0, shape=p.synthetic_shape)

    def run(self) -> Path:
        """Run every step not yet done, write the report and log to MLflow, live: the parent run is open while the
        study runs, and each model's child run while it trains.

        The notices every workflow repeats (:data:`~.noise.STUDY_NOTICES`) are silenced meanwhile, and one line
        (``Silenced: ...``) counts them at the end; on a terminal, training shows a progress bar instead of a line per
        iteration.

        Returns:
            The path of ``report.md``.
        """
        self.resolve_data()
        start = time.perf_counter()
        made = [s for s in self.models if s.kind == "architecture"] + [s for s in self.models if s.kind == "pruned"]
        # sizes in training epochs, so that the first finished training prices the rest: a pruning (its scoring and a
        # validation) costs about two epochs besides its fine-tuning ones, so that the pruning steps without
        # fine-tuning, which finish first, price those with; an evaluation about one, the benchmark a few per model
        self.progress = Progress(
            [step_name(s) for s in made] + [f"evaluate/{s.name}" for s in self.models] + ["benchmark"],
            units=[self.profile.epochs if s.kind == "architecture" else s.finetune_epochs + 2 for s in made]
            + [1.0] * len(self.models) + [2.0 * len(self.models)],
        )
        params = {"data_dir": self.data_dir, "dataset_dir": self.dataset_dir, "seed": self.seed}
        # the training bar goes where the study's lines go, and replaces MONAI's line per iteration there
        notices = STUDY_NOTICES + ((ITERATION_LINES,) if is_terminal(sys.stdout) else ())
        silenced = Silenced(notices)
        try:
            with silenced, self.tracker.study_run(self.profile.settings(), params):
                report = self._run_steps()
        finally:
            summary = silenced.summary()
            if summary:
                self.echo(summary)
        self.state.set("last_run_seconds", time.perf_counter() - start)
        return report

    def _run_steps(self) -> Path:
        """Every step not yet done, then the report and its logging to MLflow; returns ``report.md``."""
        for spec in self.models:
            if spec.kind == "architecture":
                self._step(step_name(spec), lambda spec=spec: self.train(spec), made=spec)
        for spec in self.models:
            if spec.kind == "pruned":
                self._step(step_name(spec), lambda spec=spec: self.prune(spec), made=spec)
        for spec in self.models:
            self._step(f"evaluate/{spec.name}", lambda spec=spec: self.evaluate(spec))
        self._step("benchmark", self.benchmark)
        benchmark_json = self.root / self.state.get("benchmark")["benchmark_json"]
        benchmark = json.loads(benchmark_json.read_text())
        rows = collect_rows(self.root, self.state.data, self.models, benchmark)
        record_mlflow_runs(rows, self.tracker.log_results(rows))
        report = write_report(self.root, rows, self.state.data, benchmark, self.dataset_dir, self.tracking_uri,
                              self.test_entries())
        self.tracker.finish(rows, report, benchmark_json)
        return report

    @property
    def tracking_uri(self) -> str:
        """The study's MLflow tracking URI (an SQLite file in the study folder)."""
        return self.tracker.tracking_uri


def _prepare_folder(root: Path, fresh: bool, resume: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise NotADirectoryError(f"--output {root} exists and is not a folder.")
    entries = list(root.iterdir())
    if not entries:
        return
    if not (root / STATE_FILE).is_file():
        raise FileExistsError(
            f"--output {root} is not empty and holds no {STATE_FILE}: not a study folder; choose another --output."
        )
    if fresh:
        shutil.rmtree(root)
    elif not resume:
        raise FileExistsError(f"{root} holds a study; pass --resume to continue it or --fresh to start over.")


def run_study(
    profile: Union[str, Profile] = "quick",
    data_dir: Optional[str] = None,
    output: Optional[PathLike] = None,
    seed: int = 0,
    resume: bool = True,
    fresh: bool = False,
    echo: Callable[[str], None] = print,
    **overrides: Any,
) -> Study:
    """Run (or continue) a study and write its report.

    Args:
        profile: ``quick``, ``full``, ``tiny`` or a :class:`Profile`.
        data_dir: a BraTS folder; ``None`` uses the profile's synthetic set (``full`` requires a folder).
        output: the study folder (default ``results/<profile>``).
        seed: seed of the data split, training and pruning.
        resume: continue a study found in ``output`` (finished steps are not redone).
        fresh: delete the study found in ``output`` first.
        echo: where progress lines go.
        overrides: profile fields to replace (e.g. ``epochs=1``).

    Returns:
        The :class:`Study`; ``report.md`` is in its ``root``.

    Raises:
        ValueError: an unknown profile or setting, ``full`` without ``data_dir``, or a study in ``output`` with other
            settings.
        FileExistsError: ``output`` is a non-empty folder that is not a study, or holds one and neither ``resume``
            nor ``fresh`` is set.

    Example::

        study = run_study("quick")
        (study.root / "report.md").is_file()
        # True
    """
    chosen = get_profile(profile, **overrides)
    if chosen.needs_data_dir and data_dir is None:
        raise ValueError(
            f"The {chosen.name!r} profile runs on real BraTS data on a GPU: pass --data_dir /path/to/BraTS."
        )
    root = Path(output if output is not None else Path("results") / chosen.name).resolve()
    _prepare_folder(root, fresh, resume)
    root.mkdir(parents=True, exist_ok=True)
    study = Study(root, chosen, data_dir, seed, echo)
    study.run()
    return study
