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
def _isolated(isolated_workdir):
    """Every bundle test in its own folder, away from the user's synthetic set."""
