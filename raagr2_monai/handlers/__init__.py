"""Every Ignite handler of the package, for MONAI's engines (bundle configs name them by dotted path, e.g.
``raagr2_monai.handlers.TrainingCheckpoint``):

- :mod:`.checkpoint`: :class:`WeightsLoader` (plain state_dict at start), :class:`TrainingCheckpoint` (resumable
  training state after every epoch);
- :mod:`.metrics`: :class:`BraTSMeanDice` (validation key metric), :class:`BraTSMetricsWriter` (per-subject CSVs;
  with an uncertainty, each subject's score and how well it predicts failure);
- :mod:`.overlays`: :class:`OverlayWriter` (a picture per evaluated subject);
- :mod:`.uncertainty_writer`: :class:`UncertaintyWriter` (an uncertainty map per segmented study, the scores as a
  CSV);
- :mod:`.pruning`: :class:`PruneHandler` (prune at start, keep it in force), :class:`MaskHandler` (keep masks),
  :class:`GroupSparsityHandler` (group-norm sparsity regularisation before DepGraph);
- :mod:`.history`: :class:`EpochHistory` (a training run's curves as JSON);
- :mod:`.tracking`: :class:`MLflowEpochLogger` (those curves into a given MLflow run, live);
- :mod:`.progress_bar`: :class:`TrainingProgressBar`, :func:`attach_progress_bar` (a training's progress bar, on a
  terminal only).
"""

from .checkpoint import TrainingCheckpoint, WeightsLoader
from .history import EpochHistory
from .metrics import FAILURE_JSON, RELIABILITY_PNG, BraTSMeanDice, BraTSMetricsWriter
from .overlays import OverlayWriter
from .progress_bar import TrainingProgressBar, attach_progress_bar
from .pruning import GroupSparsityHandler, MaskHandler, PruneHandler
from .tracking import MLflowEpochLogger
from .uncertainty_writer import UncertaintyWriter

__all__ = [
    "WeightsLoader",
    "TrainingCheckpoint",
    "BraTSMeanDice",
    "BraTSMetricsWriter",
    "FAILURE_JSON",
    "RELIABILITY_PNG",
    "OverlayWriter",
    "PruneHandler",
    "MaskHandler",
    "GroupSparsityHandler",
    "EpochHistory",
    "MLflowEpochLogger",
    "TrainingProgressBar",
    "attach_progress_bar",
    "UncertaintyWriter",
]
