"""The study in MLflow: a parent run with the settings, one child run per model, the report's files on the parent,
and the best model of each family registered as its bundle folder (configs and a plain state_dict, never a pickle).

Tracking goes to an SQLite store in the study folder (``mlruns.db``; MLflow 3 refuses a file store) and artifacts to
``mlartifacts/`` beside it. The run ids are recorded in the study's state under ``"mlflow"``, so a resumed study logs
only what is missing.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Tuple, Union

from raagr2_monai.report import best_per_family

from .state import StudyState

__all__ = ["EXPERIMENT", "MODEL_TAG", "StudyTracker", "tracking_uri"]

PathLike = Union[str, os.PathLike]

#: The MLflow experiment of every study.
EXPERIMENT = "raagr2_study"
#: MLflow tag naming the study model a child run belongs to.
MODEL_TAG = "raagr2.model"
_PARENT_TAG = "mlflow.parentRunId"
#: Per-epoch figures of ``history.json`` logged as metrics by epoch.
_CURVES = ("train_loss", "val_mean_dice", "val_dice_tc", "val_dice_wt", "val_dice_et", "lr")


def tracking_uri(root: PathLike) -> str:
    """The MLflow tracking URI of the study in ``root``: an SQLite file in the folder.

    Example::

        >>> tracking_uri("/studies/quick")
        'sqlite:////studies/quick/mlruns.db'
    """
    return f"sqlite:///{Path(root) / 'mlruns.db'}"


class StudyTracker:
    """Logs a study's rows to MLflow and registers its best models; what is logged is recorded in ``state``.

    Args:
        root: the study folder (row sources are relative to it).
        state: the study's state, where the run ids go (key ``"mlflow"``).

    Example::

        tracker = StudyTracker(root, state)
        runs = tracker.log_models(rows, profile.settings(), {"seed": 0})
        registered = tracker.finish(rows, root / "report.md", root / "benchmark.json")
    """

    def __init__(self, root: PathLike, state: StudyState) -> None:
        self.root = Path(root)
        self.state = state

    @property
    def tracking_uri(self) -> str:
        """The study's MLflow tracking URI (see :func:`tracking_uri`)."""
        return tracking_uri(self.root)

    def _client(self) -> Tuple[Any, str]:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            # an explicit artifact location: the SQLite store would otherwise put artifacts under the working directory
            experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(self.root / "mlartifacts").as_uri())
        else:
            experiment_id = experiment.experiment_id
        return client, experiment_id

    def _record(self) -> Dict[str, Any]:
        return dict(self.state.data.get("mlflow") or {"parent": None, "children": {}, "registered": {}})

    def log_models(
        self, rows: Sequence[Mapping[str, Any]], profile: Mapping[str, Any], params: Mapping[str, Any]
    ) -> Dict[str, str]:
        """Log the study's parent run (settings) and one child run per model (params, metrics by epoch and final,
        the evaluation's files); runs already logged are kept.

        Args:
            rows: the report's rows (:func:`raagr2_monai.report.collect_rows`).
            profile: the profile's settings, logged as ``profile.<name>`` parameters of the parent run.
            params: further parameters of the parent run (data folder, seed).

        Returns:
            Model name -> child run id.
        """
        from mlflow.entities import Metric, Param

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
        parent_id = record["parent"]
        for row in rows:
            name = row["model"]
            if name in record["children"]:
                continue
            # a child logged by an interrupted run, but not recorded, is replaced
            stale = client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{MODEL_TAG}` = '{name}' and tags.`{_PARENT_TAG}` = '{parent_id}'",
            )
            for run in stale:
                client.delete_run(run.info.run_id)
            child = client.create_run(experiment_id, run_name=name, tags={_PARENT_TAG: parent_id, MODEL_TAG: name,
                                                                          "raagr2.family": row["family"]})
            run_id = child.info.run_id
            row_params = {k: row[k] for k in ("label", "kind", "family", "variant", "method", "ratio",
                                              "finetune_epochs", "from_scratch")}
            row_params.update({f"source.{k}": v for k, v in row["sources"].items() if k != "mlflow_run_id"})
            now = int(time.time() * 1000)
            metrics = [
                Metric(f"{section}.{key}", float(value), now, 0)
                for section in ("quality", "cost", "reduction")
                for key, value in row[section].items()
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
            ]
            for epoch in row["history"].get("epochs") or []:
                for key in _CURVES:
                    if key in epoch and math.isfinite(float(epoch[key])):
                        metrics.append(Metric(key, float(epoch[key]), now, int(epoch["epoch"])))
            client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in row_params.items()])
            for rel in (row["sources"]["run_json"], row["sources"]["pruning_json"],
                        f"{row['sources']['eval_dir']}/metrics_per_subject.csv",
                        f"{row['sources']['eval_dir']}/metrics_summary.csv"):
                if rel and (self.root / rel).is_file():
                    client.log_artifact(run_id, str(self.root / rel), artifact_path="results")
            client.set_terminated(run_id)
            record["children"][name] = run_id
            self.state.set("mlflow", record)
        return dict(record["children"])

    def finish(self, rows: Sequence[Mapping[str, Any]], report: PathLike, benchmark_json: PathLike) -> Dict[str, Any]:
        """Attach the report, tables, charts, benchmark and state to the parent run, register the best model of each
        family (:func:`raagr2_monai.report.best_per_family`: the best validation mean Dice, the baseline excluded, as
        the report shows it) without pickling it, and end the parent run.

        A registered version's source is the child run's ``bundle`` artifact folder: the bundle's configs and its
        plain state_dict (``models/model.pt``, plus the pruning history or masks), loadable with
        ``torch.load(weights_only=True)``.

        Args:
            rows: the report's rows, every one logged by :meth:`log_models`.
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
        client.set_terminated(parent_id)
        return dict(record["registered"])
