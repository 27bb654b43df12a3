"""What a study will cost before it starts: unit costs measured here in seconds (:func:`measure_unit_costs`),
summed over the runner's own step list (:func:`estimate_study`) and its steps at once (:func:`~.profiles.decide_lanes`);
``raagr2 study`` prints it as ``[estimate]`` lines and writes ``<study>/estimate.json``.

The unit costs: a training step of the baseline and of the slimmest other variant at the profile's batch and crop
(the others interpolated by FLOPs), a validation slice of a study's size after the brain crop, the random crops of a
volume, loading a study (measured when one is at hand, else :data:`LOAD_S_PER_MVOXEL`), and memory: the peak resident
set of a training step on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA. On the CPU a step too slow to measure
quickly is timed at batch 1 and scaled by the batch; its memory is the resident set, the gradients and the batch
times what autograd keeps of one sample. Where a choice was needed the figure is an upper bound: a pruned row costs
what its source costs, every slice counts (``skip_empty`` skips those without brain), trainings run all their epochs,
and on CUDA the steps at once do not overlap their device time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from monai.transforms import Compose, Randomizable

from raagr2_monai.benchmark.memory import peak_rss_mb, reset_peak_rss
from raagr2_monai.data import load_split
from raagr2_monai.data.chains import train_transforms, val_transforms
from raagr2_monai.losses import RAAGR2Loss
from raagr2_monai.networks import count_flops, get_network
from raagr2_monai.utils import atomic_write_text, autocast, resolve_device, usable_cpus

from .profiles import Profile, cpu_lanes, decide_lanes, experiment_matrix, section_counts
from .countdown import format_duration
from .steps import FAILURE_SAMPLES, finetune_val_interval
from .tasks import study_tasks, synthetic_folder

__all__ = ["UnitCosts", "measure_unit_costs", "estimate_study", "format_estimate", "plan_study", "ESTIMATE_FILE"]

#: The estimate's file in the study folder.
ESTIMATE_FILE = "estimate.json"
#: A BraTS study, and the in-plane share of it the brain crop keeps (208 x 224 of 240 x 240 for the synthetic set).
BRATS_SHAPE = (240, 240, 155)
BRAIN_BOX = (208 / 240, 224 / 240)
#: Loading and preprocessing one study (4 modalities and seg, .nii.gz): 3.1 s for 240 x 240 x 155 on 2 EPYC cores.
LOAD_S_PER_MVOXEL = 0.35
#: Inverting, writing and scoring one label map: 1.3 s for 240 x 240 x 155 with a few lesions, same machine (global
#: 0.38 s and lesion-wise 0.46 s by ``raagr2 benchmark_metrics --lesions 2``, invert and write about 0.3 s).
SCORE_S_PER_MVOXEL = 0.15
#: The synthetic generator: 28 s per 240 x 240 x 155 case, same machine.
GENERATE_S_PER_MVOXEL = 3.2
#: Reading a study back from the disk cache (float16 image, uint8 labels: 9 bytes a voxel): 0.14 s for 200 MB.
CACHED_S_PER_MB = 0.001
#: A workflow's start: configs parsed, bundle written, data listed, MLflow run opened.
STEP_OVERHEAD_S = 4.0
#: Exporting and compiling one network for one runtime in the benchmark.
EXPORT_S = 5.0
#: The exported runtimes' speed on the CPU (the benchmark times them there, also on a GPU machine), GFLOP/s.
CPU_GFLOPS = 50.0
#: CUDA context of a step's process, and the caching allocator's reserve over what it hands out.
CUDA_CONTEXT_MB = 600.0
DEVICE_SLACK = 1.25
#: On the CPU a training step predicted (from batch 1) to take longer than this is not run at the full batch.
QUICK_STEP_S = 1.5


@dataclass
class UnitCosts:
    """What one unit of each kind of work costs on this machine (seconds; MB = 10^6 bytes).

    Attributes:
        device, threads, cpus: where the steps run; torch threads of each step (the CPUs' share of each of the
            steps at once); usable CPUs.
        train_step_s, forward_slice_s: variant -> a training step at the profile's batch and crop; a validation
            slice (all its windows).
        slice_hw, slices: in-plane size and slices of a preprocessed study.
        sample_s: the random crops of one volume (the training chain after its cached part).
        load_study_s, cached_study_s, score_study_s: loading and preprocessing a study from its files; reading it
            back from the disk cache; inverting, writing and scoring an evaluated one.
        study_mb, compact_mb: a preprocessed study in memory (float32 image, TC / WT / ET); on the disk cache.
        process_mb, train_device_mb, val_device_mb: host peak resident set of a step's process in a training step;
            device allocator peak of a training step, a validation call (CUDA).
        device_total_mb, host_total_mb, gflops: the device's and the machine's memory; variant -> GFLOPs at 192.
        step_overhead_s, export_s, cpu_gflops: see :data:`STEP_OVERHEAD_S`, :data:`EXPORT_S`, :data:`CPU_GFLOPS`.
        sources, seconds, load_average: how figures were obtained; how long it took; the machine's load then.
    """
    device: str = "cpu"
    threads: int = 1
    cpus: int = 1
    train_step_s: Dict[str, float] = field(default_factory=dict)
    forward_slice_s: Dict[str, float] = field(default_factory=dict)
    slice_hw: Tuple[int, int] = (64, 64)
    slices: int = 32
    sample_s: float = 0.0
    load_study_s: float = 0.0
    cached_study_s: float = 0.0
    score_study_s: float = 0.0
    study_mb: float = 0.0
    compact_mb: float = 0.0
    process_mb: float = 0.0
    train_device_mb: Optional[float] = None
    val_device_mb: Optional[float] = None
    device_total_mb: Optional[float] = None
    host_total_mb: Optional[float] = None
    gflops: Dict[str, float] = field(default_factory=dict)
    step_overhead_s: float = STEP_OVERHEAD_S
    export_s: float = EXPORT_S
    cpu_gflops: float = CPU_GFLOPS
    sources: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    load_average: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        """The costs as JSON-compatible data."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _between(value: float, a: float, b: float) -> float:
    """``value`` within ``[min(a, b), max(a, b)]``: no interpolation beyond what was measured."""
    return min(max(value, min(a, b)), max(a, b))


