"""The synthetic BraTS-like generator: layout, determinism, nested labels, contrasts, atomic writes, CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from raagr2_monai import cli
from raagr2_monai.data import synthetic
from raagr2_monai.constants import CHANNELS
from raagr2_monai.data import build_datalist
from raagr2_monai.data.synthetic import (
    DEFAULT_CASES,
    DEFAULT_SHAPE,
    case_grade,
    case_id,
    default_dataset_dir,
    ensure_synthetic,
    generate,
    make_case,
)

SHAPE = (32, 32, 16)
SUFFIXES = list(CHANNELS) + ["seg"]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("synth") / "set")
    assert generate(out, cases=4, seed=0, shape=SHAPE) == [case_id(i) for i in range(4)]
    return out


def _load(out: str, case: str, suffix: str) -> nib.Nifti1Image:
    return nib.load(os.path.join(out, case, f"{case}_{suffix}.nii.gz"))


def _neighbours_nonzero(seg: np.ndarray, where: np.ndarray) -> bool:
    padded = np.pad(seg, 1)
    ok = True
    for axis in range(3):
        for shift in (1, -1):
            moved = np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
            ok &= bool(np.all(moved[where] > 0))
    return ok


def test_layout_geometry_and_grades(synth_dir):
    assert sorted(os.listdir(synth_dir)) == [case_id(i) for i in range(4)] + ["grades.csv", "synthetic.json"]
    with open(os.path.join(synth_dir, "grades.csv")) as f:
        assert list(csv.reader(f)) == [["case", "grade"]] + [[case_id(i), case_grade(i)] for i in range(4)]
    assert [case_grade(i) for i in range(6)] == ["HGG", "HGG", "LGG", "HGG", "HGG", "LGG"]
    for i in range(4):
        case = case_id(i)
        imgs = {s: _load(synth_dir, case, s) for s in SUFFIXES}
        for suffix, img in imgs.items():
            assert img.shape == SHAPE
            np.testing.assert_array_equal(img.affine, np.eye(4))
            assert img.header.get_zooms() == (1.0, 1.0, 1.0)
            assert img.get_data_dtype() == (np.uint8 if suffix == "seg" else np.int16)
        brain = np.asanyarray(imgs["t1ce"].dataobj) > 0
        assert 0.15 < brain.mean() < 0.6
        for suffix in CHANNELS:
            # background exactly 0, every brain voxel non-zero: one brain mask shared by all modalities
            np.testing.assert_array_equal(np.asanyarray(imgs[suffix].dataobj) > 0, brain)
        seg = np.asanyarray(imgs["seg"].dataobj)
        assert not np.any(seg[~brain])


def test_labels_nested_and_lgg_without_et(synth_dir):
    for i in range(4):
        seg = np.asanyarray(_load(synth_dir, case_id(i), "seg").dataobj)
        assert set(np.unique(seg)) <= {0, 1, 2, 4}
        core = (seg == 1) | (seg == 4)
        assert core.any() and (seg == 2).sum() > core.sum() / 4
        # the core (NCR and ET) is surrounded by tumour: no core voxel touches background
        assert _neighbours_nonzero(seg, core)
        assert ((seg == 4).any()) == (case_grade(i) == "HGG")


def test_same_seed_same_bytes_other_seed_other_data(synth_dir, tmp_path):
    again = str(tmp_path / "again")
    generate(again, cases=4, seed=0, shape=SHAPE)
    for i in range(4):
        for suffix in SUFFIXES:
            name = os.path.join(case_id(i), f"{case_id(i)}_{suffix}.nii.gz")
            with open(os.path.join(synth_dir, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
                assert a.read() == b.read(), name
    images, seg, grade = make_case(1, seed=1, shape=SHAPE)
    assert grade == "HGG"
    assert not np.array_equal(images["t1ce"], np.asanyarray(_load(synth_dir, case_id(1), "t1ce").dataobj))


@pytest.mark.parametrize("index", range(6))
def test_contrasts_follow_clinical_signs(index):
    images, seg, grade = make_case(index, seed=0, shape=(64, 64, 40))
    img = {k: v.astype(np.float64) for k, v in images.items()}
    normal = (img["t1"] > 0) & (seg == 0)
    regions = [seg == v for v in (1, 2, 4) if (seg == v).any()]
    ratio = lambda name, mask: float(img[name][mask].mean() / img[name][normal].mean())  # noqa: E731
    for name in CHANNELS:  # every modality differs inside the tumour from normal tissue
        assert max(abs(ratio(name, r) - 1) for r in regions) > 0.1, name
    assert ratio("t2", seg == 2) > 1.05  # edema bright on T2
    assert ratio("flair", seg == 2) > 1.5  # and brighter on FLAIR
    assert ratio("t1", seg == 1) < 0.85  # core hypointense on T1
    if grade == "HGG":
        assert ratio("t1ce", seg == 4) > 1.1  # enhancing rim bright on T1ce
        assert ratio("t1ce", seg == 4) > 1.2 * ratio("t1ce", seg == 1)  # necrosis darker than the rim
        assert ratio("t1ce", seg == 4) > 1.2 * ratio("t1", seg == 4)  # the contrast agent makes the difference
    # Normal tissue: the T1-darkest voxels (mostly CSF) are bright on T2 and dark on FLAIR; the T1-brightest (WM) not.
    t1 = img["t1"][normal]
    dark, bright = t1 < np.quantile(t1, 0.05), t1 > np.quantile(t1, 0.7)
    assert img["t2"][normal][dark].mean() > 1.3 * img["t2"][normal][bright].mean()
    assert img["flair"][normal][dark].mean() < 0.7 * img["flair"][normal][bright].mean()


def test_shape_and_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="shape must be three integers, each >= 16"):
        make_case(0, shape=(8, 8, 8))
    with pytest.raises(ValueError, match="shape must be three integers X,Y,Z"):
        make_case(0, shape="a,b,c")
    with pytest.raises(ValueError, match="cases must be at least 1"):
        generate(str(tmp_path / "x"), cases=0, shape=SHAPE)
    assert make_case(0, shape="32,32,16")[1].shape == SHAPE


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    original = synthetic._save

    def failing_save(array, path):
        calls.append(path)
        if len(calls) == 7:
            raise KeyboardInterrupt
        original(array, path)

    monkeypatch.setattr(synthetic, "_save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        generate(str(tmp_path / "set"), cases=2, shape=SHAPE)
    assert len(calls) == 7 and os.listdir(tmp_path) == []


def test_existing_folder_is_not_overwritten_unless_asked(synth_dir, tmp_path):
    with pytest.raises(FileExistsError, match="exists and is not empty; pass overwrite=True"):
        generate(synth_dir, cases=1, shape=SHAPE)
    target = tmp_path / "set"
    generate(str(target), cases=2, shape=SHAPE)
    generate(str(target), cases=1, shape=SHAPE, overwrite=True)
    assert sorted(os.listdir(target)) == [case_id(0), "grades.csv", "synthetic.json"]
    assert os.listdir(tmp_path) == ["set"]


def test_default_dir_and_ensure_synthetic(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(synthetic.ENV_VAR, raising=False)
    assert default_dataset_dir() == os.path.expanduser("~/.cache/raagr2_monai/synthetic")
    monkeypatch.setenv(synthetic.ENV_VAR, str(tmp_path / "cache"))
    assert default_dataset_dir() == str(tmp_path / "cache")
    with caplog.at_level("INFO", logger=synthetic.__name__):
        path = ensure_synthetic(cases=2, shape=SHAPE)
    assert path == str(tmp_path / "cache")
    # generating says so (a first run would otherwise pause without a word); reusing is silent
    assert caplog.messages == [f"Generating the built-in synthetic set (2 cases of {'x'.join(map(str, SHAPE))}, "
                               f"seed 0) into {path}, once; later runs reuse it"]
    seg_file = os.path.join(path, case_id(0), f"{case_id(0)}_seg.nii.gz")
    stamp = os.stat(seg_file).st_mtime_ns
    caplog.clear()
    with caplog.at_level("INFO", logger=synthetic.__name__):
        assert ensure_synthetic(cases=2, shape=SHAPE) == path and os.stat(seg_file).st_mtime_ns == stamp
    assert caplog.messages == []
    ensure_synthetic(cases=3, shape=SHAPE)  # other parameters: regenerated
    with open(os.path.join(path, "synthetic.json")) as f:
        assert json.load(f)["cases"] == 3
    assert len(build_datalist(path, check=True)["training"]) == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a synthetic set"):
        ensure_synthetic(str(foreign), cases=2, shape=SHAPE)
    assert os.listdir(foreign) == ["keep.txt"]


def test_cli_defaults_match_the_module():
    import inspect

    params = inspect.signature(cli.synth).parameters
    assert params["cases"].default == DEFAULT_CASES and params["shape"].default == DEFAULT_SHAPE
    assert "synth" in cli.COMMANDS and "datalist" in cli.COMMANDS


def test_cli_synth_and_datalist_in_a_subprocess(tmp_path):
    raagr2 = os.path.join(os.path.dirname(sys.executable), "raagr2")
    out, output = str(tmp_path / "synth"), str(tmp_path / "datalist.json")
    run = subprocess.run(
        f"{raagr2} synth --out {out} --cases 3 --seed 4 --shape 32,32,16 && "
        f"{raagr2} datalist --data_dir {out} --output {output} --split 0.4,0.3,0.3",
        shell=True, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert f"wrote 3 cases (HGG 2, LGG 1) of shape (32, 32, 16) to {out}" in run.stdout
    assert "training: 1 cases" in run.stdout and "validation: 1 cases" in run.stdout
    img = nib.load(os.path.join(out, case_id(2), f"{case_id(2)}_flair.nii.gz"))
    assert img.shape == SHAPE
    np.testing.assert_array_equal(img.get_fdata(), make_case(2, seed=4, shape=SHAPE)[0]["flair"])
    with open(output) as f:
        doc = json.load(f)
    assert doc["split"] == [0.4, 0.3, 0.3] and doc["data_dir"] == out
