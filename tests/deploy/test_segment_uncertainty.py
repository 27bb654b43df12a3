"""``raagr2 segment --uncertainty``: the map and score per study, the CSV, and every bad setting refused before any
study is read, in one line."""

from __future__ import annotations

import csv
import json
import re
import shutil

import nibabel as nib
import numpy as np
import pytest

from raagr2_monai import cli
from raagr2_monai.data.synthetic import generate
from raagr2_monai.deploy import Segmenter
from raagr2_monai.deploy.segment import SegmentSettings, segment_command

from ..standins import ConstantRegions
from .conftest import small_bundle


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    generate(str(root), cases=1, seed=0, shape=(48, 48, 16))
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return small_bundle(tmp_path_factory.mktemp("bundle") / "small")


@pytest.mark.parametrize("mode, samples", [("tta", 4), ("mc_dropout", 2)])
def test_segment_writes_the_map_on_the_input_grid_and_prints_the_score(studies, bundle, tmp_path, mode, samples):
    lines = []
    out = tmp_path / "out"
    summary = segment_command(bundle, out, dataset_dir=str(studies), echo=lines.append, settings=SegmentSettings(
        device="cpu", roi_size=32, uncertainty=mode, uncertainty_samples=samples))
    (case,) = [p.name for p in studies.iterdir() if p.is_dir()]
    (line,) = lines
    score = float(re.search(rf"; uncertainty (\d+\.\d+) \({re.escape(str(out / f'{case}_uncertainty.nii.gz'))}\)$",
                            line).group(1))
    assert "uncertainty " in re.search(r"; (.*), total", line).group(1)  # the map's seconds, a stage of its own
    assert summary.endswith(f"; uncertainty {mode} of {samples} samples, scores in {out / 'uncertainty.csv'}")
    source = nib.load(str(studies / case / f"{case}_t1ce.nii.gz"))
    written = nib.load(str(out / f"{case}_uncertainty.nii.gz"))
    assert written.shape == source.shape and written.get_data_dtype() == np.float32
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    assert np.asarray(written.dataobj).min() >= 0
    with open(out / "uncertainty.csv") as f:
        (row,) = csv.DictReader(f)
    assert (row["case"], row["mode"], row["samples"]) == (case, mode, str(samples))
    assert float(row["score"]) == pytest.approx(score, abs=1e-4)


def test_segment_without_uncertainty_writes_the_label_map_alone(studies, bundle, tmp_path):
    lines = []
    summary = segment_command(bundle, tmp_path, dataset_dir=str(studies), echo=lines.append,
                              settings=SegmentSettings(device="cpu", roi_size=32))
    assert [p.name for p in tmp_path.iterdir()] == [f"{p.name}_pred.nii.gz" for p in studies.iterdir() if p.is_dir()]
    assert "uncertainty" not in lines[0] and "uncertainty" not in summary


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"uncertainty": "entropy"}, "uncertainty must be one of none, tta, mc_dropout; got 'entropy'."),
        ({"uncertainty": "tta", "uncertainty_samples": 1},
         "uncertainty_samples must be a whole number >= 2 (an uncertainty needs two predictions at least); got 1."),
        ({"uncertainty_samples": 0},
         "uncertainty_samples must be a whole number >= 2 (an uncertainty needs two predictions at least); got 0."),
        ({"uncertainty": "tta", "uncertainty_samples": 8},
         "uncertainty_samples for tta is at most 4 (the input and its in-plane flips); got 8."),
        ({"uncertainty": "mc_dropout", "backend": "onnxruntime"},
         "uncertainty mc_dropout cannot run on the onnxruntime export of bundles/baseline: an exported model has no "
         "dropout layers; use uncertainty tta, or backend torch."),
    ],
    ids=["mode", "one-sample", "count-alone", "tta-flips", "mc-dropout-export"],
)
def test_bad_uncertainty_settings_are_refused_at_once(settings, message):
    with pytest.raises(ValueError) as err:
        SegmentSettings(**settings).check("bundles/baseline")
    assert str(err.value) == message


def test_segment_refuses_mc_dropout_behind_an_export_before_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("RAAGR2_VERBOSE", raising=False)
    try:
        cli.main(["segment", "bundles/baseline", "--dataset_dir", str(tmp_path / "nowhere"), "--output_dir",
                  str(tmp_path / "out"), "--backend", "openvino", "--uncertainty", "mc_dropout"])
    except SystemExit as exit_:
        status = exit_.code
    _, err = capsys.readouterr()
    assert status == 1 and err == (
        "error: uncertainty mc_dropout cannot run on the openvino export of bundles/baseline: an exported model has "
        "no dropout layers; use uncertainty tta, or backend torch.\n"
    )
    assert not (tmp_path / "out").exists()


def test_mc_dropout_on_a_network_without_dropout_is_refused_before_its_weights(bundle, tmp_path):
    with pytest.raises(ValueError) as err:
        Segmenter(bundle, tmp_path / "out", device="cpu", network_def=ConstantRegions(), uncertainty="mc_dropout")
    assert str(err.value) == (
        f"uncertainty mc_dropout needs dropout layers, and the network of {bundle} (ConstantRegions) has none (an "
        "exported model runs without dropout); use uncertainty tta instead."
    )
    assert not (tmp_path / "out").exists()


def test_a_bundle_written_before_the_setting_is_refused_with_the_fix(bundle, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    config = old / "configs" / "inference.json"
    document = json.loads(config.read_text())
    for key in ("uncertainty", "uncertainty_samples", "without_uncertainty"):
        document.pop(key)
    config.write_text(json.dumps(document))
    with pytest.raises(ValueError) as err:
        Segmenter(old, tmp_path / "out", device="cpu", uncertainty="tta")
    assert str(err.value) == (f"{config} has no uncertainty setting (written before there was one): write the bundle "
                              "again to segment with an uncertainty.")
