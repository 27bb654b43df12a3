#!/usr/bin/env python3
"""A timed pass of every workflow on one device, each in its own process as a user runs it, with one summary table.

``tools/gpu_check.sh`` runs this on a GPU machine after installing the project's wheels (README.md, "GPU check"):
the ``cuda`` tests, then, on a synthetic set of BraTS-size studies, training with AMP, evaluation, inference by
``monai.bundle run inferring`` and by ``raagr2 segment`` (the same label map), pruning by magnitude, SNIP and
DepGraph, a torchrun training and its resumption, the study's ``quick`` and ``full`` profiles with shortened
schedules, ``raagr2 export``, the training throughput table (``tools/gpu_throughput.py``) and ``raagr2 benchmark``.
Independent workflows run side by side (:data:`LANES`), the throughput table and the benchmark alone at the end. A
workflow that fails is marked FAIL in the table and the others still run; the exit status is 1 when any failed. Each
command's output is in ``<work>/logs/``. The workflows themselves are in ``tools/gpu_workflows.py``.

``--device cpu`` with a small ``--shape``, ``--size`` and ``--cases`` runs the same pass on a CPU, which is how this
script itself is checked without a GPU (one thread per process: on two busy cores, OpenMP's spinning threads made
small forward passes 30 times slower)::

    OMP_NUM_THREADS=1 python tools/gpu_check.py --device cpu --cases 6 --shape 64,64,32 --size 32 --batch 4 \\
        --samples 4 --epochs 1 --num_workers 0 --timeout 1800
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
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

from gpu_workflows import Failed, Skipped, Workflows, failure_line

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
#: Run alone once the lanes are done, so that their timings are not those of a shared GPU.
LAST = ("throughput", "benchmark")


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


class Check(Workflows):
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
        self.sections: List[str] = []  # report sections the workflows add (the throughput table)

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
            "throughput": (f"training throughput, {self.args.throughput_precision} (tools/gpu_throughput.py)",
                           self.throughput),
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
    parser.add_argument("--throughput_batches", default="16,64",
                        help="batch sizes of the training throughput table (default 16,64)")
    parser.add_argument("--throughput_precision", default="bf16", help="its precision (default bf16)")
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
        *[section + "\n" for section in check.sections],
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
