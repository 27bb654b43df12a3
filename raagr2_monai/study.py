"""The compression study in one command (``raagr2 study``): train, prune, evaluate, benchmark, report, MLflow.

The study reruns the thesis's experiment: the four architectures are trained; the trained baseline is pruned by
magnitude, SNIP and DepGraph at each ratio, with and without fine-tuning; every model is evaluated on the same
held-out test subjects (the ``testing`` split of the same seed) and benchmarked in one run, so that every ratio
against the baseline comes from the same measurements. A profile (:data:`PROFILES`) holds the settings: ``quick``
(CPU, built-in synthetic data, about 20 minutes on two cores), ``full`` (GPU, real BraTS, the thesis's schedule) and
``tiny`` (the tests' smoke run). All profiles run the same code.

Each model is a MONAI bundle of its own, driven in-process through ``monai.bundle.ConfigWorkflow``:

- ``<study>/models/<variant>/``: the configs generated for the variant, ``models/model.pt`` and
  ``runs/train/{run.json,history.json}`` (training; ``last.pt``, the state an interrupted training resumes from, is
  deleted once the training has finished);
- ``<study>/models/baseline/pruned/<model>/``: the pruned bundle that ``configs/prune.json`` writes (``pruning.json``,
  ``runs/prune/{run.json,history.json}``);
- ``<study>/eval/<model>/``: ``metrics_per_subject.csv``, ``metrics_summary.csv`` and ``run.json`` of the evaluation;
- ``<study>/benchmark.json``, ``<study>/report.md``, ``<study>/tables/``, ``<study>/charts/``;
- ``<study>/mlruns.db`` (MLflow tracking, ``mlflow ui --backend-store-uri sqlite:///<study>/mlruns.db``) and
  ``<study>/mlartifacts/``;
- ``<study>/state.json``: the settings and every finished step with its outputs, written atomically after each step.
  A rerun with the same settings skips the finished steps; an interrupted training resumes from its ``last.pt``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ignite.engine import Engine, Events

from raagr2_monai.handlers import EpochHistory
from raagr2_monai.utils import atomic_write_text

__all__ = [
    "Study",
    "Profile",
    "PROFILES",
    "ModelSpec",
    "StudyState",
    "EpochHistory",
    "experiment_matrix",
    "get_profile",
    "run_study",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

STATE_FILE = "state.json"
STATE_FORMAT = 1
EXPERIMENT = "raagr2_study"
#: MLflow tag naming the study model a child run belongs to.
MODEL_TAG = "raagr2.model"
_PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class Profile:
    """The settings of a study; every profile runs the same code.

    Attributes:
        name: the profile's name.
        variants: architectures to train (the baseline is always the one pruned).
        roi_size: in-plane size of training slices and of the evaluated volumes (a multiple of 16).
        epochs: training epochs of the architectures.
        batch_size: slices per training step.
        num_samples: slices drawn per volume per epoch.
        val_interval: validate every so many epochs (the best validation checkpoint is the model kept); at most
            ``epochs``.
        learning_rate: Adam learning rate of the training.
        methods: pruning methods applied to the trained baseline.
        ratios: pruning ratios.
        finetune_epochs: fine-tuning epochs of the "fine-tuned" rows (each ratio also gets a row without).
        snip_batches: batches SNIP scores the weights on.
        snip_at_init: add the rows "SNIP at initialisation, then trained for ``epochs``" (Lee et al.'s setting).
        bench_size: in-plane size of the latency, memory and training-step benchmark.
        bench_batches: batch sizes of the latency benchmark.
        bench_repeats: timed runs per figure.
        bench_warmup: untimed runs before them.
        bench_memory: measure peak memory (on CPU one process per model).
        bench_train_step: measure the training step.
        flops_size: in-plane size the FLOPs are counted at (192: the thesis's slices).
        needs_data_dir: the profile is meant for real BraTS data and refuses to run without ``data_dir``.
        synthetic_cases: cases of the synthetic set used without ``data_dir``.
        synthetic_shape: volume shape of that set.
        device: ``cpu``, ``cuda`` or ``None`` (CUDA when available).
    """

    name: str
    variants: Tuple[str, ...] = ("baseline", "depthwise", "paired", "encdec")
    roi_size: int = 64
    epochs: int = 2
    batch_size: int = 8
    num_samples: int = 4
    val_interval: int = 1
    learning_rate: float = 1e-3
    methods: Tuple[str, ...] = ("magnitude", "snip", "depgraph")
    ratios: Tuple[float, ...] = (0.1, 0.2, 0.3)
    finetune_epochs: int = 1
    snip_batches: int = 2
    snip_at_init: bool = False
    bench_size: int = 64
    bench_batches: Tuple[int, ...] = (1, 8)
    bench_repeats: int = 3
    bench_warmup: int = 1
    bench_memory: bool = True
    bench_train_step: bool = True
    flops_size: int = 192
    needs_data_dir: bool = False
    synthetic_cases: int = 24
    synthetic_shape: Tuple[int, int, int] = (96, 96, 64)
    device: Optional[str] = None

    def settings(self) -> Dict[str, Any]:
        """The profile as JSON-compatible data (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


#: The study's profiles. ``quick``: CPU, a synthetic set of 24 cases of 64 x 64 x 32 voxels (the built-in generator,
#: smaller volumes than its default so that the whole brain fits a 64 x 64 slice), 6 training epochs, 2 fine-tuning
#: epochs, benchmark at 64 x 64: sized for about 20 minutes on two cores. ``full``: the thesis's schedule (35 epochs,
#: 20 fine-tuning epochs, 192 x 192 slices, batch 16, benchmark at 192 with 10 repeats, plus the "SNIP at
#: initialisation + training" rows) on a GPU with real BraTS data. ``tiny``: a smoke run for the tests.
PROFILES: Dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        roi_size=64,
        epochs=6,
        val_interval=2,
        finetune_epochs=2,
        bench_size=64,
        bench_batches=(1, 4),
        bench_repeats=3,
        bench_warmup=1,
        synthetic_cases=24,
        synthetic_shape=(64, 64, 32),
    ),
    "full": Profile(
        name="full",
        roi_size=192,
        epochs=35,
        batch_size=16,
        num_samples=4,
        val_interval=1,
        finetune_epochs=20,
        snip_batches=4,
        snip_at_init=True,
        bench_size=192,
        bench_repeats=10,
        bench_warmup=2,
        needs_data_dir=True,
    ),
    "tiny": Profile(
        name="tiny",
        variants=("baseline", "depthwise"),
        roi_size=32,
        epochs=1,
        batch_size=4,
        num_samples=2,
        ratios=(0.2,),
        finetune_epochs=1,
        snip_batches=1,
        bench_size=32,
        bench_batches=(1, 2),
        bench_repeats=1,
        bench_warmup=0,
        bench_memory=False,
        bench_train_step=True,
        flops_size=32,
        synthetic_cases=9,
        synthetic_shape=(48, 48, 16),
        device="cpu",
    ),
}


def get_profile(profile: Union[str, Profile], **overrides: Any) -> Profile:
    """A profile by name (or as given), with fields replaced by ``overrides``.

    Raises:
        ValueError: for an unknown profile name or field, or settings that cannot work.

    Example::

        >>> get_profile("quick", epochs=1).epochs
        1
    """
    if isinstance(profile, Profile):
        base = profile
    elif profile in PROFILES:
        base = PROFILES[profile]
    else:
        raise ValueError(f"Unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}.")
    names = {f.name for f in dataclasses.fields(Profile)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"Unknown profile setting(s) {unknown}; valid: {sorted(names)}.")
    result = dataclasses.replace(base, **overrides)
    _check_profile(result)
    return result


def _check_profile(p: Profile) -> None:
    from raagr2_monai.networks import NETWORKS
    from raagr2_monai.pruning import METHODS

    bad = [v for v in p.variants if v not in NETWORKS]
    if bad or "baseline" not in p.variants:
        raise ValueError(f"variants must name RAAGR2-Net variants and include 'baseline'; got {list(p.variants)}.")
    if [m for m in p.methods if m not in METHODS]:
        raise ValueError(f"methods must be among {METHODS}; got {list(p.methods)}.")
    for size, what in ((p.roi_size, "roi_size"), (p.bench_size, "bench_size"), (p.flops_size, "flops_size")):
        if size < 16 or size % 16:
            raise ValueError(f"{what} must be a positive multiple of 16; got {size}.")
    if p.epochs < 1 or p.finetune_epochs < 1:
        raise ValueError(f"epochs and finetune_epochs must be >= 1; got {p.epochs} and {p.finetune_epochs}.")
    if not 1 <= p.val_interval <= p.epochs:
        raise ValueError(f"val_interval must lie in [1, epochs={p.epochs}]; got {p.val_interval}.")
    if any(not 0.0 < r < 1.0 for r in p.ratios):
        raise ValueError(f"ratios must lie strictly between 0 and 1; got {list(p.ratios)}.")


@dataclass(frozen=True)
class ModelSpec:
    """One row of the study: an architecture, or the baseline pruned by a method at a ratio, with or without training.

    Attributes:
        name: the row's name (``baseline``, ``magnitude-20``, ``magnitude-20-ft``, ``snip-20-init``, ...).
        kind: ``architecture`` or ``pruned``.
        variant: the architecture (the one pruned, for a pruned row).
        method: the pruning method, or ``None``.
        ratio: the pruning ratio, or ``None``.
        finetune_epochs: epochs trained after pruning (0: none).
        from_scratch: pruned at initialisation (SNIP's own setting), then trained.
    """

    name: str
    kind: str
    variant: str
    method: Optional[str] = None
    ratio: Optional[float] = None
    finetune_epochs: int = 0
    from_scratch: bool = False

    @property
    def label(self) -> str:
        """A human-readable name for tables and charts."""
        from raagr2_monai.bundle.configs import VARIANTS

        if self.kind == "architecture":
            return VARIANTS[self.variant].title
        title = {"magnitude": "Magnitude", "snip": "SNIP", "depgraph": "DepGraph"}[str(self.method)]
        text = f"{title} {round(float(self.ratio) * 100)} %"
        if self.from_scratch:
            return f"{text} at init + training"
        return f"{text} + FT" if self.finetune_epochs else text

    @property
    def family(self) -> str:
        """``architecture`` or the pruning method (the MLflow registry keeps the best model of each)."""
        return "architecture" if self.kind == "architecture" else str(self.method)


def experiment_matrix(profile: Profile) -> List[ModelSpec]:
    """The study's rows, in report order: architectures, then per method and ratio without and with fine-tuning.

    Example::

        >>> [m.name for m in experiment_matrix(get_profile("tiny", methods=("depgraph",)))]
        ['baseline', 'depthwise', 'depgraph-20', 'depgraph-20-ft']
    """
    rows = [ModelSpec(name=v, kind="architecture", variant=v) for v in profile.variants]
    for method in profile.methods:
        for ratio in profile.ratios:
            pct = round(ratio * 100)
            rows.append(ModelSpec(f"{method}-{pct}", "pruned", "baseline", method, ratio, 0))
            rows.append(ModelSpec(f"{method}-{pct}-ft", "pruned", "baseline", method, ratio, profile.finetune_epochs))
    if profile.snip_at_init and "snip" in profile.methods:
        for ratio in profile.ratios:
            rows.append(
                ModelSpec(f"snip-{round(ratio * 100)}-init", "pruned", "baseline", "snip", ratio, profile.epochs, True)
            )
    return rows


class StudyState:
    """The study's record of finished steps (``state.json``), written atomically after every step.

    Args:
        path: the state file.
        settings: the study's settings; an existing state with other settings is refused.

    Raises:
        ValueError: when the file holds a study with other settings.
    """

    def __init__(self, path: PathLike, settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(dict(settings)))
        self.data: Dict[str, Any] = {"format": STATE_FORMAT, "settings": self.settings, "steps": {}}
        if self.path.is_file():
            try:
                found = json.loads(self.path.read_text())
            except ValueError as err:
                raise ValueError(f"{self.path} is not valid JSON ({err}); rerun with --fresh.") from err
            if found.get("settings") != self.settings:
                diff = sorted(
                    k for k in set(self.settings) | set(found.get("settings", {}))
                    if found.get("settings", {}).get(k) != self.settings.get(k)
                )
                raise ValueError(
                    f"{self.path} records a study with other settings (differences: {', '.join(diff)}); rerun with "
                    "--fresh to start over, or choose another --output."
                )
            self.data = found

    def done(self, step: str) -> bool:
        """Whether ``step`` has finished."""
        return step in self.data["steps"]

    def get(self, step: str) -> Dict[str, Any]:
        """The outputs recorded for a finished step."""
        return self.data["steps"][step]

    def record(self, step: str, outputs: Mapping[str, Any]) -> None:
        """Record a finished step and its outputs, and write the file."""
        self.data["steps"][step] = json.loads(json.dumps(dict(outputs)))
        self.save()

    def set(self, key: str, value: Any) -> None:
        """Store a value outside the steps (e.g. MLflow run ids) and write the file."""
        self.data[key] = json.loads(json.dumps(value))
        self.save()

    def save(self) -> None:
        """Write the state atomically."""
        atomic_write_text(str(self.path), json.dumps(self.data, indent=2))


def _workflow(config_files: Sequence[PathLike], run_id: str, bundle_root: PathLike, **override: Any):
    from monai.bundle import ConfigWorkflow

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
    from raagr2_monai.bundle.generate import write_bundle

    license_file = Path(__file__).resolve().parents[1] / "LICENSE"
    license_text = license_file.read_text() if license_file.is_file() else "See the raagr2_monai package's licence.\n"
    write_bundle(str(root), variant, license_text)


def _run_with_history(wf: Any, run_dir: Path) -> float:
    """Run a training-type workflow with an :class:`EpochHistory` writing ``run_dir/history.json``; returns seconds."""
    history = EpochHistory(run_dir / "history.json", wf.parser.get_parsed_content("validate#evaluator"),
                           wf.parser.get_parsed_content("optimizer"))
    history.attach(wf.parser.get_parsed_content("train#trainer"))
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
        return {
            "dataset_dir": self.dataset_dir,
            "roi_size": [p.roi_size, p.roi_size],
            "batch_size": p.batch_size,
            "num_samples": p.num_samples,
            "seed": self.seed,
            **({"device": f"$torch.device('{p.device}')"} if p.device else {}),
        }

    # ------------------------------------------------------------------ steps
    def _step(self, step: str, action: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        if self.state.done(step):
            return self.state.get(step)
        self.echo(f"[study] {step} ...")
        start = time.perf_counter()
        outputs = action()
        outputs["step_seconds"] = time.perf_counter() - start
        self.state.record(step, outputs)
        self.echo(f"[study] {step} done in {outputs['step_seconds']:.0f} s")
        return outputs

    def train(self, spec: ModelSpec) -> Dict[str, Any]:
        """Train an architecture (its bundle's ``training`` workflow); an interrupted run resumes from ``last.pt``."""
        bundle = self.bundle_dir(spec)
        _write_bundle(bundle, spec.variant)
        run_dir = self.run_dir(spec)
        p = self.profile
        wf = _workflow(
            [bundle / "configs" / "train.json"], "training", bundle, output_dir=str(run_dir),
            epochs=p.epochs, val_interval=p.val_interval, learning_rate=p.learning_rate, resume=True,
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
            from_scratch=spec.from_scratch, snip_batches=p.snip_batches, output_dir=str(out),
            source_ckpt=str(source / "models" / "model.pt"), overwrite=True, val_interval=1,
            **self._data_override(),
        )
        if spec.from_scratch:
            override["val_interval"] = min(p.val_interval, spec.finetune_epochs)
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
        """Evaluate a row's bundle on the test subjects (its ``evaluating`` workflow)."""
        from raagr2_monai.data import load_split

        bundle = self.bundle_dir(spec)
        out = self.eval_dir(spec)
        wf = _workflow([bundle / "configs" / "train.json", bundle / "configs" / "evaluate.json"], "evaluating",
                       bundle, output_dir=str(out), ckpt_path=str(bundle / "models" / "model.pt"),
                       **self._data_override())
        try:
            wf.run()
        finally:
            wf.finalize()
        self.counts["evaluate"] += 1
        cases = [e["case"] for e in load_split(self.dataset_dir, "testing", None, self.seed)]
        return {
            "per_subject_csv": self._rel(out / "metrics_per_subject.csv"),
            "summary_csv": self._rel(out / "metrics_summary.csv"),
            "run_json": self._rel(out / "run.json"),
            "cases": cases,
        }

    def benchmark(self) -> Dict[str, Any]:
        """Benchmark every row's bundle in one run (ratios against the baseline of that run); FLOPs also at
        ``flops_size``."""
        from raagr2_monai.benchmark import benchmark_models, load_bundle_network
        from raagr2_monai.networks import count_flops

        p = self.profile
        models, sparse, flops = {}, {}, {}
        for spec in self.models:
            bundle = self.bundle_dir(spec)
            models[spec.name] = load_bundle_network(bundle)
            flops[spec.name] = count_flops(models[spec.name], (1, 4, p.flops_size, p.flops_size))
            packed = bundle / "models" / "model_sparse.pt"
            if packed.is_file():
                sparse[spec.name] = packed.stat().st_size / 1e6
        result = benchmark_models(
            models, size=p.bench_size, batches=p.bench_batches, repeats=p.bench_repeats, warmup=p.bench_warmup,
            device=p.device, measure_memory=p.bench_memory, train_step=p.bench_train_step, sparse_sizes=sparse,
        )
        for name, count in flops.items():
            result[name]["flops_at_flops_size"] = count
        result["_meta"]["flops_size"] = p.flops_size
        path = self.root / "benchmark.json"
        atomic_write_text(str(path), json.dumps(result, indent=2))
        self.counts["benchmark"] += 1
        return {"benchmark_json": self._rel(path)}

    # ------------------------------------------------------------------ the whole study
    def resolve_data(self) -> None:
        """Set ``dataset_dir``: the given BraTS folder, or the profile's synthetic set (generated when absent)."""
        from raagr2_monai.data.synthetic import DEFAULT_CASES, DEFAULT_SHAPE, default_dataset_dir, ensure_synthetic

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
        """Run every step not yet done, write the report and log to MLflow.

        Returns:
            The path of ``report.md``.
        """
        self.resolve_data()
        start = time.perf_counter()
        for spec in self.models:
            if spec.kind == "architecture":
                self._step(f"train/{spec.name}", lambda spec=spec: self.train(spec))
        for spec in self.models:
            if spec.kind == "pruned":
                self._step(f"prune/{spec.name}", lambda spec=spec: self.prune(spec))
        for spec in self.models:
            self._step(f"evaluate/{spec.name}", lambda spec=spec: self.evaluate(spec))
        self._step("benchmark", self.benchmark)
        from raagr2_monai.report import collect_rows, write_report

        runs = self.log_models(collect_rows(self))
        report = write_report(self, runs)
        self.finish_mlflow(report)
        self.state.set("last_run_seconds", time.perf_counter() - start)
        return report

    # ------------------------------------------------------------------ MLflow
    def _client(self):
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            # an explicit artifact location: the SQLite store would otherwise put artifacts under the working directory
            experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(self.root / "mlartifacts").as_uri())
        else:
            experiment_id = experiment.experiment_id
        return client, experiment_id

    def _mlflow_state(self) -> Dict[str, Any]:
        return dict(self.state.data.get("mlflow") or {"parent": None, "children": {}, "registered": {}})

    def log_models(self, rows: Sequence[Mapping[str, Any]]) -> Dict[str, str]:
        """Log the study's parent run (settings) and one child run per model (params, metrics by epoch and final,
        the evaluation's files); runs already logged are kept.

        Returns:
            Model name -> child run id.
        """
        from mlflow.entities import Metric, Param

        client, experiment_id = self._client()
        record = self._mlflow_state()
        if record["parent"] is None:
            parent = client.create_run(experiment_id, run_name=f"study-{self.profile.name}-{self.root.name}",
                                       tags={"raagr2.study": str(self.root), "raagr2.profile": self.profile.name})
            params = {f"profile.{k}": v for k, v in self.profile.settings().items()}
            params.update({"data_dir": self.data_dir, "dataset_dir": self.dataset_dir, "seed": self.seed})
            client.log_batch(parent.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
            record["parent"] = parent.info.run_id
            self.state.set("mlflow", record)
        parent_id = record["parent"]
        for row in rows:
            name = row["model"]
            if name in record["children"]:
                continue
            # a child logged by an interrupted run, but not recorded, is replaced
            stale = client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{MODEL_TAG}` = '{name}' and tags.`{_PARENT_TAG}` = '{parent_id}'",
            )
            for run in stale:
                client.delete_run(run.info.run_id)
            child = client.create_run(experiment_id, run_name=name, tags={_PARENT_TAG: parent_id, MODEL_TAG: name,
                                                                          "raagr2.family": row["family"]})
            run_id = child.info.run_id
            params = {k: row[k] for k in ("label", "kind", "family", "variant", "method", "ratio", "finetune_epochs",
                                          "from_scratch")}
            params.update({f"source.{k}": v for k, v in row["sources"].items() if k != "mlflow_run_id"})
            now = int(time.time() * 1000)
            metrics = [
                Metric(f"{section}.{key}", float(value), now, 0)
                for section in ("quality", "cost", "reduction")
                for key, value in row[section].items()
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
            ]
            for epoch in row["history"].get("epochs") or []:
                for key in ("train_loss", "val_mean_dice", "val_dice_tc", "val_dice_wt", "val_dice_et", "lr"):
                    if key in epoch and math.isfinite(float(epoch[key])):
                        metrics.append(Metric(key, float(epoch[key]), now, int(epoch["epoch"])))
            client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
            for rel in (row["sources"]["run_json"], row["sources"]["pruning_json"],
                        f"{row['sources']['eval_dir']}/metrics_per_subject.csv",
                        f"{row['sources']['eval_dir']}/metrics_summary.csv"):
                if rel and (self.root / rel).is_file():
                    client.log_artifact(run_id, str(self.root / rel), artifact_path="results")
            client.set_terminated(run_id)
            record["children"][name] = run_id
            self.state.set("mlflow", record)
        return dict(record["children"])

    def finish_mlflow(self, report: Path) -> Dict[str, Any]:
        """Attach the report, tables, charts and benchmark to the parent run, register the best model of each family
        (architectures, and each pruning method: highest mean test Dice) without pickling it, and end the parent run.

        A registered version's source is the child run's ``bundle`` artifact folder: the bundle's configs and its
        plain state_dict (``models/model.pt``, plus the pruning history or masks), loadable with
        ``torch.load(weights_only=True)``.

        Returns:
            Registered model name -> ``{"model", "version", "source"}``.
        """
        from mlflow.exceptions import MlflowException
        from raagr2_monai.report import collect_rows

        client, _ = self._client()
        record = self._mlflow_state()
        parent_id = record["parent"]
        client.log_artifact(parent_id, str(report))
        for folder in ("tables", "charts"):
            client.log_artifacts(parent_id, str(self.root / folder), artifact_path=folder)
        client.log_artifact(parent_id, str(self.root / self.state.get("benchmark")["benchmark_json"]))
        client.log_artifact(parent_id, str(self.state.path))
        rows = collect_rows(self, record["children"])
        best: Dict[str, Mapping[str, Any]] = {}
        for row in rows:
            score = row["quality"]["dice_mean"]
            if score is None:
                continue
            if row["family"] not in best or score > best[row["family"]]["quality"]["dice_mean"]:
                best[row["family"]] = row
        for family, row in best.items():
            registered = f"raagr2-best-{family}"
            if registered in record["registered"]:
                continue
            run_id = record["children"][row["model"]]
            bundle = self.root / row["sources"]["bundle"]
            for sub in ("configs", "models"):
                client.log_artifacts(run_id, str(bundle / sub), artifact_path=f"bundle/{sub}")
            source = f"{client.get_run(run_id).info.artifact_uri}/bundle"
            try:
                client.create_registered_model(
                    registered, description=f"Best {family} model of the raagr2 study (mean BraTS Dice on the test "
                                            "subjects); a MONAI bundle folder with a plain state_dict.")
            except MlflowException as err:
                if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
                    raise
            version = client.create_model_version(
                registered, source=source, run_id=run_id,
                tags={MODEL_TAG: row["model"], "dice_mean": f"{row['quality']['dice_mean']:.4f}"},
            )
            record["registered"][registered] = {"model": row["model"], "version": version.version, "source": source}
            self.state.set("mlflow", record)
        client.set_terminated(parent_id)
        return dict(record["registered"])

    @property
    def tracking_uri(self) -> str:
        """The study's MLflow tracking URI (an SQLite file in the study folder)."""
        return f"sqlite:///{self.root / 'mlruns.db'}"


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

        >>> study = run_study("quick")  # doctest: +SKIP
        >>> (study.root / "report.md").is_file()  # doctest: +SKIP
        True
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
