"""The bundle workflows on the test device, as a user runs them: training with AMP, evaluation, inference by
``monai.bundle run inferring`` and by ``raagr2 segment`` (the same label map, bit for bit), export of the trained
bundle, and the inference path of MONAI Label, which hands a bundle its device as the plain string ``"cuda"``.

On a GPU these are the paths that a CPU run never takes: float16 autocast, tensors that must come back to the CPU
before they are scored or written (evaluation once crashed in the subject scoring on a cuda/cpu mismatch), weights
saved from CUDA tensors.
"""

import csv
import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import pytest
import numpy as np
import torch

from raagr2_monai.data import load_split, make_case
from raagr2_monai.deploy import state_dict_sha256
from raagr2_monai.networks import get_network

from ..bundles import test_monailabel as monailabel
from .conftest import VARIANT, assert_ran_on, bundle_run, copy_bundle, raagr2, run_record

MODALITIES = ("t1ce", "t1", "t2", "flair")


def test_training_writes_the_model_and_records_the_device_and_amp(trained, device):
    state = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(state) == set(get_network(VARIANT).state_dict())  # a plain state_dict, as every loader expects
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    last = torch.load(trained / "runs" / "train" / "last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"]["iteration"] == last["trainer"]["epoch_length"]  # one epoch
    assert_ran_on(run_record(trained / "runs" / "train"), device)


