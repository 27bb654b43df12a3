"""The ``raagr2`` command line (Python Fire): one sub-command per job.

Each command imports what it needs when it runs, so ``raagr2 --help`` stays fast and a mistyped command line is
refused at once. Before Fire dispatches, :func:`check_command_line` checks the line against the chosen command's
signature: an unknown command or option, or a value with no parameter to take it, ends in one ``error:`` line (exit
status 2) before anything runs. A command's user error (a missing file, a bad setting: :func:`user_error`) ends in
one ``error:`` line too (exit status 1); ``--verbose`` anywhere on the line, or ``RAAGR2_VERBOSE=1``, shows its
traceback instead.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import re
import sys
import typing
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple

import fire


def summary(out_channels: int = 5, size: int = 192, format: str = "table") -> str:
    """Print, per variant: parameters (in total and per part), FLOPs, state_dict size, and reductions vs the baseline.

    Args:
        out_channels: output channels of the networks (5 reproduces the thesis's Table 2 counts, 3 is TC/WT/ET).
        size: in-plane input size for the FLOP count (a multiple of 16).
        format: ``table`` or ``json`` (one object keyed by variant name).
    """
    from .networks import NETWORKS, count_flops, count_parameters, get_network, parameters_per_part, state_dict_mb

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
    from .data.synthetic import case_grade, generate

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
    from .constants import SECTIONS
    from .data import write_datalist

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
    """(Re)write the configs, docs and LICENSE of the bundles from ``raagr2_monai.bundle.configs``.

    Args:
        root: the folder holding one bundle per variant.
        variants: comma-separated variants (default: all four).
        license_file: the license copied into each bundle.
    """
    from .bundle.generate import write_bundles

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
    from .benchmark import benchmark_command

    return benchmark_command(
        variants, bundles, size, batch, repeats, warmup, format, output, device, memory, train, backends, threads,
        throughput, train_batch, precision, channels_last, compile, peak_tflops,
    )


def benchmark_metrics(lesions: int = 20, shape: str | tuple = (240, 240, 155), repeats: int = 5) -> str:
    """Time the scoring of one subject: the global BraTS metrics against the lesion-wise ones (the evaluation's
    ``brats2023-gli`` preset, and bipartite matching), on a generated study with ``lesions`` lesions per region.

    Args:
        lesions: lesions per region (the prediction misses one and adds two false positives).
        shape: the volume's shape ``X,Y,Z`` (a BraTS study by default).
        repeats: timed calls per figure (``time.perf_counter``; the median is printed).
    """
    from .benchmark.metrics import scoring_command

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
    from .benchmark.data import data_command

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
            the thesis's schedule; needs ``--data_dir``), ``gpu`` (one GPU, about 15 minutes: the thesis's crops,
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
    from .study import run_study

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
) -> str:
    """Segment every study of a folder (or a datalist's testing section) with a bundle; print, per study, the label map
    written and the seconds of each stage (load, preprocess, network, invert, postprocess, write).

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
    """
    from .deploy.segment import segment_command

    return segment_command(
        bundle, output_dir, dataset_dir, datalist, ckpt_path, device, roi_size, repeat, backend, threads,
        whole_slice, sw_batch_size, skip_empty, precision=precision,
    )


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
    from .deploy.command import export_command

    # the defaults live with the exporter; naming them here would import torch before any option is checked
    given = {name: value for name, value in (("opset", opset), ("tolerance", tolerance)) if value is not None}
    return export_command(bundle, formats, dynamo=dynamo, **given)


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
}

#: Exit status of a command line that does not fit its command (Fire's own usage errors exit with 2 too).
USAGE_ERROR = 2
#: Exit status of a user error raised by a command.
USER_ERROR = 1
#: Fire's help flags, which Fire also takes after a lone ``--`` (``raagr2 summary -- --help``).
_HELP = ("-h", "--help")
#: Shows a user error's traceback; taken off the line before Fire reads it.
_VERBOSE = "--verbose"


class UsageError(Exception):
    """A command line that does not fit the chosen command; the message is the whole error line."""


def _is_flag(token: str) -> bool:
    """Fire's test for a flag (``--name``, ``-n``), which leaves negative numbers as values."""
    return token.startswith("--") or re.match(r"^-[a-zA-Z]", token) is not None


def _closest(word: str, choices: Sequence[str]) -> Optional[str]:
    """The choice closest to a misspelt ``word`` (``difflib``), or ``None`` when none is close."""
    matches = difflib.get_close_matches(word, choices, n=1)
    return matches[0] if matches else None


def _keyword(command: str, flag: str, is_alone: bool, names: Sequence[str], booleans: Sequence[str]) -> str:
    """The parameter a flag sets, resolved as Fire does (``fire.core._ParseKeywordArgs``).

    Args:
        command: ``raagr2 <command>``, for messages.
        flag: the flag as given, without ``=value``.
        is_alone: no value follows (the last token, or a flag follows): ``--name`` is true, ``--noname`` false.
        names: the command's parameters.
        booleans: the switches (:func:`_switches`), the only parameters a flag alone sets (``--name`` true,
            ``--noname`` false).

    Returns:
        The parameter's name.

    Raises:
        UsageError: no parameter fits, naming the closest one (or listing them all); a one-letter flag that
            several parameters start with; a flag without a value for a parameter that is not boolean.
    """
    key = flag.lstrip("-").replace("-", "_")
    if is_alone and key.startswith("no") and key[2:] in booleans and key not in names:
        return key[2:]
    short = [name for name in names if len(key) == 1 and name[0] == key]
    if len(short) > 1:
        raise UsageError(f"{command}: {flag} is ambiguous; use one of {', '.join('--' + n for n in short)}.")
    keyword = key if key in names else short[0] if short else None
    if keyword is not None:
        # Fire would pass True (``bundles --root`` builds paths from a bool): a forgotten value, not a switch
        if is_alone and keyword not in booleans:
            raise UsageError(f"{command}: {flag} needs a value ({flag} VALUE or {flag}=VALUE).")
        return keyword
    close = _closest(key, [*names, *("no" + name for name in booleans)])
    if close is not None:
        raise UsageError(f"{command} has no option {flag}; did you mean --{close}?")
    raise UsageError(f"{command} has no option {flag}; its options: {', '.join('--' + n for n in names) or 'none'}.")


def _switches(function: Callable[..., Any], params: Sequence[inspect.Parameter]) -> List[str]:
    """The parameters a flag alone sets, as Fire reads ``--name`` and ``--noname``: those with a boolean default, and
    the optional booleans (``bool | None``, unset meaning "the bundle's setting": ``segment --whole_slice``)."""
    hints = typing.get_type_hints(inspect.unwrap(function))
    return [p.name for p in params
            if isinstance(p.default, bool) or set(typing.get_args(hints.get(p.name))) == {bool, type(None)}]


def check_arguments(command: str, function: Callable[..., Any], args: Sequence[str]) -> None:
    """Check a command's arguments against its signature, as Fire will read them, without running it.

    Fire's forms: ``--name value``, ``--name=value``, ``--name`` alone (true), ``--noname`` (false), ``-n`` for the
    only parameter starting with ``n``, hyphens for underscores; values without a flag fill, in order, the parameters
    not named.

    Args:
        command: ``raagr2 <command>``, for messages.
        function: the command's function.
        args: the arguments after the command's name (and before a lone ``--``).

    Raises:
        UsageError: an unknown or ambiguous option, an option of a parameter that is not boolean without a value,
            more values than parameters left to take them, or a required parameter without a value.
    """
    params = list(inspect.signature(function).parameters.values())
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    booleans = _switches(function, params)
    any_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
    named, values = set(), []
    skip_value = False
    for index, token in enumerate(args):
        if skip_value:
            skip_value = False
        elif not _is_flag(token):
            values.append(token)
        else:
            has_value = "=" in token
            is_alone = not has_value and (index + 1 == len(args) or _is_flag(args[index + 1]))
            flag = token.split("=", 1)[0]
            if not any_keyword:
                named.add(_keyword(command, flag, is_alone, names, booleans))
            skip_value = not has_value and not is_alone
    open_slots = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in named]
    if len(values) > len(open_slots) and not any(p.kind is p.VAR_POSITIONAL for p in params):
        slots = ", ".join(p.name for p in open_slots) or "its parameters are all named"
        raise UsageError(
            f"{command} takes at most {len(open_slots)} value(s) without an option here ({slots}); "
            f"got {len(values)}: {' '.join(values)}."
        )
    filled = named | {p.name for p in open_slots[: len(values)]}
    missing = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and p.name not in filled]
    if missing:
        raise UsageError(f"{command} needs {', '.join('--' + name for name in missing)}.")


