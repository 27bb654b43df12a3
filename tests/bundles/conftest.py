"""A tiny synthetic BraTS-like set shared by the bundle workflow tests, and a helper to run a bundle workflow."""

from pathlib import Path

import pytest

from raagr2_monai.data import generate

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
VARIANT_NAMES = ["baseline", "depthwise", "paired", "encdec"]

# settings small enough for two CPU cores: 32x32 crops, one epoch of a few iterations
TINY = {"roi_size": [32, 32], "epochs": 1, "batch_size": 4, "num_samples": 2, "num_workers": 0}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("synthetic") / "brats"
    generate(str(root), cases=9, seed=3, shape=(48, 48, 16))  # split 5/2/2: two validation cases for two ranks
    return str(root)


@pytest.fixture(autouse=True)
def _no_default_synthetic(monkeypatch, tmp_path):
    # a test that falls back on the built-in set must not write into the user's cache
    monkeypatch.setenv("RAAGR2_SYNTHETIC_DIR", str(tmp_path / "default-synthetic"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