def test_evaluation_scores_every_test_subject(trained, device, tiny_dataset, tmp_path, workdir):
    out = tmp_path / "eval"
    bundle_run("evaluating", trained, ["train", "evaluate"], "--dataset_dir", tiny_dataset, "--output_dir", out,
               "--roi_size", "[32,32]", "--device", device, cwd=workdir)
    with open(out / "metrics_per_subject.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == [e["case"] for e in load_split(str(tiny_dataset), "testing")]
    # every synthetic case has a tumour: a whole-tumour Dice is a number (0 when missed), never NaN
    assert all(math.isfinite(float(r["dice_WT"])) and 0.0 <= float(r["dice_WT"]) <= 1.0 for r in rows)
    assert sorted(p.name for p in (out / "predictions").iterdir()) == sorted(f"{r['case']}_pred.nii.gz" for r in rows)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(f"{r['case']}.png" for r in rows)
    assert_ran_on(run_record(out), device)


def test_bundle_inference_and_segment_write_the_same_label_maps(trained, device, tiny_dataset, tmp_path, workdir):
    """Both run the bundle's inference config at its ``amp`` setting (float16 autocast on CUDA), with the same
    weights on the same device: the label maps must be the same arrays, on each input's own grid."""
    studies = tmp_path / "studies"
    cases = sorted(p for p in tiny_dataset.iterdir() if p.is_dir())[:2]
    for case in cases:
        shutil.copytree(case, studies / case.name)
    bundle_run("inferring", trained, ["inference"], "--dataset_dir", studies, "--output_dir", tmp_path / "bundle",
               "--roi_size", "[32,32]", "--device", device, cwd=workdir)
    raagr2("segment", trained, "--dataset_dir", studies, "--output_dir", tmp_path / "segment", "--roi_size", "32",
           "--device", device, cwd=workdir)
    for case in cases:
        source = nib.load(str(case / f"{case.name}_t1ce.nii.gz"))
        by_bundle = nib.load(str(tmp_path / "bundle" / f"{case.name}_pred.nii.gz"))
        by_segment = nib.load(str(tmp_path / "segment" / f"{case.name}_pred.nii.gz"))
        for written in (by_bundle, by_segment):
            assert written.shape == source.shape
            np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        labels = np.asarray(by_bundle.dataobj)
        np.testing.assert_array_equal(np.asarray(by_segment.dataobj), labels)
        assert by_segment.get_data_dtype() == by_bundle.get_data_dtype()
        assert set(np.unique(labels)) <= {0, 1, 2, 4}


@pytest.mark.parametrize("mode", ["tta", "mc_dropout"])
def test_segment_with_an_uncertainty_writes_the_map_on_each_input_grid(trained, device, tiny_dataset, tmp_path,
                                                                        workdir, mode):
    """Sampling on the device (flips, or dropout with BatchNorm on its running statistics), the mean and the entropy
    taken to the CPU: each study's map is float32 on its input's grid, within [0, 3 ln 2], and its score is in
    ``uncertainty.csv``."""
    studies = tmp_path / "studies"
    cases = sorted(p for p in tiny_dataset.iterdir() if p.is_dir())[:2]
    for case in cases:
        shutil.copytree(case, studies / case.name)
    out = tmp_path / mode
    raagr2("segment", trained, "--dataset_dir", studies, "--output_dir", out, "--roi_size", "32", "--device", device,
           "--uncertainty", mode, "--uncertainty_samples", "2", cwd=workdir)
    for case in cases:
        source = nib.load(str(case / f"{case.name}_t1ce.nii.gz"))
        written = nib.load(str(out / f"{case.name}_uncertainty.nii.gz"))
        assert written.shape == source.shape and written.get_data_dtype() == np.float32
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        entropy = np.asarray(written.dataobj)
        assert np.isfinite(entropy).all() and entropy.min() >= 0 and entropy.max() <= 3 * math.log(2) + 1e-5
    with open(out / "uncertainty.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == [c.name for c in cases]
    assert all(r["mode"] == mode and r["samples"] == "2" and float(r["score"]) >= 0 for r in rows)


def test_evaluation_with_test_time_flips_writes_the_failure_prediction(trained, device, tiny_dataset, tmp_path,
                                                                        workdir):
    out = tmp_path / "eval"
    bundle_run("evaluating", trained, ["train", "evaluate"], "--dataset_dir", tiny_dataset, "--output_dir", out,
               "--roi_size", "[32,32]", "--device", device, "--uncertainty", "tta", "--write_overlays", "false",
               cwd=workdir)
    with open(out / "metrics_per_subject.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["uncertainty"]) >= 0 for r in rows)
    failure = json.loads((out / "failure_prediction.json").read_text())
    assert failure["subjects"] == len(rows)
    assert (out / "reliability.png").stat().st_size > 0
    assert_ran_on(run_record(out), device)


def test_export_of_the_trained_bundle_on_a_machine_without_cuda(trained, tmp_path, workdir):
    """Weights trained on the device are exported where there is no GPU (no CUDA device visible), as they would be
    on a deployment machine; the export's own parity check passes and is recorded. ONNX only: OpenVINO, a CPU
    runtime, is not installed on the GPU machine."""
    bundle = shutil.copytree(trained, tmp_path / VARIANT)
    raagr2("export", bundle, "--formats", "onnx", cwd=workdir, env={"CUDA_VISIBLE_DEVICES": ""})
    models = bundle / "models"
    record = json.loads((models / "model.onnx.json").read_text())
    assert (models / "model.onnx").is_file() and record["model_format"] == "onnx"
    weights = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert record["source"]["weights_sha256"] == state_dict_sha256(weights), "exported from the trained weights"
    assert record["parity"]["max_abs_error"] <= record["parity"]["limit"]


def _datastore_study(root: Path) -> Path:
    """One 4D study on a grid that is neither RAS nor 1 mm in z, as test_monailabel's datastore holds it."""
    images, _, _ = make_case(0, seed=5, shape=monailabel.SHAPE)
    volume = np.stack([images[m] for m in MODALITIES], axis=-1)[:, :, monailabel.SLICES]
    monailabel._save_nifti(volume, root / "study.nii.gz")
    return root


def _monailabel_bundle(root: Path) -> Path:
    """The bundle as MONAI Label holds it, with roi 32 and weights whose every brain voxel is edema (label 2)."""
    bundle = copy_bundle(root)
    config_file = bundle / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    config["roi_size"] = [32, 32]  # beyond the brain's in-plane extent: the window pads, never crops
    config_file.write_text(json.dumps(config, indent=4))
    (bundle / "models").mkdir()
    bias, _ = monailabel.HEAD_BIAS[VARIANT]
    torch.save(monailabel._zero_head(get_network(VARIANT), bias).state_dict(), bundle / "models" / "model.pt")
    return bundle


def test_monailabel_style_inference_on_the_device_given_as_a_string(device, tmp_path):
    """MONAI Label's ``BundleInferTask`` (0.8.5) as ``tests/bundles/test_monailabel.py`` reproduces it with plain
    MONAI, with ``device`` the plain string of the test device (MONAI Label is not installed on the GPU machine)."""
    studies = _datastore_study(tmp_path)
    bundle = _monailabel_bundle(tmp_path / "model" / VARIANT)
    _, key_pred, _ = monailabel._first_io(bundle)
    data = monailabel.infer_as_bundle_infer_task(bundle, studies / "study.nii.gz", VARIANT, device)

    # what MONAI Label's writer saves: a label map on the input's grid, the known answer of the weights
    label = np.asarray(data[key_pred])
    np.testing.assert_array_equal(label, monailabel.expected_labelmap(studies, monailabel.HEAD_BIAS[VARIANT][1]))
    np.testing.assert_allclose(np.asarray(data[f"{key_pred}_meta_dict"]["affine"]), monailabel.AFFINE, atol=1e-5)
    assert not list(bundle.rglob("*.nii.gz")), "nothing is written into the bundle: MONAI Label writes the result"
