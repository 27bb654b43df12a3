"""One torch thread for the benchmark tests, and bundle folders made from the repository's bundles."""

import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def make_bundle(folder: Path, variant: str = "depthwise", state=None, sparse=None) -> Path:
    """A bundle folder with the configs of ``bundles/<variant>`` and, optionally, models/model(_sparse).pt."""
    shutil.copytree(REPO / "bundles" / variant / "configs", folder / "configs")
    if state is not None or sparse is not None:
        (folder / "models").mkdir()
    if state is not None:
        torch.save(state, folder / "models" / "model.pt")
    if sparse is not None:
        torch.save(sparse, folder / "models" / "model_sparse.pt")
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: light on a shared machine, and less slowed down by it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
