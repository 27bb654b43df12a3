"""The picture of one evaluated subject: its tumour's axial slices, each modality with the true and predicted
outline of every region, and the subject's per-region Dice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from raagr2_monai.metrics import Convention

from .figures import (
    PRED_STYLE,
    TRUTH_STYLE,
    dice_text,
    draw_contours,
    draw_slice,
    intensity_window,
    legend_handles,
    new_figure,
)
from .orientation import AxialView, axial_view
from .regions import as_labelmap, region_dice, region_masks
from .slices import TumourSlice, tumour_slices

__all__ = ["overlay_figure", "displayed_masks"]

_HEADER_INCHES = 0.85  # the title (the subject, then its Dice) and the first row's panel titles
_LEGEND_LINE_INCHES = 0.3


def displayed_masks(masks: np.ndarray, view: AxialView, index: int) -> np.ndarray:
    """Slice ``index`` of (3, X, Y, Z) region masks, turned for display: (3, rows, columns)."""
    return np.stack([view.slice(m, index) for m in masks])


def overlay_figure(
    images: Mapping[str, np.ndarray],
    truth: np.ndarray | torch.Tensor,
    pred: np.ndarray | torch.Tensor,
    affine: np.ndarray | None = None,
    title: str = "",
    scores: Mapping[str, float] | None = None,
    convention: str | Convention = "brats",
    slices: Sequence[TumourSlice] | None = None,
    radiological: bool = True,
    panel_inches: float = 3.0,
    dpi: int = 100,
    labels: str | None = None,
) -> Figure:
    """One subject's overlay: a row per chosen slice, a column per modality, ground truth outlined solid and the
    prediction dashed in each region's colour (:data:`~.figures.REGION_COLOURS`), a legend, and the per-region Dice
    in the title.

    Every volume is on the same grid, in its file's voxel order; ``affine`` turns the slices for display
    (:func:`~.orientation.axial_view`: anterior up, the patient's right on the left by default). Each modality is
    shown within the 1st-99th percentile of its brain voxels (:func:`~.figures.intensity_window`).

    Args:
        images: display name -> (X, Y, Z) volume, one column each in this order, e.g. ``{"FLAIR": ..., "T1ce": ...}``.
        truth: the true label map (raw BraTS labels), (X, Y, Z) or (1, X, Y, Z).
        pred: the predicted label map, same grid.
        affine: the grid's 4x4 voxel-to-world matrix; ``None`` = RAS voxel order.
        title: the subject, first in the title.
        scores: per-region Dice to show (e.g. the row of ``metrics_per_subject.csv``); ``None`` = computed here
            from the two label maps (:func:`~.regions.region_dice`).
        convention: scoring of a region empty on both sides when Dice is computed here.
        slices: the slices to show; ``None`` = :func:`~.slices.tumour_slices` of the two label maps.
        radiological: the patient's right on the left of each panel.
        panel_inches: the side of one panel.
        dpi: pixels per inch; the PNG is ``len(images) * panel_inches * dpi`` pixels wide and
            ``(len(slices) * panel_inches + 1.25) * dpi`` high (``+ 1.55`` for a single image).
        labels: the label convention of both maps (``raagr2_monai.constants.LABEL_CONVENTIONS``); ``None`` = BraTS
            2018-2021.

    Returns:
        The figure (save it with :func:`~.figures.save_png`).

    Raises:
        ValueError: no image, or volumes of different shapes.

    Example::

        images, affine = read_modalities(entry["image"], ("flair", "t1ce"))
        truth, _ = read_label_file(entry["label"])
        figure = overlay_figure({"FLAIR": images["flair"], "T1ce": images["t1ce"]}, truth, pred, affine, "case 7")
        save_png(figure, "overlays/case_7.png")
    """
    true_map, pred_map = as_labelmap(truth, "true label map"), as_labelmap(pred, "predicted label map")
    shapes = {"truth": true_map.shape, "prediction": pred_map.shape, **{n: v.shape for n, v in images.items()}}
    if not images or len(set(shapes.values())) != 1:
        raise ValueError(f"overlay_figure needs at least one image and volumes of one shape; got {shapes}.")
    view = axial_view(affine, radiological)
    true_masks, pred_masks = region_masks(true_map, labels), region_masks(pred_map, labels)
    first = next(iter(images.values()))
    chosen = list(slices) if slices is not None else tumour_slices(true_masks, pred_masks, view.slice_axis, first)
    shown = scores if scores is not None else region_dice(pred_masks, true_masks, convention)
    windows = {name: intensity_window(volume) for name, volume in images.items()}

    # a single column is too narrow for the five legend entries on one line
    legend_columns = 5 if len(images) > 1 else 3
    footer = _LEGEND_LINE_INCHES * (2 if legend_columns < 5 else 1) + 0.1
    height = len(chosen) * panel_inches + _HEADER_INCHES + footer
    figure = new_figure(len(images) * panel_inches, height, dpi)
    axes = figure.subplots(
        len(chosen), len(images), squeeze=False,
        gridspec_kw={"left": 0.01, "right": 0.99, "top": 1 - _HEADER_INCHES / height, "bottom": footer / height,
                     "wspace": 0.03, "hspace": 0.12},
    )
    for row, choice in zip(axes, chosen):
        truth_2d = displayed_masks(true_masks, view, choice.index)
        pred_2d = displayed_masks(pred_masks, view, choice.index)
        for ax, (name, volume) in zip(row, images.items()):
            label = f"{name}, slice {choice.index}: {', '.join(choice.reasons)}"
            draw_slice(ax, view.slice(volume, choice.index), windows[name], view, label)
            draw_contours(ax, truth_2d, TRUTH_STYLE)
            draw_contours(ax, pred_2d, PRED_STYLE)
    figure.suptitle(f"{title}\n{dice_text(shown)}" if title else dice_text(shown), fontsize=10)
    figure.legend(handles=legend_handles(), loc="lower center", ncol=legend_columns, fontsize=8, frameon=False)
    return figure
