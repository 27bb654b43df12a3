"""The compression study in one command (``raagr2 study``): train, prune, evaluate, benchmark, report, MLflow.

The study reruns the thesis's experiment: the four architectures are trained; the trained baseline is pruned by
magnitude, SNIP and DepGraph at each ratio, with and without fine-tuning; every model is evaluated on the same
held-out test subjects (the ``testing`` split of the same seed) and benchmarked in one run, so that every ratio
against the baseline comes from the same measurements. A profile (:data:`PROFILES`) holds the settings: ``quick``
(CPU, built-in synthetic data, about 20 minutes on two cores), ``full`` (GPU, real BraTS, the thesis's schedule),
``gpu`` (one GPU, about 15 minutes, the thesis's crops and rows on a BraTS-size synthetic set) and ``tiny`` (the
tests' smoke run). All profiles run the same code; each study is estimated first (:mod:`.estimate`).

The package: :mod:`.profiles` (the settings and the rows), :mod:`.state` (``state.json``), :mod:`.steps` (each
step's workflow), :mod:`.runner` (:class:`~.runner.Study`, which runs the steps one at a time or ``workers`` at once
in worker processes, and :func:`~.runner.run_study`), :mod:`.countdown` (step count, time left),
:mod:`.estimate` (the study's time and memory, measured and summed before it starts), :mod:`.noise` (the notices
every workflow repeats, silenced and counted), :mod:`.mlflow_runs` (MLflow, live: the parent
run open while the study runs, each model's child run while it trains, with its curves epoch by epoch); the report
itself is :mod:`raagr2_monai.report`'s.

Each model is a MONAI bundle of its own, driven through ``monai.bundle.ConfigWorkflow`` (in the study's process or a
worker's):

- ``<study>/models/<variant>/``: the configs generated for the variant, ``models/model.pt`` and
  ``runs/train/{run.json,history.json}`` (training; ``last.pt``, the state an interrupted training resumes from, is
  deleted once the training has finished);
- ``<study>/models/baseline/pruned/<model>/``: the pruned bundle that ``configs/prune.json`` writes (``pruning.json``,
  ``runs/prune/{run.json,history.json}``);
- ``<study>/eval/<model>/``: ``metrics_per_subject.csv``, ``metrics_summary.csv``, ``run.json`` and the written
  label maps (``predictions/<case>_pred.nii.gz``) of the evaluation (no per-subject overlay pictures: the report draws
  the baseline and each family's best model on one test subject instead);
- ``<study>/uncertainty/<model>/``: the baseline and each family's best model (chosen on validation) evaluated again
  with test-time flips (4 predictions a slice, averaged), after the benchmark: each subject's ``uncertainty`` in
  ``metrics_per_subject.csv``, ``failure_prediction.json`` (Spearman, AUROC, calibration) and ``reliability.png``,
  for the report's failure prediction;
- ``<study>/benchmark.json``, ``<study>/report.md``, ``<study>/tables/``, ``<study>/charts/``;
- ``<study>/mlruns.db`` (MLflow tracking, ``mlflow ui --backend-store-uri sqlite:///<study>/mlruns.db``, live while
  the study runs) and ``<study>/mlartifacts/``;
- ``<study>/estimate.json``: the estimate printed before the first step (unit costs, each step's seconds, memory,
  the steps run at once);
- ``<study>/state.json``: the settings and every finished step with its outputs (start, end, lane, peak memory),
  each run's schedule (``runs``) and choice of steps at once (``parallelism``), written atomically after each step.
  A rerun with the same settings skips the finished steps; an interrupted training resumes from its ``last.pt``.
"""

from .estimate import UnitCosts, estimate_study, measure_unit_costs, plan_study
from .profiles import PROFILES, ModelSpec, Profile, experiment_matrix, get_profile
from .runner import Study, run_study, study_tasks
from .tasks import failure_tasks
from .state import StudyState
from .mlflow_runs import StudyTracker

__all__ = [
    "Study",
    "Profile",
    "PROFILES",
    "ModelSpec",
    "StudyState",
    "StudyTracker",
    "experiment_matrix",
    "get_profile",
    "run_study",
    "study_tasks",
    "failure_tasks",
    "UnitCosts",
    "measure_unit_costs",
    "estimate_study",
    "plan_study",
]
