"""BraTS metrics as plain functions on tensors (:mod:`.functional`) and their tables (:mod:`.table`); the Ignite
handlers that compute them during evaluation are in :mod:`raagr2_monai.handlers`."""

from .functional import METRIC_COLUMNS, brats_metrics, mean_iou, pooled_dice
from .table import summarise, write_metrics_csv

__all__ = ["METRIC_COLUMNS", "brats_metrics", "mean_iou", "pooled_dice", "summarise", "write_metrics_csv"]
