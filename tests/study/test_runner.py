"""``run_study`` refuses what it must not touch, before anything runs."""

import pytest

from raagr2_monai.study import run_study


def test_bad_profiles_and_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'full' profile runs on real BraTS data on a GPU: pass --data_dir"):
        run_study("full", output=tmp_path / "full")
    assert not (tmp_path / "full").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no state.json: not a study folder"):
        run_study("tiny", output=other)
    assert (other / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        run_study("tiny", output=tmp_path / "file")
