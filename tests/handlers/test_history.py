"""Reading a trainer's loss without a host synchronisation per step: ``output_loss`` keeps it a tensor where the
output holds one, ``EpochHistory`` reads an epoch's losses back once, at the epoch's end, and a MONAI trainer with
``decollate=False`` and StatsHandler logging every n-th iteration runs with them (the bundles' GPU settings)."""

import json
import logging

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler

from raagr2_monai.handlers import EpochHistory
from raagr2_monai.handlers.history import LossReader, iteration_loss, log_every, output_loss
from raagr2_monai.losses import RAAGR2Loss


def test_output_loss_keeps_a_tensor_and_takes_what_decollation_read():
    loss = torch.tensor(0.5, requires_grad=True) * 1
    kept = output_loss({"loss": loss, "pred": torch.zeros(2)})
    assert isinstance(kept, torch.Tensor) and not kept.requires_grad and float(kept) == 0.5
    assert output_loss([{"loss": 0.25}, {"loss": 0.25}]) == 0.25  # MONAI's decollated output: already a float
    assert isinstance(output_loss(loss), torch.Tensor) and output_loss(2) == 2.0
    assert output_loss({"pred": 1}) is None and output_loss([]) is None
    assert iteration_loss([{"loss": torch.tensor(0.75)}]) == 0.75
    with pytest.raises(ValueError, match="carries no loss"):
        iteration_loss({"pred": 1})


def test_log_every_is_an_event_filter():
    assert [i for i in range(1, 8) if log_every(3)(None, i)] == [3, 6]
    assert all(log_every(1)(None, i) for i in range(1, 4))
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="log_every needs a whole number of iterations >= 1"):
            log_every(bad)


def test_loss_reader_reads_a_cpu_loss_at_once():
    reader = LossReader()
    assert reader.push(None) is None
    assert reader.push(torch.tensor(0.5)) == 0.5 and reader.push(0.25) == 0.25 and reader.value == 0.25


def test_epoch_history_reads_the_losses_back_once_per_epoch(tmp_path, monkeypatch):
    losses = [0.9, 0.7, 0.6, 0.4, 0.35, 0.2]
    trainer = Engine(lambda engine, batch: {"loss": torch.tensor(losses[engine.state.iteration - 1])})
    history = EpochHistory(tmp_path / "history.json")
    history.attach(trainer)
    reads = []

    def forbidden(self, *args):
        raise AssertionError("a loss was read back during an iteration")

    # a read back of a tensor's value during an iteration (its handlers included) fails the test
    guard = pytest.MonkeyPatch()

    def forbid(engine):
        for name in ("item", "__float__", "tolist", "cpu"):
            guard.setattr(torch.Tensor, name, forbidden)

    trainer.add_event_handler(Events.ITERATION_STARTED, forbid)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: guard.undo())
    original = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: (reads.append(1), original(self, *a, **k))[1])
    try:
        trainer.run([0, 1], max_epochs=3)
    finally:
        guard.undo()
        monkeypatch.undo()
    assert len(reads) == 3  # the epoch's end reads its losses back with one copy
    doc = json.loads((tmp_path / "history.json").read_text())
    assert [e["train_loss"] for e in doc["epochs"]] == pytest.approx([0.8, 0.5, 0.275])
    assert [e["iterations"] for e in doc["epochs"]] == [2, 2, 2]
    assert [i[0] for i in doc["iterations"]] == [1, 2, 3, 4, 5, 6]
    assert [i[2] for i in doc["iterations"]] == pytest.approx(losses)
    assert [i[1] for i in doc["iterations"]] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


def test_epoch_history_takes_the_floats_of_a_decollated_output_as_before(tmp_path):
    trainer = Engine(lambda engine, batch: [{"loss": 0.5 * engine.state.iteration}] * 2)
    history = EpochHistory(tmp_path / "history.json")
    history.attach(trainer)
    trainer.run([0, 1], max_epochs=1)
    assert history.epochs[0]["train_loss"] == 0.75 and [i[2] for i in history.iterations] == [0.5, 1.0]


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_a_monai_trainer_without_decollation_logs_every_nth_iteration(tmp_path):
    """The bundles' GPU settings on the CPU: decollate=False, StatsHandler(output_transform=output_loss,
    iteration_log=log_every(2)), EpochHistory; the figures are those of a decollating trainer."""
    torch.manual_seed(0)
    data = [{"image": torch.randn(2, 4, 16, 16), "label": (torch.rand(2, 3, 16, 16) > 0.5).float()} for _ in range(3)]

    def train(decollate: bool, path):
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Conv2d(4, 3, 3, padding=1), torch.nn.Sigmoid())
        trainer = SupervisedTrainer(
            device=torch.device("cpu"), max_epochs=2, train_data_loader=data, network=net,
            optimizer=torch.optim.Adam(net.parameters(), 1e-2), loss_function=RAAGR2Loss(), decollate=decollate,
            train_handlers=[StatsHandler(name="steps", tag_name="train_loss", output_transform=output_loss,
                                         iteration_log=log_every(2))],
        )
        history = EpochHistory(path)
        history.attach(trainer)
        trainer.run()
        return history

    lines = _Lines()
    logger = logging.getLogger("steps")  # StatsHandler's, which does not propagate to the root
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        tensors = train(False, tmp_path / "a.json")
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    logged = [line for line in lines.lines if "Iter:" in line]
    assert len(logged) == 3 and "train_loss: " in logged[0]  # iterations 2, 4 and 6 of 6
    floats = train(True, tmp_path / "b.json")
    assert tensors.iterations == floats.iterations and len(tensors.iterations) == 6
    assert [e["train_loss"] for e in tensors.epochs] == [e["train_loss"] for e in floats.epochs]
