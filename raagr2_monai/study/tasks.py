"""The steps of a study and where its synthetic data live: one list for the runner (:mod:`.runner`) and the
estimate (:mod:`.estimate`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, List, Mapping, Sequence, Tuple, Union

from raagr2_monai.data.synthetic import DEFAULT_CASES, DEFAULT_SHAPE, default_dataset_dir
from raagr2_monai.report import FAILURE_STEP, failure_model, step_name

from .profiles import ModelSpec, Profile

__all__ = ["Task", "failure_tasks", "resolve_task", "study_tasks", "synthetic_folder"]


@dataclass(frozen=True)
class Task:
    """A training, pruning or evaluation step: ``action`` is the :class:`~.steps.StudySteps` method that runs it on
    ``spec``; ``needs``: the steps that must be done first. An evaluation with an uncertainty
    (``evaluate_uncertainty``, :func:`failure_tasks`) holds a stand-in ``spec`` until :func:`resolve_task`."""

    step: str
    action: str
    spec: ModelSpec
    needs: Tuple[str, ...] = ()

    @property
    def makes_model(self) -> bool:
        """A training or pruning step: it has an MLflow child run and curves."""
        return self.action in ("train", "prune")


def study_tasks(models: Sequence[ModelSpec]) -> List[Task]:
    """The study's trainings, prunings (each needing its source's training, and the baseline's when it distils from
    it), evaluations and last the evaluations with an uncertainty (:func:`failure_tasks`), in the order one worker
    runs them; the benchmark follows them all.

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
    return tasks + failure_tasks(models)


def failure_tasks(models: Sequence[ModelSpec]) -> List[Task]:
    """The study's evaluations with an uncertainty, for the report's failure prediction
    (:mod:`raagr2_monai.report.failure`): ``uncertainty/baseline``, needing the baseline's evaluation, and
    ``uncertainty/<family>`` for each family with a model other than the baseline, in the order the families first
    appear, needing the evaluations of the family's models (so that, several steps at once, they fill the lanes that
    the last long steps leave free).

    Which model of a family is its best is known only once the family's runs are done (it is chosen on validation,
    as the report chooses it), so a family's task holds its first model as a stand-in (what the estimate prices);
    :func:`resolve_task` puts the chosen one in its place before it runs.

    Example::

        >>> from raagr2_monai.study.profiles import experiment_matrix, get_profile
        >>> [t.step for t in failure_tasks(experiment_matrix(get_profile("tiny", methods=("snip",))))]
        ['uncertainty/baseline', 'uncertainty/architecture', 'uncertainty/snip', 'uncertainty/hybrid']
    """
    members = {"baseline": [s for s in models if s.name == "baseline"]}
    for spec in models:
        if spec.name != "baseline":
            members.setdefault(spec.family, []).append(spec)
    return [Task(f"{FAILURE_STEP}{key}", "evaluate_uncertainty", specs[0], tuple(f"evaluate/{s.name}" for s in specs))
            for key, specs in members.items() if specs]


def resolve_task(task: Task, root: Union[str, os.PathLike], state: Mapping[str, Any],
                 models: Sequence[ModelSpec]) -> Task:
    """``task`` as it runs: for an evaluation with an uncertainty, its family's best model
    (:func:`~raagr2_monai.report.failure.failure_model`, from the finished steps in ``state``) in place of the
    stand-in; any other task as it is.

    Raises:
        ValueError: the family's steps are not done.
    """
    if task.action != "evaluate_uncertainty":
        return task
    chosen = failure_model(root, state, models, task.step[len(FAILURE_STEP):])
    return dataclasses.replace(task, spec=next(s for s in models if s.name == chosen))


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
