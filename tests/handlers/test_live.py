"""The handlers a study attaches to a trainer while it runs: curves into a given MLflow run, a progress bar."""

import io
import re
import time

import pytest
import torch
from ignite.engine import Engine, Events

from raagr2_monai.handlers import EpochHistory, MLflowEpochLogger, attach_progress_bar


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _trainer(losses):
    """An engine whose iteration ``i`` (from 1) outputs ``losses[i - 1]`` as MONAI's trainers do (a decollated list)."""
    return Engine(lambda engine, batch: [{"loss": torch.tensor(losses[engine.state.iteration - 1])}])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An MLflow SQLite store (its set-up takes seconds: one per module) and an experiment: (uri, client, id)."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    return uri, client, client.create_experiment("e", (root / "artifacts").as_uri())


def test_mlflow_epoch_logger_logs_the_history_entries_to_the_given_run_at_each_epoch(store, tmp_path):
    uri, client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    other = client.create_run(experiment_id).info.run_id
    losses = [0.9, 0.7, 0.6, 0.4, 0.35, 0.2]
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = _trainer(losses)
    history = EpochHistory(tmp_path / "history.json", optimizer=optimizer)
    history.attach(trainer)
    logged_during_run = []
    MLflowEpochLogger(history, uri, run_id).attach(trainer)
    # what is in the store when each epoch has ended: the curves appear while the run goes on
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: logged_during_run.append(
        len(client.get_metric_history(run_id, "train_loss"))))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: (optimizer.step(), scheduler.step()))
    trainer.run([0, 1], max_epochs=3)

    assert logged_during_run == [1, 2, 3]
    loss = client.get_metric_history(run_id, "train_loss")
    assert [m.step for m in loss] == [1, 2, 3]
    assert [m.value for m in loss] == pytest.approx([e["train_loss"] for e in history.epochs])
    assert [m.value for m in loss] == pytest.approx([0.8, 0.5, 0.275])
    assert [m.value for m in client.get_metric_history(run_id, "lr")] == pytest.approx([0.1, 0.05, 0.025])
    assert set(client.get_run(run_id).data.metrics) == {"train_loss", "lr"}  # no validation ran
    assert client.get_run(other).data.metrics == {}


def test_mlflow_epoch_logger_attached_before_its_history_is_refused(store, tmp_path):
    uri, client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    trainer = _trainer([0.5])
    history = EpochHistory(tmp_path / "history.json")
    MLflowEpochLogger(history, uri, run_id).attach(trainer)
    history.attach(trainer)
    with pytest.raises(RuntimeError, match="attach the EpochHistory to the trainer before this handler"):
        trainer.run([0], max_epochs=1)
    assert client.get_run(run_id).data.metrics == {}


def test_training_progress_bar_counts_epochs_and_iterations_on_a_terminal_only():
    terminal = Terminal()

    def step(engine, batch):
        time.sleep(0.12)  # tqdm redraws at most every 0.1 s
        return [{"loss": torch.tensor(0.5)}]

    trainer = Engine(step)
    assert attach_progress_bar(trainer, "train/baseline", terminal) is not None
    # a handler of the epoch's end, as the validation is: its lines must not follow the bar on its line
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: terminal.write(f"validated {engine.state.epoch}\n"))
    trainer.run([0, 1, 2], max_epochs=2)
    drawn = terminal.getvalue()
    for epoch in (1, 2):
        assert f"train/baseline epoch {epoch}/2: " in drawn
        assert re.search(rf"train/baseline epoch {epoch}/2: +67%\|[^\r]*\| 2/3 \[[^\r]*loss=0\.5000\]", drawn)
        # cleared (carriage return, spaces, carriage return) before the epoch's end
        assert re.search(rf"\r +\rvalidated {epoch}\n", drawn)
    assert "/4" not in drawn

    log = io.StringIO()
    quiet = _trainer([0.5] * 6)
    handlers_before = sum(len(quiet._event_handlers[event]) for event in Events)
    assert attach_progress_bar(quiet, "train/baseline", log) is None
    quiet.run([0, 1, 2], max_epochs=2)
    assert log.getvalue() == "" and sum(len(quiet._event_handlers[event]) for event in Events) == handlers_before
