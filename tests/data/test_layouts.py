"""Every common BraTS distribution: small copies of one synthetic set in the BraTS 2018-2021, BraTS 2023+, Decathlon
(Task01_BrainTumour) and 4D-folder layouts must give the same network input and labels, and write back in their
own label convention."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from raagr2_monai.constants import CHANNELS
from raagr2_monai.data import BraTSDataError, build_datalist, find_cases, generate, inference_cases
from raagr2_monai.data.chains import inference_postprocessing, inference_transforms, val_transforms

CASES = 3
# raw BraTS 2018-2021 value -> the same subregion in each convention
TO_2023 = {0: 0, 1: 1, 2: 2, 4: 3}
TO_MSD = {0: 0, 1: 2, 2: 1, 4: 3}
MSD_ORDER = ("flair", "t1", "t1ce", "t2")  # dataset.json: FLAIR, T1w, T1gd, T2w


def _relabel(seg: np.ndarray, mapping: dict) -> np.ndarray:
    out = np.zeros_like(seg)
    for old, new in mapping.items():
        out[seg == old] = new
    return out


def _load(path: Path):
    image = nib.load(str(path))
    return np.asarray(image.dataobj), image.affine


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict:
    """The same three cases in every layout."""
    root = tmp_path_factory.mktemp("layouts")
    source = root / "brats2021"
    generate(str(source), cases=CASES, seed=4, shape=(40, 40, 16))
    cases = sorted(p.name for p in source.iterdir() if p.is_dir())
    b23, msd, f4d = root / "brats2023", root / "msd", root / "folder4d"
    (msd / "imagesTr").mkdir(parents=True)
    (msd / "labelsTr").mkdir()
    (f4d / "labels" / "final").mkdir(parents=True)
    training = []
    for case in cases:
        images = {m: _load(source / case / f"{case}_{m}.nii.gz") for m in CHANNELS}
        seg, affine = _load(source / case / f"{case}_seg.nii.gz")
        (b23 / case).mkdir(parents=True)
        for m, suffix in zip(CHANNELS, ("t1c", "t1n", "t2w", "t2f")):
            nib.save(nib.Nifti1Image(images[m][0], affine), str(b23 / case / f"{case}-{suffix}.nii.gz"))
        nib.save(nib.Nifti1Image(_relabel(seg, TO_2023), affine), str(b23 / case / f"{case}-seg.nii.gz"))
        stacked = np.stack([images[m][0] for m in MSD_ORDER], axis=-1)
        nib.save(nib.Nifti1Image(stacked, affine), str(msd / "imagesTr" / f"{case}.nii.gz"))
        nib.save(nib.Nifti1Image(_relabel(seg, TO_MSD), affine), str(msd / "labelsTr" / f"{case}.nii.gz"))
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        network_order = np.stack([images[m][0] for m in CHANNELS], axis=-1)
        nib.save(nib.Nifti1Image(network_order, affine), str(f4d / f"{case}.nii.gz"))
        nib.save(nib.Nifti1Image(seg, affine), str(f4d / "labels" / "final" / f"{case}.nii.gz"))
    (msd / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "training": training, "test": [],
    }))
    return {"cases": cases, "brats2021": source, "brats2023": b23, "msd": msd, "folder4d": f4d}


@pytest.mark.parametrize(
    ("layout", "convention", "channels"),
    [("brats2021", "brats2021", None), ("brats2023", "brats2023", None), ("msd", "msd", [2, 1, 3, 0]),
     ("folder4d", "brats2021", None)],
)
def test_discovery_of_every_layout(layouts, layout, convention, channels):
    entries = find_cases(str(layouts[layout]))
    assert [e["case"] for e in entries] == layouts["cases"]
    for entry in entries:
        assert entry["label_convention"] == convention and "label" in entry
        assert entry.get("channels") == channels
        assert isinstance(entry["image"], str if layout in ("msd", "folder4d") else list)
    parts = build_datalist(str(layouts[layout]))  # reads and checks every volume in its convention
    assert sum(len(v) for v in parts.values()) == CASES


@pytest.mark.parametrize("layout", ["brats2023", "msd", "folder4d"])
def test_every_layout_gives_the_same_network_input_and_regions(layouts, layout):
    reference = find_cases(str(layouts["brats2021"]))[0]
    entry = find_cases(str(layouts[layout]))[0]
    expected = val_transforms((32, 32))(reference)
    got = val_transforms((32, 32))(entry)
    torch.testing.assert_close(got["image"].as_tensor(), expected["image"].as_tensor())
    assert torch.equal(got["label"].as_tensor(), expected["label"].as_tensor())


@pytest.mark.parametrize("layout", ["brats2021", "brats2023", "msd"])
def test_inference_writes_the_input_convention(layouts, layout, tmp_path):
    """The true regions written back give the case's own seg file, value for value."""
    entry = find_cases(str(layouts[layout]))[0]
    pre = inference_transforms((32, 32))
    data = pre({k: v for k, v in entry.items() if k != "label"})
    data["pred"] = val_transforms((32, 32))(entry)["label"].as_tensor()
    inference_postprocessing(pre, tmp_path)(data)
    written, _ = _load(tmp_path / f"{entry['case']}_pred.nii.gz")
    truth, _ = _load(Path(entry["label"]))
    np.testing.assert_array_equal(written, truth)
    forced = tmp_path / "forced"
    data = pre({k: v for k, v in entry.items() if k != "label"})
    data["pred"] = val_transforms((32, 32))(entry)["label"].as_tensor()
    inference_postprocessing(pre, forced, output_labels="brats2021")(data)
    written, _ = _load(forced / f"{entry['case']}_pred.nii.gz")
    assert set(np.unique(written).tolist()) <= {0, 1, 2, 4} and 4 in np.unique(written)


