"""The whole chain at BraTS size with the real network: train (one short epoch of small crops) -> evaluate -> infer on
240 x 240 x 155 studies, every output on the input's grid. Eager PyTorch takes about two minutes per study on two CPU
cores, so the test is ``heavy``: ``pytest -m heavy`` runs it (``make test-heavy``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from raagr2_monai.data import generate, load_split

from .test_bundle_workflows import workflow
from .test_whole_brain import _read_rows

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def test_train_evaluate_infer_at_brats_size(tmp_path):
    data = tmp_path / "data"
    generate(str(data), cases=1, seed=11, shape=(240, 240, 155))
    (entry,) = load_split(str(data), "training") + load_split(str(data), "validation") + load_split(str(data), "testing")
    # one generated study (generating one takes seconds on two cores) serves as three: two training entries, no
    # validation (so training keeps its last weights, as with MONAI Label's few studies), one test study
    datalist = tmp_path / "datalist.json"
    copy = lambda name: {**entry, "case": name}  # noqa: E731
    datalist.write_text(json.dumps({"training": [copy("t0"), copy("t1")], "validation": [], "testing": [copy("e0")]}))
    out = tmp_path / "chain"
    settings = {"datalist": str(datalist), "epochs": 1, "num_samples": 2, "batch_size": 4, "sw_batch_size": 16}
    wf = workflow("depthwise", "train", "train", output_dir=str(out), ckpt_dir=str(out / "models"), **settings)
    wf.run()
    wf.finalize()
    assert (out / "models" / "model.pt").is_file()
    wf = workflow("depthwise", ["train", "evaluate"], None, output_dir=str(out / "eval"), ckpt_dir=str(out / "models"),
                  write_overlays=False, **settings)
    wf.run()
    rows = _read_rows(out / "eval" / "metrics_per_subject.csv")
    assert [r["case"] for r in rows] == ["e0"] and 0.0 <= float(rows[0]["dice_WT"]) <= 1.0
    wf = workflow("depthwise", "inference", "infer", dataset_dir=str(data), output_dir=str(out / "pred"),
                  ckpt_path=str(out / "models" / "model.pt"), sw_batch_size=16)
    wf.run()
    source = nib.load(entry["image"][0])
    for written in (out / "eval" / "predictions" / "e0_pred.nii.gz", out / "pred" / f"{entry['case']}_pred.nii.gz"):
        image = nib.load(str(written))
        assert image.shape == (240, 240, 155)
        np.testing.assert_allclose(image.affine, source.affine, atol=1e-5)
        assert set(np.unique(np.asarray(image.dataobj)).tolist()) <= {0, 1, 2, 4}
