"""How long scoring one subject takes: the global BraTS metrics against the lesion-wise ones, on a generated study
with many lesions per region (``raagr2 benchmark_metrics``, or ``python -m raagr2_monai.benchmark.scoring_time``).

The study (:func:`lesion_study`): ``lesions`` nested tumours on a grid through the volume, each a whole tumour (ball
of radius 9 voxels) around a tumour core (radius 6) whose outer shell (outside radius 3.5) is enhancing; the
prediction moves every tumour by one voxel along each axis, misses the last one and adds two false-positive blobs of
5 x 5 x 5 voxels in opposite corners. Every region then holds ``lesions`` ground-truth lesions, ``lesions - 1``
detected ones, one miss and two false positives: the matching and the per-lesion HD95, the costly parts of lesion-wise
scoring, run for every lesion.

Each call is timed with ``time.perf_counter`` (:data:`~.measure.TIMER`) ``repeats`` times; the median is reported.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, Sequence, Tuple

import numpy as np
import torch

from raagr2_monai.metrics import LESIONWISE_PRESETS, LesionwiseSettings, brats_metrics, lesionwise_metrics
from raagr2_monai.utils import environment

from .measure import TIMER

__all__ = ["STUDY_SHAPE", "lesion_study", "time_scoring", "render_scoring", "scoring_command"]

#: The shape of a BraTS study (1 mm isotropic, 240 x 240 x 155 voxels).
STUDY_SHAPE: Tuple[int, int, int] = (240, 240, 155)
# radii (voxels) of the whole tumour, the tumour core, and the necrosis inside the enhancing shell
_RADII = (9.0, 6.0, 3.5)
_BLOB = 5  # edge of a false-positive blob (voxels)
# the least distance between tumour centres: two WT balls, the prediction's one-voxel shift and the BraTS 2023
# ground-truth dilation (3 voxels each side) must leave a gap, or neighbours merge into one lesion
_MIN_STEP = 27


def _paint(target: np.ndarray, centre: np.ndarray) -> None:
    """Draw one nested tumour into ``target`` (3, X, Y, Z: TC, WT, ET), inside its bounding box only (a full-volume
    distance map per ball would cost more than the scoring being timed)."""
    wt_r, tc_r, core_r = _RADII
    reach = int(np.ceil(wt_r))
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, target.shape[1:])
    grids = np.ogrid[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
    distance2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    tc = distance2 <= tc_r**2
    target[(0, *box)] |= tc
    target[(1, *box)] |= distance2 <= wt_r**2
    target[(2, *box)] |= tc & (distance2 > core_r**2)


def lesion_study(lesions: int = 20, shape: Sequence[int] = STUDY_SHAPE) -> Tuple[torch.Tensor, torch.Tensor]:
    """A generated prediction and label with ``lesions`` lesions per region (see the module docstring).

    Args:
        lesions: tumours in the label (the prediction finds all but the last).
        shape: the volume's (X, Y, Z); lesions lie on a grid of ``n = ceil(lesions ** (1/3))`` per axis, which
            needs at least ``27 * (n + 1)`` voxels along each axis.

    Returns:
        ``(pred, label)``, bool tensors of shape (1, 3, X, Y, Z), channels TC, WT, ET.

    Raises:
        ValueError: fewer than one lesion, or a volume too small for the tumours not to touch.

    Example::

        >>> pred, label = lesion_study(2, (81, 81, 81))
        >>> tuple(label.shape), int(label[0, 1].sum()) > int(label[0, 0].sum()) > int(label[0, 2].sum())
        ((1, 3, 81, 81, 81), True)
    """
    shape = tuple(int(n) for n in shape)
    if lesions < 1:
        raise ValueError(f"lesion_study needs at least one lesion; got {lesions}.")
    per_axis = int(np.ceil(lesions ** (1 / 3) - 1e-9))
    steps = [n // (per_axis + 1) for n in shape]
    if min(steps) < _MIN_STEP:
        raise ValueError(
            f"A volume of {shape} is too small for {lesions} lesions ({per_axis} per axis need "
            f"{_MIN_STEP * (per_axis + 1)} voxels along each axis)."
        )
    centres = [
        np.array([(i + 1) * steps[0], (j + 1) * steps[1], (k + 1) * steps[2]])
        for i in range(per_axis)
        for j in range(per_axis)
        for k in range(per_axis)
    ][:lesions]
    label = np.zeros((3, *shape), dtype=bool)
    pred = np.zeros((3, *shape), dtype=bool)
    for centre in centres:
        _paint(label, centre)
    for centre in centres[:-1]:  # the prediction misses the last tumour
        _paint(pred, centre + 1)
    for corner in ((2, 2, 2), (shape[0] - 2 - _BLOB, 2, shape[2] - 2 - _BLOB)):
        pred[(slice(None), *(slice(c, c + _BLOB) for c in corner))] = True
    return torch.from_numpy(pred[None]), torch.from_numpy(label[None])


def _median_seconds(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_scoring(
    lesions: int = 20, shape: Sequence[int] = STUDY_SHAPE, repeats: int = 5, preset: str = "brats2023-gli"
) -> Dict[str, Any]:
    """Time the global metrics and the lesion-wise ones (the evaluation's preset, and bipartite matching) on
    :func:`lesion_study`; every call scores the five regions TC, WT, ET, NCR, ED of the one subject.

    Args:
        lesions: lesions per region.
        shape: the volume's shape.
        repeats: timed calls per figure (the median is reported); no untimed warm-up call, as the evaluation makes
            none either.
        preset: the lesion-wise parameters (:data:`~raagr2_monai.metrics.LESIONWISE_PRESETS`), the evaluation's by
            default.

    Returns:
        ``{"shape", "lesions", "repeats", "timer", "preset", "lesion_counts": {region: [TP, FP, FN]},
        "seconds": {"global", "lesionwise", "lesionwise_bipartite"}, "environment"}``; ``seconds`` holds medians.

    Raises:
        ValueError: ``repeats`` below 1, an unknown preset, or a study that cannot be drawn (:func:`lesion_study`).

    Example::

        >>> result = time_scoring(lesions=1, shape=(54, 54, 54), repeats=1)
        >>> result["lesion_counts"]["WT"], sorted(result["seconds"])  # [TP, FP, FN]: the last lesion is missed
        ([0, 2, 1], ['global', 'lesionwise', 'lesionwise_bipartite'])
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}.")
    if preset not in LESIONWISE_PRESETS:
        raise ValueError(f"Unknown lesion-wise preset {preset!r}; valid: {', '.join(LESIONWISE_PRESETS)}.")
    pred, label = lesion_study(lesions, shape)
    spacing = (1.0, 1.0, 1.0)
    settings = LesionwiseSettings(**LESIONWISE_PRESETS[preset])
    bipartite = LesionwiseSettings(**LESIONWISE_PRESETS["brats-evaluation-gli"])
    scores = lesionwise_metrics(pred, label, spacing, settings)
    calls = {
        "global": lambda: brats_metrics(pred, label, spacing),
        "lesionwise": lambda: lesionwise_metrics(pred, label, spacing, settings),
        "lesionwise_bipartite": lambda: lesionwise_metrics(pred, label, spacing, bipartite),
    }
    return {
        "shape": list(label.shape[2:]),
        "lesions": lesions,
        "repeats": repeats,
        "timer": TIMER,
        "preset": preset,
        "lesion_counts": {
            region: [int(scores[f"lesion_{stat}_{region}"][0]) for stat in ("tp", "fp", "fn")]
            for region in ("TC", "WT", "ET")
        },
        "seconds": {name: _median_seconds(call, repeats) for name, call in calls.items()},
        # taken after the timing: the load average then covers the measured minute
        "environment": environment("cpu"),
    }


