"""The inference workflow with an uncertainty setting: a map per study on the input's own grid, a score per study in
``uncertainty.csv``, nothing extra without one, and bad settings refused at ``initialize``."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from raagr2_monai.constants import CHANNELS
from raagr2_monai.data import load_split
from raagr2_monai.networks import get_network

from ..standins import BrightChannel, ConstantRegions
from .test_bundle_workflows import _bundle_cli, root_cause, workflow

pytestmark = pytest.mark.slow

#: Binary entropies (nats) of the probabilities ConstantRegions((0.5, 0.9, 0.1)) predicts, summed.
_MIXED = (0.5, 0.9, 0.1)
_MIXED_ENTROPY = sum(-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in _MIXED)


class LeftHalf(torch.nn.Module):
    """Predicts every region, certain, on the left half of each slice and nothing on the right: a prediction that
    in-plane flips turn around, so that test-time augmentation disagrees with itself everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0], 3, *x.shape[2:]), -20.0)
        out[..., : x.shape[-1] // 2] = 20.0
        return out + 0.0 * self.anchor


def _infer(tiny_dataset: str, out: Path, network, cases: int = 2, **override):
    """The depthwise bundle's inference on the first ``cases`` test studies, with ``network`` and no weights."""
    entries = load_split(tiny_dataset, "testing")[:cases]
    wf = workflow(
        "depthwise", "inference", "infer", dataset_dir=tiny_dataset, output_dir=str(out), network_def=network,
        roi_size=[32, 32], **{"handlers#0#_disabled_": True, "data": entries}, **override,
    )
    wf.run()
    wf.finalize()
    return wf, entries


def _source(entry) -> nib.Nifti1Image:
    return nib.load(entry["image"][0])


def _csv(path: Path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tta_writes_a_map_per_study_on_the_input_grid_and_the_scores(tiny_dataset, tmp_path):
    _, entries = _infer(tiny_dataset, tmp_path, ConstantRegions(_MIXED), uncertainty="tta")
    cases = [e["case"] for e in entries]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{c}_pred.nii.gz" for c in cases] + [f"{c}_uncertainty.nii.gz" for c in cases] + ["uncertainty.csv"]
    )
    for entry in entries:
        source = _source(entry)
        written = nib.load(str(tmp_path / f"{entry['case']}_uncertainty.nii.gz"))
        assert written.shape == source.shape
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        assert written.get_data_dtype() == np.float32
        values = np.asarray(written.dataobj)
        assert values.dtype == np.float32 and values.min() >= 0
        # the same probabilities under every flip: the entropy of those probabilities, wherever the network ran
        assert values.max() == pytest.approx(_MIXED_ENTROPY, abs=1e-4)
    rows = _csv(tmp_path / "uncertainty.csv")
    assert [r["case"] for r in rows] == sorted(cases)
    assert {(r["mode"], r["samples"]) for r in rows} == {("tta", "4")}
    assert all(float(r["score"]) == pytest.approx(_MIXED_ENTROPY, abs=1e-4) for r in rows)


def test_without_uncertainty_nothing_extra_is_kept_or_written(tiny_dataset, tmp_path):
    wf, entries = _infer(tiny_dataset, tmp_path, ConstantRegions(_MIXED), cases=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{entries[0]['case']}_pred.nii.gz"]
    names = [type(t).__name__ for t in wf.parser.get_parsed_content("postprocessing").transforms]
    assert "CopyItemsd" not in names
    assert not any(type(h).__name__ == "UncertaintyWriter" for h in wf.parser.get_parsed_content("handlers"))


def test_tta_of_a_flip_equivariant_network_adds_no_uncertainty(tiny_dataset, tmp_path):
    """A voxel-wise network predicts the same under every flip: tta leaves its label map as it is, and its map is
    zero up to the clipping of certain probabilities."""
    _infer(tiny_dataset, tmp_path / "none", BrightChannel(), cases=1)
    _, (entry,) = _infer(tiny_dataset, tmp_path / "tta", BrightChannel(), cases=1, uncertainty="tta")
    case = entry["case"]
    labels = {mode: np.asarray(nib.load(str(tmp_path / mode / f"{case}_pred.nii.gz")).dataobj) for mode in ("none", "tta")}
    assert labels["none"].any() and np.array_equal(labels["none"], labels["tta"])
    assert np.asarray(nib.load(str(tmp_path / "tta" / f"{case}_uncertainty.nii.gz")).dataobj).max() < 1e-4


def test_tta_of_a_network_that_flips_disagree_with_is_uncertain_everywhere(tiny_dataset, tmp_path):
    """Left half against right half: the four flips split evenly, every voxel the network ran on is at 0.5 in every
    region, the largest entropy there is (3 ln 2)."""
    _, (entry,) = _infer(tiny_dataset, tmp_path, LeftHalf(), cases=1, uncertainty="tta")
    values = np.asarray(nib.load(str(tmp_path / f"{entry['case']}_uncertainty.nii.gz")).dataobj)
    assert values.max() == pytest.approx(3 * math.log(2), abs=1e-4)
    (row,) = _csv(tmp_path / "uncertainty.csv")
    assert float(row["score"]) == pytest.approx(3 * math.log(2), abs=1e-4)


def test_mc_dropout_samples_the_dropout_of_encoder_decoder_shared(tiny_dataset, tmp_path):
    """Encoder-Decoder Shared's own dropout placement: two passes with dropout on disagree somewhere."""
    torch.manual_seed(0)
    network = get_network("encdec", in_channels=4, out_channels=3).eval()
    _, (entry,) = _infer(tiny_dataset, tmp_path, network, cases=1, uncertainty="mc_dropout", uncertainty_samples=2)
    values = np.asarray(nib.load(str(tmp_path / f"{entry['case']}_uncertainty.nii.gz")).dataobj)
    assert values.shape == _source(entry).shape and values.min() >= 0 and values.max() > 0
    (row,) = _csv(tmp_path / "uncertainty.csv")
    assert (row["mode"], row["samples"]) == ("mc_dropout", "2")
    assert not network.training  # the dropout layers were switched on for the passes only


def test_mc_dropout_on_a_network_without_dropout_is_refused_at_initialize(tiny_dataset, tmp_path):
    with pytest.raises(RuntimeError) as err:
        workflow("depthwise", "inference", "infer", dataset_dir=tiny_dataset, output_dir=str(tmp_path / "out"),
                 network_def=ConstantRegions(), uncertainty="mc_dropout")
    cause = root_cause(err.value)
    assert isinstance(cause, ValueError)
    assert str(cause).startswith("uncertainty mc_dropout needs dropout layers, and the network of ")
    assert "(ConstantRegions) has none" in str(cause)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--uncertainty", "entropy"], "uncertainty must be one of none, tta, mc_dropout; got 'entropy'."),
        (["--uncertainty", "tta", "--uncertainty_samples", "1"],
         "uncertainty_samples must be a whole number >= 2 (an uncertainty needs two predictions at least); got 1."),
    ],
    ids=["mode", "samples"],
)
def test_bad_uncertainty_on_the_command_line_is_one_line(tiny_dataset, tmp_path, args, message):
    result = _bundle_cli(
        sys.executable, "-m", "monai.bundle", "run", "inferring",
        "--config_file", "bundles/depthwise/configs/inference.json", "--dataset_dir", tiny_dataset,
        "--output_dir", str(tmp_path / "out"), *args,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert not (tmp_path / "out").exists()


def test_the_map_follows_an_lps_anisotropic_input(tiny_dataset, tmp_path):
    """A study stored LPS with 1.5 mm slices: the map comes back with its shape and affine, as the label map does."""
    entry = load_split(tiny_dataset, "testing")[0]
    affine = np.array([[-1.0, 0, 0, 30.0], [0, -1.0, 0, 20.0], [0, 0, 1.5, -5.0], [0, 0, 0, 1]])
    folder = tmp_path / "lps" / entry["case"]
    folder.mkdir(parents=True)
    for path, channel in zip(entry["image"], CHANNELS):
        array = np.asarray(nib.load(path).dataobj)[::-1, ::-1, ::2]
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), affine), str(folder / f"{entry['case']}_{channel}.nii.gz"))
    out = tmp_path / "out"
    wf = workflow("depthwise", "inference", "infer", dataset_dir=str(tmp_path / "lps"), output_dir=str(out),
                  network_def=BrightChannel(), roi_size=[32, 32], uncertainty="tta", uncertainty_samples=2,
                  **{"handlers#0#_disabled_": True})
    wf.run()
    wf.finalize()
    source = nib.load(str(folder / f"{entry['case']}_t1ce.nii.gz"))
    for name in ("pred", "uncertainty"):
        written = nib.load(str(out / f"{entry['case']}_{name}.nii.gz"))
        assert written.shape == source.shape
        np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert np.asarray(nib.load(str(out / f"{entry['case']}_uncertainty.nii.gz")).dataobj).min() >= 0
