"""The commands of ``raagr2``, one function per sub-command, and :data:`COMMANDS`, the mapping Fire dispatches.

Each command's docstring is its ``--help``. Each command imports what it needs when it runs, so ``raagr2 --help``
stays fast and a mistyped command line is refused (:mod:`.arguments`) before torch is imported.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict


def summary(out_channels: int = 5, size: int = 192, format: str = "table") -> str:
    """Print, per variant: parameters (in total and per part), FLOPs, state_dict size, and reductions vs the baseline.

    Args:
        out_channels: output channels of the networks (5 reproduces the thesis's Table 2 counts, 3 is TC/WT/ET).
        size: in-plane input size for the FLOP count (a multiple of 16).
        format: ``table`` or ``json`` (one object keyed by variant name).
    """
    from ..networks import NETWORKS, count_flops, count_parameters, get_network, parameters_per_part, state_dict_mb

    if format not in ("table", "json"):
        raise ValueError(f"format must be 'table' or 'json'; got {format!r}.")
    rows: Dict[str, dict] = {}
    for name in NETWORKS:
        net = get_network(name, out_channels=out_channels)
        rows[name] = {
            "class": type(net).__name__,
            "params": count_parameters(net),
            "params_per_part": parameters_per_part(net),
            "flops": count_flops(net, (1, net.in_channels, size, size)),
            "size_mb": round(state_dict_mb(net), 3),
        }
    base = rows["baseline"]
    for row in rows.values():
        row["reduction_pct"] = {
            key: round(100.0 * (1 - row[key] / base[key]), 2) for key in ("params", "flops", "size_mb")
        }
    if format == "json":
        return json.dumps(rows, indent=2)
    return _summary_table(rows, out_channels, size)


def _summary_table(rows: Dict[str, dict], out_channels: int, size: int) -> str:
    parts = list(next(iter(rows.values()))["params_per_part"])
    header = ["variant", "params"] + parts + ["GFLOPs", "MB", "params -%", "FLOPs -%", "MB -%"]
    lines = []
    for name, row in rows.items():
        red = row["reduction_pct"]
        lines.append(
            [name, f"{row['params']:,}"]
            + [f"{row['params_per_part'][p]:,}" for p in parts]
            + [f"{row['flops'] / 1e9:.3f}", f"{row['size_mb']:.2f}"]
            + [f"{red[k]:.1f}" for k in ("params", "flops", "size_mb")]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    fmt = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    note = (
        f"RAAGR2-Net variants, out_channels={out_channels}; FLOPs by torch.utils.flop_counter.FlopCounterMode at "
        f"(1, 4, {size}, {size}); MB = state_dict as saved by torch.save; reductions against the baseline."
    )
    return "\n".join([note, fmt(header), *map(fmt, lines)])


def synth(out: str, cases: int = 24, seed: int = 0, shape: tuple | str = (96, 96, 64), overwrite: bool = False) -> str:
    """Write a synthetic BraTS-like set (BraTS 2021 layout, plus grades.csv) and print what was written.

    Args:
        out: the folder to create.
        cases: number of cases; every third one is LGG (no enhancing tumour).
        seed: seed of the set (same seed, same files).
        shape: volume shape ``X,Y,Z`` (Fire gives a tuple; a string works too).
        overwrite: replace an existing folder.
    """
    from ..data.synthetic import case_grade, generate

    ids = generate(out, cases=cases, seed=seed, shape=shape, overwrite=overwrite)
    lgg = sum(case_grade(i) == "LGG" for i in range(len(ids)))
    return f"wrote {len(ids)} cases (HGG {len(ids) - lgg}, LGG {lgg}) of shape {shape} to {out}"


def datalist(
    data_dir: str, output: str, seed: int = 0, split: tuple | str = (0.7, 0.15, 0.15), grades_csv: str | None = None,
    check: bool = True,
) -> str:
    """Check a BraTS folder, split it by patient (stratified by grade) and write a MONAI datalist JSON.

    Args:
        data_dir: the BraTS folder (flat 2021 layout, or HGG/ and LGG/).
        output: the JSON file; its paths are relative to its folder.
        seed: seed of the split.
        split: training, validation and testing fractions, ``0.7,0.15,0.15``.
        grades_csv: optional CSV with columns case,grade (default: <data_dir>/grades.csv if present).
        check: read every volume (``--nocheck`` only checks that the files exist).
    """
    from ..constants import SECTIONS
    from ..data import write_datalist

    doc = write_datalist(data_dir, output, seed=seed, split=split, grades_csv=grades_csv, check=check)
    lines = [f"wrote {output} (seed {doc['seed']}, split {'/'.join(f'{f:g}' for f in doc['split'])})"]
    for name in SECTIONS:
        grades: Dict[str, int] = {}
        for entry in doc[name]:
            key = entry["grade"] or "unknown"
            grades[key] = grades.get(key, 0) + 1
        detail = ", ".join(f"{g} {n}" for g, n in sorted(grades.items()))
        lines.append(f"{name}: {len(doc[name])} cases" + (f" ({detail})" if detail else ""))
    return "\n".join(lines)


def bundles(root: str = "bundles", variants: str = "", license_file: str = "LICENSE") -> str:
    """(Re)write the configs, docs and LICENSE of the bundles from ``raagr2_monai.generator.configs``.

    Args:
        root: the folder holding one bundle per variant.
        variants: comma-separated variants (default: all four).
        license_file: the license copied into each bundle.
    """
    from ..generator.generate import write_bundles

    names = [v for v in str(variants).split(",") if v] or None
    written = write_bundles(root, names, license_file)
    return f"wrote {len(written)} files under {root}/"


def benchmark(
    variants: str | tuple | None = None, bundles: str | tuple | None = None, size: int = 192,
    batch: str | int | tuple = (1, 8), repeats: int = 10, warmup: int = 2, format: str = "table",
    output: str | None = None, device: str | None = None, memory: bool = True, train: bool = True,
    backends: str | tuple | None = None, threads: int | None = None, throughput: bool = False,
    train_batch: str | int | tuple = (16,), precision: str = "auto", channels_last: bool | None = None,
    compile: bool = False, peak_tflops: float | None = None,
) -> str:
    """Benchmark variants and bundles: parameters, size, FLOPs, latency, peak memory, training step, ratios to baseline.

    Args:
        variants: comma-separated variants (with neither variants nor bundles: all four).
        bundles: comma-separated bundle folders (a pruned bundle's models/model_sparse.pt gives its sparse size).
        size: in-plane size of the input slices (a multiple of 16).
        batch: batch sizes of the latency figures, ``1,8``; memory and the training step use the largest.
        repeats: timed runs per figure (median, p25, p75), after ``warmup`` untimed runs.
        warmup: untimed runs before the timed ones.
        format: ``table``, ``csv`` or ``json`` (keyed by model name, environment under ``_meta``).
        output: write to this file (atomically) instead of printing.
        device: ``cpu`` or ``cuda`` (default: CUDA when available).
        memory: measure peak memory (``--nomemory`` skips it; on CPU it starts one process per model).
        train: measure the training step (``--notrain`` skips it).
        backends: also time each model behind these inference backends on the CPU (``torch,onnxruntime,openvino``;
            each model is exported first), with the speed-up over the baseline's eager PyTorch of this run.
        threads: CPU threads of the backends (default: each runtime's own).
        throughput: also the training throughput at each ``train_batch``: slices per second, TFLOP/s, the share of
            the device's peak (``peak_tflops``, or the known peak of the GPU) and the step's peak memory, with
            ``precision`` (``auto``, ``bf16``, ``fp16``, ``fp32``), ``channels_last`` and ``compile`` (torch.compile).
    """
    from ..benchmark import BenchmarkSettings, benchmark_command

    settings = BenchmarkSettings(
        size=size, batches=batch, repeats=repeats, warmup=warmup, device=device, measure_memory=memory,
        train_step=train, backends=backends, threads=threads, throughput=throughput, train_batches=train_batch,
        precision=precision, channels_last=channels_last, compile=compile, peak_tflops=peak_tflops,
    )
    return benchmark_command(variants, bundles, settings, format, output)


def benchmark_metrics(lesions: int = 20, shape: str | tuple = (240, 240, 155), repeats: int = 5) -> str:
    """Time the scoring of one subject: the global BraTS metrics against the lesion-wise ones (the evaluation's
    ``brats2023-gli`` preset, and bipartite matching), on a generated study with ``lesions`` lesions per region.

    Args:
        lesions: lesions per region (the prediction misses one and adds two false positives).
        shape: the volume's shape ``X,Y,Z`` (a BraTS study by default).
        repeats: timed calls per figure (``time.perf_counter``; the median is printed).
    """
    from ..benchmark.scoring_time import scoring_command

    return scoring_command(lesions, shape, repeats)


def benchmark_data(
    data_dir: str, roi_size: int = 192, num_samples: int = 4, batch_size: int = 16, num_workers: int = 0,
    max_studies: int | None = None, validation: bool = True, validation_studies: int | None = None,
    variant: str = "baseline", weights: str | None = None, cache_dir: str | None = None, output: str | None = None,
) -> str:
    """Measure the data path before and after the compact study cache, then the validation pass with windows and
    with whole slices, side by side on the same studies (CPU).

    Args:
        data_dir: a BraTS folder (e.g. ``raagr2 synth DIR --cases 6 --shape 240,240,155``).
        roi_size: training crop and validation window (192: the thesis's).
        num_samples: slices drawn per study; batch_size: slices per training batch; num_workers: loader processes.
        max_studies: use the first so many studies.
        validation: also time the validation pass (``--novalidation`` skips it; windows take minutes per study).
        validation_studies: validate on the first so many studies (default: all).
        variant: the network validated; weights: its trained ``model.pt`` (default: initial weights).
        cache_dir: where the temporary caches go (the disk matters); output: also write the figures as JSON.
    """
    from ..benchmark.data import data_command

    return data_command(data_dir, roi_size, num_samples, batch_size, num_workers, max_studies, validation,
                        validation_studies, variant, weights, cache_dir, output)


def study(
    profile: str = "quick", data_dir: str | None = None, output: str | None = None, seed: int = 0,
    resume: bool = True, fresh: bool = False, workers: int | str | None = None, device: str | None = None,
    estimate_only: bool = False,
) -> str:
    """Rerun the thesis's compression study and write its report, tables, charts and MLflow runs.

    Trains the architectures, prunes the trained baseline (magnitude, SNIP, DepGraph at each ratio, with and without
    fine-tuning), builds the hybrid model (Depthwise Shared + DepGraph with channel counts in multiples of 8,
    fine-tuned; the full profile also with distillation), evaluates every model on the same test subjects, benchmarks
    them in one run, and writes ``<output>/report.md``; MLflow runs go to ``sqlite:///<output>/mlruns.db`` while they
    run. Before the first step it measures this machine's unit costs (a few seconds) and prints the study's estimated
    time and memory (``[estimate]`` lines, also in ``<output>/estimate.json``).

    Args:
        profile: ``quick`` (CPU, built-in synthetic data, 10-20 minutes on two cores), ``full`` (GPU, real BraTS,
            the thesis's schedule; needs ``--data_dir``), ``gpu`` (one GPU, about 16 minutes: the thesis's crops,
            batch and rows on a BraTS-size synthetic set of 60 studies, 21 of them test subjects) or ``tiny`` (a smoke
            run).
        data_dir: a BraTS folder (default: the built-in synthetic set).
        output: the study folder (default ``results/<profile>``).
        seed: seed of the split, training and pruning.
        resume: continue the study found in ``output`` (``--noresume`` refuses to touch it).
        fresh: delete the study found in ``output`` and start over.
        workers: trainings, prunings and evaluations run at once, each in a process with its share of the CPU
            threads, or ``auto`` (one per 1 + loader processes CPUs); on CUDA no more than the device's memory holds
            (default: the profile's; quick 2, full 1, gpu auto).
        device: ``cpu``, ``cuda`` or ``cuda:<index>`` for every training, evaluation and the benchmark (default: the
            profile's; CUDA when available, the tiny profile the CPU).
        estimate_only: print the estimate and stop (nothing is trained, generated or written).
    """
    from ..study import run_study

    overrides = {name: value for name, value in (("workers", workers), ("device", device)) if value is not None}
    result = run_study(profile, data_dir=data_dir, output=output, seed=seed, resume=resume, fresh=fresh,
                       estimate_only=estimate_only, **overrides)
    if estimate_only:
        return "estimate only: nothing was run"
    return f"report: {result.root / 'report.md'}"


def segment(
    bundle: str, output_dir: str, dataset_dir: str | None = None, datalist: str | None = None,
    ckpt_path: str | None = None, device: str | None = None, roi_size: int | str | tuple | None = None, repeat: int = 1,
    backend: str = "torch", threads: int | None = None, whole_slice: bool | None = None,
    sw_batch_size: int | None = None, skip_empty: bool | None = None, precision: str | None = None,
    uncertainty: str | None = None, uncertainty_samples: int | None = None,
) -> str:
    """Segment every study of a folder (or a datalist's testing section) with a bundle; print, per study, the label map
    written and the seconds of each stage (load, preprocess, network, invert, postprocess, write; uncertainty), and
    with ``--uncertainty`` the study's uncertainty score.

    Args:
        bundle: the bundle folder (a pruned bundle included).
        output_dir: where the label maps go (``<case>_pred.nii.gz``, on each study's own grid).
        dataset_dir: a folder of studies (BraTS case folders, a Decathlon ``dataset.json``, or 4D NIfTI files).
        datalist: a datalist JSON instead of ``dataset_dir`` (``raagr2 datalist`` writes one).
        ckpt_path: the weights (default: the bundle's ``models/model.pt``).
        device: ``cpu`` or ``cuda`` (default: CUDA when available).
        roi_size: in-plane size of the network's slices, ``96`` or ``96,96`` (default: the bundle's).
        repeat: runs per study; with more than one, each stage's median (a benchmark of one study, end to end).
        backend: ``torch``, or ``onnxruntime`` / ``openvino`` to run the bundle's export (``raagr2 export`` first).
        threads: CPU threads of the backend (default: the runtime's own).
        whole_slice: the network on whole slices, ``sw_batch_size`` at a time (default: the bundle's, on);
            ``--whole_slice false`` slides ``roi_size`` windows instead (slower; the network sees another context).
        sw_batch_size: slices (windows, without ``whole_slice``) per network call (default: the bundle's, 8).
        skip_empty: windows without brain get the network's output for zeros, computed once (the same label map;
            default: on; ``--noskip_empty`` runs the network on every window).
        precision: autocast on CUDA, ``auto`` (bf16 where the GPU has it, else fp16), ``bf16``, ``fp16`` or ``fp32``
            (default: the bundle's ``amp_precision``, as its evaluator uses); with ``--backend openvino`` what the CPU
            computes in (``auto``: bf16 on a CPU with a bfloat16 unit, else fp32; ``bf16`` or ``fp32``).
        uncertainty: ``none``, ``tta`` (each slice and its in-plane flips) or ``mc_dropout`` (dropout on, BatchNorm on
            its running statistics; torch backend only): the label map comes from the mean prediction, and each study
            gets ``<case>_uncertainty.nii.gz`` (voxel-wise entropy, on its own grid) and a row of ``uncertainty.csv``
            (default: the bundle's, ``none``).
        uncertainty_samples: predictions per slice, at least 2 (at most 4 for ``tta``; default: the bundle's, 4).
    """
    from ..deploy.segment import SegmentSettings, segment_command

    settings = SegmentSettings(
        ckpt_path=ckpt_path, device=device, roi_size=roi_size, repeat=repeat, backend=backend, threads=threads,
        whole_slice=whole_slice, sw_batch_size=sw_batch_size, skip_empty=skip_empty, precision=precision,
        uncertainty=uncertainty, uncertainty_samples=uncertainty_samples,
    )
    return segment_command(bundle, output_dir, dataset_dir, datalist, settings)


def export(
    bundle: str, formats: str | tuple = "onnx,openvino", opset: int | None = None, tolerance: float | None = None,
    dynamo: bool = False,
) -> str:
    """Export a trained bundle's network to ONNX and/or OpenVINO IR beside its weights, checked against PyTorch.

    Args:
        bundle: the bundle folder (a pruned bundle included).
        formats: ``onnx``, ``openvino`` or ``onnx,openvino``.
        opset: the ONNX opset (default: ``raagr2_monai.deploy.DEFAULT_OPSET``).
        tolerance: largest absolute difference from the exact (fp64) probabilities allowed, or 4 times eager
            PyTorch's own fp32 error where that is larger (default: ``raagr2_monai.deploy.PARITY_TOLERANCE``).
        dynamo: use the dynamo exporter of ``torch.onnx.export`` instead of the TorchScript one.
    """
    from ..deploy.export_cli import export_command

    # the defaults live with the exporter; naming them here would import torch before any option is checked
    given = {name: value for name, value in (("opset", opset), ("tolerance", tolerance)) if value is not None}
    return export_command(bundle, formats, dynamo=dynamo, **given)


def federated(
    variant: str | None = None, bundle: str | None = None, clients: int = 3, rounds: int = 5, local_epochs: int = 1,
    split: str = "iid", data_dir: str | None = None, datalists: str | tuple | None = None, output: str | None = None,
    seed: int = 0, min_clients: int | None = None, resume: bool = True, device: str | None = None,
    roi_size: int | str | tuple | None = None, batch_size: int | None = None,
) -> str:
    """Train a bundle with federated averaging (FedAvg) across clients in NVIDIA FLARE's simulator and write the
    global model as a bundle.

    Each client runs the bundle's own ``configs/train.json`` through MONAI's ``MonaiAlgo`` (``monai-nvflare``'s
    ``ClientAlgoExecutor``) on its share of the studies, split by patient; the server averages the clients' updates
    each round (NVFlare's ``ScatterAndGather``), writes the global model atomically after every round and goes on when
    a client fails as long as ``--min_clients`` answered. Writes, under ``--output``: ``bundle/`` (the source's configs
    and ``models/model.pt``), ``bytes.json`` (bytes each client received and sent, per round, from the state dicts),
    ``job/`` (the NVFlare job), ``datalists/``, ``global/`` (the model between rounds) and ``workspace/`` (logs).

    Args:
        variant: a shipped variant's bundle (``baseline``, ``depthwise``, ``paired``, ``encdec``), or
        bundle: any bundle folder (a DepGraph-pruned bundle federates with its pruned structure).
        clients: number of simulated clients (``site-1`` ...); each needs at least two studies.
        rounds: FedAvg rounds in all.
        local_epochs: epochs each client trains per round.
        split: how studies are dealt to clients: ``iid``, ``grade`` (non-IID: grades skewed across clients) or
            ``scanner`` (IID, each client's images with its own intensity scale and offset after normalisation).
        data_dir: a BraTS folder to split (default: the built-in synthetic set).
        datalists: one datalist per client, ``a.json,b.json`` (training and validation sections), instead of
            splitting ``--data_dir``.
        output: the output folder (default ``results/federated/<bundle name>``).
        seed: seed of the split, the scanner shifts and the initial weights.
        min_clients: results the server needs each round (default: all clients).
        resume: continue from the last finished round in ``--output`` (``--noresume`` starts over).
        device: ``cpu`` or ``cuda`` for the clients (default: the bundle's, CUDA when available).
        roi_size: in-plane training crop, ``96`` or ``96,96`` (default: the bundle's).
        batch_size: training batch size (default: the bundle's).
    """
    from ..federated import run_federated

    overrides = {}
    if roi_size is not None:
        from ..data import parse_roi_size

        overrides["roi_size"] = parse_roi_size(roi_size)
    if batch_size is not None:
        overrides["batch_size"] = int(batch_size)
    result = run_federated(variant=variant, bundle=bundle, clients=clients, rounds=rounds, local_epochs=local_epochs,
                           split=split, data_dir=data_dir, datalists=datalists, output=output, seed=seed,
                           min_clients=min_clients, resume=resume, device=device, overrides=overrides)
    ran = f"{result.ran_rounds} round(s) run" if result.ran_rounds else "nothing left to run"
    with open(result.bytes_report) as f:
        total = json.load(f)["total"]
    return (f"global bundle: {result.bundle} ({result.rounds_done} round(s) done, {ran}); "
            f"bytes sent {total['server_to_client']} to clients, {total['client_to_server']} to the server "
            f"({result.bytes_report})")


COMMANDS: Dict[str, Callable[..., Any]] = {
    "summary": summary,
    "bundles": bundles,
    "synth": synth,
    "datalist": datalist,
    "benchmark": benchmark,
    "benchmark_metrics": benchmark_metrics,
    "benchmark_data": benchmark_data,
    "study": study,
    "segment": segment,
    "export": export,
    "federated": federated,
}
