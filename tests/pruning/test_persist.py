"""A structurally pruned network saved as state_dict + pruning history and rebuilt from disk."""

import json

import pytest
import torch

from raagr2_monai.networks import count_parameters, get_network
from raagr2_monai.pruning import HISTORY_FORMAT, build_pruned_network, load_pruned, prune, read_history, save_pruned



@pytest.mark.parametrize("variant", ["baseline", "encdec"])
def test_rebuilt_network_gives_the_same_outputs(tmp_path, variant):
    torch.manual_seed(0)
    net = get_network(variant)
    result = prune(net, "depgraph", 0.2, example_inputs=torch.zeros(1, 4, 16, 16))
    weights, history = save_pruned(tmp_path / "pruned", net, result.history, {"method": "depgraph", "ratio": 0.2})

    assert sorted(p.name for p in (tmp_path / "pruned").iterdir()) == ["model.pt", "pruning_history.json"]
    document = json.loads(history.read_text())
    assert document["format"] == HISTORY_FORMAT
    assert (document["variant"], document["in_channels"], document["out_channels"]) == (variant, 4, 3)
    assert document["meta"] == {"method": "depgraph", "ratio": 0.2}
    assert document["history"] == result.history

    rebuilt = load_pruned(variant, weights, history)
    assert count_parameters(rebuilt) == result.params_after
    net.eval()
    rebuilt.eval()
    x = torch.rand(2, 4, 32, 32)
    assert torch.allclose(rebuilt(x), net(x), atol=1e-6)

    # the structure alone (weights to be loaded by a CheckpointLoader), from the history file
    shell = build_pruned_network(variant, str(history))
    assert {k: v.shape for k, v in shell.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_rebuilt_network_takes_a_dropout(tmp_path):
    # MONAI Label's epistemic scoring sets network_def["dropout"] on the bundle it samples
    net = get_network("baseline")
    result = prune(net, "depgraph", 0.2, example_inputs=torch.zeros(1, 4, 32, 32))
    _, history = save_pruned(tmp_path, net, result.history)
    for p in (0.2, 0.35):
        shell = build_pruned_network("baseline", str(history), dropout=p)
        drops = [m.p for m in shell.modules() if isinstance(m, torch.nn.Dropout)]
        assert drops and set(drops) == {p}
        assert {k: v.shape for k, v in shell.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="dropout"):
        build_pruned_network("baseline", str(history), dropout=1.5)


def test_checkpoint_dict_and_mismatches(tmp_path):
    torch.manual_seed(0)
    net = get_network("depthwise")
    result = prune(net, "depgraph", 0.1, example_inputs=torch.zeros(1, 4, 16, 16))
    weights, history = save_pruned(tmp_path, net, result.history)
    torch.save({"model": torch.load(weights, weights_only=True)}, tmp_path / "checkpoint.pt")
    assert count_parameters(load_pruned("depthwise", tmp_path / "checkpoint.pt", history)) == result.params_after

    with pytest.raises(ValueError, match="recorded for variant='depthwise'.*variant='paired'"):
        build_pruned_network("paired", history)
    with pytest.raises(ValueError, match="out_channels=3.*out_channels=5"):
        build_pruned_network("depthwise", history, out_channels=5)
    dense = tmp_path / "dense.pt"
    torch.save(get_network("depthwise").state_dict(), dense)
    with pytest.raises(ValueError, match="do not fit the pruned 'depthwise' network"):
        load_pruned("depthwise", dense, history)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pruned("depthwise", tmp_path / "missing.pt", history)
    with pytest.raises(ValueError, match="does not fit a 'baseline' network"):
        build_pruned_network("baseline", [["encoder.9.fuse.0", True, [0]]])


def test_read_history_rejects_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.json"):
        read_history(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        read_history(broken)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"history": []}))
    with pytest.raises(ValueError, match="other.json is not a pruning history"):
        read_history(other)
    bad_steps = tmp_path / "steps.json"
    bad_steps.write_text(json.dumps({"format": HISTORY_FORMAT, "history": [["x", True]]}))
    with pytest.raises(ValueError, match="steps.json: 'history' must be a list"):
        read_history(bad_steps)