def _study_geometry(profile: Profile, data_dir: Optional[str]) -> Tuple[Tuple[int, int], int]:
    """In-plane size and slice count of a preprocessed study without one at hand: the brain box of the profile's
    synthetic shape (BraTS's with ``data_dir``), padded to ``roi_size`` and to a multiple of 16."""
    x, y, z = BRATS_SHAPE if data_dir else tuple(profile.synthetic_shape)
    h, w = (max(profile.roi_size, math.ceil(d * f)) for d, f in zip((x, y), BRAIN_BOX))
    return (math.ceil(h / 16) * 16, math.ceil(w / 16) * 16), int(z)


def _inference_unit(profile: Profile, hw: Tuple[int, int]) -> Tuple[Tuple[int, int], int]:
    """What one network call of validation sees, and how many calls a slice takes: the whole slice, or the
    ``window_size`` windows at the bundles' overlap of 0.25."""
    if profile.whole_slice:
        return hw, 1
    win = profile.window_size or profile.roi_size
    count = [1 if d <= win else math.ceil((d - win) / (win * 0.75)) + 1 for d in hw]
    return (win, win), count[0] * count[1]


def _timed(run: Callable[[], Any], device: torch.device, repeats: int) -> Tuple[float, float]:
    """Mean seconds of ``run`` over ``repeats`` calls, and the peak memory of the last (device allocator on CUDA,
    process resident set on the CPU)."""
    cuda, seconds = device.type == "cuda", 0.0
    for _ in range(repeats):
        torch.cuda.reset_peak_memory_stats(device) if cuda else reset_peak_rss()
        start = time.perf_counter()
        run()
        torch.cuda.synchronize(device) if cuda else None
        seconds += time.perf_counter() - start
    return seconds / repeats, torch.cuda.max_memory_allocated(device) / 1e6 if cuda else peak_rss_mb()


def _saved_mb(net: torch.nn.Module, loss_fn: Callable[..., torch.Tensor], roi: int) -> float:
    """MB the autograd graph of one sample's training step keeps for the backward pass (each storage once): the
    activations, which grow with the batch."""
    storages: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(net(torch.zeros(1, 4, roi, roi)).float(), torch.zeros(1, 3, roi, roi))  # the graph goes with it
    return sum(storages.values()) / 1e6


