"""The overlay and comparison figures, their PNG files, and what they are drawn from."""

from __future__ import annotations

import doctest
import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import same_color
from matplotlib.image import imread

from raagr2_monai.constants import CHANNELS
from raagr2_monai.data.labels import labelmap_to_regions
from raagr2_monai.data.validation import BraTSDataError
from raagr2_monai.visualize import (
    REGION_COLOURS,
    TumourSlice,
    comparison_figure,
    dice_text,
    intensity_window,
    overlay_figure,
    read_modalities,
    region_dice,
    region_masks,
    save_png,
)
from raagr2_monai.visualize.figures import draw_contours, new_figure

from .tiny_case import anatomy, lps, lps_affine, save, write_case

DPI = 40  # small pictures: the tests look at sizes, text and lines, not at detail


def solid(collection: LineCollection) -> bool:
    return collection.get_linestyle()[0][1] is None


def region(collection: LineCollection) -> str:
    """The region whose colour an outline has."""
    (name,) = [r for r, colour in REGION_COLOURS.items() if same_color(collection.get_color()[0], colour)]
    return name


def test_region_masks_match_labelmap_to_regions_for_every_dtype() -> None:
    seg = np.random.default_rng(0).choice(np.array([0, 1, 2, 4]), size=(7, 6, 5)).astype(np.uint8)
    expected = labelmap_to_regions(torch.as_tensor(seg)[None]).bool().numpy()
    for array in (seg, seg.astype(np.int16), seg.astype(np.float32), torch.as_tensor(seg)[None]):
        np.testing.assert_array_equal(region_masks(array), expected)
    assert not region_masks(np.zeros((3, 3, 3), np.uint8)).any()
    with pytest.raises(ValueError, match=r"\(X, Y, Z\) or \(1, X, Y, Z\)"):
        region_masks(np.zeros((2, 3, 3, 3), np.uint8))


def test_region_dice_and_its_text() -> None:
    truth = np.zeros((4, 4, 4), np.uint8)
    truth[0:2, 0:2, 0] = 2  # WT 4 voxels, no TC, no ET
    pred = np.zeros_like(truth)
    pred[0:2, 0, 0] = 2
    pred[3, 3, 3] = 1  # a false-positive core: TC 0, WT 2 * 2 / (3 + 4)
    scores = region_dice(region_masks(pred), region_masks(truth))
    assert scores["TC"] == 0.0 and scores["WT"] == pytest.approx(4 / 7) and math.isnan(scores["ET"])
    assert region_dice(region_masks(pred), region_masks(truth), "thesis")["ET"] == 1.0
    assert dice_text(scores) == "Dice TC 0.000 | WT 0.571 | ET n/a"


def test_intensity_window_uses_the_brain_voxels() -> None:
    volume = np.zeros((10, 10, 10))
    volume[:10, 0, 0] = np.arange(1, 11)  # ten brain voxels, the rest background
    assert intensity_window(volume, 0.0, 100.0) == (1.0, 10.0)
    assert intensity_window(volume) == pytest.approx((1.09, 9.91))  # 1st and 99th percentiles, linear
    assert intensity_window(np.zeros((2, 2, 2))) == (0.0, 1.0)  # no brain: a window of one unit


