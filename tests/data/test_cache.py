"""The compact on-disk study cache: float16 / uint8 entries, exact regions, keys, reuse, atomic writes, training."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandFlipd
from torch.utils.data import Dataset as TorchDataset

from raagr2_monai.data import (
    CACHE_FORMAT,
    CompactStudyd,
    ExpandStudyd,
    StudyCacheDataset,
    cache_entry_mb,
    cache_split,
    find_cases,
    fill_cache,
    generate,
    study_key,
)
from raagr2_monai.data import cache as cache_module
from raagr2_monai.data.chains import inference_postprocessing, train_transforms, val_transforms

SHAPE = (64, 64, 32)
ROI = (32, 32)
# float16 keeps 11 significant bits: a relative error of at most 2^-11 on normal values, and half its smallest
# subnormal step (2^-25) in absolute terms near zero
RTOL, ATOL = 1e-3, 3e-8


@pytest.fixture(scope="module")
def entries(tmp_path_factory) -> List[dict]:
    folder = tmp_path_factory.mktemp("synth") / "set"
    generate(str(folder), cases=2, seed=0, shape=SHAPE)
    return find_cases(str(folder))


def _entries_copy(entries: List[dict]) -> List[dict]:
    return [dict(e) for e in entries]


def _cache_files(folder: Path) -> List[str]:
    return sorted(os.listdir(folder))


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


# --- the value check -------------------------------------------------------------------------------------------------


def test_float16_round_trip_is_lossless_enough(entries):
    """Compact then expanded: z-scored intensities within 1e-3 relative of today's float32, regions identical."""
    today = val_transforms(ROI)(dict(entries[0]))
    compact = val_transforms(ROI, compact=True)(dict(entries[0]))
    assert compact["image"].dtype == torch.float32 and compact["label"].dtype == torch.float32
    image, reference = compact["image"].as_tensor(), today["image"].as_tensor()
    assert image.shape == reference.shape
    normal = reference.abs() >= torch.finfo(torch.float16).tiny
    relative = ((image - reference).abs() / reference.abs())[normal]
    assert float(relative.max()) < 1e-3
    torch.testing.assert_close(image, reference, rtol=RTOL, atol=ATOL)
    assert torch.equal(compact["label"].as_tensor(), today["label"].as_tensor())
    assert torch.equal(compact["image"].affine, today["image"].affine)


def test_compact_and_expand_transforms():
    image = torch.tensor([[[1.0, -2.5]], [[0.0, 3.0]]])
    label = torch.tensor([[[0.0, 4.0]]])
    compact = CompactStudyd()({"image": MetaTensor(image), "label": MetaTensor(label), "case": "c1"})
    assert compact["image"].dtype == torch.float16 and compact["label"].dtype == torch.uint8
    assert isinstance(compact["image"], MetaTensor) and compact["case"] == "c1"
    expanded = ExpandStudyd()(compact)
    assert expanded["image"].dtype == torch.float32 and torch.equal(expanded["image"].as_tensor(), image)
    assert expanded["label"].tolist() == [[[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]]]
    # in the case's own convention: the Decathlon's 1 is edema, 3 enhancing tumour
    msd = ExpandStudyd()({"image": image, "label": torch.tensor([[[1, 3]]], dtype=torch.uint8),
                          "label_convention": "msd"})
    assert msd["label"].tolist() == [[[0.0, 1.0]], [[1.0, 1.0]], [[0.0, 1.0]]]


@pytest.mark.parametrize(
    ("value", "message"), [(float("nan"), "1 NaN or infinite"), (float("inf"), "1 NaN or infinite"), (1e5, "float16")]
)
def test_unfit_image_rejected_naming_case(value, message):
    image = torch.zeros(4, 3, 3, 2)
    image[2, 1, 1, 0] = value
    with pytest.raises(ValueError, match=rf"^BraTS_042: .*{message}"):
        CompactStudyd()({"case": "BraTS_042", "image": image, "label": torch.zeros(1, 3, 3, 2)})
    # without a case id, the image's file name
    named = MetaTensor(image, meta={"filename_or_obj": "/data/x/BraTS_043_t1ce.nii.gz"})
    with pytest.raises(ValueError, match=rf"^BraTS_043_t1ce.nii.gz: .*{message}"):
        CompactStudyd(label_key=None)({"image": named})