def check_command_line(args: Sequence[str], commands: Mapping[str, Callable[..., Any]] = COMMANDS) -> List[str]:
    """Refuse, before anything runs, a command line that Fire would not run as meant.

    Args:
        args: the arguments after ``raagr2``.
        commands: the commands by name.

    Returns:
        The arguments for Fire: ``args``, except that a help flag after a command gives ``<command> --help``
        (Fire shows help only for a help flag right after the command; further on it would run the command with
        the other values first).

    Raises:
        UsageError: an unknown command, or arguments that do not fit it (:func:`check_arguments`); help requests
            (``--help``, ``-h``) and a bare ``raagr2`` pass, for Fire to answer.

    Example::

        >>> check_command_line(["summary", "--size", "32", "--format=json"])
        ['summary', '--size', '32', '--format=json']
        >>> check_command_line(["summary", "--size", "32", "--help"])
        ['summary', '--help']
        >>> check_command_line(["summary", "--out_channel", "3"])
        Traceback (most recent call last):
        ...
        raagr2_monai.cli.UsageError: raagr2 summary has no option --out_channel; did you mean --out_channels?
    """
    args = list(args)
    mine = args
    if "--" in args:  # Fire's own flags follow the last lone "--"
        mine = args[: len(args) - 1 - args[::-1].index("--")]
    if not mine or mine[0] in _HELP:
        return args
    name, rest = mine[0], mine[1:]
    if name not in commands:
        close = None if _is_flag(name) else _closest(name, list(commands))
        hint = f"did you mean {close}?" if close else f"commands: {', '.join(commands)}."
        raise UsageError(f"raagr2 has no command {name}; {hint}")
    if any(token in _HELP for token in rest):
        return [name, "--help"]
    check_arguments(f"raagr2 {name}", commands[name], rest)
    return args


