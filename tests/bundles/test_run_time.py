"""The run-time layer the configs call (``raagr2_monai.bundle``) unit by unit: checks named by dotted path, what a
run records, where a pruning run writes, the teacher and the loss it trains with."""

import json
import sys

import pytest
import torch

from raagr2_monai.bundle import (
    check_loader_weights,
    check_prune_settings,
    check_rank_share,
    checked,
    load_teacher,
    pruning_run_settings,
    record_run,
    run_pruning,
    run_settings,
)
from raagr2_monai.data import check_roi_size
from raagr2_monai.handlers import WeightsLoader
from raagr2_monai.losses import DistillationLoss, RAAGR2Loss, distilled_loss
from raagr2_monai.networks import get_network


def test_checked_runs_a_check_named_by_dotted_path(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest"])  # not the monai.bundle command line: errors propagate as raised
    assert checked("raagr2_monai.data.check_roi_size", roi_size=[64, 64]) == check_roi_size([64, 64])
    with pytest.raises(ValueError, match="roi_size"):
        checked("raagr2_monai.data.check_roi_size", roi_size=[63, 64])
    with pytest.raises(ValueError, match="'raagr2_monai.data.no_such_check' names no function"):
        checked("raagr2_monai.data.no_such_check")


def test_checked_ends_a_command_line_run_in_one_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["monai.bundle", "run", "training", "--config_file", "train.json"])
    with pytest.raises(SystemExit) as ended:
        checked("raagr2_monai.data.check_roi_size", roi_size=[63, 64])
    assert str(ended.value).startswith("error: ") and "roi_size" in str(ended.value)


def test_the_weights_every_loader_will_load_must_exist(tmp_path):
    net = torch.nn.Linear(1, 1)
    present = tmp_path / "model.pt"
    torch.save(net.state_dict(), present)
    loaders = [WeightsLoader(str(present), net), object()]  # anything that is not a loader is left alone
    assert check_loader_weights(loaders) == [str(present)]
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        check_loader_weights([WeightsLoader(str(tmp_path / "missing.pt"), net)])


def test_run_settings_record_what_only_the_run_knows():
    recorded = run_settings({"datalist": None, "split": [0.7, 0.15, 0.15], "device": torch.device("cpu")},
                            {"training": [1, 2, 3], "validation": []})
    assert recorded == {"datalist": None, "split": [0.7, 0.15, 0.15], "device": "cpu", "training_cases": 3,
                        "validation_cases": 0}
    assert run_settings({"datalist": "d.json", "split": [0.7, 0.15, 0.15]})["split"] is None


def test_a_pruning_run_records_only_the_settings_that_applied():
    settings = {"method": "magnitude", "snip_size": [240, 240], "teacher_bundle": None, "distill_weight": 0.5,
                "from_scratch": True, "source_ckpt": "models/model.pt"}
    assert pruning_run_settings(settings) == {**settings, "snip_size": None, "distill_weight": None,
                                              "source_ckpt": None}
    snip = {**settings, "method": "snip", "teacher_bundle": "bundles/baseline", "from_scratch": False}
    assert pruning_run_settings(snip) == snip


def test_record_run_writes_the_settings_and_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest"])
    path = record_run(str(tmp_path / "run"), {"epochs": 2}, seed=7)
    record = json.loads(open(path).read())
    assert record["seed"] == 7 and record["settings"] == {"epochs": 2} and "torch" in record["versions"]


def test_a_rank_share_defaults_to_the_process_group_size():
    check_rank_share([{"case": "a"}])  # one process outside a group
    with pytest.raises(ValueError, match="1 subject\\(s\\) to validate or evaluate for 2 processes"):
        check_rank_share([{"case": "a"}], world_size=2)


def test_pruning_settings_ask_for_the_weights_to_prune_unless_from_scratch(tmp_path):
    missing = tmp_path / "model.pt"
    with pytest.raises(FileNotFoundError, match="source_ckpt"):
        check_prune_settings("magnitude", 0.2, source_ckpt=missing)
    check_prune_settings("snip", 0.2, finetune_epochs=2, from_scratch=True, source_ckpt=missing)


def test_run_pruning_loads_the_source_weights_unless_from_scratch(tmp_path):
    trained = get_network("depthwise")
    path = tmp_path / "model.pt"
    torch.save(trained.state_dict(), path)

    class Handler:
        result = "pruned"

        def __call__(self, engine):
            pass

    class Engine:
        def __init__(self, network):
            self.network = network

        def run(self):
            pass

    torch.manual_seed(1)
    fresh = get_network("depthwise")
    run_pruning(Engine(fresh), Engine(fresh), Handler(), finetune_epochs=0, source_ckpt=path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    torch.manual_seed(1)
    untouched = get_network("depthwise")
    run_pruning(Engine(untouched), Engine(untouched), Handler(), finetune_epochs=0, source_ckpt=path,
                from_scratch=True)
    assert not torch.equal(untouched.head.weight, trained.head.weight)


def test_no_teacher_means_the_plain_loss(tmp_path):
    plain = RAAGR2Loss()
    assert load_teacher(None) is None
    assert distilled_loss(plain, None, get_network("depthwise")) is plain
    student = get_network("depthwise")
    kd = distilled_loss(plain, get_network("depthwise"), student, 0.3)
    assert isinstance(kd, DistillationLoss) and kd.weight == 0.3
    kd.remove()
    with pytest.raises(FileNotFoundError, match="is not a bundle"):
        load_teacher(tmp_path)