def test_unfit_label_rejected():
    image = torch.zeros(4, 2, 2, 1)
    with pytest.raises(ValueError, match="c: label values are not integers 0..255"):
        CompactStudyd()({"case": "c", "image": image, "label": torch.full((1, 2, 2, 1), 0.5)})
    with pytest.raises(ValueError, match=r"c: expected a \(1, \*spatial\) label map"):
        CompactStudyd()({"case": "c", "image": image, "label": torch.zeros(3, 2, 2, 1)})


# --- where caching stops ---------------------------------------------------------------------------------------------


def test_cache_split_stops_after_compact():
    # the validation chain ends deterministic (ExpandStudyd), which PersistentDataset would cache too
    chain = val_transforms(ROI, compact=True)
    names = [type(t).__name__ for t in chain.transforms]
    assert names[cache_split(chain) - 1:] == ["CompactStudyd", "ExpandStudyd"]
    train = train_transforms(ROI, compact=True)
    assert type(train.transforms[cache_split(train) - 1]).__name__ == "CompactStudyd"
    # no CompactStudyd: PersistentDataset's rule, the first random transform (or all)
    today = train_transforms(ROI)
    assert cache_split(today) == [type(t).__name__ for t in today.transforms].index("RandCropByPosNegLabeld")
    assert cache_split(val_transforms(ROI)) == len(val_transforms(ROI).transforms)
    with pytest.raises(ValueError, match="RandFlipd .* before CompactStudyd"):
        cache_split(Compose([RandFlipd("image"), CompactStudyd()]))


# --- entries on disk -------------------------------------------------------------------------------------------------


def test_entries_on_disk_are_compact(entries, tmp_path):
    dataset = StudyCacheDataset(_entries_copy(entries), val_transforms(ROI, compact=True), tmp_path)
    summary = fill_cache(dataset, name="validation")
    assert (summary.studies, summary.built) == (2, 2) and summary.seconds > 0
    files = _cache_files(tmp_path)
    assert len(files) == 2 and all(re.fullmatch(r"[0-9a-f]{64}\.pt", f) for f in files)  # no temporary left
    assert {dataset.cache_path(i).name for i in range(2)} == set(files)

    cached = dataset.cached(0)
    full = val_transforms(ROI)(dict(entries[0]))
    channels, *spatial = full["image"].shape
    assert cached["image"].dtype == torch.float16 and tuple(cached["image"].shape) == (channels, *spatial)
    assert cached["label"].dtype == torch.uint8 and tuple(cached["label"].shape) == (1, *spatial)
    # float32 image + 3 float32 regions = 7 x 4 bytes per voxel; float16 image + a uint8 map = 4 x 2 + 1
    study_bytes = full["image"].numel() * 4 + full["label"].numel() * 4
    assert summary.mb_per_study == pytest.approx(cache_entry_mb(dataset))
    assert summary.mb_per_study * 1e6 < study_bytes * 9 / 28 * 1.1

    again = fill_cache(dataset)
    assert (again.studies, again.built) == (2, 0)