def _measure_network(variant: str, profile: Profile, unit: Tuple[int, int], device: torch.device
                     ) -> Tuple[float, float, float, float, str]:
    """One training step at ``batch_size`` x ``roi_size`` and one validation call per slice at ``unit`` for
    ``variant``: (step seconds, step peak MB, seconds per validation call, validation peak MB, how measured)."""
    net = get_network(variant, in_channels=4, out_channels=3).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = RAAGR2Loss(lambda_bce=0.5)
    gen = torch.Generator().manual_seed(0)
    roi, cuda = profile.roi_size, device.type == "cuda"

    def step(batch: int) -> Callable[[], None]:
        x = torch.randn(batch, 4, roi, roi, generator=gen).to(device)
        y = (torch.rand(batch, 3, roi, roi, generator=gen) > 0.9).float().to(device)

        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, True):
                out = net(x)
            loss_fn(out.float(), y).backward()  # in float32, as BCE refuses autocast
            optimizer.step()
        return run

    def forward(batch: int) -> Callable[[], None]:
        x = torch.randn(batch, 4, *unit, generator=gen).to(device)
        return lambda: net(x)

    batch, how = profile.batch_size, "measured"
    if cuda:
        _timed(step(batch), device, 2)
        step_s, step_mb = _timed(step(batch), device, 3)
    else:
        _timed(step(1), device, 1)  # Adam's state exists from here on
        reset_peak_rss()
        resident = peak_rss_mb()  # the peak was just reset to the resident set
        grads_mb = sum(p.numel() * p.element_size() for p in net.parameters()) / 1e6
        one_s = min(_timed(step(1), device, 1)[0] for _ in range(2))
        step_mb = resident + grads_mb + batch * _saved_mb(net, loss_fn, roi)
        if one_s * batch <= QUICK_STEP_S:
            step_s, peak = _timed(step(batch), device, 1)
            step_mb = max(step_mb, peak)
        else:  # in proportion to the batch: the fixed part of a step this slow is small
            step_s, how = one_s * batch, "batch 1 x batch_size"
    calls = profile.sw_batch_size if cuda else 1
    with torch.no_grad(), autocast(device, True):
        if cuda:  # on the CPU the training step warmed the network enough, and a slow call would double the wait
            _timed(forward(calls), device, 1)
        val_s, val_mb = _timed(forward(calls), device, 3 if cuda else 1)
    return step_s, step_mb, val_s / calls, val_mb, how


def _measure_study(profile: Profile, dataset_dir: str) -> Tuple[float, Tuple[int, int], int, str]:
    """Load and preprocess the first training study of ``dataset_dir`` (the validation chain): (seconds, in-plane
    size, slices, its case)."""
    entry = load_split(dataset_dir, "training", None, 0, split=profile.split)[0]
    start = time.perf_counter()
    shape = val_transforms((profile.roi_size, profile.roi_size))(dict(entry))["image"].shape
    return time.perf_counter() - start, (int(shape[1]), int(shape[2])), int(shape[3]), entry["case"]


