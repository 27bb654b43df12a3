"""The workflows of the GPU check (``tools/gpu_check.py``), each run in its own process as a user runs it, and what
their logs and outputs say: seconds per training step, the best validation Dice, an evaluation's mean Dice, the label
maps written, the training throughput table.

:class:`Workflows` is the half of :class:`gpu_check.Check` that knows the workflows; ``gpu_check.py`` keeps the
running of commands, the lanes and the report.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]

#: The study's trainings, prunings and evaluations, run from Python: the command line has no option for the profile
#: fields that the check shortens (epochs, ratios, benchmark backends), which ``run_study`` takes as overrides.
STUDY_PROGRAM = (
    "import json, sys; from raagr2_monai.study import run_study; "
    "run_study(sys.argv[1], **{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[2]).items()})"
)

def failure_line(output: str) -> str:
    """The line that says why a command failed: its last ``error:`` or exception line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:") or re.match(r"[\w.]*(Error|Exception|Interrupt)\b", line):
            return line[:200]
    return lines[-1][:200] if lines else "no output"


TIMESTAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
ITERATION = re.compile(TIMESTAMP + r" .*Epoch: (\d+)/\d+, Iter: (\d+)/\d+")
BEST_DICE = re.compile(r"Key metric: val_mean_dice best value: ([-\d.e]+)")
#: ``torchrun --standalone --nproc_per_node=1 -m``: one process, so ``--device cuda`` is its LOCAL_RANK's GPU;
#: ``--standalone`` takes a free rendezvous port rather than 29500, which another run may hold.
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m")


class Failed(Exception):
    """A workflow whose command failed or whose outcome is wrong; the message is the table's figure."""


class Skipped(Exception):
    """A workflow left out (``--skip``, or nothing to run); the message says why."""


def step_seconds(log: str) -> Optional[float]:
    """Median seconds per iteration between consecutive ``Iter: i/n`` lines of an epoch in the Ignite log, divided
    by the iterations between them (a trainer may log every n-th iteration only); each epoch's first logged
    iteration, which carries the data loader's start and cuDNN's autotuning, starts no gap."""
    stamps: Dict[int, List[Tuple[datetime, int]]] = {}
    for match in ITERATION.finditer(log):
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
        stamps.setdefault(int(match.group(2)), []).append((stamp, int(match.group(3))))
    gaps = [(b - a).total_seconds() / (j - i) for times in stamps.values()
            for (a, i), (b, j) in zip(times, times[1:]) if j > i]
    return statistics.median(gaps) if gaps else None


def steps_run(log: str) -> int:
    """Training iterations the log reports."""
    return len(ITERATION.findall(log))


def mean_dice(summary_csv: Path) -> str:
    """``mean Dice M (TC/WT/ET) on N`` from an evaluation's ``metrics_summary.csv``."""
    with summary_csv.open() as handle:
        rows = {row["statistic"]: row for row in csv.DictReader(handle)}
    regions = [float(rows["mean"][f"dice_{region}"]) for region in ("TC", "WT", "ET")]
    known = [value for value in regions if not math.isnan(value)]
    overall = sum(known) / len(known) if known else float("nan")
    count = int(float(rows["count"]["dice_WT"]))
    return f"mean Dice {overall:.3f} ({'/'.join(f'{v:.2f}' for v in regions)} TC/WT/ET), {count} subject(s)"


def label_maps(folder: Path) -> Dict[str, Path]:
    """The ``<case>_pred.nii.gz`` files under ``folder``, by file name."""
    return {path.name: path for path in folder.rglob("*_pred.nii.gz")}


