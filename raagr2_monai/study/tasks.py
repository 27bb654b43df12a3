"""The steps of a study and where its synthetic data live: one list for the runner (:mod:`.runner`) and the
estimate (:mod:`.estimate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

from raagr2_monai.data.synthetic import DEFAULT_CASES, DEFAULT_SHAPE, default_dataset_dir
from raagr2_monai.report import step_name

from .profiles import ModelSpec, Profile

__all__ = ["Task", "study_tasks", "synthetic_folder"]


@dataclass(frozen=True)
class Task:
    """A training, pruning or evaluation step: ``action`` is the :class:`~.steps.StudySteps` method that runs it on
    ``spec``; ``needs``: the steps that must be done first."""

    step: str
    action: str
    spec: ModelSpec
    needs: Tuple[str, ...] = ()

    @property
    def makes_model(self) -> bool:
        """A training or pruning step: it has an MLflow child run and curves."""
        return self.action != "evaluate"


def study_tasks(models: Sequence[ModelSpec]) -> List[Task]:
    """The study's trainings, prunings (each needing its source's training, and the baseline's when it distils from
    it) and evaluations, in the order one worker runs them; the benchmark follows them all.

    The runner runs these and the estimate (:func:`~.estimate.estimate_study`) sums over these: one list for both.

    Example::

        >>> from raagr2_monai.study.profiles import experiment_matrix, get_profile
        >>> [t.step for t in study_tasks(experiment_matrix(get_profile("tiny", hybrid_variant=None)))][:3]
        ['train/baseline', 'train/depthwise', 'prune/magnitude-20']
    """
    def trained(variant: str) -> str:
        return step_name(ModelSpec(variant, "architecture", variant))

    tasks = [Task(step_name(s), "train", s) for s in models if s.kind == "architecture"]
    for spec in models:
        if spec.kind == "pruned":
            needs = (trained(spec.variant),) + ((trained("baseline"),) if spec.distill_weight else ())
            tasks.append(Task(step_name(spec), "prune", spec, tuple(dict.fromkeys(needs))))
    tasks += [Task(f"evaluate/{s.name}", "evaluate", s, (step_name(s),)) for s in models]
    return tasks


def synthetic_folder(profile: Profile) -> str:
    """The folder of the profile's synthetic set: the default set's, or for another size one of its own beside it,
    so that the default set is never replaced.

    Example::

        synthetic_folder(raagr2_monai.study.get_profile("quick"))  # '~/.cache/raagr2_monai/synthetic-40x64x64x32', expanded
    """
    default = default_dataset_dir()
    if profile.synthetic_cases == DEFAULT_CASES and tuple(profile.synthetic_shape) == tuple(DEFAULT_SHAPE):
        return default
    return f"{default}-{profile.synthetic_cases}x{'x'.join(map(str, profile.synthetic_shape))}"
