#!/usr/bin/env python3
"""A timed pass of every workflow on one device, each in its own process as a user runs it, with one summary table.

``tools/gpu_check.sh`` runs this on a GPU machine after installing the project's wheels (README.md, "GPU check"):
the ``cuda`` tests, then, on a synthetic set of BraTS-size studies, training with AMP, evaluation, inference by
``monai.bundle run inferring`` and by ``raagr2 segment`` (the same label map), pruning by magnitude, SNIP and
DepGraph, a torchrun training and its resumption, the study's ``quick`` and ``full`` profiles with shortened
schedules, ``raagr2 export`` and ``raagr2 benchmark``. Independent workflows run side by side (:data:`LANES`), the
benchmark alone at the end. A workflow that fails is marked FAIL in the table and the others still run; the exit
status is 1 when any failed. Each command's output is in ``<work>/logs/``.

``--device cpu`` with a small ``--shape``, ``--size`` and ``--cases`` runs the same pass on a CPU, which is how this
script itself is checked without a GPU (one thread per process: on two busy cores, OpenMP's spinning threads made
small forward passes 30 times slower)::

    OMP_NUM_THREADS=1 python tools/gpu_check.py --device cpu --cases 6 --shape 64,64,32 --size 32 --batch 4 \\
        --samples 4 --epochs 1 --num_workers 0 --timeout 1800
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]

#: The study's trainings, prunings and evaluations, run from Python: the command line has no option for the profile
#: fields that the check shortens (epochs, ratios, benchmark backends), which ``run_study`` takes as overrides.
STUDY_PROGRAM = (
    "import json, sys; from raagr2_monai.study import run_study; "
    "run_study(sys.argv[1], **{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[2]).items()})"
)

#: What the machine is, recorded in the report; ``torch.cuda`` is initialised here, not in the driver, so that the
#: driver holds no GPU memory while the workflows run.
PROBE_PROGRAM = """
import json, platform, torch
from importlib import metadata
cuda = torch.cuda.is_available()
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None, "cuda_available": cuda}
if cuda:
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
for name in ("monai", "pytorch-ignite", "torch-pruning", "mlflow", "nibabel", "numpy", "onnx", "onnxruntime"):
    try:
        info[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        info[name] = "missing"
print(json.dumps(info))
"""

TIMESTAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
ITERATION = re.compile(TIMESTAMP + r" .*Epoch: (\d+)/\d+, Iter: \d+/\d+")
BEST_DICE = re.compile(r"Key metric: val_mean_dice best value: ([-\d.e]+)")
#: ``torchrun --standalone --nproc_per_node=1 -m``: one process, so ``--device cuda`` is its LOCAL_RANK's GPU;
#: ``--standalone`` takes a free rendezvous port rather than 29500, which another run may hold.
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m")

#: Workflows that run one after another in one lane; the lanes run side by side (a BraTS-size pass leaves most of an
#: H200 and its 16 cores idle: data loading and process starts, not the GPU, set each workflow's time).
LANES: Tuple[Tuple[str, ...], ...] = (
    ("tests",),
    ("study-quick",),
    ("data", "train", "evaluate", "infer", "segment", "prune-magnitude", "prune-snip", "prune-depgraph", "export"),
    ("multi-gpu", "multi-gpu-resume"),
    ("study-full",),
)
#: The workflow each of these waits for, in a lane of its own.
NEEDS = {"multi-gpu": "data", "study-full": "data"}
#: Run alone once the lanes are done, so that its latencies are not those of a shared GPU.
LAST = ("benchmark",)


class Failed(Exception):
    """A workflow whose command failed or whose outcome is wrong; the message is the table's figure."""


class Skipped(Exception):
    """A workflow left out (``--skip``, or nothing to run); the message says why."""


@dataclass
class Row:
    """One line of the summary table."""

    workflow: str
    result: str
    seconds: float
    figure: str


def parse_shape(text: str) -> List[int]:
    """``"240,240,155"`` as three integers."""
    shape = [int(part) for part in text.split(",")]
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"--shape needs three integers X,Y,Z; got {text!r}")
    return shape


