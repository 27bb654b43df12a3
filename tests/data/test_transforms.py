"""BraTS transform chains: label conversions, channel order, crop / pad, sampling, exact write-back, bad input."""

import os
import re
from pathlib import Path
from typing import Dict, List, Sequence

import nibabel as nib
import numpy as np
import pytest
import torch

from raagr2_monai.constants import CHANNELS
from raagr2_monai.data import BraTSDataError
from raagr2_monai.data.labels import (
    labelmap_to_regions,
    labelmap_to_subregions,
    regions_to_labelmap,
    regions_to_subregions,
)
from raagr2_monai.data.chains import inference_postprocessing, inference_transforms, train_transforms, val_transforms
from raagr2_monai.data.transforms import ConvertToBraTSRegionsd, LoadBraTSd, RegionsToLabelMapd
from raagr2_monai.data.writing import AtomicNibabelWriter, brats_case_name_formatter

SHAPE = (40, 36, 12)
# The brain occupies x 6..33, y 5..30 on every slice: a 28 x 26 in-plane box.
BRAIN = (slice(6, 34), slice(5, 31), slice(None))
BRAIN_SIZE = (28, 26)
# 1 mm voxels, RAS axes, off-origin.
RAS_AFFINE = np.array([[1.0, 0, 0, -20.5], [0, 1.0, 0, -17.0], [0, 0, 1.0, 30.0], [0, 0, 0, 1]])
# LPS: x and y stored reversed, as ITK / DICOM-derived files often are.
LPS_AFFINE = np.array([[-1.0, 0, 0, 19.5], [0, -1.0, 0, 18.0], [0, 0, 1.0, 30.0], [0, 0, 0, 1]])


def _patterns() -> List[np.ndarray]:
    """One distinct pattern per modality (t1ce: x ramp, t1: y ramp, t2: z ramp, flair: x*y mod 7), brain only."""
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    brain = np.zeros(SHAPE, dtype=np.float32)
    brain[BRAIN] = 1.0
    return [(1 + x) * brain, (1 + y) * brain, (1 + z) * brain, (1 + (x * y) % 7) * brain]


def _label() -> np.ndarray:
    """ED around NCR around ET, on slices 3..7 only: slices 0..2 and 8..11 hold no tumour."""
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[12:24, 10:22, 3:8] = 2
    label[15:20, 13:18, 4:7] = 1
    label[16:19, 14:17, 5:6] = 4
    label[22:23, 11:12, 3:4] = 4  # ET touching ED only
    return label


