"""Small networks and bundles for the deploy tests, each exported once per module.

Networks are RAAGR2-Nets of reduced width (:data:`SMALL`) where the test does not go through a bundle's own
``network_def``; a DepGraph-pruned bundle is full width, because its ``network_def``
(``raagr2_monai.pruning.build_pruned_network``) rebuilds the default width.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from raagr2_monai.bundle.pruned import pruned_network_def
from raagr2_monai.networks import get_network
from raagr2_monai.pruning import prune, save_pruned
from raagr2_monai.utils import atomic_save

REPO = Path(__file__).resolve().parents[2]
#: Encoder widths of the test networks: the default architecture, a sixteenth of the channels squared.
SMALL = (8, 16, 32, 64, 128)
#: Parity inputs (batch, H, W) small enough for a shared two-core machine; one non-square.
PARITY = ((2, 32, 32), (1, 48, 32))
PRUNED_NETWORK_DEF = pruned_network_def("baseline", "depgraph")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # on a loaded two-core machine two intra-op threads can be ten times slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def calibrate(network: torch.nn.Module) -> torch.nn.Module:
    """Set BatchNorm statistics from random inputs, and the head's bias to 0: fresh statistics (mean 0, variance 1)
    saturate every sigmoid, and the head's prior (HEAD_PRIOR) keeps fresh outputs below the threshold, and a label
    map that is one label everywhere would agree between backends whatever they compute."""
    with torch.no_grad():
        network.head.bias.zero_()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    network.train()
    with torch.no_grad():
        for _ in range(2):
            network(torch.randn(2, 4, 32, 32))
    return network.eval()


def make_bundle(root: Path, network_def: dict, state: dict = None) -> Path:
    """A bundle folder: the baseline bundle's configs with ``network_def`` replaced, and ``state`` saved as
    ``models/model.pt`` (when given)."""
    shutil.copytree(REPO / "bundles" / "baseline" / "configs", root / "configs")
    config = root / "configs" / "inference.json"
    document = json.loads(config.read_text())
    document["network_def"] = network_def
    config.write_text(json.dumps(document, indent=4))
    if state is not None:
        atomic_save(state, root / "models" / "model.pt")
    return root


def small_bundle(root: Path, seed: int = 0) -> Path:
    """An unpruned baseline bundle of width :data:`SMALL` with fresh weights drawn with ``seed``."""
    torch.manual_seed(seed)
    network = calibrate(get_network("baseline", features=SMALL))
    network_def = {
        "_target_": "raagr2_monai.networks.RAAGR2Net", "in_channels": 4, "out_channels": 3, "features": list(SMALL)
    }
    return make_bundle(root, network_def, network.state_dict())


def pruned_bundle(root: Path, ratio: float = 0.7) -> Path:
    """A DepGraph-pruned baseline bundle (full width pruned by ``ratio``), as ``configs/prune.json`` writes it."""
    torch.manual_seed(1)
    network = get_network("baseline")
    result = prune(network, "depgraph", ratio, example_inputs=torch.zeros(1, 4, 32, 32))
    calibrate(network)
    save_pruned(root / "models", network, result.history, {"method": "depgraph", "ratio": ratio})
    return make_bundle(root, PRUNED_NETWORK_DEF)
