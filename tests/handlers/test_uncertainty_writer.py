"""UncertaintyWriter: each study's entropy map on the grid of its probabilities, its score, the CSV."""

from __future__ import annotations

import csv
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from raagr2_monai.handlers import UncertaintyWriter
from raagr2_monai.metrics import entropy_map, study_uncertainty

AFFINE = torch.tensor([[-1.0, 0, 0, 30.0], [0, -1.2, 0, 20.0], [0, 0, 2.0, -5.0], [0, 0, 0, 1]], dtype=torch.float64)


def _item(case: str, seed: int = 0, shape=(6, 5, 4)) -> dict:
    """A study after the write-back: the mean probabilities on an LPS, anisotropic grid, and its label map."""
    generator = torch.Generator().manual_seed(seed)
    prob = MetaTensor(torch.rand(3, *shape, generator=generator), affine=AFFINE)
    pred = MetaTensor(torch.zeros(1, *shape, dtype=torch.uint8), affine=AFFINE, meta={"case": case})
    return {"pred": pred, "pred_prob": prob}


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_write_puts_the_entropy_of_the_probabilities_on_their_grid(tmp_path):
    item = _item("c1")
    writer = UncertaintyWriter(tmp_path, "tta", 4)
    row = writer.write(item)
    path = tmp_path / "c1_uncertainty.nii.gz"
    assert row == {"case": "c1", "mode": "tta", "samples": 4, "map": str(path),
                   "score": pytest.approx(study_uncertainty(item["pred_prob"]))}
    written = nib.load(str(path))
    assert written.shape == (6, 5, 4) and written.get_data_dtype() == np.float32
    np.testing.assert_allclose(written.affine, AFFINE.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(written.dataobj), entropy_map(item["pred_prob"]), rtol=1e-6)
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary file left


def test_the_case_is_named_as_the_label_map_is(tmp_path):
    """Without a case in the metadata the label map is named after the source file, modality suffix stripped."""
    item = _item("ignored")
    item["pred"].meta.pop("case")
    item["pred"].meta["filename_or_obj"] = "/data/BraTS2021_00007/BraTS2021_00007_t1ce.nii.gz"
    assert UncertaintyWriter(tmp_path, "mc_dropout", 2).write(item)["case"] == "BraTS2021_00007"
    assert (tmp_path / "BraTS2021_00007_uncertainty.nii.gz").is_file()


def test_an_engine_run_writes_every_map_and_the_csv_sorted_by_case(tmp_path):
    batches = [[_item("b", 1)], [_item("a", 2), _item("c", 3)]]
    engine = Engine(lambda engine, batch: batch)
    writer = UncertaintyWriter(tmp_path, "mc_dropout", 8)
    writer.attach(engine)
    engine.run(batches)
    rows = _rows(tmp_path / "uncertainty.csv")
    assert list(rows[0]) == ["case", "mode", "samples", "score"]
    assert [(r["case"], r["mode"], r["samples"]) for r in rows] == [(c, "mc_dropout", "8") for c in "abc"]
    expected = study_uncertainty(batches[1][0]["pred_prob"])
    assert float(rows[0]["score"]) == pytest.approx(expected)
    assert sorted(p.name for p in tmp_path.glob("*.nii.gz")) == [f"{c}_uncertainty.nii.gz" for c in "abc"]
    engine.run([[_item("d", 4)]])  # a second run starts afresh
    assert [r["case"] for r in _rows(tmp_path / "uncertainty.csv")] == ["d"]


def test_a_study_written_twice_is_one_row(tmp_path):
    writer = UncertaintyWriter(tmp_path, "tta", 2)
    writer.write(_item("a", 1))
    writer.write(_item("a", 2))
    assert [r["case"] for r in _rows(writer.write_csv())] == ["a"]


@pytest.mark.parametrize(
    "mode, samples, message",
    [
        ("none", 4, "UncertaintyWriter needs uncertainty tta or mc_dropout; got none"),
        ("entropy", 4, "uncertainty must be one of none, tta, mc_dropout; got 'entropy'."),
        ("tta", 1, "uncertainty_samples must be a whole number >= 2"),
    ],
)
def test_settings_without_a_map_to_write_are_refused(tmp_path, mode, samples, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        UncertaintyWriter(tmp_path, mode, samples)


def test_an_item_without_probabilities_names_the_fix(tmp_path):
    item = _item("a")
    del item["pred_prob"]
    with pytest.raises(ValueError, match="has no 'pred_prob' on the input's grid .* keep_probabilities"):
        UncertaintyWriter(tmp_path, "tta", 4).write(item)
