"""Models side by side on one subject: the ground truth, then each model's prediction, on the same slice."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure

from raagr2_monai.metrics import Convention

from .figures import dice_text, draw_contours, draw_slice, intensity_window, legend_handles, new_figure
from .orientation import axial_view
from .overlay import displayed_masks
from .regions import as_labelmap, region_dice, region_masks
from .slices import tumour_slices

__all__ = ["comparison_figure"]

_HEADER_INCHES = 0.3
_TITLE_INCHES = 0.4  # two lines of panel title: the model, its Dice
_FOOTER_INCHES = 0.35


def comparison_figure(
    image: np.ndarray,
    truth: np.ndarray | torch.Tensor,
    predictions: Mapping[str, np.ndarray | torch.Tensor],
    affine: np.ndarray | None = None,
    index: int | None = None,
    image_name: str = "FLAIR",
    title: str = "",
    scores: Mapping[str, Mapping[str, float]] | None = None,
    convention: str | Convention = "brats",
    radiological: bool = True,
    panel_inches: float = 3.0,
    dpi: int = 100,
    labels: str | None = None,
) -> Figure:
    """One subject, one axial slice: the ground truth, then every model's prediction, each outlined per region on
    the same image, each prediction's panel titled with its per-region Dice over the whole volume.

    Args:
        image: the (X, Y, Z) background volume (e.g. FLAIR), in its file's voxel order.
        truth: the true label map (raw BraTS labels), (X, Y, Z) or (1, X, Y, Z), same grid.
        predictions: model name -> its predicted label map, one panel each in this order (e.g. the baseline, then
            each family's best model).
        affine: the grid's voxel-to-world matrix (:func:`~.orientation.axial_view`); ``None`` = RAS voxel order.
        index: the slice along the axial voxel axis; ``None`` = the ground truth's largest WT slice
            (:func:`~.slices.tumour_slices`).
        image_name: the background's name, in the title.
        title: the subject, first in the title.
        scores: model name -> per-region Dice (e.g. its ``metrics_per_subject.csv`` row); a model missing here is
            scored from its label map (:func:`~.regions.region_dice`).
        convention: scoring of a region empty on both sides when Dice is computed here.
        radiological: the patient's right on the left of each panel.
        panel_inches: the width of one panel.
        dpi: pixels per inch.
        labels: the label convention of every map (``raagr2_monai.constants.LABEL_CONVENTIONS``); ``None`` =
            BraTS 2018-2021.

    Returns:
        The figure (save it with :func:`~.figures.save_png`).

    Raises:
        ValueError: no prediction, or volumes of different shapes.

    Example::

        flair, affine = read_modalities(entry["image"], ("flair",))
        truth, _ = read_label_file(entry["label"])
        preds = {name: read_label_file(f"{run}/predictions/{case}_pred.nii.gz")[0] for name, run in runs.items()}
        save_png(comparison_figure(flair["flair"], truth, preds, affine, title=case), "report/charts/compare.png")
    """
    true_map = as_labelmap(truth, "true label map")
    maps = {name: as_labelmap(p, f"label map of {name}") for name, p in predictions.items()}
    shapes = {"image": image.shape, "truth": true_map.shape, **{n: m.shape for n, m in maps.items()}}
    if not maps or len(set(shapes.values())) != 1:
        raise ValueError(f"comparison_figure needs at least one prediction and volumes of one shape; got {shapes}.")
    view = axial_view(affine, radiological)
    true_masks = region_masks(true_map, labels)
    if index is None:
        index = tumour_slices(true_masks, axis=view.slice_axis, image=image)[0].index
    plane, window = view.slice(image, index), intensity_window(image)

    height = panel_inches + _HEADER_INCHES + _TITLE_INCHES + _FOOTER_INCHES
    figure = new_figure((len(maps) + 1) * panel_inches, height, dpi)
    axes = figure.subplots(
        1, len(maps) + 1, squeeze=False,
        gridspec_kw={"left": 0.01, "right": 0.99, "top": 1 - (_HEADER_INCHES + _TITLE_INCHES) / height,
                     "bottom": _FOOTER_INCHES / height, "wspace": 0.03},
    )[0]
    draw_slice(axes[0], plane, window, view, "ground truth")
    draw_contours(axes[0], displayed_masks(true_masks, view, index))
    for ax, (name, labelmap) in zip(axes[1:], maps.items()):
        masks = region_masks(labelmap, labels)
        dice = (scores or {}).get(name) or region_dice(masks, true_masks, convention)
        draw_slice(ax, plane, window, view, f"{name}\n{dice_text(dice)}")
        draw_contours(ax, displayed_masks(masks, view, index))
    heading = f"{image_name}, axial slice {index}"
    figure.suptitle(f"{title}: {heading}" if title else heading, fontsize=10)
    figure.legend(handles=legend_handles(styles=False), loc="lower center", ncol=3, fontsize=8, frameon=False)
    return figure
