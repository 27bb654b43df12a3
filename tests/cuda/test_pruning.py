"""``monai.bundle run pruning`` (``configs/prune.json``) of the bundle trained on the test device, by each method,
fine-tuned there for one epoch: the pruned bundle is written with what the pruning achieved, and the masks of
magnitude and SNIP pruning are still in force after the optimizer steps on the device (AMP's scaled steps on CUDA)."""

import json

import pytest
import torch

from raagr2_monai.bundle.load import load_bundle_network
from raagr2_monai.networks import count_parameters, get_network

from .conftest import TINY, VARIANT, assert_ran_on, bundle_run, run_record

RATIO = 0.2


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("method", ["magnitude", "snip", "depgraph"])
def test_pruning_on_the_device(method, trained, device, tiny_dataset, workdir):
    # SNIP scores one batch padded to 64x64 rather than a BraTS slice: enough to reach every weight of a 32x32 crop
    snip = ["--snip_batches", "1", "--snip_size", "[64,64]"] if method == "snip" else []
    bundle_run("pruning", trained, ["train", "prune"], "--method", method, "--ratio", str(RATIO),
               "--finetune_epochs", "1", "--dataset_dir", tiny_dataset, "--device", device, *TINY, *snip, cwd=workdir)
    out = trained / "pruned" / f"{method}-{round(RATIO * 100)}"
    models = out / "models"
    report = json.loads((out / "pruning.json").read_text())
    assert report["method"] == method and report["requested_ratio"] == RATIO
    assert_ran_on(run_record(out / "runs" / "prune"), device)
    if method == "depgraph":
        assert (models / "pruning_history.json").is_file()
        assert report["params_before"] == count_parameters(get_network(VARIANT)) > report["params_after"]
        assert report["achieved"] == pytest.approx(1 - report["params_after"] / report["params_before"])
        assert count_parameters(load_bundle_network(out, require_weights=True)) == report["params_after"]
        return
    masks, state = _load(models / "masks.pt"), _load(models / "model.pt")
    pruned = sum(int((~mask).sum()) for mask in masks.values())
    assert report["achieved"] == pytest.approx(RATIO, abs=1e-6)
    assert pruned / sum(mask.numel() for mask in masks.values()) == pytest.approx(report["achieved"])
    for name, mask in masks.items():
        assert torch.count_nonzero(state[name][~mask]) == 0, f"{name}: a pruned weight came back in fine-tuning"
    # the fine-tuning on the device moved the kept weights away from the trained source's
    source = _load(trained / "models" / "model.pt")
    assert any(not torch.equal(state[name], source[name] * mask) for name, mask in masks.items())
