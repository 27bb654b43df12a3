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


def test_progress_counts_steps_and_estimates_time_left_by_kind():
    from raagr2_monai.study.countdown import Progress, format_duration

    steps = ["train/a", "train/b", "prune/p", "evaluate/a", "evaluate/b", "benchmark"]
    progress = Progress(steps, units=[30, 30, 2, 0.5, 0.5, 4])
    assert progress.seconds_left() == 0.0  # nothing finished: no estimate rather than a made-up one
    progress.skipped("train/a")  # done by an earlier run: counted, not timed
    progress.finished("train/b", 300.0)
    assert progress.label("prune/p") == "[study 3/6]"
    # prune, evaluate x2 and benchmark have no timing of their own yet: 10 s per unit (train/b's) for their 7 units
    assert progress.seconds_left() == pytest.approx(7 * 10.0)
    progress.finished("prune/p", 60.0)
    progress.finished("evaluate/a", 10.0)
    # evaluate/b at the evaluate rate (20 s per unit), benchmark at the rate of all finished steps (370 s / 32.5)
    assert progress.seconds_left() == pytest.approx(0.5 * 20.0 + 4 * 370.0 / 32.5)
    with pytest.raises(ValueError, match="one positive size per step"):
        Progress(["train/a"], units=[0])
    # two steps at a time: what runs in lanes takes half the time left, what runs alone all of it
    lanes = Progress(steps, units=[30, 30, 2, 0.5, 0.5, 4], lanes=2, alone=["benchmark"])
    lanes.finished("train/a", 300.0)
    assert lanes.seconds_left() == pytest.approx((30 + 2 + 0.5 + 0.5) * 10.0 / 2 + 4 * 10.0)
    assert format_duration(59.6) == "1 min 00 s" and format_duration(7260) == "2 h 01 min"
