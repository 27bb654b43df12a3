"""An Ignite handler that logs a training run's curves to a given MLflow run as each epoch ends."""

from __future__ import annotations

import math
import time
from typing import Any, List, Mapping, Optional, Sequence

from ignite.engine import Engine, Events

from .history import CURVES, EpochHistory

__all__ = ["MLflowEpochLogger", "epoch_metrics"]


def epoch_metrics(entry: Mapping[str, Any], keys: Sequence[str] = CURVES, timestamp: Optional[int] = None) -> List[Any]:
    """An :class:`EpochHistory` entry's curves as MLflow metrics at ``step`` = its epoch; figures that are not finite
    (the mean loss of an epoch without iterations) are left out.

    Args:
        entry: one entry of ``history.json``'s ``epochs``.
        keys: the figures to take.
        timestamp: milliseconds since the epoch (default: now).

    Example::

        >>> [(m.key, m.value, m.step) for m in epoch_metrics({"epoch": 2, "train_loss": 0.5, "lr": float("nan")})]
        [('train_loss', 0.5, 2)]
    """
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000) if timestamp is None else timestamp
    return [
        Metric(key, float(entry[key]), stamp, int(entry["epoch"]))
        for key in keys
        if key in entry and math.isfinite(float(entry[key]))
    ]


class MLflowEpochLogger:
    """Logs each epoch's curves (:data:`~raagr2_monai.handlers.history.CURVES`: training loss, validation Dice per
    region, learning rate) to an existing MLflow run as the epoch ends, with ``step`` = the epoch.

    MONAI's ``MLFlowHandler`` chooses its run by name (the latest unfinished run of that name) and logs the engine's
    own metrics, not the evaluator's; this handler logs to one run id that the caller opened and will close, and takes
    its figures from an :class:`~raagr2_monai.handlers.history.EpochHistory`, so that MLflow and ``history.json`` hold
    the same numbers (:func:`epoch_metrics`).

    Args:
        history: the run's history; attach it to the trainer before this handler, so that the epoch's entry is
            written when this handler runs.
        tracking_uri: the MLflow tracking URI.
        run_id: the run the curves go to.
        keys: the entry's figures to log.

    Example::

        history = EpochHistory(run_dir / "history.json", evaluator, optimizer)
        history.attach(trainer)
        MLflowEpochLogger(history, "sqlite:///study/mlruns.db", run_id).attach(trainer)
    """

    def __init__(self, history: EpochHistory, tracking_uri: str, run_id: str, keys: Sequence[str] = CURVES) -> None:
        import mlflow

        self.history = history
        self.run_id = run_id
        self.keys = tuple(keys)
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)

    def attach(self, trainer: Engine) -> None:
        """Log at the end of every epoch of ``trainer``."""
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_completed(self, engine: Engine) -> None:
        entry = self.history.epochs[-1] if self.history.epochs else {}
        if entry.get("epoch") != engine.state.epoch:
            raise RuntimeError(
                f"MLflowEpochLogger: the history holds no entry for epoch {engine.state.epoch}; attach the "
                "EpochHistory to the trainer before this handler."
            )
        self.client.log_batch(self.run_id, metrics=epoch_metrics(entry, self.keys))