class Workflows:
    """Every workflow of the pass, as methods returning the table's key figure (or raising :class:`Failed` or
    :class:`Skipped`). A mixin of :class:`gpu_check.Check`, which gives it ``args``, ``work``, ``data``,
    ``datalist``, ``bundle``, ``pct``, ``sections`` (extra report sections) and the command runners ``run``,
    ``raagr2`` and ``bundle_run``."""

    # settings shared by the bundle workflows -----------------------------------------------------------------------

    def data_options(self) -> List[object]:
        """Data, device and window options of every bundle run."""
        size = self.args.size
        return ["--datalist", self.datalist, "--device", self.args.device, "--roi_size", f"[{size},{size}]",
                "--num_workers", self.args.num_workers]

    def train_options(self, epochs: int) -> List[object]:
        """Options of a bundle training (or fine-tuning): batch, slices per volume and epochs."""
        return [*self.data_options(), "--batch_size", self.args.batch, "--num_samples", self.args.samples,
                "--epochs", epochs]

    def copy_bundle(self, target: Path) -> Path:
        """A copy of the shipped bundle's configs, docs and LICENSE: runs write their models and runs into it."""
        shutil.copytree(ROOT / "bundles" / self.args.variant, target,
                        ignore=shutil.ignore_patterns("runs", "models", "pruned"))
        return target

    def training_figure(self, log: str) -> str:
        """Seconds per step and the best validation Dice of a training's log."""
        seconds, dice = step_seconds(log), BEST_DICE.findall(log)
        pace = f"{seconds:.3f} s/step" if seconds is not None else "s/step n/a"
        return f"{pace} ({steps_run(log)} steps), best val mean Dice {float(dice[-1]):.3f}" if dice else pace

    # the workflows -------------------------------------------------------------------------------------------------

    def cuda_tests(self) -> str:
        """``pytest -m cuda tests/cuda`` on ``--device`` (``RAAGR2_TEST_DEVICE``)."""
        if not (ROOT / "tests" / "cuda").is_dir():
            raise Skipped("tests/cuda is not there")
        output = self.run("cuda-tests", [sys.executable, "-m", "pytest", "-m", "cuda", "tests/cuda", "-q",
                                         "-p", "no:cacheprovider"], cwd=ROOT)
        summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
        return summary[-1].strip("= ") if summary else "passed"

    def make_data(self) -> str:
        """The synthetic BraTS-like set (``raagr2 synth``) and its datalist (``raagr2 datalist``).

        ``raagr2 synth`` writes one case after another, 10-20 s each at BraTS size; the set is written in parts,
        one per CPU core, each with its own seed, and put together. Every third case of a part is lower grade, so
        parts of one case (a GPU machine's many cores) make a set of higher-grade cases only.
        """
        cases, shape = self.args.cases, ",".join(map(str, self.args.shape))
        per_part = math.ceil(cases / min(cases, os.cpu_count() or 1))
        parts = [min(per_part, cases - start) for start in range(0, cases, per_part)]
        folders = [self.work / "synth" / f"part{index}" for index in range(len(parts))]

        def write(part: int) -> None:
            self.raagr2(f"synth-{part}", "synth", "--out", folders[part], "--cases", parts[part], "--seed", part,
                        "--shape", shape)

        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            list(pool.map(write, range(len(parts))))
        self.data.mkdir()
        grades = []
        for index, folder in enumerate(folders):
            with (folder / "grades.csv").open() as handle:
                for row in csv.DictReader(handle):
                    # BraTS 2021 layout: the case id names the folder and starts every file name in it
                    new = f"SynthBraTS_{index:02d}{row['case'][-3:]}"
                    shutil.move(str(folder / row["case"]), str(self.data / new))
                    for path in (self.data / new).iterdir():
                        path.rename(path.with_name(path.name.replace(row["case"], new)))
                    grades.append((new, row["grade"]))
        with (self.data / "grades.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([("case", "grade"), *grades])
        self.raagr2("datalist", "datalist", "--data_dir", self.data, "--output", self.datalist, "--nocheck")
        split = json.loads(self.datalist.read_text())
        sections = "/".join(str(len(split[name])) for name in ("training", "validation", "testing"))
        lower = sum(grade == "LGG" for _, grade in grades)
        return f"{cases} cases of {shape} ({cases - lower} HGG, {lower} LGG), train/val/test {sections}"

    def train(self) -> str:
        """``monai.bundle run training`` with AMP on CUDA, logged to MLflow."""
        self.copy_bundle(self.bundle)
        log = self.bundle_run("train", "training", self.bundle, ["train"], *self.train_options(self.args.epochs),
                              "--tracking", "mlflow")
        settings = json.loads((self.bundle / "runs" / "train" / "run.json").read_text())["settings"]
        if settings["amp"] is not self.args.device.startswith("cuda"):
            raise Failed(f"AMP {'off' if not settings['amp'] else 'on'} on {settings['device']}")
        if not (self.bundle / "models" / "model.pt").is_file():
            raise Failed("no models/model.pt")
        return self.training_figure(log)

    def evaluate(self) -> str:
        """``monai.bundle run evaluating`` of the trained bundle on the test subjects."""
        self.bundle_run("evaluate", "evaluating", self.bundle, ["train", "evaluate"], *self.data_options())
        return mean_dice(self.bundle / "runs" / "evaluate" / "metrics_summary.csv")

    def infer(self) -> str:
        """``monai.bundle run inferring`` on the test subjects."""
        start = time.perf_counter()
        self.bundle_run("infer", "inferring", self.bundle, ["inference"], *self.data_options(),
                        "--output_dir", self.work / "infer")
        seconds = time.perf_counter() - start
        written = label_maps(self.work / "infer")
        if not written:
            raise Failed("no label map written")
        return f"{len(written)} label map(s), {seconds / len(written):.1f} s each with the process's start"

    def segment(self) -> str:
        """``raagr2 segment`` on the same subjects: its label maps must equal ``run inferring``'s voxel for voxel."""
        import nibabel as nib
        import numpy as np

        output = self.raagr2("segment", "segment", self.bundle, "--datalist", self.datalist, "--output_dir",
                             self.work / "segment", "--device", self.args.device, "--roi_size", self.args.size)
        inferred, segmented = label_maps(self.work / "infer"), label_maps(self.work / "segment")
        if not segmented or set(segmented) != set(inferred):
            raise Failed(f"label maps {sorted(segmented)} against run inferring's {sorted(inferred)}")
        differ = sum(int((np.asarray(nib.load(segmented[name]).dataobj)
                          != np.asarray(nib.load(inferred[name]).dataobj)).sum()) for name in segmented)
        if differ:
            raise Failed(f"{differ} voxels differ from run inferring's label maps")
        network = [float(v) for v in re.findall(r"network ([\d.]+) s", output)]
        total = re.findall(r"median ([\d.]+) s per study", output)
        pace = f"{float(total[-1]):.2f} s per study" if total else "s per study n/a"
        return f"{pace} (network {statistics.median(network):.2f} s), same label map as run inferring"

    def prune(self, method: str) -> str:
        """``monai.bundle run pruning`` of the trained bundle by ``method`` at ``--ratio``, fine-tuned."""
        self.bundle_run(f"prune-{method}", "pruning", self.bundle, ["train", "prune"],
                        *self.train_options(self.args.finetune_epochs), "--method", method, "--ratio",
                        self.args.ratio, "--finetune_epochs", self.args.finetune_epochs)
        record = json.loads((self.bundle / "pruned" / f"{method}-{self.pct}" / "pruning.json").read_text())
        return (f"{record['achieved_kind']} {record['achieved']:.1%} (asked {self.args.ratio:.0%}), "
                f"val mean Dice {record['val_mean_dice']:.3f}")

    def multi_gpu(self) -> str:
        """A torchrun training of one epoch in one process (NCCL on CUDA, gloo on the CPU)."""
        bundle = self.copy_bundle(self.work / "ddp" / self.args.variant)
        return self.training_figure(self.bundle_run("multi-gpu", "training", bundle, ["train", "multi_gpu_train"],
                                                    *self.train_options(1), launcher=TORCHRUN))

    def multi_gpu_resume(self) -> str:
        """The torchrun training continued from its ``last.pt`` for a second epoch (``--resume true``)."""
        bundle = self.work / "ddp" / self.args.variant
        log = self.bundle_run("multi-gpu-resume", "training", bundle, ["train", "multi_gpu_train"],
                              *self.train_options(2), "--resume", "true", launcher=TORCHRUN)
        resumed = re.findall(r"Resumed from .* at epoch (\d+)", log)
        if resumed != ["1"]:
            raise Failed(f"resumed at epoch(s) {resumed}, not once at epoch 1")
        return f"resumed at epoch 1, ran to 2; {self.training_figure(log)}"

    def study(self, profile: str, overrides: Dict[str, object]) -> str:
        """``run_study(profile, **overrides)`` in a process of its own, as ``raagr2 study`` runs it."""
        output = self.work / f"study-{profile}"
        settings = {"output": str(output), "device": self.args.device, **overrides}
        self.run(f"study-{profile}", [sys.executable, "-c", STUDY_PROGRAM, profile, json.dumps(settings)])
        if not (output / "report.md").is_file():
            raise Failed("no report.md")
        with (output / "tables" / "table1_quality.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        baseline = next(row for row in rows if row["model"] == "baseline")
        return (f"{len(rows)} models scored on {baseline['subjects']} test subjects, baseline mean Dice "
                f"{float(baseline['dice_mean']):.3f}; report.md")

    def study_quick(self) -> str:
        """The ``quick`` profile (its own 40 small synthetic cases), each schedule cut to ``--study_epochs``."""
        epochs = self.args.study_epochs
        return self.study("quick", {
            "epochs": epochs, "val_interval": epochs, "finetune_epochs": epochs, "hybrid_finetune_epochs": epochs,
            # no latency rows of the CPU runtimes: OpenVINO is not shipped to the GPU machine, and an ONNX Runtime
            # row costs every model an export and its parity check, to time the CPU rather than the GPU
            "bench_backends": [], "bench_size": self.args.size, "flops_size": self.args.size,
        })

    def study_full(self) -> str:
        """The ``full`` profile on the BraTS-size set, cut to the rows the other workflows do not cover: baseline and
        Depthwise Shared, SNIP at ``--ratio`` (pruned, fine-tuned and at initialisation) and both hybrid rows
        (DepGraph, with and without distillation), ``--study_epochs`` each."""
        epochs, size = self.args.study_epochs, self.args.size
        # SNIP pads its batches to a whole slice: the largest multiple of 16 within the set's slices (240 at BraTS)
        snip_size = 16 * (min(self.args.shape[:2]) // 16)
        return self.study("full", {
            "data_dir": str(self.data), "epochs": epochs, "val_interval": epochs, "finetune_epochs": epochs,
            "hybrid_finetune_epochs": epochs, "variants": ["baseline", "depthwise"], "methods": ["snip"],
            "ratios": [self.args.ratio],
            "roi_size": size, "batch_size": self.args.batch, "bench_size": size, "flops_size": size,
            "snip_size": snip_size, "bench_repeats": 3, "bench_warmup": 1, "bench_backends": [],
            # two steps at a time, as the quick profile runs: one training of a few steps leaves the GPU mostly idle
            "workers": 2,
        })

    def benchmark(self) -> str:
        """``raagr2 benchmark`` of the four variants on ``--device`` (eager PyTorch)."""
        out = self.work / "benchmark.json"
        batch = self.args.batch
        self.raagr2("benchmark", "benchmark", "--device", self.args.device, "--size", self.args.size, "--batch",
                    f"1,{batch}", "--repeats", 10, "--warmup", 2, "--format", "json", "--output", out)
        base = json.loads(out.read_text())["baseline"]
        latency = base["latency_ms"]
        memory = f", peak {base['peak_mem_mb']:.0f} MB" if base.get("peak_mem_mb") else ""
        return (f"baseline {latency['1']['median']:.1f} ms at b1, {latency[str(batch)]['per_slice_ms']:.2f} ms/slice "
                f"at b{batch}, train step {base['train_step_ms']:.0f} ms{memory}")

    def export(self) -> str:
        """``raagr2 export`` of the trained bundle to ONNX, with its parity check."""
        output = self.raagr2("export", "export", self.bundle, "--formats", "onnx")
        parity = re.findall(r"max \|difference\| from eager ([\d.e+-]+)", output)
        return f"ONNX, largest difference from eager PyTorch {parity[-1]}" if parity else failure_line(output)

    def throughput(self) -> str:
        """The training throughput table (``tools/gpu_throughput.py``) in a process of its own, alone on the device:
        baseline and Depthwise Shared at ``--throughput_batches``, ``--throughput_precision`` with channels-last on
        and off, and the baseline's step at the bundles' former settings (float16, NCHW, deterministic cuDNN) as
        the reference; the table goes into the report."""
        out = self.work / "throughput.json"
        output = self.run("throughput", [
            sys.executable, str(ROOT / "tools" / "gpu_throughput.py"), "--device", self.args.device,
            "--size", self.args.size, "--batches", self.args.throughput_batches, "--variants", "baseline,depthwise",
            "--precision", self.args.throughput_precision, "--json", out])
        table = output[output.index("training throughput on"):].strip() if "training throughput on" in output else ""
        self.sections.append("training throughput (tools/gpu_throughput.py):\n\n```\n" + table + "\n```")
        rows = json.loads(out.read_text())
        best = max((r for r in rows if r["model"] == "baseline"), key=lambda r: r["slices_per_s"])
        before = next((r for r in rows if r["label"].startswith("before")), None)
        share = "" if best["peak_fraction"] is None else f", {100 * best['peak_fraction']:.1f} % of peak"
        versus = "" if before is None else (
            f"; before {before['step_ms']['mean']:.1f} ms at b{before['batch']} "
            f"({before['slices_per_s']:.0f} slices/s): {best['slices_per_s'] / before['slices_per_s']:.2f}x")
        return (f"baseline best {best['slices_per_s']:.0f} slices/s at b{best['batch']} ({best['label']}, "
                f"{best['step_ms']['mean']:.1f} ms/step, {best['achieved_tflops']:.1f} TFLOP/s{share}){versus}")