def render_scoring(result: Dict[str, Any]) -> str:
    """:func:`time_scoring`'s result as lines of text.

    Example::

        >>> env = {"cpu_model": "CPU", "logical_cpus": 2, "torch_threads": 2, "load_average_1m": 1.5}
        >>> print(render_scoring({"shape": [8, 8, 8], "lesions": 1, "repeats": 3, "timer": "time.perf_counter",
        ...     "preset": "brats2023-gli", "lesion_counts": {"WT": [1, 0, 0]}, "environment": env,
        ...     "seconds": {"global": 0.25, "lesionwise": 1.0, "lesionwise_bipartite": 0.5}}))
        study 8x8x8, 1 lesion(s) per region, lesion counts [TP, FP, FN]: WT [1, 0, 0]
        median of 3 runs (time.perf_counter) on CPU (2 logical CPUs, 2 torch threads, load average 1.5):
          global Dice/HD95, 5 regions:                           0.250 s
          lesion-wise, brats2023-gli (5 regions):                1.000 s  (4.0x global)
          lesion-wise, bipartite matching (5 regions):           0.500 s  (2.0x global)
    """
    env = result["environment"]
    seconds = result["seconds"]
    counts = ", ".join(f"{region} {value}" for region, value in result["lesion_counts"].items())
    lines = [
        f"study {'x'.join(map(str, result['shape']))}, {result['lesions']} lesion(s) per region, "
        f"lesion counts [TP, FP, FN]: {counts}",
        f"median of {result['repeats']} runs ({result['timer']}) on {env['cpu_model']} ({env['logical_cpus']} logical "
        f"CPUs, {env['torch_threads']} torch threads, load average {env.get('load_average_1m', '?')}):",
    ]
    names = {
        "global": "global Dice/HD95, 5 regions:",
        "lesionwise": f"lesion-wise, {result['preset']} (5 regions):",
        "lesionwise_bipartite": "lesion-wise, bipartite matching (5 regions):",
    }
    for key, name in names.items():
        ratio = "" if key == "global" else f"  ({seconds[key] / seconds['global']:.1f}x global)"
        lines.append(f"  {name:<52} {seconds[key]:7.3f} s{ratio}")
    return "\n".join(lines)


def scoring_command(lesions: int = 20, shape: Sequence[int] | str = STUDY_SHAPE, repeats: int = 5) -> str:
    """``raagr2 benchmark_metrics``: :func:`time_scoring`, rendered (:func:`render_scoring`).

    Args:
        lesions: lesions per region.
        shape: the volume's shape, ``X,Y,Z`` (a string or a sequence).
        repeats: timed calls per figure.
    """
    if isinstance(shape, str):
        shape = [int(n) for n in shape.split(",")]
    return render_scoring(time_scoring(lesions, shape, repeats))


if __name__ == "__main__":
    import fire

    fire.Fire(scoring_command)
