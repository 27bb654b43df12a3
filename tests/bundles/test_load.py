"""A bundle folder as a network: its name, its ``network_def`` with its weights, and clear errors."""

import json
import shutil

import pytest
import torch

from raagr2_monai.bundle import bundle_name, load_bundle_network
from raagr2_monai.networks import CheckpointMismatchError, get_network

from .conftest import BUNDLES


def _copy(variant, folder):
    shutil.copytree(BUNDLES / variant / "configs", folder / "configs")
    return folder


def test_weights_are_loaded_exactly(tmp_path):
    bundle = _copy("depthwise", tmp_path / "depthwise")
    (bundle / "models").mkdir()
    state = get_network("depthwise").state_dict()
    torch.save(state, bundle / "models" / "model.pt")
    net = load_bundle_network(bundle)
    assert type(net).__name__ == "DepthwiseSharedRAAGR2Net" and net.training
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    torch.save(get_network("baseline").state_dict(), bundle / "models" / "model.pt")
    with pytest.raises(CheckpointMismatchError):
        load_bundle_network(bundle)


def test_names_are_relative_to_the_outermost_bundle(tmp_path):
    outer = _copy("baseline", tmp_path / "zoo" / "baseline")
    inner = _copy("baseline", outer / "pruned" / "magnitude-20")
    assert bundle_name(outer) == "baseline"
    assert bundle_name(inner) == "baseline/pruned/magnitude-20"
    assert bundle_name(tmp_path / "zoo" / "baseline" / "pruned") == "baseline/pruned"


def test_bad_folders_and_configs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="Bundle folder .*nowhere does not exist"):
        load_bundle_network(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is not a bundle: .*configs/inference.json is missing"):
        load_bundle_network(tmp_path)
    bundle = _copy("paired", tmp_path / "paired")
    config = bundle / "configs" / "inference.json"
    document = json.loads(config.read_text())
    document["network_def"] = {"_target_": "torch.nn.ReLU"}
    config.write_text(json.dumps(document))
    assert type(load_bundle_network(bundle)).__name__ == "ReLU"
    document["network_def"] = "$list()"
    config.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="'network_def' of .*inference.json is a list, not a torch.nn.Module"):
        load_bundle_network(bundle)
    del document["network_def"]
    config.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="inference.json defines no 'network_def'"):
        load_bundle_network(bundle)