def failure_line(output: str) -> str:
    """The line that says why a command failed: its last ``error:`` or exception line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:") or re.match(r"[\w.]*(Error|Exception|Interrupt)\b", line):
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def step_seconds(log: str) -> Optional[float]:
    """Median seconds between consecutive iterations of an epoch, read from the Ignite log's ``Iter: i/n`` lines
    (each epoch's first iteration, which carries the data loader's start and cuDNN's autotuning, is left out)."""
    stamps: Dict[int, List[datetime]] = {}
    for match in ITERATION.finditer(log):
        stamps.setdefault(int(match.group(2)), []).append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"))
    gaps = [(b - a).total_seconds() for times in stamps.values() for a, b in zip(times, times[1:])]
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


class Check:
    """The settings, the working folder and the table of one pass.

    Args:
        args: the parsed command line.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="raagr2-gpu-check-"))
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.rows: Dict[str, Row] = {}
        self.live: Set[subprocess.Popen] = set()
        self.stopping = threading.Event()
        self.skip = {name.strip() for name in args.skip.split(",") if name.strip()}
        self.env = dict(os.environ, RAAGR2_VERBOSE="1", PYTHONUNBUFFERED="1", RAAGR2_TEST_DEVICE=args.device)
        self.data = self.work / "brats"
        self.datalist = self.work / "datalist.json"
        self.bundle = self.work / "bundles" / args.variant
        self.pct = round(args.ratio * 100)

    # running ---------------------------------------------------------------------------------------------------

    def run(self, log_name: str, argv: Sequence[str], cwd: Optional[Path] = None) -> str:
        """Run one command to its end with the pass's environment, its output going to ``logs/<log_name>.log``.

        Returns:
            The command's output (stdout and stderr together).

        Raises:
            Failed: a non-zero exit status or ``--timeout`` seconds passed, with the line that says why.
        """
        log = self.logs / f"{log_name}.log"
        with log.open("w") as handle:
            handle.write("$ " + " ".join(map(str, argv)) + "\n")
            handle.flush()
            if self.stopping.is_set():
                raise Failed("interrupted")
            # a session of its own: on a timeout or an interrupt its whole process group goes (torchrun's workers,
            # the study's), not the command alone
            process = subprocess.Popen([str(a) for a in argv], cwd=cwd or self.work, env=self.env, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            self.live.add(process)
            try:
                status = process.wait(timeout=self.args.timeout)
            except subprocess.TimeoutExpired:
                self.kill(process)
                raise Failed(f"no end after {self.args.timeout} s (--timeout); log {log}") from None
            except KeyboardInterrupt:  # --serial: the command runs in this thread
                self.kill(process)
                raise
            finally:
                self.live.discard(process)
        output = log.read_text(errors="replace")
        if self.stopping.is_set():
            raise Failed("interrupted")
        if status != 0:
            raise Failed(f"exit {status}: {failure_line(output)}")
        return output

    def kill(self, process: subprocess.Popen) -> None:
        """End a command started by :meth:`run` and every process of its group."""
        # SIGTERM first: torchrun passes it on to its workers, which have sessions of their own and would outlive a
        # torchrun killed outright
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        """End every running command (Ctrl-C); the workflows not yet started fail as interrupted."""
        self.stopping.set()
        for process in list(self.live):
            self.kill(process)

    def raagr2(self, log_name: str, *args: object) -> str:
        """The ``raagr2`` command line (the source tree has no entry point script: its module runs it)."""
        return self.run(log_name, [sys.executable, "-m", "raagr2_monai.cli", *map(str, args)])

    def bundle_run(self, log_name: str, run_id: str, bundle: Path, configs: Sequence[str], *args: object,
                   launcher: Sequence[str] = ("-m",)) -> str:
        """``python -m monai.bundle run <run_id>`` with ``bundle``'s configs (names without ``.json``)."""
        files = str([str(bundle / "configs" / f"{name}.json") for name in configs])
        argv = [sys.executable, *launcher, "monai.bundle", "run", run_id, "--config_file", files, *map(str, args)]
        return self.run(log_name, argv)

    def step(self, key: str, title: str, workflow: Callable[[], str]) -> None:
        """Time one workflow and add its row: PASS with its key figure, FAIL with the reason, or SKIP."""
        start = time.perf_counter()
        try:
            if key in self.skip:
                raise Skipped("--skip")
            figure, result = workflow(), "PASS"
        except Skipped as why:
            figure, result = str(why), "SKIP"
        except Failed as why:
            figure, result = str(why), "FAIL"
        except Exception as error:  # noqa: BLE001 - a result that cannot be read fails this workflow, not the pass
            figure, result = f"{type(error).__name__}: {error}"[:200], "FAIL"
        seconds = time.perf_counter() - start
        self.rows[key] = Row(title, result, seconds, figure)
        print(f"[{result} {seconds:7.1f} s] {title}: {figure}", flush=True)

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

    # the pass --------------------------------------------------------------------------------------------------

    def probe(self) -> Dict[str, object]:
        """Versions and the GPU, from a process of their own."""
        return json.loads(self.run("environment", [sys.executable, "-c", PROBE_PROGRAM]).strip().splitlines()[-1])

    def workflows(self) -> Dict[str, Tuple[str, Callable[[], str]]]:
        """Every workflow by key, in the table's order: its title and what runs it."""
        device = self.args.device
        return {
            "tests": (f"cuda tests (RAAGR2_TEST_DEVICE={device})", self.cuda_tests),
            "data": ("synthetic data (raagr2 synth, raagr2 datalist)", self.make_data),
            "train": ("train, AMP (monai.bundle run training)", self.train),
            "evaluate": ("evaluate (run evaluating)", self.evaluate),
            "infer": ("infer (run inferring)", self.infer),
            "segment": ("infer (raagr2 segment)", self.segment),
            **{f"prune-{m}": (f"prune {m} {self.pct} % + FT (run pruning)", lambda m=m: self.prune(m))
               for m in ("magnitude", "snip", "depgraph")},
            "multi-gpu": ("multi-GPU train (torchrun, 1 process)", self.multi_gpu),
            "multi-gpu-resume": ("multi-GPU resume (--resume true)", self.multi_gpu_resume),
            "study-quick": ("study, quick profile", self.study_quick),
            "study-full": ("study, full profile, BraTS-size set", self.study_full),
            "export": ("raagr2 export --formats onnx", self.export),
            "benchmark": (f"raagr2 benchmark --device {device}", self.benchmark),
        }

    def run_all(self) -> None:
        """Every workflow: the :data:`LANES` side by side (``--serial``: one after another), then :data:`LAST`."""
        workflows = self.workflows()
        if self.args.serial:
            for key in [k for lane in LANES for k in lane] + list(LAST):
                self.step(key, *workflows[key])
            return
        done = {key: threading.Event() for key in workflows}

        def lane(keys: Sequence[str]) -> None:
            for key in keys:
                if key in NEEDS:
                    done[NEEDS[key]].wait()
                try:
                    self.step(key, *workflows[key])
                finally:
                    done[key].set()

        with ThreadPoolExecutor(max_workers=len(LANES)) as pool:
            lanes = [pool.submit(lane, keys) for keys in LANES]
            try:
                for running in lanes:
                    running.result()
            except KeyboardInterrupt:
                self.stop()
                raise
        for key in LAST:
            self.step(key, *workflows[key])

    def table(self) -> str:
        """The summary table (Markdown)."""
        lines = ["| workflow | result | s | key figure |", "|---|---|---:|---|"]
        rows = [self.rows[key] for key in self.workflows() if key in self.rows]
        lines += [f"| {r.workflow} | {r.result} | {r.seconds:.1f} | {r.figure.replace('|', '/')} |" for r in rows]
        return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the pass; print the table and write it to ``--report``.

    Returns:
        0 when every workflow passed (or was skipped), 1 otherwise, 2 when torch or the device is not there, 130
        when interrupted.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="every workflow's --device (default cuda)")
    parser.add_argument("--cases", type=int, default=9, help="synthetic cases (default 9: train/val/test 6/2/1)")
    parser.add_argument("--shape", type=parse_shape, default=[240, 240, 155], help="their shape X,Y,Z")
    parser.add_argument("--size", type=int, default=192,
                        help="training crops, windows and benchmark slices, in-plane (a multiple of 16)")
    parser.add_argument("--batch", type=int, default=16, help="training batch")
    parser.add_argument("--samples", type=int, default=8, help="slices drawn per volume per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the bundle training")
    parser.add_argument("--finetune_epochs", type=int, default=1, help="fine-tuning epochs of each bundle pruning")
    parser.add_argument("--study_epochs", type=int, default=1, help="epochs of every training of the two studies")
    parser.add_argument("--ratio", type=float, default=0.3, help="pruning ratio")
    parser.add_argument("--variant", default="baseline", help="the bundle of the bundle workflows")
    parser.add_argument("--num_workers", type=int, default=4, help="data loader processes of the bundle runs")
    parser.add_argument("--timeout", type=int, default=480, help="seconds after which one command counts as failed")
    parser.add_argument("--serial", action="store_true",
                        help="run the workflows one after another (each timed alone; longer in all)")
    parser.add_argument("--skip", default="", help="comma-separated workflows to leave out, among: "
                        + ", ".join([key for lane in LANES for key in lane] + list(LAST)))
    parser.add_argument("--work", help="working folder (default: a new one under the temporary folder)")
    parser.add_argument("--report", default=os.path.join(os.environ["OUT"], "gpu_check.md") if os.environ.get("OUT")
                        else None, help="also write the report here (default $OUT/gpu_check.md when OUT is set)")
    args = parser.parse_args(argv)

    check = Check(args)
    start = time.perf_counter()
    try:
        environment = check.probe()
    except Failed as why:
        print(f"error: torch does not load: {why}", file=sys.stderr)
        return 2
    print("environment: " + json.dumps(environment), flush=True)
    if args.device.startswith("cuda") and not environment["cuda_available"]:
        print(f"error: --device {args.device} but torch {environment['torch']} sees no CUDA device", file=sys.stderr)
        return 2
    print(f"working folder {check.work}; logs in {check.logs}", flush=True)
    try:
        check.run_all()
    except KeyboardInterrupt:
        print("error: interrupted; every command it had started is ended", file=sys.stderr)
        return 130
    total = time.perf_counter() - start
    failed = [row.workflow for row in check.rows.values() if row.result == "FAIL"]
    settings = {key: value for key, value in vars(args).items() if key not in ("work", "report")}
    report = "\n".join([
        f"# GPU check, {datetime.now().astimezone().isoformat(timespec='seconds')}", "",
        "environment: `" + json.dumps(environment) + "`", "",
        "settings: `" + json.dumps(settings) + "`", "",
        check.table(), "",
        f"{len(check.rows) - len(failed)} of {len(check.rows)} workflows passed or skipped; {total:.0f} s in all "
        f"({total / 60:.1f} min).",
    ])
    print("\n" + report, flush=True)
    if args.report:
        target = Path(args.report)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(report + "\n")
        # only the report's folder comes back from a lent GPU machine: the logs go with it
        shutil.copytree(check.logs, target.parent / "gpu_check_logs", dirs_exist_ok=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
