"""Every metric of one subject, from two label maps on the same grid: what evaluation reports per subject.

The predicted and the true label map (raw BraTS values) are turned into the regions TC, WT, ET the same way, so the
scores are those of the segmentation as written; the global metrics (:func:`~.functional.brats_metrics`), the
lesion-wise ones (:func:`~.lesionwise.lesionwise_metrics`) and the two thesis-comparison figures are computed under
one scoring convention (:mod:`.conventions`). The inputs may come on any device and in any dtype: they are moved to
the CPU here, first (:func:`~.masks.on_cpu`), the one place a subject's scoring aligns them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from raagr2_monai.data.labels import labelmap_to_regions

from .conventions import Convention
from .functional import METRIC_COLUMNS, brats_metrics, mean_iou, pooled_dice
from .lesionwise import LESIONWISE_COLUMNS, LESIONWISE_PRESETS, LesionwiseSettings, lesionwise_metrics
from .masks import on_cpu

__all__ = ["SUBJECT_COLUMNS", "lesionwise_options", "score_subject"]

#: The columns of a per-subject row, after ``case``: the global metrics, then the lesion-wise ones.
SUBJECT_COLUMNS: tuple[str, ...] = (*METRIC_COLUMNS, *LESIONWISE_COLUMNS)


def lesionwise_options(lesionwise: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The lesion-wise options (fields of :class:`~.lesionwise.LesionwiseSettings`) of a preset name (see
    :data:`~.lesionwise.LESIONWISE_PRESETS`) or a mapping of them, as an evaluation records them; ``None`` = no
    lesion-wise metrics.

    Raises:
        ValueError: an unknown preset name.

    Example::

        >>> lesionwise_options("brats2023-gli")["min_lesion_volume"]
        50.0
    """
    if lesionwise is None:
        return None
    if isinstance(lesionwise, str):
        if lesionwise not in LESIONWISE_PRESETS:
            raise ValueError(f"Unknown lesion-wise preset {lesionwise!r}; valid: {', '.join(LESIONWISE_PRESETS)}.")
        return dict(LESIONWISE_PRESETS[lesionwise])
    return dict(lesionwise)


def score_subject(
    pred: torch.Tensor,
    truth: torch.Tensor,
    case: str,
    spacing: Sequence[float] | None = None,
    prob: torch.Tensor | None = None,
    convention: str | Convention = "brats",
    lesionwise: str | Mapping[str, Any] | None = "brats2023-gli",
    labels: str | None = None,
) -> dict[str, Any]:
    """Every per-subject metric of a predicted label map against the true one, both (1, X, Y, Z) with raw labels.

    Prediction, truth and probabilities may each be a numpy array or a tensor on any device, in any dtype: all three
    are moved to the CPU before anything is computed.

    Args:
        pred: the predicted label map 0/1/2/4 (as written).
        truth: the true label map on the same grid.
        case: the case id.
        spacing: voxel size in mm per axis; ``None`` = 1.
        prob: the (3, X, Y, Z) region probabilities the label map came from, for the thesis-style pooled Dice
            (NaN without).
        convention: the scoring convention of Dice and HD95 (``"brats"`` official, or ``"thesis"``).
        lesionwise: a lesion-wise preset name or options (see :func:`lesionwise_options`); ``None`` leaves the
            lesion-wise columns NaN.
        labels: the label convention of both maps (:data:`~raagr2_monai.constants.LABEL_CONVENTIONS`);
            ``None`` = BraTS 2018-2021.

    Returns:
        ``{"case": case, <every column of SUBJECT_COLUMNS>: float}``.

    Raises:
        ValueError: when the two label maps differ in shape.

    Example::

        >>> y = torch.zeros(1, 8, 8, 8, dtype=torch.uint8); y[0, 2:6, 2:6, 2:6] = 2
        >>> row = score_subject(y, y, "c1", lesionwise=None)
        >>> row["dice_WT"], row["hd95_WT"], math.isnan(row["dice_ET"])  # ET empty on both sides: NaN, not 1
        (1.0, 0.0, True)
    """
    pred_t, truth_t = on_cpu(pred), on_cpu(truth)
    if tuple(pred_t.shape) != tuple(truth_t.shape):
        raise ValueError(
            f"Case {case}: the predicted label map has shape {tuple(pred_t.shape)}, the true one "
            f"{tuple(truth_t.shape)}: the prediction must be on the input's grid to be scored."
        )
    pred_regions = labelmap_to_regions(pred_t, labels)[None].bool()
    true_regions = labelmap_to_regions(truth_t, labels)[None].bool()
    row: dict[str, Any] = {"case": case}
    row.update({k: float(v[0]) for k, v in brats_metrics(pred_regions, true_regions, spacing, None, convention).items()})
    options = lesionwise_options(lesionwise)
    if options is None:
        row.update(dict.fromkeys(LESIONWISE_COLUMNS, math.nan))
    else:
        settings = LesionwiseSettings(**{"convention": convention, **options})
        scores = lesionwise_metrics(pred_regions, true_regions, spacing, settings)
        row.update({k: float(v[0]) for k, v in scores.items()})
    row["thesis_pooled_dice"] = (
        float(pooled_dice(on_cpu(prob)[None], true_regions.float())) if prob is not None else math.nan
    )
    row["mean_iou"] = float(mean_iou(pred_regions, true_regions)[0])
    return {key: row[key] for key in ("case", *SUBJECT_COLUMNS)}