def _user_error_types() -> Tuple[type, ...]:
    """What counts as the user's error: bad settings or input (``ValueError``: BraTSDataError,
    CheckpointMismatchError and ExportMismatchError are ones), files that are missing, in the way or not readable,
    and an export that failed its parity check."""
    types: List[type] = [ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                         PermissionError]
    # an ExportParityError can only have been raised once its module was imported: no import here, which would
    # pull torch and the exporters in to print an error
    export = sys.modules.get("raagr2_monai.deploy.export")
    if export is not None:
        types.append(export.ExportParityError)
    return tuple(types)


def user_error(error: BaseException) -> Optional[BaseException]:
    """The user error behind ``error``: itself, or one it was raised from (MONAI's config parser wraps the errors of
    a config's expressions in a ``RuntimeError``); ``None`` for anything else, a bug whose traceback is wanted.

    Args:
        error: what a command raised.

    Returns:
        The user error, or ``None``.
    """
    types = _user_error_types()
    cause: Optional[BaseException] = error
    while cause is not None:
        if isinstance(cause, types) or _is_key_message(cause):
            return cause
        cause = cause.__cause__
    return None


def _is_key_message(error: BaseException) -> bool:
    """A ``KeyError`` that explains itself (a datalist entry without ``image``, masks for another network): its
    argument is a sentence. A bare key (``KeyError: 'x'``) is a failed lookup, a bug whose traceback is wanted."""
    return isinstance(error, KeyError) and len(error.args) == 1 and " " in str(error.args[0])


def _message(error: BaseException) -> str:
    """An error's message: a ``KeyError`` shows its argument, not its ``repr``."""
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    return str(error) or type(error).__name__


def _fail(message: str, status: int) -> NoReturn:
    """End ``raagr2`` with one ``error:`` line on stderr and exit status ``status``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run ``raagr2``: check the command line, then let Fire dispatch it.

    Args:
        argv: the arguments after ``raagr2`` (default ``sys.argv[1:]``).

    Raises:
        SystemExit: 2 for a command line that does not fit its command, 1 for a user error (:func:`user_error`),
            each after one ``error:`` line on stderr; whatever Fire raises for its own errors and help.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = _VERBOSE in args or os.environ.get("RAAGR2_VERBOSE", "").lower() not in ("", "0", "false", "no")
    args = [arg for arg in args if arg != _VERBOSE]
    try:
        args = check_command_line(args)
    except UsageError as err:
        _fail(str(err), USAGE_ERROR)
    try:
        fire.Fire(COMMANDS, command=args, name="raagr2")
    except Exception as err:  # noqa: BLE001 - a user error ends in its message, anything else in its traceback
        cause = user_error(err)
        if verbose or cause is None:
            raise
        _fail(_message(cause), USER_ERROR)


if __name__ == "__main__":
    main()
