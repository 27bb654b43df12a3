"""The evaluation handler writing one overlay per subject from the files on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from matplotlib.image import imread
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator

from raagr2_monai.data.transforms import RegionsToLabelMapd
from raagr2_monai.data.validation import BraTSDataError
from raagr2_monai.handlers.overlays import OverlayWriter
from raagr2_monai.visualize import overlay_figure, save_png

from .tiny_case import anatomy, lps, lps_affine, write_case

DPI = 30


def named(tensor: torch.Tensor, path: str) -> MetaTensor:
    """A tensor carrying a file name as the loaded image and label of an evaluator do."""
    out = MetaTensor(tensor)
    out.meta["filename_or_obj"] = path
    return out


def expected_picture(tmp_path: Path, name: str, images: dict, seg: np.ndarray, pred: np.ndarray, affine, case: str):
    figure = overlay_figure({"FLAIR": images["flair"], "T1ce": images["t1ce"]}, seg, pred, affine, title=case, dpi=DPI)
    return imread(save_png(figure, tmp_path / "expected" / name))


def test_writes_each_subjects_overlay_from_the_files(tmp_path: Path) -> None:
    images, seg = anatomy()
    pred = seg.copy()
    pred[pred == 4] = 1
    stacked = write_case(tmp_path, "c4d", images, seg, np.eye(4), four_d=True)  # images found from the metadata
    files = write_case(tmp_path, "clps", {k: lps(v) for k, v in images.items()}, lps(seg), lps_affine())
    working = torch.zeros(3, 4, 4, 4)  # the working-grid tensors: only their file names matter here
    outputs = [
        {"pred": torch.as_tensor(pred)[None], "label": named(working, stacked["label"]),
         "image": named(working, stacked["image"]), "case": "c4d"},
        {"pred": MetaTensor(torch.as_tensor(lps(pred))[None], meta={"case": "clps"}),
         "label": named(working, files["label"]), "image": named(working, files["image"][0])},
    ]
    engine = Engine(lambda e, batch: outputs)
    OverlayWriter(tmp_path / "overlays", datalist=[files], dpi=DPI).attach(engine)
    engine.run([0])
    written = tmp_path / "overlays"
    assert sorted(p.name for p in written.iterdir()) == ["c4d.png", "clps.png"]  # no temporary file left
    np.testing.assert_array_equal(
        imread(written / "c4d.png"), expected_picture(tmp_path, "c4d.png", images, seg, pred, np.eye(4), "c4d")
    )
    # the LPS case, found through its datalist entry, named by pred's metadata: the same picture as the RAS anatomy
    np.testing.assert_array_equal(
        imread(written / "clps.png"), expected_picture(tmp_path, "clps.png", images, seg, pred, np.eye(4), "clps")
    )
    assert imread(written / "clps.png").shape == (int((2 * 3 + 1.25) * DPI), 2 * 3 * DPI, 4)  # Agg truncates


def test_case_id_from_the_batch_and_the_seg_file(tmp_path: Path) -> None:
    images, seg = anatomy()
    entry = write_case(tmp_path, "BraTS_7", images, seg, np.eye(4), four_d=True)
    item = {"pred": torch.as_tensor(seg)[None], "label": named(torch.zeros(1), entry["label"]),
            "image": named(torch.zeros(1), entry["image"])}
    engine = Engine(lambda e, batch: [item])
    OverlayWriter(tmp_path / "a", dpi=DPI).attach(engine)
    engine.run([[{"case": "from_batch"}]])
    engine = Engine(lambda e, batch: [item])
    OverlayWriter(tmp_path / "b", dpi=DPI).attach(engine)
    engine.run([0])
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["from_batch.png"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["BraTS_7_seg.png"]


def test_bad_outputs_are_reported(tmp_path: Path) -> None:
    images, seg = anatomy()
    files = write_case(tmp_path, "c1", images, seg, np.eye(4))
    label, image = named(torch.zeros(1), files["label"]), named(torch.zeros(1), files["image"][0])
    pred = torch.as_tensor(seg)[None]

    def run(item: dict, **kwargs) -> None:
        engine = Engine(lambda e, batch: [item])
        OverlayWriter(tmp_path / "out", dpi=DPI, **kwargs).attach(engine)
        engine.run([0])

    with pytest.raises(ValueError, match="output item 0 has no 'pred'"):
        run({"label": label, "case": "c1"})
    with pytest.raises(ValueError, match="case c1: the seg file or the images are unknown"):
        run({"pred": pred, "label": torch.zeros(1), "case": "c1"})
    with pytest.raises(BraTSDataError, match="(?s)pass the datalist.*c1_t1ce.nii.gz: shape"):
        run({"pred": pred, "label": label, "image": image, "case": "c1"})  # the first of four files only
    with pytest.raises(ValueError, match=r"case c1: the predicted label map has shape \(24, 20, 5\).*c1_seg.nii.gz"):
        run({"pred": pred[..., :5], "label": label, "case": "c1"}, datalist=[files])
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="convention"):
        OverlayWriter(tmp_path, convention="official")


def test_in_a_monai_evaluator(tmp_path: Path) -> None:
    """Batches of two, decollated by the evaluator; the label map made by the postprocessing, as in evaluation."""
    images, seg = anatomy()
    regions = torch.stack([torch.as_tensor(np.isin(seg, v)) for v in ((1, 4), (1, 2, 4), (4,))]).float()
    entries = [write_case(tmp_path, f"case{i}", images, seg, np.eye(4)) for i in range(3)]
    data = [
        {"image": named(regions, e["image"][0]), "label": named(regions, e["label"]), "case": e["case"]}
        for e in entries
    ]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=2),
        network=torch.nn.Identity(),
        postprocessing=RegionsToLabelMapd("pred"),
        val_handlers=[OverlayWriter(tmp_path / "overlays", datalist=entries, dpi=DPI)],
    )
    evaluator.run()
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["case0.png", "case1.png", "case2.png"]
    np.testing.assert_array_equal(
        imread(tmp_path / "overlays" / "case1.png"),
        expected_picture(tmp_path, "case1.png", images, seg, seg, np.eye(4), "case1"),
    )
