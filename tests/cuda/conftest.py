"""The GPU workflows' tests: the device they run on, a tiny synthetic set and one bundle trained on that device.

Every test in this folder is marked ``cuda`` and runs on ``$RAAGR2_TEST_DEVICE`` (default ``cuda``); where that is a
CUDA device and this machine has none, they are collected and skipped, so a CPU-only CI stays green.
``RAAGR2_TEST_DEVICE=cpu`` runs the very same tests on the CPU, which is how their logic is checked without a GPU.
The workflows run as their users run them, in subprocesses (``python -m monai.bundle``, ``python -m
torch.distributed.run``, ``raagr2``), each given ``--device`` explicitly; one bundle is trained once per session and
shared by the tests that evaluate, infer, prune (into its ``pruned/`` folder) and benchmark it, or export a copy.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raagr2_monai.data import generate

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VARIANT = "depthwise"  # the smallest network keeps every run short
DEVICE = os.environ.get("RAAGR2_TEST_DEVICE", "cuda")
# small enough for two CPU cores and a few seconds on a GPU: 32x32 crops, epochs of 3 iterations
TINY = ["--roi_size", "[32,32]", "--batch_size", "4", "--num_samples", "2"]


def pytest_collection_modifyitems(config, items):
    # this hook sees the whole session's items: only those of this folder are GPU tests
    mine = [item for item in items if HERE in item.path.parents]
    absent = torch.device(DEVICE).type == "cuda" and not torch.cuda.is_available()
    for item in mine:
        item.add_marker(pytest.mark.cuda)
        if absent:
            item.add_marker(pytest.mark.skip(reason="CUDA is not available"))


@pytest.fixture(scope="session")
def device() -> str:
    """The device string every workflow here is given (``--device``)."""
    return DEVICE


def is_cuda(device: str) -> bool:
    """Whether a device string names a GPU (``cuda``, ``cuda:1``)."""
    return torch.device(device).type == "cuda"


def run(*args, cwd: Path, env=None, timeout: int = 900) -> str:
    """Run a command line to the end; a failure shows the end of its output. Returns stdout and stderr together."""
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=dict(os.environ, **(env or {})), capture_output=True, text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, args))} exited with {result.returncode}:\n{output[-4000:]}"
    return output


def bundle_run(run_id: str, bundle: Path, configs, *args, cwd: Path, env=None) -> str:
    """``python -m monai.bundle run <run_id>`` with the bundle's ``configs`` (names without ``.json``)."""
    files = [str(bundle / "configs" / f"{name}.json") for name in configs]
    return run(sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", str(files), *args, cwd=cwd,
               env=env)


def raagr2(*args, cwd: Path, env=None) -> str:
    """The ``raagr2`` command line."""
    return run(sys.executable, "-m", "raagr2_monai.cli", *args, cwd=cwd, env=env)


def copy_bundle(target: Path, variant: str = VARIANT) -> Path:
    """A copy of a shipped bundle (its configs, docs and LICENSE), for runs that write into their bundle."""
    shutil.copytree(REPO / "bundles" / variant, target, ignore=shutil.ignore_patterns("runs", "models", "pruned"))
    return target


def run_record(folder: Path) -> dict:
    """The settings a workflow recorded in ``<folder>/run.json``."""
    return json.loads((folder / "run.json").read_text())["settings"]


def assert_ran_on(settings: dict, device: str) -> None:
    """A run's record names the device it was given, and mixed precision exactly on CUDA."""
    assert torch.device(settings["device"]).type == torch.device(device).type
    assert settings["amp"] is is_cuda(device)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """The working directory of the subprocesses: nothing they write lands in the repository."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "brats"
    generate(str(root), cases=9, seed=3, shape=(48, 48, 16))  # split 5/2/2
    return root


@pytest.fixture(scope="session")
def trained(device, tiny_dataset, tmp_path_factory, workdir) -> Path:
    """A copy of the depthwise bundle trained for one epoch on ``device`` (``models/model.pt``, ``runs/train``)."""
    bundle = copy_bundle(tmp_path_factory.mktemp("trained") / VARIANT)
    bundle_run("training", bundle, ["train"], "--dataset_dir", tiny_dataset, "--device", device, *TINY,
               "--epochs", "1", cwd=workdir)
    return bundle
