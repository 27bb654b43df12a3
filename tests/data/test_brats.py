"""Finding, checking and splitting BraTS cases (tiny 8x8x8 volumes written here)."""

from __future__ import annotations

import functools
import gzip
import json
import os
from typing import Dict, Optional, Sequence

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from raagr2_monai.cli import datalist as datalist_command
from raagr2_monai.data import sources, synthetic
from raagr2_monai.constants import CHANNELS
from raagr2_monai.data import (
    BraTSDataError,
    build_datalist,
    find_cases,
    load_split,
    split_cases,
    write_datalist,
)

SHAPE = (8, 8, 8)


def _seg() -> np.ndarray:
    seg = np.zeros(SHAPE, np.uint8)
    seg[2:6, 2:6, 2:6] = 2
    seg[3:5, 3:5, 3:5] = 1
    seg[3, 3, 3] = 4
    return seg


def write_case(
    folder: str,
    case: str,
    seg: bool = True,
    ext: str = ".nii.gz",
    arrays: Optional[Dict[str, np.ndarray]] = None,
    affines: Optional[Dict[str, np.ndarray]] = None,
    skip: Sequence[str] = (),
) -> str:
    """Write ``folder/case/case_<suffix><ext>``; ``arrays``/``affines`` override a suffix's voxels or affine."""
    arrays, affines = arrays or {}, affines or {}
    path = os.path.join(folder, case)
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(len(case))
    suffixes = list(CHANNELS) + (["seg"] if seg else [])
    for suffix in suffixes:
        if suffix in skip:
            continue
        default = _seg() if suffix == "seg" else rng.uniform(1, 100, SHAPE).astype(np.float32)
        img = nib.Nifti1Image(arrays.get(suffix, default), affines.get(suffix, np.eye(4)))
        nib.save(img, os.path.join(path, f"{case}_{suffix}{ext}"))
    return path


def write_grades(path: str, grades: Dict[str, str]) -> str:
    with open(path, "w") as f:
        f.write("case,grade\n" + "".join(f"{c},{g}\n" for c, g in grades.items()))
    return path


@pytest.fixture
def flat_set(tmp_path) -> str:
    """20 labelled cases, flat layout: 14 HGG and 6 LGG in grades.csv."""
    root = str(tmp_path / "brats")
    grades = {f"Case_{i:03d}": ("LGG" if i % 10 >= 7 else "HGG") for i in range(20)}
    for case in grades:
        write_case(root, case)
    write_grades(os.path.join(root, "grades.csv"), grades)
    return root


def _ids(entries) -> list:
    return [e["case"] for e in entries]


def test_find_cases_flat_layout_orders_channels_and_reads_grades(flat_set):
    entries = find_cases(flat_set)
    assert _ids(entries) == [f"Case_{i:03d}" for i in range(20)]
    first = entries[0]
    names = [os.path.basename(p) for p in first["image"]]
    assert names == [f"Case_000_{s}.nii.gz" for s in ("t1ce", "t1", "t2", "flair")]
    assert os.path.isabs(first["label"]) and first["label"].endswith("Case_000_seg.nii.gz")
    assert [e["grade"] for e in entries].count("LGG") == 6


def test_find_cases_grouped_layout_mixed_extensions_and_unlabelled(tmp_path):
    root = str(tmp_path)
    write_case(os.path.join(root, "HGG"), "A1")
    write_case(os.path.join(root, "HGG"), "A2", ext=".nii")
    write_case(os.path.join(root, "LGG"), "B1", ext=".nii")
    write_case(os.path.join(root, "LGG"), "B2", seg=False)
    os.makedirs(os.path.join(root, "notes"))  # a folder without case files is ignored
    entries = {e["case"]: e for e in find_cases(root)}
    assert sorted(entries) == ["A1", "A2", "B1", "B2"]
    assert [entries[c]["grade"] for c in ("A1", "A2", "B1", "B2")] == ["HGG", "HGG", "LGG", "LGG"]
    assert entries["A2"]["image"][0].endswith("A2_t1ce.nii") and entries["A2"]["label"].endswith("A2_seg.nii")
    assert "label" not in entries["B2"]
    parts = build_datalist(root)
    assert _ids(parts["unlabelled"]) == ["B2"]
    assert sorted(_ids(parts["training"] + parts["validation"] + parts["testing"])) == ["A1", "A2", "B1"]


