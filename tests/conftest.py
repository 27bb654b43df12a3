"""Settings shared by the whole suite."""

import os

import pytest
import torch


def pytest_configure(config):
    # pytest-xdist starts one worker per core; torch's default of one intra-op thread per core in every worker would
    # put twice as many busy threads as cores on the machine, and every test would wait on the others
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _study_cache(tmp_path_factory):
    # the bundles' study cache goes to the session's folder, never into the repository's bundles/ or a user's cache
    folder = tmp_path_factory.mktemp("study-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("RAAGR2_CACHE_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture
def backend_flags():
    """cuDNN's and TF32's global settings, restored after the test."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.benchmark, cudnn.deterministic)
    new_api = hasattr(matmul, "fp32_precision")  # torch 2.9 and later; reading the legacy flags then is an error
    tf32 = (matmul.fp32_precision, cudnn.conv.fp32_precision) if new_api else (matmul.allow_tf32, cudnn.allow_tf32)
    yield
    cudnn.benchmark, cudnn.deterministic = saved
    if new_api:
        matmul.fp32_precision, cudnn.conv.fp32_precision = tf32
    else:
        matmul.allow_tf32, cudnn.allow_tf32 = tf32


@pytest.fixture
def isolated_workdir(monkeypatch, tmp_path):
    """A workflow test's surroundings: the built-in synthetic set (a fallback) in the test's folder, never the user's
    cache; MLflow's artifact progress bar off; the test's folder as the working directory."""
    monkeypatch.setenv("RAAGR2_SYNTHETIC_DIR", str(tmp_path / "default-synthetic"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
    return tmp_path
