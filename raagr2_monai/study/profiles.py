"""The study's settings (:class:`Profile`, :data:`PROFILES`) and its rows (:class:`ModelSpec`,
:func:`experiment_matrix`): which architectures are trained, which pruned models are made from the baseline."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from raagr2_monai.networks import VARIANTS
from raagr2_monai.data.split import DEFAULT_SPLIT, build_datalist, parse_split, split_cases
from raagr2_monai.data.synthetic import case_grade, case_id
from raagr2_monai.networks import NETWORKS
from raagr2_monai.pruning import METHODS
from raagr2_monai.schedules import LR_SCHEDULES
from raagr2_monai.utils import resolve_device, usable_cpus

__all__ = [
    "Profile", "PROFILES", "ModelSpec", "experiment_matrix", "get_profile", "cpu_lanes", "decide_lanes",
    "section_counts", "DEVICE_HEADROOM",
]

#: Share of the device's memory the steps running at once may take together.
DEVICE_HEADROOM = 0.9

# the exported runtimes a profile may time (raagr2_monai.benchmark.check_backends); openvino-bf16 is left out of the
# benchmark on a CPU without a bfloat16 unit, and the report says so
_BENCH_BACKENDS = ("onnxruntime", "openvino", "openvino-bf16")


@dataclass(frozen=True)
class Profile:
    """The settings of a study; every profile runs the same code.

    Attributes:
        name: the profile's name.
        variants: architectures to train (the baseline is always the one pruned).
        roi_size: in-plane size of the training crops (a multiple of 16); the volumes are padded to at least it.
        window_size: in-plane size of the windows validation and evaluation slide over whole slices (a multiple of
            16; ``None``: ``roi_size``). At least the slices' size, each slice is one window: the network sees the
            whole slice, and a crop smaller than the slice makes training cheaper without cutting validation.
        epochs: training epochs of the architectures.
        batch_size: slices per training step.
        num_samples: slices drawn per volume per epoch.
        val_interval: validate every so many epochs (the best validation checkpoint is the model kept); at most
            ``epochs``.
        learning_rate: Adam learning rate of the training.
        lr_schedule: the learning-rate schedule of every training and fine-tuning (``plateau``, the thesis's, or
            ``cosine``: :mod:`raagr2_monai.schedules`).
        methods: pruning methods applied to the trained baseline.
        ratios: pruning ratios.
        finetune_epochs: fine-tuning epochs of the "fine-tuned" rows (each ratio also gets a row without).
        finetune_learning_rate: their learning rate, or ``None`` for the pruning config's own (1e-4, the thesis's, for
            20 epochs; a fine-tuning of a few epochs needs more).
        snip_batches: batches SNIP scores the weights on.
        snip_at_init: add the rows "SNIP at initialisation, then trained for ``epochs``" (Lee et al.'s setting).
        snip_size: in-plane size SNIP scores at: the training batches are zero-padded (background) to it, so that the
            widest dilated taps of the deepest layers, which at a small ``roi_size`` only ever see padding, get a
            gradient too (240: a BraTS slice, where every weight of every variant is reached; at most ``roi_size``
            leaves the batches as they are).
        hybrid_variant: the architecture of the deployable hybrid row (weight sharing + DepGraph + fine-tuning), or
            ``None`` for no hybrid row; it must be among ``variants``.
        hybrid_ratio: DepGraph's channel pruning ratio of the hybrid row.
        hybrid_round_to: the hybrid row keeps every pruned layer's channel count a multiple of this (DepGraph's
            ``round_to``; ``None``: any count): the deployable model is timed behind CPU runtimes, whose kernels work
            on blocks of 8 (AVX2) or 16 (AVX-512) channels.
        hybrid_finetune_epochs: fine-tuning epochs of the hybrid row.
        hybrid_learning_rate: its learning rate: removing most channels calls for retraining more than for the gentle
            fine-tuning (1e-4) of the other pruned rows.
        hybrid_distill_weight: if positive, a second hybrid row is fine-tuned with knowledge distillation from the
            trained baseline (:class:`raagr2_monai.losses.DistillationLoss` with this weight), so the report shows
            whether distillation holds Dice better; 0: only the plain row.
        bench_size: in-plane size of the latency and memory benchmark (192: the thesis's slices).
        bench_batches: batch sizes of the latency benchmark.
        bench_repeats: timed runs per figure.
        bench_warmup: untimed runs before them.
        bench_memory: measure peak memory (on CPU one process per model).
        bench_train_step: measure the training step (at ``batch_size`` x ``roi_size``, the study's own; the report
            states the time of an epoch as that step times the steps of an epoch).
        bench_backends: also time every model behind these exported runtimes (``onnxruntime``, ``openvino``, and
            ``openvino-bf16``: OpenVINO computing in bfloat16, timed where the CPU has a bfloat16 unit) at batch 1,
            beside eager PyTorch, for the report's Dice-against-latency chart.
        bench_backend_repeats: timed runs of each of those batch-1 figures (and of the baseline's eager PyTorch
            beside them): the report's deployment check rests on them, and a CPU shared with other machines moves a
            median of 3 runs by 20-30 %.
        flops_size: in-plane size the FLOPs are counted at (192: the thesis's slices).
        needs_data_dir: the profile is meant for real BraTS data and refuses to run without ``data_dir``.
        synthetic_cases: cases of the synthetic set used without ``data_dir``.
        synthetic_shape: volume shape of that set.
        device: ``cpu``, ``cuda`` or ``None`` (CUDA when available).
        workers: trainings, prunings and evaluations run at once, each in a process of its own with an equal share of
            the CPU threads, as soon as the steps they need are done (the benchmark always runs alone). On a CPU of
            few cores, small networks use two threads poorly: on two cores, two one-thread trainings of the baseline
            ran 1.32x the steps per second of one two-thread training (measured side by side, ``time.perf_counter``).
            ``"auto"``: one step per ``1 + num_workers`` usable CPUs. On CUDA no more run at once than the device's
            memory holds (:func:`decide_lanes`, recorded in ``state.json`` under ``"parallelism"``).
        split: training, validation and testing fractions of the subjects (patient-level, stratified by grade).
        num_workers: data-loader processes of each step (0: the step's own process loads its batches).
        sw_batch_size: slices (or windows) per network call of validation and evaluation.
        whole_slice: validation and evaluation run the network on whole slices (``False``: ``window_size``
            windows).
        val_cases: validate on the first so many validation subjects (``None``: all of them).
    """

    name: str
    variants: Tuple[str, ...] = ("baseline", "depthwise", "paired", "encdec")
    roi_size: int = 64
    window_size: Optional[int] = None
    epochs: int = 2
    batch_size: int = 8
    num_samples: int = 4
    val_interval: int = 1
    learning_rate: float = 1e-3
    lr_schedule: str = "plateau"
    methods: Tuple[str, ...] = ("magnitude", "snip", "depgraph")
    ratios: Tuple[float, ...] = (0.1, 0.2, 0.3)
    finetune_epochs: int = 1
    finetune_learning_rate: Optional[float] = None
    snip_batches: int = 2
    snip_at_init: bool = False
    snip_size: int = 240
    hybrid_variant: Optional[str] = "depthwise"
    hybrid_ratio: float = 0.6
    hybrid_round_to: Optional[int] = 8
    hybrid_finetune_epochs: int = 1
    hybrid_learning_rate: float = 1e-3
    hybrid_distill_weight: float = 0.5
    bench_size: int = 192
    bench_batches: Tuple[int, ...] = (1, 8)
    bench_repeats: int = 3
    bench_warmup: int = 1
    bench_memory: bool = True
    bench_train_step: bool = True
    bench_backends: Tuple[str, ...] = ("openvino", "openvino-bf16")
    bench_backend_repeats: int = 15
    flops_size: int = 192
    needs_data_dir: bool = False
    synthetic_cases: int = 24
    synthetic_shape: Tuple[int, int, int] = (96, 96, 64)
    device: Optional[str] = None
    workers: Union[int, str] = 1
    split: Tuple[float, float, float] = DEFAULT_SPLIT
    num_workers: int = 0
    sw_batch_size: int = 8
    whole_slice: bool = True
    val_cases: Optional[int] = None

    def settings(self) -> Dict[str, Any]:
        """The profile as JSON-compatible data (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# the thesis's schedule, shared by the full and gpu profiles
_FULL = Profile(
    name="full",
    roi_size=192,
    epochs=35,
    batch_size=16,
    num_samples=4,
    val_interval=1,
    finetune_epochs=20,
    snip_batches=4,
    snip_at_init=True,
    hybrid_finetune_epochs=20,
    bench_repeats=10,
    bench_backend_repeats=10,
    bench_warmup=2,
    bench_backends=("onnxruntime", "openvino", "openvino-bf16"),
    needs_data_dir=True,
)

#: The study's profiles. ``quick``: CPU, a synthetic set of 60 cases of 64 x 64 x 32 voxels (the built-in generator,
#: smaller volumes than its default so that the whole brain fits a 64 x 64 slice; split 30/9/21, so that the paired
#: differences to the baseline rest on 21 test subjects), 30 training epochs of 8 steps on 48 x 48 crops (validated
#: at 15 and 30, on whole 64 x 64 slices), each pruning method at 30 % with and without 2 fine-tuning epochs at lr
#: 3e-4, the hybrid row (160 fine-tuning epochs at lr 1e-3: 20 left it 0.105 mean Dice below the baseline, 160 brought
#: it to +0.017 [-0.029, +0.063]; distillation did not help, see tools/hybrid_recovery.py and the README), two steps at
#: a time (``workers``), and the benchmark at 192 x 192 (batch 1 and 8, eager PyTorch; batch 1 behind OpenVINO in fp32
#: and bf16): about 17 minutes on two cores. ``full``: the thesis's schedule (35 epochs, 20 fine-tuning epochs,
#: 192 x 192 slices, batch 16, ratios 10/20/30 %, benchmark with 10 repeats, plus the "SNIP at initialisation +
#: training" rows and both hybrid rows) on a GPU with real BraTS data. ``gpu``: the thesis's rows and crops (192 x 192,
#: batch 16, 35 epochs, 20 fine-tuning epochs, ratios 10/20/30 %, SNIP at initialisation, both hybrid rows) on one GPU
#: in about 15 minutes, on a BraTS-size synthetic set (60 studies of 240 x 240 x 155, split 30/9/21 so that 21 are
#: test subjects): validation every 5 epochs (the thesis: every epoch) on whole slices (32 a call), 3 loader processes
#: per step and as many steps at once as the CPUs (one per 4) and the device's memory allow (``workers="auto"``). By
#: :func:`~.estimate.estimate_study` with an H200's figures (training step 0.084 s in fp32, validation 0.2 s a study)
#: and this project's 2-core machine's for the host's work (loading, crops, scoring): 16 min 08 s on 16 CPUs, 4 steps
#: at once (14 min 33 s before the six evaluations with test-time flips of the failure prediction), the set's
#: generation not counted; not yet run on a GPU. ``tiny``: a smoke run for the tests.
PROFILES: Dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        roi_size=48,
        window_size=64,
        epochs=30,
        num_samples=2,
        val_interval=15,
        ratios=(0.3,),
        finetune_epochs=2,
        finetune_learning_rate=3e-4,
        snip_batches=1,
        hybrid_finetune_epochs=160,
        hybrid_distill_weight=0.0,
        bench_repeats=3,
        bench_warmup=1,
        synthetic_cases=60,
        synthetic_shape=(64, 64, 32),
        split=(0.5, 0.15, 0.35),
        workers=2,
    ),
    "full": _FULL,
    # the full profile's schedule on a BraTS-size synthetic set, sized for one GPU
    "gpu": dataclasses.replace(
        _FULL,
        name="gpu",
        val_interval=5,
        needs_data_dir=False,
        synthetic_cases=60,
        synthetic_shape=(240, 240, 155),
        split=(0.5, 0.15, 0.35),
        num_workers=3,
        sw_batch_size=32,
        workers="auto",
        # the CPU runtimes that a deployment picks between; ONNX Runtime trailed OpenVINO in every run so far
        bench_backends=("openvino", "openvino-bf16"),
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
        snip_size=64,
        hybrid_ratio=0.5,
        bench_size=32,
        bench_batches=(1, 2),
        bench_repeats=1,
        bench_warmup=0,
        bench_memory=False,
        bench_train_step=True,
        bench_backends=(),
        flops_size=32,
        synthetic_cases=9,
        synthetic_shape=(48, 48, 16),
        device="cpu",
    ),
}


def get_profile(profile: Union[str, Profile], **overrides: Any) -> Profile:
    """A profile by name (or as given), with fields replaced by ``overrides``.

    Raises:
        ValueError: for an unknown profile name (the message names the closest valid one) or field, or settings that
            cannot work.

    Example::

        >>> get_profile("quick", epochs=15).epochs
        15
    """
    if isinstance(profile, Profile):
        base = profile
    elif profile in PROFILES:
        base = PROFILES[profile]
    else:
        close = difflib.get_close_matches(str(profile), PROFILES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"Unknown profile {profile!r}{hint}; valid profiles: {', '.join(PROFILES)}.")
    names = {f.name for f in dataclasses.fields(Profile)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"Unknown profile setting(s) {unknown}; valid: {sorted(names)}.")
    if "split" in overrides:  # "0.5,0.15,0.35" from the command line, a tuple in the settings
        overrides["split"] = parse_split(overrides["split"])
    result = dataclasses.replace(base, **overrides)
    _check_profile(result)
    return result


def cpu_lanes(profile: Profile) -> int:
    """How many steps the CPU allows at once: ``workers``, or for ``"auto"`` one per ``1 + num_workers`` usable CPUs
    (a step's process and its data loaders).

    Example::

        >>> cpu_lanes(Profile(name="x", workers=3))
        3
    """
    if profile.workers != "auto":
        return int(profile.workers)
    return max(1, (usable_cpus() or os.cpu_count() or 1) // (1 + profile.num_workers))


def decide_lanes(cpu_bound: int, step_device_mb: Optional[float], device_total_mb: Optional[float]
                 ) -> Dict[str, Any]:
    """How many steps run at once: what the CPU allows (:func:`cpu_lanes`), and on CUDA no more than fit in the
    device's memory (:data:`DEVICE_HEADROOM` of it, ``step_device_mb`` each).

    Example::

        >>> decide_lanes(4, 30_000.0, 80_000.0)["lanes"], decide_lanes(4, None, None)["limited_by"]
        (2, 'cpu')
    """
    fit = None
    if step_device_mb and device_total_mb:
        fit = max(1, int(device_total_mb * DEVICE_HEADROOM // step_device_mb))
    lanes = cpu_bound if fit is None else min(cpu_bound, fit)
    return {"lanes": lanes, "cpu_lanes": cpu_bound, "device_fit": fit, "step_device_mb": step_device_mb,
            "device_total_mb": device_total_mb, "limited_by": "device memory" if lanes < cpu_bound else "cpu"}


def section_counts(profile: Profile, dataset_dir: Optional[str] = None, seed: int = 0) -> Dict[str, int]:
    """Training, validation and testing subjects of the study: ``dataset_dir``'s cases split as the steps split
    them, or without it the profile's synthetic set as it will be generated (same ids and grades, same split).

    Example::

        >>> section_counts(Profile(name="x", synthetic_cases=40))
        {'training': 28, 'validation': 6, 'testing': 6}
    """
    if dataset_dir is not None:
        parts = build_datalist(dataset_dir, seed, profile.split, check=False)
    else:
        entries = [{"case": case_id(i), "grade": case_grade(i)} for i in range(profile.synthetic_cases)]
        parts = split_cases(entries, seed, profile.split)
    return {k: len(parts[k]) for k in ("training", "validation", "testing")}


def _check_profile(p: Profile) -> None:
    bad = [v for v in p.variants if v not in NETWORKS]
    if bad or "baseline" not in p.variants:
        raise ValueError(f"variants must name RAAGR2-Net variants and include 'baseline'; got {list(p.variants)}.")
    if [m for m in p.methods if m not in METHODS]:
        raise ValueError(f"methods must be among {METHODS}; got {list(p.methods)}.")
    sizes = [(p.roi_size, "roi_size"), (p.bench_size, "bench_size"), (p.flops_size, "flops_size")]
    for size, what in sizes + ([(p.window_size, "window_size")] if p.window_size is not None else []):
        if size < 16 or size % 16:
            raise ValueError(f"{what} must be a positive multiple of 16; got {size}.")
    if p.workers != "auto" and (isinstance(p.workers, bool) or not isinstance(p.workers, int) or p.workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or 'auto'; got {p.workers!r}.")
    parse_split(p.split)
    if p.bench_repeats < 1 or p.bench_backend_repeats < 1:
        raise ValueError(f"bench_repeats and bench_backend_repeats must be >= 1; got {p.bench_repeats} and "
                         f"{p.bench_backend_repeats}.")
    if p.num_workers < 0 or p.sw_batch_size < 1 or (p.val_cases is not None and p.val_cases < 1):
        raise ValueError(f"num_workers must be >= 0, sw_batch_size >= 1 and val_cases None or >= 1; got "
                         f"{p.num_workers}, {p.sw_batch_size} and {p.val_cases}.")
    resolve_device(p.device)  # a device this machine lacks is refused before the study starts
    if p.epochs < 1 or p.finetune_epochs < 1:
        raise ValueError(f"epochs and finetune_epochs must be >= 1; got {p.epochs} and {p.finetune_epochs}.")
    if not 1 <= p.val_interval <= p.epochs:
        raise ValueError(f"val_interval must lie in [1, epochs={p.epochs}]; got {p.val_interval}.")
    if any(not 0.0 < r < 1.0 for r in (*p.ratios, p.hybrid_ratio)):
        raise ValueError(f"ratios and hybrid_ratio must lie strictly between 0 and 1; got {list(p.ratios)} and "
                         f"{p.hybrid_ratio}.")
    if p.hybrid_variant is not None and p.hybrid_variant not in p.variants:
        raise ValueError(f"hybrid_variant must be one of the variants {list(p.variants)} or None; "
                         f"got {p.hybrid_variant!r}.")
    round_to = p.hybrid_round_to
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ValueError(f"hybrid_round_to must be None or an integer >= 1; got {p.hybrid_round_to!r}.")
    if not 0.0 <= p.hybrid_distill_weight <= 1.0:
        raise ValueError(f"hybrid_distill_weight must lie in [0, 1]; got {p.hybrid_distill_weight}.")
    if p.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {p.lr_schedule!r}.")
    if p.hybrid_finetune_epochs < 1:
        raise ValueError(f"hybrid_finetune_epochs must be >= 1; got {p.hybrid_finetune_epochs}.")
    if p.snip_size < 16 or p.snip_size % 16:
        raise ValueError(f"snip_size must be a positive multiple of 16; got {p.snip_size}.")
    if [b for b in p.bench_backends if b not in _BENCH_BACKENDS]:
        raise ValueError(f"bench_backends must be among {', '.join(_BENCH_BACKENDS)}; got {list(p.bench_backends)}.")


@dataclass(frozen=True)
class ModelSpec:
    """One row of the study: an architecture, or the baseline pruned by a method at a ratio, with or without training.

    Attributes:
        name: the row's name (``baseline``, ``magnitude-20``, ``magnitude-20-ft``, ``snip-20-init``, ``hybrid-60``, ...).
        kind: ``architecture`` or ``pruned``.
        variant: the architecture (the one pruned, for a pruned row: the baseline, or another architecture for the
            hybrid row).
        method: the pruning method, or ``None``.
        ratio: the pruning ratio, or ``None``.
        finetune_epochs: epochs trained after pruning (0: none).
        from_scratch: pruned at initialisation (SNIP's own setting), then trained.
        distill_weight: fine-tuned with knowledge distillation from the trained baseline at this weight (0: none).
        learning_rate: the fine-tuning's learning rate, or ``None`` for the pruning config's own.
        round_to: DepGraph keeps each pruned layer's channel count a multiple of this, or ``None`` (any count).
    """

    name: str
    kind: str
    variant: str
    method: Optional[str] = None
    ratio: Optional[float] = None
    finetune_epochs: int = 0
    from_scratch: bool = False
    distill_weight: float = 0.0
    learning_rate: Optional[float] = None
    round_to: Optional[int] = None

    @property
    def label(self) -> str:
        """A human-readable name for tables and charts."""
        if self.kind == "architecture":
            return VARIANTS[self.variant].title
        if self.family == "hybrid":
            kd = " + distillation" if self.distill_weight else ""
            return f"Hybrid: {VARIANTS[self.variant].title} + DepGraph {round(float(self.ratio) * 100)} % + FT{kd}"
        title = {"magnitude": "Magnitude", "snip": "SNIP", "depgraph": "DepGraph"}[str(self.method)]
        text = f"{title} {round(float(self.ratio) * 100)} %"
        if self.from_scratch:
            return f"{text} at init + training"
        return f"{text} + FT" if self.finetune_epochs else text

    @property
    def family(self) -> str:
        """``architecture``, ``hybrid`` (an architecture other than the baseline, pruned) or the pruning method (the
        MLflow registry keeps the best model of each)."""
        if self.kind == "architecture":
            return "architecture"
        return "hybrid" if self.variant != "baseline" else str(self.method)


def experiment_matrix(profile: Profile) -> List[ModelSpec]:
    """The study's rows, in report order: architectures, then per method and ratio without and with fine-tuning,
    the "SNIP at initialisation" rows, and last the hybrid rows (``hybrid_variant`` pruned by DepGraph at
    ``hybrid_ratio`` and fine-tuned, without and with distillation from the baseline).

    Example::

        >>> [m.name for m in experiment_matrix(get_profile("tiny", methods=("depgraph",)))]
        ['baseline', 'depthwise', 'depgraph-20', 'depgraph-20-ft', 'hybrid-50', 'hybrid-50-kd']
    """
    rows = [ModelSpec(name=v, kind="architecture", variant=v) for v in profile.variants]
    for method in profile.methods:
        for ratio in profile.ratios:
            pct = round(ratio * 100)
            rows.append(ModelSpec(f"{method}-{pct}", "pruned", "baseline", method, ratio, 0))
            rows.append(ModelSpec(f"{method}-{pct}-ft", "pruned", "baseline", method, ratio, profile.finetune_epochs,
                                  learning_rate=profile.finetune_learning_rate))
    if profile.snip_at_init and "snip" in profile.methods:
        for ratio in profile.ratios:
            rows.append(
                ModelSpec(f"snip-{round(ratio * 100)}-init", "pruned", "baseline", "snip", ratio, profile.epochs, True)
            )
    if profile.hybrid_variant is not None:
        ratio, epochs = profile.hybrid_ratio, profile.hybrid_finetune_epochs
        name = f"hybrid-{round(ratio * 100)}"
        lr, round_to = profile.hybrid_learning_rate, profile.hybrid_round_to
        rows.append(ModelSpec(name, "pruned", profile.hybrid_variant, "depgraph", ratio, epochs, learning_rate=lr,
                              round_to=round_to))
        if profile.hybrid_distill_weight > 0:
            rows.append(ModelSpec(f"{name}-kd", "pruned", profile.hybrid_variant, "depgraph", ratio, epochs,
                                  distill_weight=profile.hybrid_distill_weight, learning_rate=lr, round_to=round_to))
    return rows
