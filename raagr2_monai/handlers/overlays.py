"""Ignite handler writing, for every evaluated subject, the overlay picture of its written segmentation."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch

from raagr2_monai.constants import CHANNELS, DEFAULT_CONVENTION
from raagr2_monai.data.layouts import strip_extension
from raagr2_monai.data.transforms import CONVENTION_KEY
from raagr2_monai.data.validation import BraTSDataError, read_label_file
from raagr2_monai.metrics import get_convention
from raagr2_monai.handlers.items import item_value, source_file
from raagr2_monai.visualize import as_labelmap, file_channels, overlay_figure, read_modalities, save_png

__all__ = ["OverlayWriter"]

logger = logging.getLogger(__name__)

#: The modalities drawn (file suffix -> column title), in column order.
_SHOWN = {"flair": "FLAIR", "t1ce": "T1ce"}


class OverlayWriter:
    """Ignite handler: on each ``ITERATION_COMPLETED`` of an evaluator, write ``<output_dir>/<case>.png`` for every
    subject of the iteration, the overlay of :func:`raagr2_monai.visualize.overlay_figure` (the tumour's axial
    slices, FLAIR and T1ce, true and predicted outlines, per-region Dice).

    Each output item (after the write-back postprocessing of :func:`raagr2_monai.data.chains.writeback_spec`) holds
    ``pred_key``: the (1, X, Y, Z) label map on the input's own grid, as written; and ``label_key``: the label
    MetaTensor whose ``meta["filename_or_obj"]`` names the seg file. The seg file and the FLAIR and T1ce volumes are
    read from disk on their own grid, the grid of ``pred``, so that the picture shows what was written and scored
    (:class:`~raagr2_monai.handlers.metrics.BraTSMetricsWriter` reads the same seg file). The images come from the
    case's ``datalist`` entry when one is given, else from ``image_key``'s ``meta["filename_or_obj"]``, which names
    every modality only for a case stored as one 4D file (MONAI records the first file of a list).

    The case id comes from, in order: the ``case_key`` entry of the output item, of the matching
    ``engine.state.batch`` item, ``pred``'s metadata (set by ``CaseNameToMetad``), the seg file's name. Every
    process writes the pictures of its own subjects.

    Args:
        output_dir: folder of the PNG files.
        pred_key: key of the written label map in each output item.
        label_key: key of the label MetaTensor naming the seg file.
        image_key: key of the image MetaTensor naming the image file.
        case_key: key of the case id in the output or batch items, and in ``datalist`` entries.
        datalist: the evaluated datalist entries (``{"case", "image", "label"}``), to find each case's files.
        channels: the modality of each image file, or of each channel of a 4D file.
        convention: scoring of a region empty on both sides in the titles' Dice, ``"brats"`` (NaN, shown ``n/a``)
            or ``"thesis"`` (1); give the metrics writer's.
        dpi: pixels per inch of the pictures (a panel is 3 inches square).

    Raises:
        ValueError: an unknown convention.

    Example::

        OverlayWriter("runs/evaluate/overlays", datalist=datalist).attach(evaluator)
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
        case_key: str = "case",
        datalist: Sequence[Mapping[str, Any]] | None = None,
        channels: Sequence[str] = CHANNELS,
        convention: str = "brats",
        dpi: int = 100,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.pred_key = pred_key
        self.label_key = label_key
        self.image_key = image_key
        self.case_key = case_key
        self.entries = {str(e[case_key]): e for e in datalist or () if case_key in e}
        self.channels = tuple(channels)
        self.convention = get_convention(convention)
        self.dpi = dpi

    def attach(self, engine: Engine) -> None:
        """Register :meth:`iteration_completed` on ``engine``'s ``ITERATION_COMPLETED``."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)

    def _case_id(self, engine: Engine, item: Mapping[str, Any], index: int, seg_path: str | None) -> str:
        case = item_value(engine, item, index, self.case_key)
        if case is not None:
            return str(case)
        pred = item.get(self.pred_key)
        if isinstance(pred, MetaTensor) and pred.meta.get(self.case_key):
            return str(pred.meta[self.case_key])
        if seg_path is None:
            raise ValueError(f"OverlayWriter: output item {index} has neither a case id nor a seg file name.")
        return strip_extension(os.path.basename(seg_path))

    def iteration_completed(self, engine: Engine) -> None:
        """Write the overlay of every subject of the current iteration's output.

        Raises:
            ValueError: an output item lacks the prediction, its seg file or images are unknown, or the prediction
                is not on the grid of the files.
            FileNotFoundError: a named file does not exist.
            raagr2_monai.data.validation.BraTSDataError: a bad seg or image file (naming it); the images of a case
                of several files looked for without ``datalist``.
        """
        output = engine.state.output
        items = decollate_batch(output, detach=True) if isinstance(output, Mapping) else output
        for index, item in enumerate(items):
            if self.pred_key not in item:
                raise ValueError(f"OverlayWriter: output item {index} has no {self.pred_key!r} (keys: {sorted(item)}).")
            seg_path = source_file(item, self.label_key)
            case = self._case_id(engine, item, index, seg_path)
            entry = self.entries.get(case, {})
            seg_path = seg_path or entry.get("label")
            image = entry.get("image") or source_file(item, self.image_key)
            if not seg_path or not image:
                raise ValueError(
                    f"OverlayWriter: case {case}: the seg file or the images are unknown ({self.label_key!r} and "
                    f"{self.image_key!r} must be loaded MetaTensors, or pass the datalist)."
                )
            labels = entry.get(CONVENTION_KEY) or DEFAULT_CONVENTION
            truth, _ = read_label_file(seg_path, case, labels)
            try:
                volumes, affine = read_modalities(image, tuple(_SHOWN), file_channels(entry, self.channels), case)
            except BraTSDataError as err:
                if "image" in entry:
                    raise
                raise BraTSDataError(
                    err.problems,
                    f"OverlayWriter: the images of case {case}, named by the metadata of {self.image_key!r} (the first "
                    "file only when a case has several; pass the datalist for those)",
                ) from None
            pred = as_labelmap(item[self.pred_key], f"predicted label map of case {case}")
            if pred.shape != truth.shape:
                raise ValueError(
                    f"OverlayWriter: case {case}: the predicted label map has shape {pred.shape}, the seg file "
                    f"{seg_path} {truth.shape}: the prediction must be on the input's grid."
                )
            figure = overlay_figure(
                {_SHOWN[name]: volumes[name] for name in _SHOWN}, truth, pred, affine, title=case,
                convention=self.convention, dpi=self.dpi, labels=labels,
            )
            path = save_png(figure, self.output_dir / f"{case}.png")
            logger.info("overlay of case %s written to %s", case, path)
