"""The ``raagr2`` command line (Python Fire): one sub-command per job.

Each command imports what it needs when it runs, so ``raagr2 --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Dict

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
    """
    from .benchmark import benchmark_command

    return benchmark_command(variants, bundles, size, batch, repeats, warmup, format, output, device, memory, train)


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


def study(
    profile: str = "quick", data_dir: str | None = None, output: str | None = None, seed: int = 0,
    resume: bool = True, fresh: bool = False,
) -> str:
    """Rerun the thesis's compression study and write its report, tables, charts and MLflow runs.

    Trains the architectures, prunes the trained baseline (magnitude, SNIP, DepGraph at each ratio, with and without
    fine-tuning), evaluates every model on the same test subjects, benchmarks them in one run, and writes
    ``<output>/report.md``; MLflow runs go to ``sqlite:///<output>/mlruns.db``.

    Args:
        profile: ``quick`` (CPU, built-in synthetic data, about 20 minutes on two cores), ``full`` (GPU, real BraTS,
            the thesis's schedule; needs ``--data_dir``) or ``tiny`` (a smoke run).
        data_dir: a BraTS folder (default: the built-in synthetic set).
        output: the study folder (default ``results/<profile>``).
        seed: seed of the split, training and pruning.
        resume: continue the study found in ``output`` (``--noresume`` refuses to touch it).
        fresh: delete the study found in ``output`` and start over.
    """
    from .study import run_study

    result = run_study(profile, data_dir=data_dir, output=output, seed=seed, resume=resume, fresh=fresh)
    return f"report: {result.root / 'report.md'}"


COMMANDS = {
    "summary": summary,
    "bundles": bundles,
    "synth": synth,
    "datalist": datalist,
    "benchmark": benchmark,
    "benchmark_metrics": benchmark_metrics,
    "study": study,
}


def main() -> None:
    fire.Fire(COMMANDS, name="raagr2")


if __name__ == "__main__":
    main()