def _write(path: Path, data: np.ndarray, affine: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def _write_case(
    folder: Path, case: str = "c001", affine: np.ndarray = RAS_AFFINE, four_d: bool = False
) -> Dict[str, object]:
    """A tiny BraTS case on disk; an LPS affine stores the same anatomy with x and y reversed."""
    folder.mkdir(parents=True, exist_ok=True)
    flip = (lambda a: a[::-1, ::-1]) if affine[0, 0] < 0 else (lambda a: a)
    images = [np.ascontiguousarray(flip(p)) for p in _patterns()]
    label = _write(folder / f"{case}_seg.nii.gz", np.ascontiguousarray(flip(_label())), affine)
    if four_d:
        image: object = _write(folder / f"{case}.nii.gz", np.stack(images, axis=-1), affine)
    else:
        image = [_write(folder / f"{case}_{m}.nii.gz", a, affine) for m, a in zip(CHANNELS, images)]
    return {"case": case, "image": image, "label": label}


def _padded_size(roi: Sequence[int]) -> tuple:
    """The in-plane size the network sees: the brain's box padded to at least roi and to a multiple of 16."""
    return tuple(-(-max(r, b) // 16) * 16 for r, b in zip(roi, BRAIN_SIZE))


def _centre_fit(array: np.ndarray, roi: Sequence[int]) -> np.ndarray:
    """Reference for the in-plane fit: MONAI's symmetric pad (smaller half first) or centred crop."""
    for axis, size in enumerate(roi):
        have = array.shape[axis]
        if have < size:
            pad = [(0, 0)] * array.ndim
            pad[axis] = ((size - have) // 2, size - have - (size - have) // 2)
            array = np.pad(array, pad)
        elif have > size:
            start = have // 2 - size // 2
            array = np.take(array, range(start, start + size), axis=axis)
    return array


def _zscore_in_brain(pattern: np.ndarray) -> np.ndarray:
    inside = pattern[BRAIN]
    return np.where(inside != 0, (inside - inside[inside != 0].mean()) / inside[inside != 0].std(), 0.0)


def _assert_error(excinfo: pytest.ExceptionInfo, kind: type, pattern: str) -> None:
    """MONAI wraps a transform's exception in ``RuntimeError("applying transform ...")``: check the original cause."""
    error = excinfo.value
    while error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, kind), repr(error)
    assert re.search(pattern, str(error)), str(error)


# --- label conversions -----------------------------------------------------------------------------------------------


def test_label_conversions_exact_and_inverse():
    labelmap = torch.tensor([[[0, 1], [2, 4]]], dtype=torch.uint8)
    regions = labelmap_to_regions(labelmap)
    assert regions.dtype == torch.float32
    # TC = {1, 4}, WT = {1, 2, 4}, ET = {4}
    assert regions.tolist() == [[[0, 1], [0, 1]], [[0, 1], [1, 1]], [[0, 0], [0, 1]]]
    assert torch.equal(regions_to_labelmap(regions), labelmap)
    assert regions_to_labelmap(regions).dtype == torch.uint8

    subregions = labelmap_to_subregions(labelmap)
    assert subregions.tolist() == [[[0, 1], [0, 0]], [[0, 0], [1, 0]], [[0, 0], [0, 1]]]  # NCR, ED, ET
    assert torch.equal(regions_to_subregions(regions), subregions)


def test_label_conversions_round_trip_on_volume():
    labelmap = torch.from_numpy(_label())[None]
    assert torch.equal(regions_to_labelmap(labelmap_to_regions(labelmap)), labelmap)
    assert torch.equal(labelmap_to_subregions(labelmap), regions_to_subregions(labelmap_to_regions(labelmap)))


def test_regions_to_labelmap_precedence_and_threshold():
    # Inconsistent channels still follow ET -> 4, else TC -> 1, else WT -> 2.
    probs = torch.tensor([[0.2, 0.9, 0.6, 0.1, 0.4], [0.7, 0.1, 0.1, 0.2, 0.5], [0.1, 0.1, 0.8, 0.9, 0.45]])
    # a probability equal to the threshold counts (MONAI's AsDiscrete rule, used everywhere in the package)
    assert regions_to_labelmap(probs).tolist() == [[2, 1, 4, 4, 2]]
    assert regions_to_labelmap(probs, threshold=0.4).tolist() == [[2, 1, 4, 4, 4]]
    assert regions_to_labelmap(probs, threshold=0.55).tolist() == [[2, 1, 4, 4, 0]]


def test_label_dictionary_transforms_keep_metadata():
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    label = MetaTensor(torch.tensor([[[[0, 1], [2, 4]]]]), affine=affine)
    regions = ConvertToBraTSRegionsd("label")({"label": label})["label"]
    assert isinstance(regions, MetaTensor) and regions.shape == (3, 1, 2, 2)
    assert torch.equal(regions.affine, affine)
    back = RegionsToLabelMapd("label")({"label": regions})["label"]
    assert isinstance(back, MetaTensor) and torch.equal(back.affine, affine)
    assert torch.equal(back.as_tensor(), label.as_tensor().to(torch.uint8))


def test_a_monte_carlo_sample_stays_probabilities_with_their_complements():
    from monai.data import MetaTensor

    from raagr2_monai.constants import MONTE_CARLO_SAMPLE
    from raagr2_monai.metrics import entropy_map

    probs = torch.tensor([[[0.1, 0.5]], [[0.9, 1.0]], [[0.0, 0.3]]])  # (TC, WT, ET) x 1 x 2
    sample = MetaTensor(probs, meta={MONTE_CARLO_SAMPLE: True})
    out = RegionsToLabelMapd("pred")({"pred": sample})["pred"]
    assert isinstance(out, MetaTensor) and out.meta[MONTE_CARLO_SAMPLE] and out.shape == (6, 1, 2)
    assert torch.equal(out[:3], probs) and torch.equal(out[3:], 1 - probs)
    # MONAI Label's epistemic entropy, sum over channels of -p ln p (its floor for p <= 0), is the binary entropy
    q = out.clamp_min(5e-5)
    np.testing.assert_allclose((-(q * q.log())).sum(0).numpy(), entropy_map(probs), atol=2e-3)
    # unmarked: the label map as always
    assert RegionsToLabelMapd("pred")({"pred": MetaTensor(probs)})["pred"].tolist() == [[[2, 1]]]


def test_label_conversions_reject_wrong_channels():
    with pytest.raises(ValueError, match=r"\(1, \*spatial\)"):
        labelmap_to_regions(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="TC, WT, ET"):
        regions_to_labelmap(torch.zeros(4, 4, 4))


# --- loading and preprocessing ---------------------------------------------------------------------------------------


def test_loading_keeps_channel_order(tmp_path):
    entry = _write_case(tmp_path)
    loaded = LoadBraTSd()(entry)
    assert loaded["image"].shape == (4, *SHAPE)
    for channel, pattern in enumerate(_patterns()):
        np.testing.assert_array_equal(loaded["image"][channel].numpy(), pattern)
    np.testing.assert_array_equal(loaded["label"][0].numpy(), _label())


@pytest.mark.parametrize("roi", [(32, 32), (16, 16), (48, 48)], ids=["pad-brain", "brain-wider-than-roi", "pad-volume"])
def test_val_transforms_values(tmp_path, roi):
    """Exact network input: channel order, z-score over brain voxels, the whole brain centred in a slice padded to
    at least roi and to a multiple of 16 (never cropped), z whole."""
    out = val_transforms(roi)(_write_case(tmp_path))
    image, label = out["image"], out["label"]
    size = _padded_size(roi)
    assert image.shape == (4, *size, SHAPE[2]) and label.shape == (3, *size, SHAPE[2])
    assert image.dtype == torch.float32 and label.dtype == torch.float32
    for channel, pattern in enumerate(_patterns()):
        expected = _centre_fit(_zscore_in_brain(pattern), size)
        np.testing.assert_allclose(image[channel].numpy(), expected, atol=1e-5, err_msg=CHANNELS[channel])
    expected_regions = labelmap_to_regions(torch.from_numpy(_label()[BRAIN])[None]).numpy()
    for channel in range(3):
        np.testing.assert_array_equal(label[channel].numpy(), _centre_fit(expected_regions[channel], size))


def test_four_channel_file_matches_four_files(tmp_path):
    separate = val_transforms((32, 32))(_write_case(tmp_path / "separate"))
    single = val_transforms((32, 32))(_write_case(tmp_path / "single", four_d=True))
    assert torch.equal(single["image"], separate["image"])
    assert torch.equal(single["label"], separate["label"])


def test_lps_input_gives_the_ras_network_input(tmp_path):
    ras = val_transforms((32, 32))(_write_case(tmp_path / "ras"))
    lps = val_transforms((32, 32))(_write_case(tmp_path / "lps", affine=LPS_AFFINE))
    torch.testing.assert_close(lps["image"].as_tensor(), ras["image"].as_tensor())
    assert torch.equal(lps["label"].as_tensor(), ras["label"].as_tensor())


def test_compact_val_transforms_match(tmp_path):
    """The compact chain (float16 image and uint8 label map, expanded again) gives today's input: regions exactly,
    intensities to float16's precision."""
    entry = _write_case(tmp_path)
    today, compact = val_transforms((32, 32))(entry), val_transforms((32, 32), compact=True)(entry)
    assert compact["image"].dtype == torch.float32 and compact["label"].dtype == torch.float32
    torch.testing.assert_close(compact["image"].as_tensor(), today["image"].as_tensor(), rtol=1e-3, atol=3e-8)
    assert torch.equal(compact["label"].as_tensor(), today["label"].as_tensor())


@pytest.mark.parametrize(("value", "compact"), [(True, True), ("true", True), (False, False), ("false", False)])
def test_compact_switched_by_one_config_id(value, compact):
    """With ``compact="@compact"`` both endings are in the spec and that id (with its negation, which the config
    defines beside it) chooses (the command line passes text)."""
    from raagr2_monai.data.chains import build, negated_switch, train_spec, validation_spec

    switch = {"compact": value, **negated_switch("@compact")}
    train = build(train_spec("@compact"), roi_size=[32, 32], tumour_fraction=0.5, num_samples=2, **switch)
    validation = build(validation_spec("@compact"), roi_size=[32, 32], **switch)
    for chain in (train, validation):
        names = [type(t).__name__ for t in chain.transforms]
        assert ("CompactStudyd" in names) == ("ExpandStudyd" in names) == compact
        assert ("ConvertToBraTSRegionsd" in names) != compact
    with pytest.raises(ValueError, match="compact must be a bool or a config reference"):
        train_spec("compact")


# --- training sampling -----------------------------------------------------------------------------------------------


def test_train_transforms_shapes_and_types(tmp_path):
    chain = train_transforms((32, 32), tumour_fraction=0.5, num_samples=3)
    chain.set_random_state(seed=0)
    samples = chain(_write_case(tmp_path))
    assert len(samples) == 3
    for sample in samples:
        assert sample["image"].shape == (4, 32, 32) and sample["label"].shape == (3, 32, 32)
        assert sample["image"].dtype == torch.float32 and sample["label"].dtype == torch.float32
        assert type(sample["image"]) is torch.Tensor and type(sample["label"]) is torch.Tensor
        assert set(sample["label"].unique().tolist()) <= {0.0, 1.0}
        # TC and ET lie inside WT on every slice
        tc, wt, et = sample["label"]
        assert bool((tc <= wt).all() and (et <= wt).all())


def test_train_tumour_fraction(tmp_path):
    entry = _write_case(tmp_path)
    always = train_transforms((32, 32), tumour_fraction=1.0, num_samples=12)
    always.set_random_state(seed=1)
    assert all(float(s["label"].sum()) > 0 for s in always(entry))

    # Only 5 of 12 slices hold tumour, so tumour-free sampling must find empty slices.
    never = train_transforms((32, 32), tumour_fraction=0.0, num_samples=12)
    never.set_random_state(seed=1)
    empty = sum(float(s["label"].sum()) == 0 for s in never(entry))
    assert empty >= 3


# --- inference and write-back ----------------------------------------------------------------------------------------


def _infer_with_true_label(entry: Dict[str, object], roi: Sequence[int], out_dir: Path) -> None:
    """Preprocess for inference, feed the true regions (as the validation chain aligns them) as 'pred', write back."""
    pre = inference_transforms(roi)
    data = pre({k: v for k, v in entry.items() if k != "label"})
    data["pred"] = val_transforms(roi)(entry)["label"].as_tensor()
    inference_postprocessing(pre, out_dir)(data)


@pytest.mark.parametrize(
    ("roi", "affine", "four_d"),
    [
        ((32, 32), RAS_AFFINE, False),
        ((16, 16), RAS_AFFINE, False),
        ((48, 48), LPS_AFFINE, False),
        ((32, 32), LPS_AFFINE, True),
    ],
    ids=["pad", "brain-wider-than-roi", "lps-pad", "lps-4d"],
)
def test_inference_round_trip_is_exact(tmp_path, roi, affine, four_d):
    entry = _write_case(tmp_path / "in", affine=affine, four_d=four_d)
    out_dir = tmp_path / "out"
    _infer_with_true_label(entry, roi, out_dir)
    assert os.listdir(out_dir) == ["c001_pred.nii.gz"]  # one file, no sub-folder, no temporary left
    written = nib.load(str(out_dir / "c001_pred.nii.gz"))
    original = nib.load(str(entry["label"]))
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-6)
    assert written.get_data_dtype() == np.uint8
    data = np.asarray(written.dataobj)
    assert set(np.unique(data).tolist()) == {0, 1, 2, 4}
    np.testing.assert_array_equal(data, np.asarray(original.dataobj))


@pytest.mark.parametrize("four_d", [False, True], ids=["c001_t1ce.nii.gz", "c001.nii.gz"])
def test_output_named_from_file_without_case(tmp_path, four_d):
    entry = _write_case(tmp_path / "in", four_d=four_d)
    del entry["case"]
    _infer_with_true_label(entry, (32, 32), tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["c001_pred.nii.gz"]


def test_batched_slice_inference_writes_each_case(tmp_path):
    """The bundle's path: DataLoader batches, SliceInferer over axial slices, decollate, write back per case."""
    from monai.data import DataLoader, Dataset, decollate_batch
    from monai.inferers import SliceInferer

    entries = [
        _write_case(tmp_path / "a", case="caseA"),
        _write_case(tmp_path / "b", case="caseB", affine=LPS_AFFINE),
    ]
    pre = inference_transforms((32, 32))
    post = inference_postprocessing(pre, tmp_path / "out")
    inferer = SliceInferer(roi_size=(32, 32), spatial_dim=2)
    # t1ce ramps along x: thresholding it gives a nonempty but partial prediction
    for batch in DataLoader(Dataset([{k: v for k, v in e.items() if k != "label"} for e in entries], pre), batch_size=2):
        batch["pred"] = inferer(batch["image"], lambda x: (x[:, :3] > 0.5).float())
        for item in decollate_batch(batch):
            post(item)
    assert sorted(os.listdir(tmp_path / "out")) == ["caseA_pred.nii.gz", "caseB_pred.nii.gz"]
    for entry in entries:
        written = nib.load(str(tmp_path / "out" / f"{entry['case']}_pred.nii.gz"))
        original = nib.load(str(entry["label"]))
        assert written.shape == original.shape
        np.testing.assert_allclose(written.affine, original.affine, atol=1e-6)
        values = set(np.unique(np.asarray(written.dataobj)).tolist())
        assert 0 in values and values <= {0, 1, 2, 4} and len(values) > 1


def test_case_field_names_the_output(tmp_path):
    entry = _write_case(tmp_path / "in")
    entry["case"] = "BraTS2021.v2_00042"
    _infer_with_true_label(entry, (32, 32), tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["BraTS2021.v2_00042_pred.nii.gz"]


@pytest.mark.parametrize(
    ("name", "case"),
    [("BraTS2021_00000_t1ce.nii.gz", "BraTS2021_00000"), ("BraTS-GLI-00001-000-t1c.nii.gz", "BraTS-GLI-00001-000"),
     ("BRATS_007.nii.gz", "BRATS_007"), ("x_flair.nii", "x")],
)
def test_name_formatter_strips_modality(name, case):
    expected = {"subject": f"{case}.nii.gz", "idx": None}
    assert brats_case_name_formatter({"filename_or_obj": f"/data/{name}"}, None) == expected


def test_atomic_writer_leaves_nothing_on_failure(tmp_path, monkeypatch):
    writer = AtomicNibabelWriter(output_dtype=np.uint8)
    writer.set_data_array(torch.ones(1, 4, 4, 4), channel_dim=0)
    writer.set_metadata({"affine": np.eye(4)})

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        writer.write(str(tmp_path / "c_seg.nii.gz"))
    assert os.listdir(tmp_path) == []


# --- bad input -------------------------------------------------------------------------------------------------------


def test_three_files_rejected(tmp_path):
    entry = _write_case(tmp_path)
    entry["image"] = entry["image"][:3]
    with pytest.raises(RuntimeError) as excinfo:
        val_transforms((32, 32))(entry)
    _assert_error(excinfo, BraTSDataError, "expected 4 image files .* got 3")


def test_three_channel_file_rejected(tmp_path):
    entry = _write_case(tmp_path)
    path = _write(tmp_path / "c001_3ch.nii.gz", np.stack(_patterns()[:3], axis=-1), RAS_AFFINE)
    entry["image"] = path
    with pytest.raises(RuntimeError) as excinfo:
        inference_transforms((32, 32))(entry)
    _assert_error(excinfo, BraTSDataError, rf"{path}: shape \(40, 36, 12, 3\).*4D with 4 channels")


def test_mismatched_modality_shapes_rejected(tmp_path):
    entry = _write_case(tmp_path)
    small = _write(tmp_path / "c001_t2.nii.gz", _patterns()[2][:, :, :10], RAS_AFFINE)
    with pytest.raises(RuntimeError) as excinfo:
        val_transforms((32, 32))(entry)
    _assert_error(excinfo, BraTSDataError, rf"{small}: shape \(40, 36, 10\) differs from c001_t1ce.nii.gz's")


def test_label_shape_mismatch_rejected(tmp_path):
    entry = _write_case(tmp_path)
    _write(Path(entry["label"]), _label()[:, :30], RAS_AFFINE)
    with pytest.raises(RuntimeError) as excinfo:
        val_transforms((32, 32))(entry)
    _assert_error(excinfo, BraTSDataError, r"c001_seg.nii.gz: shape \(40, 30, 12\) differs")


@pytest.mark.parametrize("four_d", [False, True])
def test_nan_voxels_rejected_naming_file(tmp_path, four_d):
    entry = _write_case(tmp_path)
    flair = _patterns()[3]
    flair[10, 10, 5] = np.nan
    if four_d:
        images = _patterns()
        images[3] = flair
        entry["image"] = _write(tmp_path / "c001.nii.gz", np.stack(images, axis=-1), RAS_AFFINE)
        expected = r"c001.nii.gz \(channel 3, flair\): 1 NaN"
    else:
        _write(Path(entry["image"][3]), flair, RAS_AFFINE)
        expected = r"c001_flair.nii.gz: 1 NaN"
    with pytest.raises(RuntimeError) as excinfo:
        train_transforms((32, 32))(entry)
    _assert_error(excinfo, BraTSDataError, expected)


def test_unexpected_label_value_rejected(tmp_path):
    entry = _write_case(tmp_path)
    label = _label()
    label[label == 4] = 3  # BraTS 2023 style
    _write(Path(entry["label"]), label, RAS_AFFINE)
    with pytest.raises(RuntimeError) as excinfo:
        val_transforms((32, 32))(entry)
    _assert_error(excinfo, BraTSDataError, r"c001_seg.nii.gz: label values \{3\} outside .*brats2021.*fit brats2023")


def test_missing_file_rejected(tmp_path):
    entry = _write_case(tmp_path)
    os.remove(entry["image"][1])
    with pytest.raises(RuntimeError) as excinfo:
        val_transforms((32, 32))(entry)
    _assert_error(excinfo, FileNotFoundError, "c001_t1.nii.gz")


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="divisible by 16"):
        val_transforms((30, 32))
    with pytest.raises(ValueError, match="divisible by 16"):
        inference_transforms((32, 32, 1))
    with pytest.raises(ValueError, match="tumour_fraction"):
        train_transforms((32, 32), tumour_fraction=1.5)
