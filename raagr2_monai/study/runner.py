"""Running a study: each model is a MONAI bundle of its own, trained, pruned and evaluated through its workflows
(:mod:`.steps`), one at a time or several at once in worker processes, then benchmarked, reported and logged to
MLflow.

:class:`Study` runs every step not yet recorded in the study's state; :func:`run_study` prepares the folder and runs
one (``raagr2 study``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from raagr2_monai.benchmark.memory import peak_rss_mb, reset_peak_rss
from raagr2_monai.data.synthetic import ensure_synthetic
from raagr2_monai.handlers import MLflowEpochLogger, attach_progress_bar
from raagr2_monai.report import ReportInputs, collect_rows, failure_records, record_mlflow_runs, write_report
from raagr2_monai.utils import is_cuda, is_terminal, resolve_device, usable_cpus

from .estimate import plan_study
from .noise import ITERATION_LINES, STUDY_NOTICES, Notice, Silenced
from .profiles import Profile, cpu_lanes, experiment_matrix, get_profile
from .countdown import Progress, format_duration
from .state import STATE_FILE, StudyState
from .steps import StudySteps, TrainerHook, trainer_hooks
from .tasks import Task as _Task
from .tasks import resolve_task, study_tasks, synthetic_folder
from .mlflow_runs import StudyTracker

__all__ = ["Study", "run_study", "study_tasks", "synthetic_folder"]  # the last two re-exported from .tasks

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class StepRun:
    """Where a study step reports while it runs, in this process or a worker's (pickled with the step).

    Attributes:
        tracking_uri: the study's MLflow tracking URI.
        run_id: the MLflow child run of the model a training or pruning makes, which gets its curves live; ``None``
            for an evaluation.
        bar_position: the terminal line of the step's progress bar.
        device: the device whose peak memory is measured (:func:`_peak_memory`).

    Example::

        _perform(steps, task, StepRun("sqlite:///results/quick/mlruns.db", run_id, 0, "cpu"))
    """

    tracking_uri: str
    run_id: Optional[str]
    bar_position: int
    device: str


def _run_in_worker(steps: StudySteps, task: _Task, threads: int, notices: Tuple[Notice, ...], run: StepRun
                   ) -> Tuple[Dict[str, Any], Dict[str, int]]:
    """Run ``task`` in a worker process with ``threads`` torch threads; returns its outputs and the notices it
    silenced (the parent counts them in its summary line)."""
    torch.set_num_threads(threads)
    silenced = Silenced(notices)
    with silenced:
        outputs = _perform(steps, task, run)
    return outputs, dict(silenced.counts)


@contextmanager
def _peak_memory(device: str) -> Iterator[Dict[str, Any]]:
    """The peak memory of the block, in the dictionary yielded once it ends: ``peak_rss_mb``, this process's peak
    resident set (``peak_rss_since_start`` where the kernel's peak cannot be reset), and on CUDA
    ``peak_device_mb`` and ``peak_device_reserved_mb`` (the allocator's peaks; MB = 10^6 bytes)."""
    figures: Dict[str, Any] = {}
    cuda = is_cuda(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    reset = reset_peak_rss()
    yield figures
    figures["peak_rss_mb"] = peak_rss_mb()
    if not reset:
        figures["peak_rss_since_start"] = True
    if cuda:
        figures["peak_device_mb"] = torch.cuda.max_memory_allocated(device) / 1e6
        figures["peak_device_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 1e6


def _perform(steps: StudySteps, task: _Task, run: StepRun) -> Dict[str, Any]:
    """Run ``task`` on ``run.device``, with its peak memory added to its outputs; a training or pruning
    (``run.run_id``: its MLflow child run) logs its curves to that run, live, and draws its progress bar on terminal
    line ``run.bar_position``."""
    hooks: Tuple[TrainerHook, ...] = () if run.run_id is None else (
        lambda trainer, history: MLflowEpochLogger(history, run.tracking_uri, run.run_id).attach(trainer),
        lambda trainer, history: attach_progress_bar(trainer, task.step, position=run.bar_position),
    )
    with trainer_hooks(*hooks), _peak_memory(run.device) as memory:
        outputs = getattr(steps, task.action)(task.spec)
    return {**outputs, **memory}


class Study:
    """One study: its folder, profile, data and state; :meth:`run` does every step not yet done.

    With ``profile.workers`` above 1 (or ``"auto"``), that many trainings, prunings and evaluations run at once
    (``lanes``; on CUDA no more than the device's memory holds: :func:`~.profiles.decide_lanes`), each in a worker
    process with its share of the CPU threads, as soon as the steps they need are done (a pruning needs its source's
    training, an evaluation its model); the benchmark always runs alone, in this process, with every thread. Last
    among the steps, the baseline and each family's best model are evaluated again with an uncertainty, each once
    its family's evaluations are done (:func:`~.tasks.failure_tasks`; the model is chosen when the step starts,
    :func:`~.tasks.resolve_task`), for the report's failure prediction.

    Before the first step the study's cost is estimated and printed (``[estimate]`` lines, ``estimate.json``). The
    state records each step's start, end, lane and peak memory, and per run the schedule (``"runs"``) and the choice
    of lanes (``"parallelism"``).

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
        #: steps run (not skipped as done) by this object, by kind
        self.counts = {"train": 0, "prune": 0, "evaluate": 0, "benchmark": 0, "uncertainty": 0}
        self.dataset_dir = ""
        self.steps: Optional[StudySteps] = None
        self._silenced = Silenced(())
        #: steps at once (the CPU's setting until the estimate weighs the device's memory)
        self.lanes = cpu_lanes(profile)
        self.estimate: Optional[Dict[str, Any]] = None
        self._schedule: Dict[str, Any] = {}

    def resolve_data(self) -> None:
        """Set ``dataset_dir`` (the given BraTS folder, or the profile's synthetic set, generated when absent) and
        ``steps``, the :class:`~.steps.StudySteps` on it."""
        p = self.profile
        if self.data_dir is not None:
            if not Path(self.data_dir).is_dir():
                raise FileNotFoundError(f"--data_dir {self.data_dir} does not exist or is not a folder.")
            self.dataset_dir = str(Path(self.data_dir).resolve())
        elif p.needs_data_dir:
            raise ValueError(
                f"The {p.name!r} profile runs on real BraTS data: pass --data_dir /path/to/BraTS (a folder of "
                "<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz); the 'quick' profile uses the built-in synthetic set."
            )
        else:
            self.dataset_dir = ensure_synthetic(synthetic_folder(p), cases=p.synthetic_cases, seed=0,
                                                shape=p.synthetic_shape)
        self.steps = StudySteps(self.root, p, self.dataset_dir, self.seed)

    def run(self) -> Path:
        """Run every step not yet done, write the report and log to MLflow, live: the parent run is open while the
        study runs, and each model's child run while it trains.

        The notices every workflow repeats (:data:`~.noise.STUDY_NOTICES`) are silenced meanwhile, and one line
        (``Silenced: ...``) counts them at the end; on a terminal, training shows a progress bar instead of a line per
        iteration.

        Returns:
            The path of ``report.md``.
        """
        if (self.data_dir is None and self.profile.needs_data_dir) or (
                self.data_dir is not None and not Path(self.data_dir).is_dir()):
            self.resolve_data()  # raises its error before anything is measured
        self.estimate = plan_study(self.profile, self.data_dir, self.seed, self.root, self.echo,
                                   done=set(self.state.data["steps"]))
        self.lanes = self.estimate["parallel"]["lanes"]
        self.resolve_data()
        start = time.perf_counter()
        tasks = self._tasks()
        threads = max(1, (usable_cpus() or os.cpu_count() or 1) // self.lanes)
        self.state.set("parallelism", {**self.estimate["parallel"], "threads": threads})
        self._open_schedule(threads)
        # sizes in training epochs, so that the first finished training prices the rest: a pruning (its scoring and a
        # validation) costs about two epochs besides its fine-tuning ones, so that the pruning steps without
        # fine-tuning, which finish first, price those with; an evaluation about one, the benchmark a few per model
        self.progress = Progress(
            [t.step for t in tasks] + ["benchmark"],
            units=[self.profile.epochs if t.action == "train" else t.spec.finetune_epochs + 2 if t.action == "prune"
                   else 1.0 for t in tasks] + [2.0 * len(self.models)],
            lanes=self.lanes, alone=["benchmark"],
        )
        params = {"data_dir": self.data_dir, "dataset_dir": self.dataset_dir, "seed": self.seed}
        # the training bar goes where the study's lines go, and replaces MONAI's line per iteration there
        notices = STUDY_NOTICES + ((ITERATION_LINES,) if is_terminal(sys.stdout) else ())
        self._silenced = Silenced(notices)
        try:
            with self._silenced, self.tracker.study_run(self.profile.settings(), params):
                report = self._run_steps(tasks)
        finally:
            summary = self._silenced.summary()
            if summary:
                self.echo(summary)
        self.state.set("last_run_seconds", time.perf_counter() - start)
        self._scheduled({"finished_at": time.time()})
        return report

    def _tasks(self) -> List[_Task]:
        """The trainings, prunings and evaluations (:func:`study_tasks`), in the order one worker runs them."""
        return study_tasks(self.models)

    def _open_schedule(self, threads: int) -> None:
        """Start this run's record of its schedule in the state: a new entry of ``"runs"``."""
        self._schedule = {"started_at": time.time(), "finished_at": None, "lanes": self.lanes, "threads": threads,
                          "steps": []}
        self.state.set("runs", list(self.state.data.get("runs") or []) + [self._schedule])

    def _scheduled(self, update: Dict[str, Any], step: Optional[Dict[str, Any]] = None) -> None:
        """Update this run's record of its schedule in the state (``"runs"``, the last entry), with ``step`` added."""
        if not self._schedule:
            return
        self._schedule.update(update)
        if step is not None:
            self._schedule["steps"].append(step)
        runs = list(self.state.data.get("runs") or [])
        self.state.set("runs", runs[:-1] + [self._schedule])

    def _run_steps(self, tasks: Sequence[_Task]) -> Path:
        """Every step not yet done, then the report and its logging to MLflow; returns ``report.md``."""
        todo = []
        for task in tasks:
            if self.state.done(task.step):
                self.progress.skipped(task.step)
            else:
                todo.append(task)
        if any(task.action in ("train", "prune") for task in todo):
            self._fill_cache()
        if self.lanes > 1 and len(todo) > 1:
            self._run_parallel(todo)
        else:
            for task in todo:
                self._run_here(task)
        if self.state.done("benchmark"):
            self.progress.skipped("benchmark")
        else:
            start = self._begin("benchmark")
            with _peak_memory(str(self._device)) as memory:
                outputs = self.steps.benchmark(self.models)
            self._finish("benchmark", {**outputs, **memory}, start)
        benchmark_json = self.root / self.state.get("benchmark")["benchmark_json"]
        benchmark = json.loads(benchmark_json.read_text())
        rows = collect_rows(self.root, self.state.data, self.models, benchmark)
        record_mlflow_runs(rows, self.tracker.log_results(rows))
        self.tracker.log_failure_prediction(failure_records(self.root, self.state.data))
        report = write_report(ReportInputs(self.root, rows, self.state.data, benchmark, self.dataset_dir,
                                           self.tracking_uri, self.steps.test_entries()))
        self.tracker.finish(rows, report, benchmark_json)
        return report

    def _fill_cache(self) -> None:
        """Preprocess every study into the study's cache, once, before the steps (which would otherwise each
        preprocess them, several at a time); recorded in the state as ``cache``.

        With every CPU where the profile uses loader processes (``num_workers``), else in this process: loader
        processes started from here (torch's DataLoader workers and their SIGCHLD handler) made a pytest-xdist worker
        running a study die in the first training after the fill, twice, under load; the tests' profiles use none.
        """
        workers = max(1, usable_cpus() or os.cpu_count() or 1) if self.profile.num_workers else 0
        where = f"{workers} processes" if workers else "this process"
        self.echo(f"[study] cache: the studies preprocessed once, into {self.steps.cache_dir} ({where})")
        filled = self.steps.fill_cache(workers)
        self.state.set("cache", {"dir": str(self.steps.cache_dir), **filled})
        self.echo("[study] cache: " + "; ".join(
            f"{name} {f['studies']} studies ({f['built']} built) in {format_duration(f['seconds'])}, "
            f"{f['mb_per_study']:.1f} MB each" for name, f in filled.items()))

    def _begin(self, step: str) -> Tuple[float, float]:
        """Say that ``step`` starts; returns its start (``time.perf_counter()``, ``time.time()``)."""
        self.echo(f"{self.progress.label(step)} {step} ...")
        return time.perf_counter(), time.time()

    @property
    def _device(self) -> torch.device:
        return resolve_device(self.profile.device)

    def _finish(self, step: str, outputs: Dict[str, Any], start: Tuple[float, float], lane: int = 0) -> None:
        """Record a finished step (with its duration, its start and end in seconds since the epoch and its lane:
        which steps ran at once; and its peak memory), in the step's outputs and in this run's schedule, with its
        progress line."""
        outputs["step_seconds"] = time.perf_counter() - start[0]
        outputs["started_at"], outputs["finished_at"], outputs["lane"] = start[1], time.time(), lane
        self.state.record(step, outputs)
        self._scheduled({}, self._schedule_entry(step, outputs, "done"))
        kind = Progress.kind(step)
        if kind in ("train", "prune"):
            self.tracker.log_step(step.split("/", 1)[1], outputs)
        self.counts[kind] += 1
        if kind == "benchmark":
            self.tracker.outdated([spec.name for spec in self.models])
        elif kind == "evaluate":
            self.tracker.outdated([step.split("/", 1)[1]])
        elif kind == "uncertainty":
            self.tracker.outdated_failure(step.split("/", 1)[1])
        self.progress.finished(step, outputs["step_seconds"])
        left = self.progress.seconds_left()
        estimate = f"; about {format_duration(left)} left" if left > 0 else ""
        self.echo(f"{self.progress.label(step)} {step} done in {format_duration(outputs['step_seconds'])}{estimate}")

    def _open_run(self, task: _Task, stack: ExitStack) -> Optional[str]:
        """The MLflow child run of the model ``task`` makes, open until ``stack`` closes (``None``: an evaluation)."""
        return stack.enter_context(self.tracker.model_run(task.spec)) if task.makes_model else None

    @staticmethod
    def _schedule_entry(step: str, outputs: Dict[str, Any], status: str) -> Dict[str, Any]:
        keys = ("started_at", "finished_at", "step_seconds", "lane", "peak_rss_mb", "peak_device_mb",
                "peak_device_reserved_mb")
        return {"step": step, "status": status, **{k: outputs[k] for k in keys if k in outputs}}

    def _run_here(self, task: _Task) -> None:
        """Run ``task`` in this process."""
        task = resolve_task(task, self.root, self.state.data, self.models)
        start = self._begin(task.step)
        with ExitStack() as stack:
            outputs = _perform(self.steps, task, StepRun(self.tracking_uri, self._open_run(task, stack), 0,
                                                         str(self._device)))
        self._finish(task.step, outputs, start)

    def _run_parallel(self, tasks: Sequence[_Task]) -> None:
        """Run ``tasks`` ``lanes`` at a time in worker processes, each as soon as the steps it needs are done, in
        ``tasks``' order otherwise. A failed step stops new ones from starting; those running finish (and are
        recorded, the failed one in the run's schedule), then its error is raised."""
        workers = self.lanes
        threads = max(1, (usable_cpus() or os.cpu_count() or 1) // workers)
        self.echo(f"[study] {workers} steps at a time, {threads} thread(s) each; the benchmark alone, after them")
        pending = list(tasks)
        running: Dict[Future, Tuple[_Task, ExitStack, Tuple[float, float], int]] = {}
        free_positions = list(range(workers))
        error: Optional[BaseException] = None
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            while pending or running:
                while error is None and len(running) < workers:
                    task = next((t for t in pending if all(self.state.done(n) for n in t.needs)), None)
                    if task is None:
                        break
                    pending.remove(task)
                    task = resolve_task(task, self.root, self.state.data, self.models)
                    stack = ExitStack()
                    start = self._begin(task.step)
                    run_id = self._open_run(task, stack)
                    position = free_positions.pop(0)
                    future = pool.submit(_run_in_worker, self.steps, task, threads, self._silenced.notices,
                                         StepRun(self.tracking_uri, run_id, position, str(self._device)))
                    running[future] = (task, stack, start, position)
                if not running:
                    if error is None:
                        raise RuntimeError(f"Study steps wait for steps that never ran: {[t.step for t in pending]}.")
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task, stack, start, position = running.pop(future)
                    free_positions.append(position)
                    try:
                        outputs, silenced = future.result()
                    except BaseException as err:  # noqa: B036 - recorded and re-raised once the others finish
                        stack.__exit__(type(err), err, err.__traceback__)
                        self.echo(f"{self.progress.label(task.step)} {task.step} failed: {err}")
                        self._scheduled({}, self._schedule_entry(task.step, {
                            "started_at": start[1], "finished_at": time.time(), "lane": position,
                            "step_seconds": time.perf_counter() - start[0]}, "failed"))
                        error = error or err
                        continue
                    stack.close()
                    self._silenced.counts.update(silenced)
                    self._finish(task.step, outputs, start, position)
        except BaseException as err:
            for task, stack, _, _ in running.values():
                stack.__exit__(type(err), err, err.__traceback__)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        if error is not None:
            raise error

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
    estimate_only: bool = False,
    **overrides: Any,
) -> Union[Study, Dict[str, Any]]:
    """Run (or continue) a study and write its report; its cost is estimated and printed first
    (:func:`~.estimate.plan_study`: ``[estimate]`` lines, ``<output>/estimate.json``).

    Args:
        profile: ``quick``, ``full``, ``gpu``, ``tiny`` or a :class:`Profile`.
        data_dir: a BraTS folder; ``None`` uses the profile's synthetic set (``full`` requires a folder).
        output: the study folder (default ``results/<profile>``).
        seed: seed of the data split, training and pruning.
        resume: continue a study found in ``output`` (finished steps are not redone).
        fresh: delete the study found in ``output`` first.
        echo: where progress lines go.
        estimate_only: print the estimate and stop: nothing is trained, written or generated (not even the folder).
        overrides: profile fields to replace (e.g. ``epochs=1``).

    Returns:
        The :class:`Study`; ``report.md`` is in its ``root``. With ``estimate_only``, the estimate
        (:func:`~.estimate.estimate_study`).

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
    if estimate_only:
        return plan_study(chosen, data_dir, seed, None, echo)
    root = Path(output if output is not None else Path("results") / chosen.name).resolve()
    _prepare_folder(root, fresh, resume)
    root.mkdir(parents=True, exist_ok=True)
    study = Study(root, chosen, data_dir, seed, echo)
    study.run()
    return study