def test_grades_csv_conflicting_with_folder_is_reported(tmp_path):
    write_case(str(tmp_path / "data" / "HGG"), "A1")
    csv_path = write_grades(str(tmp_path / "g.csv"), {"A1": "LGG"})
    with pytest.raises(BraTSDataError, match=r"case A1: .*g\.csv: grade LGG conflicts with the HGG/ folder"):
        find_cases(str(tmp_path / "data"), grades_csv=csv_path)


def test_grades_csv_formats_and_invalid_grades(tmp_path):
    write_case(str(tmp_path / "data"), "A1")
    write_case(str(tmp_path / "data"), "A2")
    mapping = tmp_path / "name_mapping.csv"  # BraTS 2020's file
    mapping.write_text("Grade,BraTS_2017_subject_ID,BraTS_2020_subject_ID\nLGG,x,A1\nhgg,y,A2\n")
    grades = [e["grade"] for e in find_cases(str(tmp_path / "data"), grades_csv=str(mapping))]
    assert grades == ["LGG", "HGG"]
    bad = write_grades(str(tmp_path / "bad.csv"), {"A1": "GBM", "A2": "HGG"})
    with pytest.raises(BraTSDataError, match=r"case A1: .*bad\.csv: grade 'GBM' is not one of \('HGG', 'LGG'\)"):
        find_cases(str(tmp_path / "data"), grades_csv=bad)


def test_split_is_patient_disjoint_stratified_and_deterministic(flat_set):
    parts = build_datalist(flat_set, seed=0)
    train, val, test = (set(_ids(parts[k])) for k in ("training", "validation", "testing"))
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 20 and parts["unlabelled"] == []
    # per grade, largest remainder: HGG 14 -> 10/2/2, LGG 6 -> 4/1/1
    assert (len(train), len(val), len(test)) == (14, 3, 3)
    for key in ("training", "validation", "testing"):
        assert {e["grade"] for e in parts[key]} == {"HGG", "LGG"}
    assert build_datalist(flat_set, seed=0) == parts
    other = build_datalist(flat_set, seed=1)
    assert _ids(other["validation"]) + _ids(other["testing"]) != _ids(parts["validation"]) + _ids(parts["testing"])


def test_split_small_sets_fill_every_split():
    parts = split_cases([{"case": c, "grade": g} for c, g in [("a", "HGG"), ("b", "HGG"), ("c", "LGG")]], seed=3)
    assert sorted(len(v) for v in parts.values()) == [1, 1, 1]
    parts = split_cases([{"case": f"c{i}", "grade": None} for i in range(10)], split="0.8,0.1,0.1")
    assert [len(parts[k]) for k in ("training", "validation", "testing")] == [8, 1, 1]


@pytest.mark.parametrize("split", [(0.5, 0.5), (0.7, 0.2, 0.2), (0.0, 0.5, 0.5), "a,b,c"])
def test_split_rejects_bad_fractions(split):
    with pytest.raises(ValueError, match="split"):
        split_cases([{"case": "a", "grade": None}], split=split)


def test_write_datalist_relative_paths_resolve_with_monai(flat_set, tmp_path):
    output = str(tmp_path / "lists" / "datalist.json")
    doc = write_datalist(flat_set, output, seed=5, split=(0.6, 0.2, 0.2))
    with open(output) as f:
        raw = json.load(f)
    assert raw == doc
    assert raw["seed"] == 5 and raw["split"] == [0.6, 0.2, 0.2] and raw["data_dir"] == flat_set
    assert raw["training"][0]["image"][0].startswith(os.path.join("..", "brats"))
    loaded = load_decathlon_datalist(output, True, "training")
    expected = build_datalist(flat_set, seed=5, split=(0.6, 0.2, 0.2))["training"]
    assert [e["image"] for e in loaded] == [e["image"] for e in expected]
    assert [e["label"] for e in loaded] == [e["label"] for e in expected]
    assert all(os.path.isfile(p) for e in loaded for p in e["image"] + [e["label"]])
    assert os.listdir(tmp_path / "lists") == ["datalist.json"]  # no temporary file left


