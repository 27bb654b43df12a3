"""The data path at real size, independently of training: stand-in networks with a known output run through the
bundles' own workflows on BraTS-size studies, any spacing and orientation, and the written label maps are checked
against the input files."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from raagr2_monai.constants import CHANNELS
from raagr2_monai.data import generate
from raagr2_monai.data.validation import BraTSDataError
from raagr2_monai.metrics import brats_metrics

from ..standins import BrightChannel, ConstantRegions
from .test_bundle_workflows import root_cause, workflow

pytestmark = pytest.mark.slow

DEFAULT_ROI = 96


def _standin_inference(data_dir, out: Path, network, **override):
    """The depthwise bundle's inference workflow at its defaults, with a stand-in network and no weights to load."""
    wf = workflow(
        "depthwise", "inference", "infer", dataset_dir=str(data_dir), output_dir=str(out), network_def=network,
        handlers=[], **override,
    )
    wf.run()
    wf.finalize()
    return wf


def _brain(case_dir: Path) -> np.ndarray:
    """Voxels where any modality is positive: the brain, as the input files have it."""
    arrays = [np.asarray(nib.load(str(next(case_dir.glob(f"*_{m}.nii.gz")))).dataobj) for m in CHANNELS]
    return np.any(np.stack(arrays) > 0, axis=0)


@pytest.fixture(scope="module")
def brats_size(tmp_path_factory) -> Path:
    """Two studies of real size: BraTS's 240 x 240 x 155 grid and a 197 x 233 x 189 one, each brain wider than the
    bundles' default roi_size."""
    root = tmp_path_factory.mktemp("brats-size")
    generate(str(root / "a"), cases=1, seed=5, shape=(240, 240, 155))
    generate(str(root / "b"), cases=1, seed=6, shape=(197, 233, 189))
    return root


@pytest.mark.parametrize("study", ["a", "b"], ids=["240x240x155", "197x233x189"])
def test_tumour_everywhere_covers_the_whole_brain(brats_size, tmp_path, study):
    folder = brats_size / study
    case_dir = next(p for p in folder.iterdir() if p.is_dir())
    brain = _brain(case_dir)
    rows, cols = np.nonzero(brain.any(axis=2))
    assert np.ptp(rows) + 1 > DEFAULT_ROI and np.ptp(cols) + 1 > DEFAULT_ROI, "the brain must be wider than roi_size"
    _standin_inference(folder, tmp_path, ConstantRegions((1.0, 1.0, 1.0)))
    written = nib.load(str(tmp_path / f"{case_dir.name}_pred.nii.gz"))
    source = nib.load(str(case_dir / f"{case_dir.name}_t1ce.nii.gz"))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    labels = np.asarray(written.dataobj)
    assert np.all(labels[brain] == 4), f"{np.count_nonzero(labels[brain] != 4)} brain voxels not segmented"
    assert set(np.unique(labels[~brain]).tolist()) <= {0, 4}


def _resample_case(source: Path, target: Path, affine: np.ndarray, step: tuple) -> Path:
    """The same anatomy sampled every ``step`` voxels (anisotropic) and stored with ``affine`` (e.g. LPS)."""
    case = source.name
    target.mkdir(parents=True)
    for suffix in (*CHANNELS, "seg"):
        array = np.asarray(nib.load(str(source / f"{case}_{suffix}.nii.gz")).dataobj)[:: step[0], :: step[1], :: step[2]]
        if affine[0, 0] < 0:  # LPS stores x and y reversed
            array = array[::-1, ::-1]
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), affine), str(target / f"{case}_{suffix}.nii.gz"))
    return target


def test_anisotropic_lps_study_comes_back_on_its_own_grid(brats_size, tmp_path):
    """0.9 x 0.9 x 3 mm voxels, LPS axes: resampled to 1 mm RAS for the network, written back on the input's grid,
    where the prediction still lies on the anatomy that caused it."""
    source = next(p for p in (brats_size / "a").iterdir() if p.is_dir())
    lps = np.diag([-0.9, -0.9, 3.0, 1.0])
    lps[:3, 3] = [100.0, 110.0, -60.0]
    data = tmp_path / "lps"
    case_dir = _resample_case(source, data / source.name, lps, (1, 1, 3))
    _standin_inference(data, tmp_path / "out", BrightChannel(channel=3, level=1.0))
    written = nib.load(str(tmp_path / "out" / f"{source.name}_pred.nii.gz"))
    flair = nib.load(str(case_dir / f"{source.name}_flair.nii.gz"))
    assert written.shape == flair.shape
    np.testing.assert_allclose(written.affine, flair.affine, atol=1e-5)
    assert nib.aff2axcodes(written.affine) == ("L", "P", "S")
    # the stand-in marks FLAIR brighter than one standard deviation over the brain: compute that on the input grid
    image = np.asarray(flair.dataobj, dtype=np.float32)
    brain = _brain(case_dir)
    values = image[brain]
    expected = brain & (image > values.mean() + values.std())
    predicted = np.asarray(written.dataobj) > 0
    def dice(a: np.ndarray, b: np.ndarray) -> float:
        return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))

    # resampling 3 mm slices to 1 mm and back moves the threshold's edge a little; a flip or shift moves it a lot
    aligned, flipped = dice(expected, predicted), dice(expected[::-1], predicted)
    print(f"Dice against the anatomy: aligned {aligned:.3f}, left-right flipped {flipped:.3f}")
    assert aligned > 0.85 and flipped < aligned - 0.3, (aligned, flipped)


