"""Checkpoints saved before the networks returned logits give the same label maps after.

The networks ended in a sigmoid until 2026-12-07; they now return logits and the sigmoid moved into the inferer and
the loss. Their weights are unchanged, so a checkpoint saved before must give the label maps it gave then. The label
maps in ``golden/`` were written by the bundle's inference workflow at commit c973149 (sigmoid inside the network)
from the weights :func:`_weights` rebuilds, on two synthetic studies, on whole slices and on overlapping windows;
``python -m tests.bundles.test_checkpoint_compatibility`` records them again (only ever from code that predates a change to the forward pass).
"""

import hashlib
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigWorkflow

from raagr2_monai.data import generate
from raagr2_monai.networks import get_network

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden" / "depthwise_seed0_label_maps.npz"
MODALITIES = ("t1ce", "t1", "t2", "flair")


def _weights() -> dict:
    """A depthwise checkpoint: seeded initial weights with the head's bias at 0, so that about half the voxels of each
    region are above the threshold and a changed output shows in the label maps."""
    torch.manual_seed(0)
    net = get_network("depthwise")
    with torch.no_grad():
        net.head.bias.zero_()
    return net.state_dict()


def _digest(state: dict) -> str:
    sha = hashlib.sha256()
    for key in sorted(state):
        sha.update(key.encode())
        sha.update(state[key].detach().cpu().numpy().tobytes())
    return sha.hexdigest()


def _label_maps(tmp_path: Path) -> dict:
    data = tmp_path / "studies"
    generate(str(data), cases=2, seed=5, shape=(48, 48, 16))
    state = _weights()
    torch.save(state, tmp_path / "model.pt")
    bundle = tmp_path / "depthwise"
    shutil.copytree(REPO / "bundles" / "depthwise", bundle)
    cases = sorted(p.name for p in data.iterdir() if p.is_dir())
    maps = {}
    # whole slices, and overlapping windows, whose outputs are blended where they overlap
    for mode, whole_slice in (("whole", True), ("windows", False)):
        out = tmp_path / mode
        wf = ConfigWorkflow(
            config_file=str(bundle / "configs" / "inference.json"), logging_file=False, workflow_type=None,
            run_id="inferring", bundle_root=str(bundle), ckpt_path=str(tmp_path / "model.pt"), device="cpu",
            output_dir=str(out), roi_size=[32, 32], whole_slice=whole_slice,
            data=[{"case": c, "image": [str(data / c / f"{c}_{m}.nii.gz") for m in MODALITIES]} for c in cases],
        )
        wf.initialize()
        wf.run()
        wf.finalize()
        for c in cases:
            maps[f"{c}__{mode}"] = np.asarray(nib.load(str(out / f"{c}_pred.nii.gz")).dataobj).astype(np.uint8)
    return {"digest": _digest(state), **maps}


def test_a_checkpoint_saved_before_logits_gives_the_same_label_maps(tmp_path):
    golden = np.load(GOLDEN)
    now = _label_maps(tmp_path)
    assert now["digest"] == str(golden["digest"]), "the weights differ from those the label maps were recorded with"
    cases = [key for key in golden.files if key != "digest"]
    assert sorted(cases) == sorted(k for k in now if k != "digest") and len(cases) == 4
    for case in cases:
        recorded = golden[case]
        assert len(np.unique(recorded)) >= 3, "a label map that tests little"
        assert np.array_equal(now[case], recorded), f"{case}: {(now[case] != recorded).sum()} voxels differ"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        recorded = _label_maps(Path(folder))
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **recorded)
    print(f"recorded {GOLDEN} ({GOLDEN.stat().st_size} bytes)", file=sys.stderr)
