"""The study in MLflow, live: a parent run with the settings, open while the study runs; one child run per model,
open while the model trains (or is pruned and fine-tuned) with its curves logged epoch by epoch; the evaluation and
benchmark figures logged to that child later, and for the baseline and each family's best model how well its
uncertainty predicts failure; the report's files on the parent; and the best model of each family
registered as its bundle folder (configs and a plain state_dict, never a pickle).

Tracking goes to an SQLite store in the study folder (``mlruns.db``; MLflow 3 refuses a file store) and artifacts to
``mlartifacts/`` beside it. The run ids are recorded in the study's state under ``"mlflow"`` as soon as a run is
created, so a resumed study reopens its runs (a redone training continues its child run) and never duplicates one.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

from raagr2_monai.handlers.tracking import epoch_metrics
from raagr2_monai.report import best_per_family

from .profiles import ModelSpec
from .state import StudyState

__all__ = ["EXPERIMENT", "MODEL_TAG", "StudyTracker", "tracking_uri"]

PathLike = Union[str, os.PathLike]

#: The MLflow experiment of every study.
EXPERIMENT = "raagr2_study"
#: MLflow tag naming the study model a child run belongs to.
MODEL_TAG = "raagr2.model"
_PARENT_TAG = "mlflow.parentRunId"
#: A model's settings, logged as its child run's parameters (attributes of a ModelSpec, keys of a report row).
_MODEL_PARAMS = ("label", "kind", "family", "variant", "method", "ratio", "finetune_epochs", "from_scratch")


def tracking_uri(root: PathLike) -> str:
    """The MLflow tracking URI of the study in ``root``: an SQLite file in the folder.

    Example::

        >>> tracking_uri("/studies/quick")
        'sqlite:////studies/quick/mlruns.db'
    """
    return f"sqlite:///{Path(root) / 'mlruns.db'}"


def _end_status(error: Optional[BaseException]) -> str:
    """The MLflow status of a run ended by ``error`` (``None``: it ended normally)."""
    if error is None:
        return "FINISHED"
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


class StudyTracker:
    """Logs a study to MLflow as it runs and registers its best models; the run ids are recorded in ``state``.

    Args:
        root: the study folder (row sources are relative to it).
        state: the study's state, where the run ids go (key ``"mlflow"``: ``parent``, ``children`` (model -> run id),
            ``results`` (models whose evaluation and benchmark figures are logged), ``registered``).

    Example::

        tracker = StudyTracker(root, state)
        with tracker.study_run(profile.settings(), {"seed": 0}):
            with tracker.model_run(spec) as run_id:
                ...  # train, with MLflowEpochLogger(history, tracker.tracking_uri, run_id) on the trainer
            ...  # evaluate, benchmark, collect the report's rows
            runs = tracker.log_results(rows)
            registered = tracker.finish(rows, root / "report.md", root / "benchmark.json")
    """

    def __init__(self, root: PathLike, state: StudyState) -> None:
        self.root = Path(root)
        self.state = state
        self._mlflow: Optional[Tuple[Any, str]] = None

    @property
    def tracking_uri(self) -> str:
        """The study's MLflow tracking URI (see :func:`tracking_uri`)."""
        return tracking_uri(self.root)

    def _client(self) -> Tuple[Any, str]:
        if self._mlflow is None:
            import mlflow

            client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
            experiment = client.get_experiment_by_name(EXPERIMENT)
            if experiment is None:
                # an explicit artifact location: the SQLite store would otherwise put artifacts under the working
                # directory
                experiment_id = client.create_experiment(EXPERIMENT,
                                                         artifact_location=(self.root / "mlartifacts").as_uri())
            else:
                experiment_id = experiment.experiment_id
            self._mlflow = (client, experiment_id)
        return self._mlflow

    def _record(self) -> Dict[str, Any]:
        record = dict(self.state.data.get("mlflow") or {"parent": None, "children": {}, "registered": {}})
        # an older study logged a child run's figures when it created it, at the end
        record.setdefault("results", sorted(record["children"]))
        return record

    @contextmanager
    def study_run(self, profile: Mapping[str, Any], params: Mapping[str, Any]) -> Iterator[str]:
        """The study's parent run, open (``RUNNING``) inside the ``with`` block: created on the first run, named by
        profile and start time, with the settings as parameters; reopened by a resumed study. It ends ``FINISHED``,
        or ``FAILED`` (``KILLED`` on Ctrl-C) when the block raises.

        Args:
            profile: the profile's settings, logged as ``profile.<name>`` parameters.
            params: further parameters (data folder, seed).

        Yields:
            The parent run's id.
        """
        from mlflow.entities import Param

        client, experiment_id = self._client()
        record = self._record()
        if record["parent"] is None:
            # named by profile and start time: the folder is in the tags, and "study-quick-quick" said nothing
            started = time.strftime("%Y-%m-%d %H:%M")
            parent = client.create_run(experiment_id, run_name=f"{profile['name']} study, {started}",
                                       tags={"raagr2.study": str(self.root), "raagr2.profile": profile["name"]})
            logged = {f"profile.{k}": v for k, v in profile.items()}
            logged.update(params)
            client.log_batch(parent.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in logged.items()])
            record["parent"] = parent.info.run_id
            self.state.set("mlflow", record)
        else:
            client.update_run(record["parent"], status="RUNNING")
        with self._ending(record["parent"]):
            yield record["parent"]

    @contextmanager
    def _ending(self, run_id: str) -> Iterator[None]:
        """End ``run_id`` when the block ends, with the status its ending calls for."""
        client, _ = self._client()
        try:
            yield
        except BaseException as err:
            client.set_terminated(run_id, _end_status(err))
            raise
        client.set_terminated(run_id, _end_status(None))

    @contextmanager
    def model_run(self, spec: ModelSpec) -> Iterator[str]:
        """The model's child run, open while its training (or pruning and fine-tuning) runs inside the block: created
        with the model's settings as parameters the first time, recorded at once, and reopened when a resumed study
        redoes the step. Its start and end are those of the training; it ends like :meth:`study_run`'s.

        Args:
            spec: the model.

        Yields:
            The child run's id (for :class:`~raagr2_monai.handlers.MLflowEpochLogger`).
        """
        client, _ = self._client()
        record = self._record()
        run_id = record["children"].get(spec.name)
        if run_id is None:
            run_id = self._new_child(record, spec.name, spec.family)
            self._log_params(run_id, {k: getattr(spec, k) for k in _MODEL_PARAMS})
        else:
            client.update_run(run_id, status="RUNNING")
        with self._ending(run_id):
            yield run_id

    def _new_child(self, record: Dict[str, Any], name: str, family: str) -> str:
        """Create the child run of model ``name`` and record it; a child of it that was not recorded (the process
        stopped between its creation and the record) is deleted first."""
        client, experiment_id = self._client()
        parent_id = record["parent"]
        stale = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{MODEL_TAG}` = '{name}' and tags.`{_PARENT_TAG}` = '{parent_id}'",
        )
        for run in stale:
            client.delete_run(run.info.run_id)
        child = client.create_run(experiment_id, run_name=name,
                                  tags={_PARENT_TAG: parent_id, MODEL_TAG: name, "raagr2.family": family})
        record["children"][name] = child.info.run_id
        self.state.set("mlflow", record)
        return child.info.run_id

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        client, _ = self._client()
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_step(self, model: str, outputs: Mapping[str, Any]) -> None:
        """Log the seconds and peak memory of the step that made ``model`` (``step.seconds``, ``step.peak_rss_mb``,
        ``step.peak_device_mb``, ``step.peak_device_reserved_mb``, as its outputs hold them) to its child run; a model
        without a recorded child run logs nothing.

        Args:
            model: the model's name.
            outputs: the step's outputs, as the study records them.
        """
        from mlflow.entities import Metric

        run_id = self._record()["children"].get(model)
        names = {"step_seconds": "step.seconds", "peak_rss_mb": "step.peak_rss_mb",
                 "peak_device_mb": "step.peak_device_mb", "peak_device_reserved_mb": "step.peak_device_reserved_mb"}
        now = int(time.time() * 1000)
        metrics = [Metric(name, float(outputs[key]), now, 0) for key, name in names.items()
                   if isinstance(outputs.get(key), (int, float))]
        if run_id is not None and metrics:
            client, _ = self._client()
            client.log_batch(run_id, metrics=metrics)

    def outdated(self, models: Sequence[str]) -> None:
        """The evaluation or benchmark figures of ``models`` were redone: :meth:`log_results` logs them again."""
        record = self._record()
        record["results"] = [m for m in record["results"] if m not in set(models)]
        self.state.set("mlflow", record)

    def outdated_failure(self, key: str) -> None:
        """The failure-prediction evaluation ``uncertainty/<key>`` was redone: :meth:`log_failure_prediction` logs it
        again."""
        record = self._record()
        record["failure"] = {k: v for k, v in (record.get("failure") or {}).items() if k != key}
        self.state.set("mlflow", record)

    def log_results(self, rows: Sequence[Mapping[str, Any]]) -> Dict[str, str]:
        """Log each model's evaluation and benchmark figures (``quality.*``, ``cost.*``, ``reduction.*``), its sources
        and the evaluation's files to its child run, by run id: the run keeps the start and end of its training.
        Figures already logged and not :meth:`outdated` are not logged again.

        A model trained by a study that recorded no child run for it (an older version of the study) gets one now,
        with its curves from ``history.json``.

        Args:
            rows: the report's rows (:func:`raagr2_monai.report.collect_rows`).

        Returns:
            Model name -> child run id.
        """
        from mlflow.entities import Metric

        client, _ = self._client()
        record = self._record()
        for row in rows:
            name = row["model"]
            if name in record["results"]:
                continue
            run_id = record["children"].get(name)
            backfilled = run_id is None
            metrics = []
            if backfilled:
                run_id = self._new_child(record, name, row["family"])
                metrics = [m for epoch in row["history"].get("epochs") or [] for m in epoch_metrics(epoch)]
            params = {k: row[k] for k in _MODEL_PARAMS}
            params.update({f"source.{k}": v for k, v in row["sources"].items() if k != "mlflow_run_id"})
            self._log_params(run_id, params)
            now = int(time.time() * 1000)
            metrics += [
                Metric(f"{section}.{key}", float(value), now, 0)
                for section in ("quality", "cost", "reduction")
                for key, value in row[section].items()
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
            ]
            client.log_batch(run_id, metrics=metrics)
            for rel in (row["sources"]["run_json"], row["sources"]["pruning_json"],
                        f"{row['sources']['eval_dir']}/metrics_per_subject.csv",
                        f"{row['sources']['eval_dir']}/metrics_summary.csv"):
                if rel and (self.root / rel).is_file():
                    client.log_artifact(run_id, str(self.root / rel), artifact_path="results")
            if backfilled:
                client.set_terminated(run_id, _end_status(None))
            record["results"].append(name)
            self.state.set("mlflow", record)
        return dict(record["children"])

    def log_failure_prediction(self, records: Sequence[Mapping[str, Any]]) -> Dict[str, str]:
        """Log each failure-prediction evaluation (:func:`raagr2_monai.report.failure_records`: a model evaluated
        again with an uncertainty) to its model's child run: the figures as ``failure.*`` metrics (``spearman``,
        ``auroc``, ``ece``, ``ece_tumour``, ``failures``, ``subjects``; a figure that is NaN, e.g. the AUROC without
        a failure, is left out), the setting as ``failure.*`` parameters (``mode``, ``samples``, ``failure_dice``)
        and the evaluation's ``failure_prediction.json``, ``reliability.png`` and per-subject CSV as artifacts under
        ``failure_prediction/``. Each record is logged once (by its step key), also across a resumed study.

        Args:
            records: the study's failure-prediction records.

        Returns:
            Step key (``baseline``, a family) -> the child run it was logged to.
        """
        from mlflow.entities import Metric

        client, _ = self._client()
        record = self._record()
        logged = dict(record.get("failure") or {})
        for item in records:
            run_id = record["children"].get(item["model"])
            if item["key"] in logged or run_id is None:
                continue
            self._log_params(run_id, {"failure.mode": item["mode"], "failure.samples": item["samples"],
                                      "failure.failure_dice": item["failure_dice"]})
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[
                Metric(f"failure.{key}", float(item[key]), now, 0)
                for key in ("spearman", "auroc", "ece", "ece_tumour", "failures", "subjects")
                if math.isfinite(float(item[key]))
            ])
            for name in ("failure_prediction.json", "reliability.png", "metrics_per_subject.csv"):
                path = self.root / item["eval_dir"] / name
                if path.is_file():
                    client.log_artifact(run_id, str(path), artifact_path="failure_prediction")
            logged[item["key"]] = run_id
            record["failure"] = logged
            self.state.set("mlflow", record)
        return logged

    def finish(self, rows: Sequence[Mapping[str, Any]], report: PathLike, benchmark_json: PathLike) -> Dict[str, Any]:
        """Attach the report, tables, charts, benchmark and state to the parent run, register the best model of each
        family (:func:`raagr2_monai.report.best_per_family`: the best validation mean Dice, the baseline excluded, as
        the report shows it) without pickling it.

        A registered version's source is the child run's ``bundle`` artifact folder: the bundle's configs and its
        plain state_dict (``models/model.pt``, plus the pruning history or masks), loadable with
        ``torch.load(weights_only=True)``.

        Args:
            rows: the report's rows, every one logged by :meth:`log_results`.
            report: ``report.md``; ``tables/`` and ``charts/`` are taken from the study folder.
            benchmark_json: the benchmark's JSON file.

        Returns:
            Registered model name -> ``{"model", "version", "source"}``.
        """
        from mlflow.exceptions import MlflowException

        client, _ = self._client()
        record = self._record()
        parent_id = record["parent"]
        client.log_artifact(parent_id, str(report))
        for folder in ("tables", "charts"):
            client.log_artifacts(parent_id, str(self.root / folder), artifact_path=folder)
        client.log_artifact(parent_id, str(benchmark_json))
        client.log_artifact(parent_id, str(self.state.path))
        by_model = {row["model"]: row for row in rows}
        # the report's own choice (validation first), so that what is registered is what the report shows
        best = {choice.family: (by_model[choice.model], choice) for choice in best_per_family(rows)}
        for family, (row, choice) in best.items():
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
                    registered, description=f"Best {family} model of the raagr2 study (chosen on its best validation "
                                            "mean Dice); a MONAI bundle folder with a plain state_dict.")
            except MlflowException as err:
                if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
                    raise
            version = client.create_model_version(
                registered, source=source, run_id=run_id,
                tags={MODEL_TAG: row["model"], "chosen_on": choice.basis, "score": f"{choice.score:.4f}",
                      "test_dice_mean": str(row["quality"]["dice_mean"])},
            )
            record["registered"][registered] = {"model": row["model"], "version": version.version, "source": source}
            self.state.set("mlflow", record)
        return dict(record["registered"])