def test_second_dataset_rebuilds_nothing(entries, tmp_path, monkeypatch):
    fill_cache(StudyCacheDataset(_entries_copy(entries), val_transforms(ROI, compact=True), tmp_path))
    files = _cache_files(tmp_path)

    def no_preprocessing(self, item):
        raise AssertionError("preprocessed a cached study again")

    monkeypatch.setattr(StudyCacheDataset, "_pre_transform", no_preprocessing)
    # another chain object, as another process would build it; the training chain shares the cached part
    for chain in (val_transforms(ROI, compact=True), train_transforms(ROI, num_samples=2, compact=True)):
        dataset = StudyCacheDataset(_entries_copy(entries), chain, tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unreadable entry would warn and be rebuilt
            assert fill_cache(dataset).built == 0
            for i in range(len(dataset)):
                dataset[i]
    assert _cache_files(tmp_path) == files


def test_key_follows_settings_files_and_format(entries, tmp_path, monkeypatch):
    entry = _entries_copy(entries)[:1]
    dataset = StudyCacheDataset(entry, val_transforms(ROI, compact=True), tmp_path)
    key = dataset.cache_path(0)
    assert StudyCacheDataset(entry, val_transforms(ROI, compact=True), tmp_path).cache_path(0) == key
    assert StudyCacheDataset(entry, val_transforms((48, 48), compact=True), tmp_path).cache_path(0) != key
    other_case = [{**entry[0], "case": "renamed"}]
    assert StudyCacheDataset(other_case, val_transforms(ROI, compact=True), tmp_path).cache_path(0) != key

    fill_cache(dataset)
    flair = entry[0]["image"][3]
    stat = os.stat(flair)
    try:
        os.utime(flair, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        touched = dataset.cache_path(0)
        assert touched != key and not touched.is_file()
        assert fill_cache(dataset).built == 1  # the touched study is preprocessed again
    finally:
        os.utime(flair, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dataset.cache_path(0) == key

    monkeypatch.setattr(cache_module, "CACHE_FORMAT", CACHE_FORMAT + 1)
    assert dataset.cache_path(0) != key
    assert study_key(entry[0], []) != study_key(other_case[0], [])


def test_cached_items_equal_uncached(entries, tmp_path):
    dataset = StudyCacheDataset(_entries_copy(entries), val_transforms(ROI, compact=True), tmp_path)
    fill_cache(dataset)
    fresh = StudyCacheDataset(_entries_copy(entries), val_transforms(ROI, compact=True), tmp_path)
    for i, entry in enumerate(entries):
        item, reference = fresh[i], val_transforms(ROI)(dict(entry))
        assert item["image"].dtype == torch.float32 and item["label"].dtype == torch.float32
        torch.testing.assert_close(item["image"].as_tensor(), reference["image"].as_tensor(), rtol=RTOL, atol=ATOL)
        assert torch.equal(item["label"].as_tensor(), reference["label"].as_tensor())
        assert torch.equal(item["image"].affine, reference["image"].affine)
        assert item["case"] == entry["case"]


def test_cached_item_writes_back_exactly(entries, tmp_path):
    """The metadata and transform records survive the disk: the evaluation's Invertd maps a cached item back onto
    the input's grid, with transforms built anew (as in another process)."""
    import nibabel as nib

    fill_cache(StudyCacheDataset(_entries_copy(entries)[:1], val_transforms(ROI, compact=True), tmp_path / "cache"))
    chain = val_transforms(ROI, compact=True)
    item = StudyCacheDataset(_entries_copy(entries)[:1], chain, tmp_path / "cache")[0]
    item["pred"] = item["label"].as_tensor()
    inference_postprocessing(chain, tmp_path / "out")(item)
    written = np.asarray(nib.load(str(tmp_path / "out" / f"{entries[0]['case']}_pred.nii.gz")).dataobj)
    np.testing.assert_array_equal(written, np.asarray(nib.load(entries[0]["label"]).dataobj))


def test_unreadable_entry_is_rebuilt(entries, tmp_path):
    dataset = StudyCacheDataset(_entries_copy(entries)[:1], val_transforms(ROI, compact=True), tmp_path)
    fill_cache(dataset)
    dataset.cache_path(0).write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="Unreadable cache entry"):
        item = dataset[0]
    assert item["label"].shape[0] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset[0]


def test_failed_write_leaves_nothing(entries, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", disk_full)
    dataset = StudyCacheDataset(_entries_copy(entries)[:1], val_transforms(ROI, compact=True), tmp_path)
    with pytest.raises(OSError, match="disk full"):
        dataset[0]
    assert _cache_files(tmp_path) == []


class _SameStudy(TorchDataset):
    """Every item is study 0 of ``dataset``: workers building one entry at once."""

    def __init__(self, dataset: StudyCacheDataset, n: int) -> None:
        self.dataset, self.n = dataset, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return int(self.dataset.cached(0)["label"].sum())


# The multi-process parts run in a fresh interpreter: torch's DataLoader workers (and the SIGCHLD handler it installs)
# started inside a pytest-xdist worker made that worker die later, at another test, in some runs.
_PROCESSES = """
import json, sys
import torch
from torch.utils.data import DataLoader
from raagr2_monai.data import StudyCacheDataset, fill_cache
from raagr2_monai.data.chains import train_transforms, val_transforms
from tests.data.test_cache import _SameStudy
entries, roi, cache = json.loads(sys.argv[1])
shared = StudyCacheDataset(entries[:1], val_transforms(roi, compact=True), cache + "/shared")
labels = set(DataLoader(_SameStudy(shared, 2), batch_size=None, num_workers=2))
again = fill_cache(shared).built
train = StudyCacheDataset(entries, train_transforms(roi, num_samples=2, compact=True), cache + "/filled")
state = torch.get_rng_state()
summary = fill_cache(train, num_workers=2, name="train")
print(json.dumps({"labels": len(labels), "shared": shared.cache_path(0).name, "again": again,
                  "studies": summary.studies, "built": summary.built,
                  "rng_kept": bool(torch.equal(torch.get_rng_state(), state))}))
"""


def test_processes_share_one_cache_dir_and_fill_in_workers(entries, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    args = json.dumps([_entries_copy(entries), list(ROI), str(tmp_path)])
    done = subprocess.run([sys.executable, "-c", _PROCESSES, args], cwd=repo, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # two workers building one entry at once: one file, the same study, and nothing left to build
    assert out["labels"] == 1 and _cache_files(tmp_path / "shared") == [out["shared"]] and out["again"] == 0
    # fill_cache in two worker processes builds every entry and leaves the caller's random state as it was
    assert (out["studies"], out["built"]) == (2, 2) and len(_cache_files(tmp_path / "filled")) == 2
    assert out["rng_kept"]


def test_fill_cache_refuses_other_datasets_and_counts_empty_ones(tmp_path):
    empty = StudyCacheDataset([], val_transforms(ROI, compact=True), tmp_path)
    assert (fill_cache(empty).studies, cache_entry_mb(empty)) == (0, 0.0)
    with pytest.raises(TypeError, match="StudyCacheDataset"):
        fill_cache([{"image": "x"}])


def test_set_data_keeps_entries(entries, tmp_path):
    dataset = StudyCacheDataset(_entries_copy(entries)[:1], val_transforms(ROI, compact=True), tmp_path)
    fill_cache(dataset)
    dataset.set_data(_entries_copy(entries)[1:])  # PersistentDataset would empty the shared folder
    assert len(_cache_files(tmp_path)) == 1 and fill_cache(dataset).built == 1


# --- training on cached studies --------------------------------------------------------------------------------------


def test_train_chain_on_cache_shapes_and_tumour(entries, tmp_path):
    dataset = StudyCacheDataset(
        _entries_copy(entries), train_transforms(ROI, tumour_fraction=1.0, num_samples=6, compact=True), tmp_path
    )
    fill_cache(dataset)
    dataset.transform.set_random_state(seed=3)
    for i in range(len(dataset)):
        samples = dataset[i]
        assert len(samples) == 6
        for sample in samples:
            assert sample["image"].shape == (4, *ROI) and sample["label"].shape == (3, *ROI)
            assert sample["image"].dtype == torch.float32 and sample["label"].dtype == torch.float32
            assert type(sample["image"]) is torch.Tensor and type(sample["label"]) is torch.Tensor
            assert float(sample["label"][1].sum()) > 0  # every slice is centred on tumour
            tc, wt, et = sample["label"]
            assert bool((tc <= wt).all() and (et <= wt).all())


@pytest.mark.parametrize("tumour_fraction", [0.0, 0.5])
def test_train_chain_on_cache_samples_as_today(entries, tmp_path, tumour_fraction):
    """Same seed, same slices: the uint8 label map gives RandCropByPosNegLabeld the tumour (WT) and the brain outside
    it that the float32 regions give it."""
    dataset = StudyCacheDataset(
        _entries_copy(entries),
        train_transforms(ROI, tumour_fraction=tumour_fraction, num_samples=8, compact=True),
        tmp_path,
    )
    fill_cache(dataset)
    today = train_transforms(ROI, tumour_fraction=tumour_fraction, num_samples=8)
    dataset.transform.set_random_state(seed=5)
    today.set_random_state(seed=5)
    for i, entry in enumerate(entries):
        for cached, reference in zip(dataset[i], today(dict(entry))):
            assert torch.equal(cached["label"], reference["label"])
            # the intensity shift (+-0.1) can take a value rounded to float16 near zero, where its error (up to 2^-12
            # of it, 3e-5 at 0.11) is large relative to the result
            torch.testing.assert_close(cached["image"], reference["image"], rtol=RTOL, atol=1e-4)
