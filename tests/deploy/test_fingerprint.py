"""Fingerprints of files, state_dicts and pruning histories, against hand-worked digests."""

import hashlib
import struct

import torch

from raagr2_monai.deploy import file_sha256, history_sha256, record_path, state_dict_sha256


def test_file_sha256_is_the_standard_digest(tmp_path):
    (tmp_path / "abc").write_bytes(b"abc")
    assert file_sha256(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_state_dict_sha256_hashes_sorted_keys_dtypes_shapes_and_bytes():
    state = {"b": torch.tensor([1.0]), "a": torch.tensor(2)}
    expected = hashlib.sha256(
        b"a|torch.int64|()|" + struct.pack("<q", 2) + b"b|torch.float32|(1,)|" + struct.pack("<f", 1.0)
    ).hexdigest()
    assert state_dict_sha256(state) == expected
    assert state_dict_sha256({"b": torch.tensor([1.0]), "a": torch.tensor(3)}) != expected
    assert state_dict_sha256({"b": torch.tensor([[1.0]]), "a": torch.tensor(2)}) != expected  # shape counts
    assert state_dict_sha256({"b": torch.tensor([1.0], dtype=torch.float64), "a": torch.tensor(2)}) != expected


def test_history_sha256_normalises_the_steps():
    expected = hashlib.sha256(b'[["encoder.0.fuse.0",true,[0,3]]]').hexdigest()
    assert history_sha256([("encoder.0.fuse.0", 1, (0, 3))]) == expected
    assert history_sha256([["encoder.0.fuse.0", True, [0, 3]]]) == expected
    assert history_sha256([["encoder.0.fuse.0", False, [0, 3]]]) != expected


def test_record_path_appends_json():
    assert record_path("m/model.onnx").name == "model.onnx.json"