def test_contours_lie_on_the_pixel_borders() -> None:
    figure = new_figure(2, 2, DPI)
    ax = figure.subplots()
    masks = np.zeros((3, 8, 9), bool)
    masks[1, 2:4, 4:7] = True  # WT: rows 2..3, columns 4..6
    masks[1, 6:8, 0:2] = True  # a second piece touching the slice's edge: closed all the same
    assert draw_contours(ax, masks) == 1
    (collection,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    first, second = sorted(collection.get_segments(), key=lambda s: s[:, 1].min())
    assert (first[:, 0].min(), first[:, 0].max(), first[:, 1].min(), first[:, 1].max()) == (3.5, 6.5, 1.5, 3.5)
    assert (second[:, 0].min(), second[:, 0].max(), second[:, 1].min(), second[:, 1].max()) == (-0.5, 1.5, 5.5, 7.5)
    assert np.array_equal(first[0], first[-1]) and np.array_equal(second[0], second[-1])


def test_overlay_figure_slices_outlines_and_title() -> None:
    images, seg = anatomy()
    pred = seg.copy()
    pred[pred == 4] = 1  # ET missed: ET Dice 0, TC and WT exact
    figure = overlay_figure({"FLAIR": images["flair"], "T1ce": images["t1ce"]}, seg, pred, title="c1", dpi=DPI)
    assert figure._suptitle.get_text() == "c1\nDice TC 1.000 | WT 1.000 | ET 0.000"
    axes = figure.axes
    assert [ax.get_title() for ax in axes] == [
        "FLAIR, slice 3: largest WT", "T1ce, slice 3: largest WT",  # WT 36 voxels on z 3..6: the first
        "FLAIR, slice 4: largest TC, largest ET", "T1ce, slice 4: largest TC, largest ET",
    ]
    # slice 3: WT only, solid and dashed; slice 4: WT, TC, ET solid, WT and TC dashed (ET not predicted)
    outlines = [[(region(c), solid(c)) for c in ax.collections] for ax in axes]
    assert outlines[0] == outlines[1] == [("WT", True), ("WT", False)]
    assert outlines[2] == outlines[3] == [("WT", True), ("TC", True), ("ET", True), ("WT", False), ("TC", False)]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["WT", "TC", "ET", "ground truth", "prediction"]


def test_overlay_uses_given_scores_and_slices_and_refuses_other_grids() -> None:
    images, seg = anatomy()
    figure = overlay_figure({"FLAIR": images["flair"]}, seg, seg, slices=[TumourSlice(8, ("chosen",))],
                            scores={"TC": 0.5, "WT": float("nan"), "ET": 0.25}, dpi=DPI)
    assert figure._suptitle.get_text() == "Dice TC 0.500 | WT n/a | ET 0.250"
    assert [ax.get_title() for ax in figure.axes] == ["FLAIR, slice 8: chosen"]
    # one column: the legend takes two lines
    assert figure.get_size_inches() == pytest.approx((3.0, 3.0 + 1.55))
    assert figure.legends[0]._ncols == 3
    with pytest.raises(ValueError, match="volumes of one shape"):
        overlay_figure({"FLAIR": images["flair"][:, :, :5]}, seg, seg)
    with pytest.raises(ValueError, match="at least one image"):
        overlay_figure({}, seg, seg)


def test_png_size_and_nothing_left_behind(tmp_path: Path) -> None:
    images, seg = anatomy()
    figure = overlay_figure({"FLAIR": images["flair"], "T1ce": images["t1ce"]}, seg, seg, panel_inches=3.0, dpi=DPI)
    path = save_png(figure, tmp_path / "out" / "c1.png")
    assert path == tmp_path / "out" / "c1.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # two columns of 3-inch panels; two slices of 3 inches plus 1.25 inches of titles and legend, at 40 dpi
    assert imread(path).shape == (int((2 * 3.0 + 1.25) * DPI), 2 * 3 * DPI, 4)
    assert sorted(p.name for p in path.parent.iterdir()) == ["c1.png"]

    def broken(*args, **kwargs):
        Path(args[0]).write_bytes(b"half a picture")
        raise RuntimeError("drawing failed")

    figure.savefig = broken
    with pytest.raises(RuntimeError, match="drawing failed"):
        save_png(figure, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["c1.png"]
    assert imread(path).shape[1] == 2 * 3 * DPI  # the previous picture is intact


def test_lps_file_renders_the_same_picture_as_ras(tmp_path: Path) -> None:
    images, seg = anatomy()
    pred = np.roll(seg, 1, axis=0)  # a prediction one voxel towards the patient's right
    ras = save_png(overlay_figure({"FLAIR": images["flair"]}, seg, pred, np.eye(4), dpi=DPI), tmp_path / "ras.png")
    flipped = overlay_figure({"FLAIR": lps(images["flair"])}, lps(seg), lps(pred), lps_affine(), dpi=DPI)
    np.testing.assert_array_equal(imread(save_png(flipped, tmp_path / "lps.png")), imread(ras))
    # and the picture is not symmetric: the neurological display differs
    neuro = overlay_figure({"FLAIR": images["flair"]}, seg, pred, np.eye(4), radiological=False, dpi=DPI)
    assert not np.array_equal(imread(save_png(neuro, tmp_path / "neuro.png")), imread(ras))


def test_comparison_figure_panels() -> None:
    images, seg = anatomy()
    shifted = np.roll(seg, 1, axis=2)
    figure = comparison_figure(
        images["flair"], torch.as_tensor(seg)[None], {"baseline": seg, "paired": shifted},
        scores={"paired": {"TC": 0.1, "WT": 0.2, "ET": 0.3}}, title="c1", dpi=DPI,
    )
    assert figure._suptitle.get_text() == "c1: FLAIR, axial slice 3"  # the true WT's largest slice
    assert [ax.get_title() for ax in figure.axes] == [
        "ground truth", "baseline\nDice TC 1.000 | WT 1.000 | ET 1.000", "paired\nDice TC 0.100 | WT 0.200 | ET 0.300",
    ]
    # slice 3: the truth and baseline have WT there; the shifted prediction has nothing below z 4
    assert [len(ax.collections) for ax in figure.axes] == [1, 1, 0]
    # slice 5: the truth has WT and TC (ET is on z 4 only), the shifted prediction WT, TC and ET
    assert [len(ax.collections) for ax in comparison_figure(images["flair"], seg, {"paired": shifted}, index=5).axes] == [2, 3]
    with pytest.raises(ValueError, match="at least one prediction"):
        comparison_figure(images["flair"], seg, {})
    with pytest.raises(ValueError, match="volumes of one shape"):
        comparison_figure(images["flair"], seg, {"cropped": seg[:, :, :5]})


def test_read_modalities_from_four_files_or_one_4d_file(tmp_path: Path) -> None:
    images, seg = anatomy()
    files = write_case(tmp_path, "c3d", images, seg, lps_affine())
    stacked = write_case(tmp_path, "c4d", images, seg, lps_affine(), four_d=True)
    for entry in (files, stacked):
        volumes, affine = read_modalities(entry["image"], ("flair", "t1ce"), case=entry["case"])
        assert list(volumes) == ["flair", "t1ce"]
        np.testing.assert_array_equal(volumes["flair"], images["flair"])
        np.testing.assert_array_equal(volumes["t1ce"], images["t1ce"])
        np.testing.assert_array_equal(affine, lps_affine())
    # another channel order (e.g. a 4D file holding FLAIR first)
    volumes, _ = read_modalities(stacked["image"], ("flair",), channels=("flair", "t1", "t1ce", "t2"))
    np.testing.assert_array_equal(volumes["flair"], images[CHANNELS[0]])


def test_read_modalities_names_the_bad_file(tmp_path: Path) -> None:
    images, seg = anatomy()
    entry = write_case(tmp_path, "c1", images, seg, np.eye(4))
    with pytest.raises(ValueError, match=r"modalities \['seg'\] are not among"):
        read_modalities(entry["image"], ("seg",))
    Path(entry["image"][3]).unlink()
    with pytest.raises(FileNotFoundError, match="c1_flair.nii.gz: file does not exist"):
        read_modalities(entry["image"], case="c1")
    save(images["flair"], Path(entry["image"][3]), np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(BraTSDataError, match="c1_flair.nii.gz: affine differs"):
        read_modalities(entry["image"], case="c1")
    save(images["flair"], Path(entry["image"][3]), np.eye(4))
    t1ce = Path(entry["image"][0])
    t1ce.write_bytes(t1ce.read_bytes()[:-40])  # a truncated T1ce: its header is sound, its voxels are not
    with pytest.raises(BraTSDataError, match="c1_t1ce.nii.gz: unreadable"):
        read_modalities(entry["image"], case="c1")


@pytest.mark.parametrize("module", ["figures", "orientation", "regions", "slices", "distributions"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"raagr2_monai.visualize.{module}"), extraglobs={"np": np, "torch": torch})
    assert result.failed == 0 and result.attempted > 0