def test_load_split_from_datalist_keeps_case_ids(flat_set):
    # Written inside the data folder: MONAI would turn each case id into the path of the case's folder.
    output = os.path.join(flat_set, "datalist.json")
    write_datalist(flat_set, output, check=False)
    entries = load_split("/does/not/matter", "validation", datalist=output)
    assert [e["case"] for e in entries] == [e["case"] for e in build_datalist(flat_set)["validation"]]
    assert all(os.path.isabs(e["label"]) and os.path.isfile(e["label"]) for e in entries)


def test_load_split_in_memory_matches_build_datalist(flat_set):
    assert load_split(flat_set, "testing", seed=2) == build_datalist(flat_set, seed=2)["testing"]
    with pytest.raises(ValueError, match="section must be one of"):
        load_split(flat_set, "train")


def test_load_split_missing_dir_and_synthetic_default(tmp_path, monkeypatch):
    monkeypatch.setenv(synthetic.ENV_VAR, str(tmp_path / "synth"))
    with pytest.raises(FileNotFoundError, match="dataset_dir .*nowhere does not exist; pass a BraTS folder"):
        load_split(str(tmp_path / "nowhere"), "training")
    # a small set: the default one is generated by the same function at its default size
    monkeypatch.setattr(
        sources, "ensure_synthetic", functools.partial(synthetic.ensure_synthetic, cases=6, shape=(32, 32, 16))
    )
    entries = load_split(None, "training")
    assert (tmp_path / "synth" / "grades.csv").is_file()
    assert len(entries) == 4 and {e["grade"] for e in entries} == {"HGG", "LGG"}
    assert load_split(str(tmp_path / "synth"), "testing") == load_split(None, "testing")


