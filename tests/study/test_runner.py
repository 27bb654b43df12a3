"""``run_study`` refuses what it must not touch, before anything runs; a step runs in a worker with what it reports
to."""

import pickle

import pytest
import torch

from raagr2_monai.study import ModelSpec, run_study
from raagr2_monai.study.runner import StepRun, _run_in_worker
from raagr2_monai.study.tasks import Task

from .standin_steps import FailingSteps


def test_bad_profiles_and_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'full' profile runs on real BraTS data on a GPU: pass --data_dir"):
        run_study("full", output=tmp_path / "full")
    assert not (tmp_path / "full").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no state.json: not a study folder"):
        run_study("tiny", output=other)
    assert (other / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        run_study("tiny", output=tmp_path / "file")


def test_a_step_runs_in_a_worker_with_what_it_reports_to_passed_whole():
    """A step's :class:`StepRun` travels pickled to the worker, which runs the step and adds its peak memory."""
    run = StepRun("sqlite:///nowhere.db", None, 1, "cpu")
    assert pickle.loads(pickle.dumps(run)) == run
    task = Task("evaluate/baseline", "evaluate", ModelSpec("baseline", "architecture", "baseline"))
    outputs, silenced = _run_in_worker(FailingSteps("none", 0.0), task, torch.get_num_threads(), (), run)
    assert outputs["made"] == "baseline" and outputs["peak_rss_mb"] > 0 and silenced == {}