def _read_rows(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_scores_the_written_label_map(tiny_dataset, tmp_path):
    """A network whose TC is not inside its WT: evaluate must score the nested label map it writes (WT = TC or WT),
    in the input's spacing, exactly as rescoring the written files does."""
    network = ConstantRegions((0.9, 0.1, 0.0))  # TC everywhere, WT nowhere: the written map is NCR (1) everywhere
    wf = workflow(
        "depthwise", ["train", "evaluate"], None, dataset_dir=tiny_dataset, output_dir=str(tmp_path),
        network_def=network, variant="standin", roi_size=[32, 32],
        **{"validate#handlers#0": {"_target_": "StatsHandler", "iteration_log": False}},
    )
    wf.run()
    rows = _read_rows(tmp_path / "metrics_per_subject.csv")
    assert rows, "no subject scored"
    for row in rows:
        case = row["case"]
        written = nib.load(str(tmp_path / "predictions" / f"{case}_pred.nii.gz"))
        seg = nib.load(str(Path(tiny_dataset) / case / f"{case}_seg.nii.gz"))
        pred = torch.from_numpy(np.asarray(written.dataobj).astype(np.int64))
        truth = torch.from_numpy(np.asarray(seg.dataobj).astype(np.int64))
        brain = torch.from_numpy(_brain(Path(tiny_dataset) / case))
        assert bool((pred[brain] == 1).all()), "TC without WT is written as NCR (1) wherever the network looks"
        assert set(pred.unique().tolist()) == {0, 1}
        regions = lambda lab: torch.stack([(lab == 1) | (lab == 4), lab > 0, lab == 4])[None]  # noqa: E731
        expected = brats_metrics(regions(pred), regions(truth), spacing=[float(z) for z in seg.header.get_zooms()[:3]])
        for key, value in expected.items():
            assert float(row[key]) == pytest.approx(float(value[0]), rel=1e-6, abs=1e-6, nan_ok=True), (case, key)
        assert float(row["dice_WT"]) < 0.5  # scored as written (WT everywhere), not as the raw WT channel (nowhere)


def test_bad_affine_and_empty_brain_stop_naming_the_file(tiny_dataset, tmp_path):
    case = sorted(p for p in Path(tiny_dataset).iterdir() if p.is_dir())[0]
    images = {m: nib.load(str(case / f"{case.name}_{m}.nii.gz")) for m in CHANNELS}
    singular = tmp_path / "singular"
    (singular / "x").mkdir(parents=True)
    for m, image in images.items():
        header = image.header.copy()
        if m == "t2":  # an sform that maps every voxel to one plane, as a broken converter writes it
            header.set_qform(None, code=0)
            header["srow_z"] = [0.0, 0.0, 0.0, 0.0]
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), None, header=header), str(singular / "x" / f"x_{m}.nii.gz"))
    with pytest.raises(RuntimeError) as err:
        _standin_inference(singular, tmp_path / "out1", ConstantRegions())
    cause = root_cause(err.value)
    assert isinstance(cause, BraTSDataError) and "x_t2.nii.gz: the affine is not invertible" in str(cause)
    empty = tmp_path / "empty"
    (empty / "y").mkdir(parents=True)
    for m, image in images.items():
        nib.save(nib.Nifti1Image(np.zeros(image.shape, np.int16), image.affine), str(empty / "y" / f"y_{m}.nii.gz"))
    with pytest.raises(RuntimeError) as err:
        _standin_inference(empty, tmp_path / "out2", ConstantRegions())
    cause = root_cause(err.value)
    assert isinstance(cause, BraTSDataError) and "y_t1ce.nii.gz: the image is zero everywhere" in str(cause)
    assert not list(tmp_path.glob("out*/*.nii.gz")), "nothing is written for a bad study"
