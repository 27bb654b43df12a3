"""``state.json``: written after every step, refused when it records a study with other settings."""

import json

import pytest

from raagr2_monai.study import PROFILES, StudyState


def test_steps_are_recorded_and_read_back(tmp_path):
    settings = {"profile": PROFILES["tiny"].settings(), "seed": 0}
    state = StudyState(tmp_path / "state.json", settings)
    state.record("train/baseline", {"epochs": 1, "bundle": "models/baseline"})
    state.set("mlflow", {"parent": "p"})
    assert json.loads((tmp_path / "state.json").read_text()) == {
        "format": 1, "settings": settings, "steps": {"train/baseline": {"epochs": 1, "bundle": "models/baseline"}},
        "mlflow": {"parent": "p"},
    }
    again = StudyState(tmp_path / "state.json", settings)
    assert again.done("train/baseline") and not again.done("prune/snip-20")
    assert again.get("train/baseline")["epochs"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_state_with_other_settings_or_broken_is_refused(tmp_path):
    StudyState(tmp_path / "state.json", {"profile": PROFILES["tiny"].settings(), "seed": 0}).save()
    with pytest.raises(ValueError, match=r"other settings \(differences: seed\); rerun with --fresh"):
        StudyState(tmp_path / "state.json", {"profile": PROFILES["tiny"].settings(), "seed": 1})
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="state.json is not valid JSON"):
        StudyState(tmp_path / "state.json", {"seed": 0})
