"""Pictures of segmentation results, at the layer of the metrics (matplotlib on the Agg canvas, never pyplot):

- :mod:`.orientation`: axial slices of any voxel order turned for display (:func:`axial_view`);
- :mod:`.slices`: the slices through the tumour (:func:`tumour_slices`);
- :mod:`.regions`: label maps as region masks and their Dice;
- :mod:`.volumes`: a case's modalities read from disk on their own grid (:func:`read_modalities`);
- :mod:`.figures`: colours, intensity window, panels, legend, atomic PNG writing (:func:`save_png`);
- :mod:`.overlay`: one subject's slices with true and predicted outlines (:func:`overlay_figure`);
- :mod:`.comparison`: several models side by side on one subject (:func:`comparison_figure`);
- :mod:`.distributions`: per-subject Dice and HD95 of several models (:func:`distribution_figure`);
- :mod:`.reliability`: voxel confidence against accuracy, the reliability diagram (:func:`reliability_figure`).

The Ignite handler writing an overlay per evaluated subject is :class:`raagr2_monai.handlers.overlays.OverlayWriter`.
"""

from .comparison import comparison_figure
from .distributions import METRIC_LABELS, distribution_figure, distribution_values, read_subject_rows
from .figures import PRED_STYLE, REGION_COLOURS, TRUTH_STYLE, dice_text, intensity_window, save_png
from .orientation import AxialView, axial_view
from .overlay import overlay_figure
from .regions import as_labelmap, region_dice, region_masks
from .reliability import reliability_figure
from .slices import SLICE_REGIONS, TumourSlice, tumour_slices
from .volumes import file_channels, read_modalities

__all__ = [
    "comparison_figure",
    "METRIC_LABELS",
    "distribution_figure",
    "distribution_values",
    "read_subject_rows",
    "PRED_STYLE",
    "REGION_COLOURS",
    "TRUTH_STYLE",
    "dice_text",
    "intensity_window",
    "save_png",
    "AxialView",
    "axial_view",
    "overlay_figure",
    "as_labelmap",
    "region_dice",
    "region_masks",
    "reliability_figure",
    "SLICE_REGIONS",
    "TumourSlice",
    "tumour_slices",
    "file_channels",
    "read_modalities",
]
