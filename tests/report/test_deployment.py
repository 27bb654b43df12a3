"""The report's deployment section: each model behind its fastest CPU runtime, held against every part of the goal."""

import pytest

from raagr2_monai.report import DEPLOYMENT_GOAL, DeploymentGoal, deployment_checks, deployment_lines


def _row(model, timings, diff=None, ci=None, n=None):
    return {"model": model, "cost": {"latency_b1_backends_ms": timings},
            "quality": {"paired_n": n, "paired_dice_diff": diff, "paired_dice_ci": ci}}


BASELINE = _row("baseline", {"torch": 200.0, "openvino": 90.0, "openvino-bf16": 50.0})
META = {"cpu": "AMD EPYC", "cpu_bf16": True}


def test_a_model_meeting_every_condition_meets_the_goal():
    slim = _row("hybrid-60", {"torch": 60.0, "openvino": 24.0, "openvino-bf16": 19.0}, -0.004, [-0.02, 0.012], 21)
    (check,) = deployment_checks([BASELINE, slim])
    assert check == {"model": "hybrid-60", "backend": "openvino-bf16", "ms": 19.0, "speedup": 200.0 / 19.0,
                     "paired_n": 21, "diff": -0.004, "ci_low": -0.02, "meets": True}


@pytest.mark.parametrize("timings, diff, ci, n", [
    ({"torch": 60.0, "openvino": 21.0}, -0.004, [-0.02, 0.01], 21),          # 21 ms: too slow
    ({"torch": 30.0, "openvino": 26.0}, -0.004, [-0.02, 0.01], 21),          # 26 ms, and 7.7x
    ({"torch": 60.0, "openvino": 19.0}, -0.011, [-0.02, 0.01], 21),          # mean difference below -0.01
    ({"torch": 60.0, "openvino": 19.0}, -0.004, [-0.031, 0.02], 21),         # CI reaches below -0.03
    ({"torch": 60.0, "openvino": 19.0}, -0.004, [-0.02, 0.01], 19),          # too few subjects
    ({"torch": 60.0, "openvino": 19.0}, -0.004, None, 1),                    # no CI
])
def test_each_condition_can_fail_the_goal(timings, diff, ci, n):
    (check,) = deployment_checks([BASELINE, _row("slim", timings, diff, ci, n)])
    assert check["meets"] is False


def test_a_goal_of_its_own_and_rows_without_backend_timings():
    slim = _row("slim", {"torch": 60.0, "openvino": 19.0}, -0.004, [-0.02, 0.01], 21)
    loose = DeploymentGoal(max_ms=25.0, min_speedup=2.0, min_subjects=5)
    assert deployment_checks([BASELINE, slim], loose)[0]["meets"] is True
    assert deployment_checks([BASELINE, _row("untimed", None)]) == []
    assert deployment_lines([_row("baseline", None), slim], META) == []


def test_the_section_names_the_cpu_the_precision_and_the_verdict():
    slim = _row("hybrid-60", {"torch": 60.0, "openvino-bf16": 19.0}, -0.004, [-0.02, 0.012], 21)
    lines = deployment_lines([BASELINE, slim], META)
    text = "\n".join(lines)
    assert "## Deployable on a CPU" in text and "on AMD EPYC (with a bfloat16 unit" in text
    assert f"at most {DEPLOYMENT_GOAL.max_ms:g} ms" in text
    assert lines[-1] == "| hybrid-60 | openvino-bf16 | 19.0 | 10.5x | 21 | -0.004 | -0.020 | **yes** |"