def test_inference_cases_of_a_decathlon_folder_keep_channels_and_convention(layouts):
    entries = inference_cases(str(layouts["msd"]))
    assert [e["case"] for e in entries] == layouts["cases"]
    assert all(e["channels"] == [2, 1, 3, 0] and e["label_convention"] == "msd" for e in entries)


def test_explicit_convention_overrides_the_layout(layouts):
    entries = find_cases(str(layouts["folder4d"]), label_convention="brats2023")
    assert {e["label_convention"] for e in entries} == {"brats2023"}
    with pytest.raises(BraTSDataError, match=r"label values \{4\} outside \{0, 1, 2, 3\} of the brats2023 convention"):
        build_datalist(str(layouts["folder4d"]), label_convention="brats2023")
    with pytest.raises(ValueError, match="label_convention must be 'auto' or one of"):
        find_cases(str(layouts["folder4d"]), label_convention="brats2019")


def test_mixed_dataset_is_refused(layouts, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    first, second = layouts["cases"][:2]
    os.symlink(layouts["brats2021"] / first, mixed / first)
    os.symlink(layouts["brats2023"] / second, mixed / second)
    with pytest.raises(BraTSDataError, match=r"mixed dataset: 1 in the brats2021 layout, 1 in the brats2023 layout"):
        find_cases(str(mixed))


def test_label_values_of_no_convention_are_refused_naming_file_and_values(layouts, tmp_path):
    folder = tmp_path / "bad"
    (folder / "labels" / "final").mkdir(parents=True)
    case = layouts["cases"][0]
    image = layouts["folder4d"] / f"{case}.nii.gz"
    os.symlink(image, folder / f"{case}.nii.gz")
    seg, affine = _load(layouts["folder4d"] / "labels" / "final" / f"{case}.nii.gz")
    seg[seg == 4] = 5
    bad = folder / "labels" / "final" / f"{case}.nii.gz"
    nib.save(nib.Nifti1Image(seg, affine), str(bad))
    with pytest.raises(BraTSDataError) as info:
        build_datalist(str(folder))
    assert f"{bad}: label values {{5}} outside {{0, 1, 2, 4}} of the brats2021 convention" in str(info.value)


def test_decathlon_labels_of_unknown_meaning_are_refused(layouts, tmp_path):
    folder = tmp_path / "msd"
    folder.mkdir()
    doc = json.loads((layouts["msd"] / "dataset.json").read_text())
    doc["labels"] = {"0": "background", "1": "tumour"}
    (folder / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(BraTSDataError, match="match no known label convention"):
        find_cases(str(folder))