def _measure_sampling(profile: Profile, hw: Tuple[int, int], slices: int) -> float:
    """Seconds of the training chain's random part (crops, flips, jitter) on one volume of the study's size."""
    chain = train_transforms((profile.roi_size, profile.roi_size), 0.5, profile.num_samples)
    first = next(i for i, t in enumerate(chain.transforms) if isinstance(t, Randomizable))
    tail = Compose(chain.transforms[first:])
    tail.set_random_state(seed=0)
    label = torch.zeros(3, *hw, slices)
    label[:, hw[0] // 3: hw[0] // 2, hw[1] // 3: hw[1] // 2, slices // 3: slices // 2] = 1.0  # a tumour to centre on
    volume = {"image": torch.randn(4, *hw, slices, generator=torch.Generator().manual_seed(0)), "label": label}
    start = time.perf_counter()
    tail(dict(volume))
    return time.perf_counter() - start


def measure_unit_costs(profile: Profile, dataset_dir: Optional[str] = None, data_dir: Optional[str] = None
                       ) -> UnitCosts:
    """Measure the unit costs of ``profile`` on this machine, at the torch threads each step will have.

    Args:
        profile: the settings (device, batch, crop, variants, ...).
        dataset_dir: the study's data if at hand, to load one study of; ``None``: :data:`LOAD_S_PER_MVOXEL`.
        data_dir: the study's BraTS folder, if any (its studies are BraTS-sized when none is loaded).

    Example::

        costs = measure_unit_costs(get_profile("quick"))
        costs.train_step_s["baseline"]  # e.g. 1.2 on one thread of a 2-core EPYC
    """
    started, device = time.perf_counter(), resolve_device(profile.device)
    cpus = usable_cpus() or os.cpu_count() or 1
    threads = max(1, cpus // cpu_lanes(profile))
    if dataset_dir is not None:
        load_s, hw, slices, case = _measure_study(profile, dataset_dir)
        sources = {"load_study_s": f"measured on {case}"}
    else:  # the constant is per voxel of the input, the brain box a share of it
        (hw, slices) = _study_geometry(profile, data_dir)
        load_s = LOAD_S_PER_MVOXEL * hw[0] * hw[1] * slices / 1e6 / (BRAIN_BOX[0] * BRAIN_BOX[1])
        sources = {"load_study_s": f"constant {LOAD_S_PER_MVOXEL} s per million voxels"}
    mvoxels = hw[0] * hw[1] * slices / 1e6
    (unit, calls_per_slice), saved_threads = _inference_unit(profile, hw), torch.get_num_threads()
    gflops = {v: count_flops(get_network(v, 4, 3), (1, 4, 64, 64)) * 9 / 1e9 for v in profile.variants}  # at 192
    others = [v for v in profile.variants if v != "baseline"]
    measured = ["baseline"] + ([min(others, key=lambda v: gflops[v])] if others else [])
    try:  # the measurement must leave the threads and the random state of the study's process as they were
        torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            figures = {variant: _measure_network(variant, profile, unit, device) for variant in measured}
            sample_s = _measure_sampling(profile, hw, slices)
    finally:
        torch.set_num_threads(saved_threads)
    base, slim = figures["baseline"], figures[measured[-1]]
    span = gflops["baseline"] - gflops[measured[-1]]
    weight = {v: (gflops[v] - gflops[measured[-1]]) / span if span else 1.0 for v in profile.variants}  # by FLOPs
    step_s = {v: _between(slim[0] + w * (base[0] - slim[0]), slim[0], base[0]) for v, w in weight.items()}
    fwd_s = {v: _between(slim[2] + w * (base[2] - slim[2]), slim[2], base[2]) * calls_per_slice
             for v, w in weight.items()}
    sources["train_step_s"] = f"{', '.join(measured)} {base[4]}; others by FLOPs"
    cuda, voxels = device.type == "cuda", hw[0] * hw[1] * slices
    return UnitCosts(
        device=str(device), threads=threads, cpus=cpus, train_step_s=step_s, forward_slice_s=fwd_s, slice_hw=hw,
        slices=slices, sample_s=sample_s, load_study_s=load_s, cached_study_s=CACHED_S_PER_MB * voxels * 9 / 1e6,
        score_study_s=SCORE_S_PER_MVOXEL * mvoxels / (BRAIN_BOX[0] * BRAIN_BOX[1]), study_mb=voxels * 28 / 1e6,
        compact_mb=voxels * 9 / 1e6, process_mb=peak_rss_mb() if cuda else base[1],
        train_device_mb=base[1] if cuda else None, val_device_mb=base[3] if cuda else None,
        device_total_mb=torch.cuda.get_device_properties(device).total_memory / 1e6 if cuda else None,
        host_total_mb=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e6 if hasattr(os, "sysconf")
        else None, gflops=gflops, sources=sources, seconds=time.perf_counter() - started,
        load_average=os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
    )


def _simulate(durations: Sequence[float], needs: Sequence[Sequence[int]], lanes: int) -> float:
    """When the last step ends if ``lanes`` run at once, each started as :meth:`~.runner.Study._run_parallel` starts
    them: the first in order whose needs are done, whenever a lane is free."""
    pending, running, done, now = list(range(len(durations))), {}, set(), 0.0
    while pending or running:
        while len(running) < lanes:
            ready = next((i for i in pending if all(n in done for n in needs[i])), None)
            if ready is None:
                break
            pending.remove(ready)
            running[ready] = now + durations[ready]
        if not running:
            raise RuntimeError("The estimate's steps wait for steps that never run.")
        first = min(running, key=running.get)
        now = running.pop(first)
        done.add(first)
    return now


def _step_costs(p: Profile, c: UnitCosts, n: Mapping[str, int], task: Any) -> Dict[str, Any]:
    """One step's row: its epochs, training steps, validations, seconds and device seconds."""
    spec, v = task.spec, task.spec.variant
    n_val = min(n["validation"], p.val_cases or n["validation"])
    cached = c.cached_study_s
    row = {"step": task.step, "action": task.action, "epochs": 0, "train_steps": 0, "validations": 0}
    if task.action in ("evaluate", "evaluate_uncertainty"):  # the latter: FAILURE_SAMPLES predictions a slice
        device_s = n["testing"] * c.slices * c.forward_slice_s[v] * (FAILURE_SAMPLES if "unc" in task.action else 1)
        seconds = n["testing"] * (cached + c.score_study_s) + device_s
    else:
        epochs = p.epochs if task.action == "train" else spec.finetune_epochs
        interval = p.val_interval if task.action == "train" else finetune_val_interval(p.val_interval, epochs)
        steps = epochs * math.ceil(n["training"] * p.num_samples / p.batch_size)
        row.update(epochs=epochs, train_steps=steps, validations=epochs // interval if epochs else 1)
        # the loaders crop (and read back) each step's volumes beside the step; without loaders, before it
        data_s = max(1, p.batch_size // p.num_samples) * (c.sample_s + cached) / max(1, p.num_workers)
        step_s = max(c.train_step_s[v], data_s) if p.num_workers else c.train_step_s[v] + data_s
        score = {"snip": p.snip_batches * c.train_step_s[v] * max(1.0, (p.snip_size / p.roi_size) ** 2),
                 "depgraph": c.train_step_s[v] / 3}.get(str(spec.method), 0.0)  # DepGraph: a traced forward pass
        teacher = c.train_step_s["baseline"] / 3 if spec.distill_weight else 0.0
        validation = row["validations"] * n_val * (c.slices * c.forward_slice_s[v] + cached)
        device_s = steps * (c.train_step_s[v] + teacher) + score + validation
        seconds = steps * (step_s + teacher) + score + validation
    return {**row, "seconds": seconds + c.step_overhead_s, "device_seconds": device_s}


def estimate_study(profile: Profile, costs: UnitCosts, counts: Optional[Mapping[str, int]] = None,
                   done: Collection[str] = (), lanes: Optional[int] = None) -> Dict[str, Any]:
    """The study's time and memory: the unit costs summed over every step the runner would run
    (:func:`~.runner.study_tasks` of :func:`~.profiles.experiment_matrix`, then the benchmark).

    A training: ``epochs`` x the steps of an epoch (training subjects x ``num_samples`` / ``batch_size``), each the
    longer of the network's step and its loaders' crops, and a validation every ``val_interval`` epochs (at most
    ``val_cases`` subjects); a pruning: its scoring, fine-tuning epochs and their validations (or one); an
    evaluation: each test subject's reading, slices and scoring. Before the first step the runner preprocesses every
    study into the study's cache (counted in the first step; the steps read it), and each step pays
    :data:`STEP_OVERHEAD_S`.

    Args:
        profile: the settings.
        costs: the unit costs (:func:`measure_unit_costs`).
        counts: training, validation and testing subjects (default: :func:`~.profiles.section_counts`).
        done: steps already done (a resumed study), left out.
        lanes: steps at once (default: :func:`~.profiles.decide_lanes`).

    Returns:
        JSON-compatible: ``serial_s``, ``parallel_s``, ``benchmark_s``, ``steps`` (each step's seconds, device
        seconds, epochs, training steps, validations), ``subjects``, ``memory``, ``parallel`` (the steps at once).

    Example::

        est = estimate_study(get_profile("quick"), measure_unit_costs(get_profile("quick")))
        format_duration(est["parallel_s"])  # e.g. '17 min 03 s'
    """

    p, c, n = profile, costs, dict(counts or section_counts(profile))
    models = experiment_matrix(p)
    tasks = study_tasks(models)
    rows = [_step_costs(p, c, n, task) for task in tasks]
    if rows:  # before the first step the runner fills the cache: one process per CPU with loader processes, else one
        rows[0]["seconds"] += sum(n.values()) * c.load_study_s / (max(1, c.cpus) if p.num_workers else 1)
    keep = [i for i, row in enumerate(rows) if row["step"] not in done]
    todo = [rows[i] for i in keep]
    needs = [[keep.index(j) for j, t in enumerate(tasks) if t.step in tasks[i].needs and j in keep] for i in keep]
    step_device_mb = None
    if c.train_device_mb is not None:
        snip = max(1.0, (p.snip_size / p.roi_size) ** 2) if "snip" in p.methods else 1.0
        step_device_mb = CUDA_CONTEXT_MB + DEVICE_SLACK * max(c.train_device_mb * snip, c.val_device_mb or 0.0)
    decision = decide_lanes(cpu_lanes(p), step_device_mb, c.device_total_mb)
    if lanes is not None:
        decision.update(lanes=int(lanes), limited_by="given")
    parallel = _simulate([r["seconds"] for r in todo], needs, decision["lanes"]) if todo else 0.0
    if c.device.startswith("cuda"):  # one device: the steps at once do not overlap their device time
        parallel = max(parallel, sum(r["device_seconds"] for r in todo))
    bench_s = 0.0 if "benchmark" in done else _benchmark_seconds(p, models, c)
    volumes, n_val = max(1, p.batch_size // p.num_samples), min(n["validation"], p.val_cases or n["validation"])
    data_mb = (1 + p.num_workers) * volumes * c.compact_mb
    host_step = c.process_mb + max(data_mb, 2 * c.study_mb)  # an evaluation holds a study and its prediction
    memory = {"host_process_mb": c.process_mb, "host_data_mb": data_mb, "host_step_mb": host_step,
              "host_total_mb": decision["lanes"] * host_step + c.process_mb, "host_available_mb": c.host_total_mb,
              "device_step_mb": step_device_mb, "device_total_mb": c.device_total_mb,
              "device_fit": decision["device_fit"]}
    return {"profile": p.name, "device": c.device, "subjects": n, "validation_subjects_scored": n_val,
            "steps_per_epoch": math.ceil(n["training"] * p.num_samples / p.batch_size), "steps": todo,
            "benchmark_s": bench_s, "serial_s": sum(r["seconds"] for r in todo) + bench_s,
            "parallel_s": parallel + bench_s, "parallel": decision, "memory": memory, "unit_costs": c.to_dict()}


def _benchmark_seconds(p: Profile, models: Sequence[Any], c: UnitCosts) -> float:
    """The benchmark: per network structure (mask-pruned rows share their source's) the latency runs at each batch,
    the training step, the memory probe and each exported runtime; a little per model."""
    structures = {(m.variant, m.ratio, m.round_to) if m.method == "depgraph" else (m.variant,) for m in models}
    area = (p.bench_size ** 2) / (c.slice_hw[0] * c.slice_hw[1])
    runs = p.bench_warmup + p.bench_repeats
    seconds = 5.0 if p.bench_memory else 0.0  # the memory probe's process
    for key in structures:
        fwd = c.forward_slice_s[key[0]] * area
        cpu_fwd = fwd if c.device == "cpu" else c.gflops.get(key[0], 15.0) * (p.bench_size / 192) ** 2 / c.cpu_gflops
        seconds += runs * sum(p.bench_batches) * fwd + (runs * c.train_step_s[key[0]] if p.bench_train_step else 0.0)
        seconds += max(p.bench_batches) * fwd if p.bench_memory else 0.0
        backend_runs = p.bench_warmup + p.bench_backend_repeats
        seconds += (len(p.bench_backends) * (c.export_s + backend_runs * cpu_fwd)
                    + (backend_runs * cpu_fwd if p.bench_backends else 0.0))
    return seconds + 0.5 * len(models)


def _gb(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 1e3:.1f} GB"


def format_estimate(est: Mapping[str, Any]) -> List[str]:
    """The ``[estimate]`` lines ``raagr2 study`` prints before its first step.

    Example::

        for line in format_estimate(estimate_study(profile, costs)):
            print(line)  # [estimate] time: 26 min 40 s one step at a time; 15 min 03 s at 2 at a time ...
    """
    c, n, m, lanes, steps = est["unit_costs"], est["subjects"], est["memory"], est["parallel"], est["steps"]
    kind = {k: [s for s in steps if s["action"] == k] for k in ("train", "prune", "evaluate")}
    fit = "" if m["device_fit"] is None else f"; the device holds {m['device_fit']}"
    lines = [
        f"unit costs on {c['device']}, {c['threads']} thread(s) a step (measured in {c['seconds']:.0f} s, load average "
        f"{c['load_average']:.1f}): training step {', '.join(f'{t:.3g} s ({v})' for v, t in c['train_step_s'].items())}"
        f"; validation {c['slices']} slices of {c['slice_hw'][0]}x{c['slice_hw'][1]} a study, "
        f"{c['slices'] * c['forward_slice_s']['baseline']:.3g} s (baseline); study load {c['load_study_s']:.3g} s "
        f"({c['sources'].get('load_study_s', '')}); random crops {c['sample_s']:.3g} s a volume",
        f"schedule: {len(steps)} steps and the benchmark; {len(kind['train'])} trainings "
        f"({sum(s['epochs'] for s in kind['train'])} epochs), {len(kind['prune'])} prunings "
        f"({sum(s['epochs'] for s in kind['prune'])} training epochs), {len(kind['evaluate'])} evaluations; "
        f"{n['training']}/{n['validation']}/{n['testing']} subjects (validation scores "
        f"{est['validation_subjects_scored']}), {est['steps_per_epoch']} training steps an epoch, "
        f"{sum(s['validations'] for s in steps)} validations",
        f"time: {format_duration(est['serial_s'])} one step at a time; {format_duration(est['parallel_s'])} at "
        f"{lanes['lanes']} at a time (benchmark {format_duration(est['benchmark_s'])}, alone)",
        f"memory: host {_gb(m['host_step_mb'])} a step ({_gb(m['host_process_mb'])} process, {_gb(m['host_data_mb'])}"
        f" data), {_gb(m['host_total_mb'])} in all of {_gb(m['host_available_mb'])}; device "
        f"{_gb(m['device_step_mb'])} a step of {_gb(m['device_total_mb'])}",
        f"steps at once: {lanes['lanes']} (CPU allows {lanes['cpu_lanes']}{fit}; limited by {lanes['limited_by']})",
    ]
    if est.get("generate_s"):
        lines.append(f"data: the synthetic set is generated first, about {format_duration(est['generate_s'])}")
    if m["host_available_mb"] and m["host_total_mb"] > m["host_available_mb"]:
        lines.append("memory: the steps at once need more host memory than this machine has; lower --workers")
    return [f"[estimate] {line}" for line in lines]


def plan_study(profile: Profile, data_dir: Optional[str] = None, seed: int = 0, root: Optional[Path] = None,
               echo: Callable[[str], None] = print, done: Collection[str] = ()) -> Dict[str, Any]:
    """Measure, estimate and print a study before it runs, and write ``estimate.json`` into ``root`` if given.

    Args:
        profile: the settings.
        data_dir: the BraTS folder, or ``None`` for the profile's synthetic set (its generation, when it is not
            there, is estimated, not started).
        seed: seed of the split.
        root: the study folder, or ``None`` to write nothing.
        echo: where the ``[estimate]`` lines go.
        done: steps already done.

    Returns:
        The estimate (:func:`estimate_study`), with ``generate_s``.

    Example::

        plan_study(get_profile("gpu", device="cpu"))  # prints the [estimate] lines
    """

    folder = str(Path(data_dir).resolve()) if data_dir else synthetic_folder(profile)
    at_hand = folder if data_dir is not None or (Path(folder) / "synthetic.json").is_file() else None
    est = estimate_study(profile, measure_unit_costs(profile, at_hand, data_dir),
                         section_counts(profile, at_hand, seed), done)
    est["generate_s"] = 0.0 if at_hand else (
        GENERATE_S_PER_MVOXEL * math.prod(profile.synthetic_shape) / 1e6 * profile.synthetic_cases)
    for line in format_estimate(est):
        echo(line)
    if root is not None:
        atomic_write_text(str(Path(root) / ESTIMATE_FILE), json.dumps(est, indent=2))
    return est
