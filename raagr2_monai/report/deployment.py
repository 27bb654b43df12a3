"""Which model could a clinic deploy on a CPU? Each model's fastest batch-1 CPU runtime held against a goal of
latency, speed-up over the baseline's eager PyTorch, and paired Dice difference to the baseline.

The goal (:data:`DEPLOYMENT_GOAL`) is the project's: at most 20 ms per slice at batch 1, at least 8 times faster than
the baseline's eager PyTorch timed in the same run, a paired mean Dice difference of at least -0.01 whose 95 %
confidence interval's lower bound is at least -0.03, on at least 20 test subjects. A model meets it or not behind the
runtime (and precision: ``openvino-bf16``) where it is fastest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["DeploymentGoal", "DEPLOYMENT_GOAL", "deployment_checks", "deployment_lines"]


@dataclass(frozen=True)
class DeploymentGoal:
    """What a deployable model must reach.

    Attributes:
        max_ms: batch-1 latency per slice, in ms, at most.
        min_speedup: speed-up over the baseline's eager PyTorch (same run, same slice size), at least.
        min_diff: paired mean Dice difference to the baseline, at least.
        min_ci_low: lower bound of its 95 % confidence interval, at least.
        min_subjects: test subjects paired, at least.
    """

    max_ms: float = 20.0
    min_speedup: float = 8.0
    min_diff: float = -0.01
    min_ci_low: float = -0.03
    min_subjects: int = 20


#: The project's goal for a deployable slim model.
DEPLOYMENT_GOAL = DeploymentGoal()


def deployment_checks(rows: Sequence[Mapping[str, Any]], goal: DeploymentGoal = DEPLOYMENT_GOAL
                      ) -> List[Dict[str, Any]]:
    """Every model but the baseline against ``goal``, behind its fastest batch-1 backend.

    Args:
        rows: the report's rows (:func:`~raagr2_monai.report.rows.collect_rows`), the baseline among them, with
            ``cost["latency_b1_backends_ms"]`` (the study's benchmark timed backends).
        goal: the goal.

    Returns:
        One record per model with backend figures: ``model``, ``backend`` (the fastest), ``ms``, ``speedup`` (the
        baseline's eager PyTorch batch-1 median of the same backend pass / ``ms``), ``paired_n``, ``diff``,
        ``ci_low`` and ``meets`` (every condition holds); empty where the benchmark timed no backend.

    Example::

        >>> def row(name, ms, diff=None, low=None, n=None):
        ...     return {"model": name, "cost": {"latency_b1_backends_ms": ms},
        ...             "quality": {"paired_n": n, "paired_dice_diff": diff, "paired_dice_ci": low and [low, 0.0]}}
        >>> rows = [row("baseline", {"torch": 200.0, "openvino": 90.0}),
        ...         row("slim", {"torch": 60.0, "openvino": 30.0, "openvino-bf16": 18.0}, -0.005, -0.02, 21)]
        >>> check = deployment_checks(rows)[0]
        >>> check["backend"], check["speedup"], check["meets"]
        ('openvino-bf16', 11.11111111111111, True)
    """
    baseline = next((r for r in rows if r["model"] == "baseline"), None)
    reference = ((baseline or {}).get("cost", {}).get("latency_b1_backends_ms") or {}).get("torch")
    checks = []
    for row in rows:
        timings = row["cost"].get("latency_b1_backends_ms") or {}
        if row is baseline or not timings or reference is None:
            continue
        backend = min(timings, key=timings.get)
        q = row["quality"]
        ms, n, diff = timings[backend], q["paired_n"], q["paired_dice_diff"]
        ci_low = q["paired_dice_ci"][0] if q["paired_dice_ci"] else None
        speedup = reference / ms
        meets = (ms <= goal.max_ms and speedup >= goal.min_speedup and n is not None and n >= goal.min_subjects
                 and diff is not None and diff >= goal.min_diff and ci_low is not None and ci_low >= goal.min_ci_low)
        checks.append({"model": row["model"], "backend": backend, "ms": ms, "speedup": speedup, "paired_n": n,
                       "diff": diff, "ci_low": ci_low, "meets": meets})
    return checks


def _number(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def deployment_lines(rows: Sequence[Mapping[str, Any]], backends_meta: Mapping[str, Any],
                     goal: DeploymentGoal = DEPLOYMENT_GOAL) -> List[str]:
    """The report's "Deployable on a CPU" section: the goal, the CPU, and a table of :func:`deployment_checks`;
    no lines where the benchmark timed no backend."""
    checks = deployment_checks(rows, goal)
    if not checks:
        return []
    cpu = backends_meta.get("cpu", "this CPU")
    bf16 = "with" if backends_meta.get("cpu_bf16") else "without"
    lines = ["", "## Deployable on a CPU", "",
             f"Goal: at most {goal.max_ms:g} ms per slice at batch 1, at least {goal.min_speedup:g} times the "
             f"baseline's eager PyTorch of the same run, a paired mean Dice difference to the baseline of at least "
             f"{goal.min_diff:+g} with its 95 % CI's lower bound at least {goal.min_ci_low:+g}, on at least "
             f"{goal.min_subjects} test subjects. Each model behind its fastest runtime on {cpu} ({bf16} a bfloat16 "
             "unit; `openvino-bf16`: OpenVINO computing in bf16, every other runtime in fp32).", "",
             "| model | fastest runtime | ms b1 | speed-up | subjects | Δ mean Dice | CI low | meets the goal |",
             "|---|---|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['model']} | {c['backend']} | {c['ms']:.1f} | {c['speedup']:.1f}x | "
                     f"{_number(c['paired_n'], 'd')} | {_number(c['diff'], '+.3f')} | {_number(c['ci_low'], '+.3f')} "
                     f"| {'**yes**' if c['meets'] else 'no'} |")
    return lines