def _truncate(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _garbage(path: str) -> None:
    with open(path, "wb") as f:
        f.write(b"not a nifti file at all" * 20)


def _nan_diagonal() -> np.ndarray:
    return np.where(np.eye(8, dtype=bool)[..., None] & np.ones(SHAPE, bool), np.nan, 1.0).astype(np.float32)


def _second_extension(folder: str) -> None:
    write_case(os.path.dirname(folder), "Bad", ext=".nii", skip=("t1ce", "t2", "flair", "seg"))


# kind -> (write_case arguments, damage done to the written case folder, expected "<file>: <problem>" regex)
BAD_CASES = {
    "missing modality": (dict(skip=("flair",)), None, "Bad_flair.nii.gz: missing flair modality"),
    "truncated gz": (
        {}, lambda d: _truncate(os.path.join(d, "Bad_t2.nii.gz")), "Bad_t2.nii.gz: unreadable or truncated NIfTI"
    ),
    "truncated nii": (
        dict(ext=".nii"), lambda d: _truncate(os.path.join(d, "Bad_t1.nii")), "Bad_t1.nii: unreadable or truncated"
    ),
    "not nifti": ({}, lambda d: _garbage(os.path.join(d, "Bad_seg.nii.gz")), "Bad_seg.nii.gz: unreadable"),
    "shape": (
        dict(arrays={"t2": np.ones((8, 8, 7), np.float32)}),
        None,
        r"Bad_t2.nii.gz: shape \(8, 8, 7\) differs from Bad_t1ce.nii.gz's \(8, 8, 8\)",
    ),
    "affine": (
        dict(affines={"flair": np.diag([1.0, 1.0, 1.2, 1.0])}), None, "Bad_flair.nii.gz: affine differs from Bad_t1ce"
    ),
    "label value": (
        dict(arrays={"seg": np.full(SHAPE, 3, np.uint8)}),
        None,
        r"Bad_seg.nii.gz: label values \{3\} outside \{0, 1, 2, 4\} of the brats2021 convention \(512 voxels\); "
        r"they fit brats2023 and msd: set label_convention",
    ),
    "nan": (dict(arrays={"t1": _nan_diagonal()}), None, "Bad_t1.nii.gz: 64 NaN or infinite voxel"),
    "inf": (dict(arrays={"t1ce": np.full(SHAPE, np.inf, np.float32)}), None, "Bad_t1ce.nii.gz: 512 NaN or infinite"),
    "4d": (
        dict(arrays={"t2": np.ones(SHAPE + (2,), np.float32)}),
        None,
        r"Bad_t2.nii.gz: expected a 3D volume, got shape \(8, 8, 8, 2\)",
    ),
    "both extensions": ({}, _second_extension, "Bad_t1.nii.gz: ambiguous: both Bad_t1.nii.gz and Bad_t1.nii exist"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CASES))
def test_bad_input_raises_naming_case_file_and_problem(tmp_path, kind):
    kwargs, damage, message = BAD_CASES[kind]
    root = str(tmp_path)
    write_case(root, "Good")
    folder = write_case(root, "Bad", **kwargs)
    if damage is not None:
        damage(folder)
    with pytest.raises(BraTSDataError, match=r"case Bad: .*" + message) as info:
        build_datalist(root)
    assert info.value.cases == ("Bad",)


def test_small_affine_differences_are_tolerated(tmp_path):
    shifted = np.eye(4)
    shifted[:3, 3] = 1e-5
    write_case(str(tmp_path), "A", affines={"t2": shifted})
    assert _ids(build_datalist(str(tmp_path))["training"]) == ["A"]


def test_check_false_only_checks_presence(tmp_path):
    write_case(str(tmp_path), "A", arrays={"t1": np.full(SHAPE, np.nan, np.float32)})
    assert _ids(build_datalist(str(tmp_path), check=False)["training"]) == ["A"]
    with pytest.raises(BraTSDataError, match="case A: .*A_t1.nii.gz: 512 NaN"):
        build_datalist(str(tmp_path), check=True)


def test_empty_folder_has_no_cases(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(BraTSDataError, match="no BraTS cases found"):
        find_cases(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_cases(str(tmp_path / "absent"))


def test_datalist_reports_every_bad_case_and_writes_nothing(flat_set, tmp_path):
    write_case(flat_set, "Zbad1", arrays={"seg": np.full(SHAPE, 7, np.uint8)})
    folder = write_case(flat_set, "Zbad2")
    _truncate(os.path.join(folder, "Zbad2_flair.nii.gz"))
    write_case(flat_set, "Zbad3", skip=("t1",))
    output = tmp_path / "out" / "datalist.json"
    with pytest.raises(BraTSDataError) as info:
        write_datalist(flat_set, str(output))
    assert info.value.cases == ("Zbad3", "Zbad1", "Zbad2")  # missing files first, then contents
    text = str(info.value)
    assert "Zbad1_seg.nii.gz: label values {7}" in text
    assert "Zbad2_flair.nii.gz: unreadable or truncated NIfTI (EOFError" in text
    assert "Zbad3_t1.nii.gz: missing t1 modality" in text
    assert not output.exists() and not output.parent.exists()


def test_datalist_command_summary_and_string_split(flat_set, tmp_path):
    output = str(tmp_path / "dl.json")
    text = datalist_command(flat_set, output, seed=0, split="0.7,0.15,0.15")
    assert text.splitlines()[1:] == [
        "training: 14 cases (HGG 10, LGG 4)",
        "validation: 3 cases (HGG 2, LGG 1)",
        "testing: 3 cases (HGG 2, LGG 1)",
        "unlabelled: 0 cases",
    ]
    with open(output) as f:
        assert json.load(f)["split"] == [0.7, 0.15, 0.15]


def test_truncated_file_is_really_truncated(tmp_path):
    """Guards the truncation helper: a half .nii.gz fails to decompress to the end."""
    folder = write_case(str(tmp_path), "A")
    path = os.path.join(folder, "A_t1.nii.gz")
    _truncate(path)
    with pytest.raises(EOFError), gzip.open(path) as f:
        f.read()
