"""Ignite handler writing, for every segmented study, its uncertainty map beside its label map, and one uncertainty
score per study as a CSV."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch

from raagr2_monai.data.writing import AtomicNibabelWriter, brats_case_name_formatter
from raagr2_monai.metrics import DEFAULT_MARGIN, entropy_map, study_uncertainty, write_metrics_csv
from raagr2_monai.networks import check_uncertainty

__all__ = ["UNCERTAINTY_COLUMNS", "UNCERTAINTY_CSV", "UncertaintyWriter"]

logger = logging.getLogger(__name__)

#: The columns of :data:`UNCERTAINTY_CSV`: the case, how the predictions were sampled, the study's score.
UNCERTAINTY_COLUMNS = ("case", "mode", "samples", "score")
#: The file of the per-study scores, in the output folder.
UNCERTAINTY_CSV = "uncertainty.csv"


class UncertaintyWriter:
    """Ignite handler: on each ``ITERATION_COMPLETED`` of an inference evaluator, write for every study of the
    iteration ``<output_dir>/<case>_<postfix>.nii.gz``, the voxel-wise entropy of its mean prediction
    (:func:`raagr2_monai.metrics.entropy_map`, float32, in nats, 0 to ``3 ln 2``), and keep its score
    (:func:`raagr2_monai.metrics.study_uncertainty`); on ``COMPLETED`` write every score to
    ``<output_dir>/uncertainty.csv`` (:data:`UNCERTAINTY_COLUMNS`, one row per study, sorted by case), atomically.

    Each output item (after the write-back of :func:`raagr2_monai.data.chains.writeback_spec` with
    ``keep_probabilities``) holds ``prob_key``: the (3, X, Y, Z) mean probabilities inverted onto the input's own
    grid, so the map has the input's shape and affine; and ``pred_key``: the written label map, whose metadata names
    the case as its file does (:func:`raagr2_monai.data.writing.brats_case_name_formatter`). :meth:`write` does the
    same for one item outside an engine (``raagr2 segment``).

    Args:
        output_dir: the folder of the maps and of the CSV (the label maps' folder).
        mode: how the mean prediction was sampled, ``tta`` or ``mc_dropout`` (recorded in the CSV).
        samples: predictions per slice (recorded in the CSV).
        prob_key: key of the mean probabilities in each output item.
        pred_key: key of the written label map.
        postfix: the map's file name after the case (``<case>_<postfix>.nii.gz``).
        margin: the region probability from which a voxel counts for the score.

    Raises:
        ValueError: an unknown mode, ``none``, or a bad sample count (:func:`raagr2_monai.networks.check_uncertainty`).

    Example::

        UncertaintyWriter("runs/inference", "tta", 4).attach(evaluator)
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        mode: str,
        samples: Any,
        prob_key: str = "pred_prob",
        pred_key: str = "pred",
        postfix: str = "uncertainty",
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self.mode, self.samples = check_uncertainty(mode, samples)
        if self.mode == "none":
            raise ValueError("UncertaintyWriter needs uncertainty tta or mc_dropout; got none (nothing to write).")
        self.output_dir = Path(output_dir)
        self.prob_key = prob_key
        self.pred_key = pred_key
        self.postfix = postfix
        self.margin = float(margin)
        self.rows: dict[str, dict[str, Any]] = {}

    def attach(self, engine: Engine) -> None:
        """Register :meth:`reset`, :meth:`iteration_completed` and :meth:`completed` on ``engine``."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the scores of a previous run."""
        self.rows = {}

    def _case(self, item: Mapping[str, Any]) -> str:
        for key in (self.pred_key, self.prob_key):
            value = item.get(key)
            if isinstance(value, MetaTensor) and value.meta:
                # the label map's own name: <case>.nii.gz
                return re.sub(r"\.nii\.gz$", "", brats_case_name_formatter(value.meta, None)["subject"])
        raise ValueError(f"UncertaintyWriter: the output item names no case ({self.pred_key!r} and {self.prob_key!r} "
                         "carry no metadata).")

    def write(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Write one study's map and keep its score.

        Args:
            item: the study after the write-back: ``prob_key`` (the inverted mean probabilities, a MetaTensor whose
                affine is the input's) and ``pred_key``.

        Returns:
            The study's row: ``case``, ``mode``, ``samples``, ``score``, and ``map`` (the file written).

        Raises:
            ValueError: the item holds no probabilities, or they are not probabilities on a 3D grid.

        Example::

            row = writer.write(data)  # data: what the inference config's postprocessing returned
            print(row["case"], row["score"])
        """
        prob = item.get(self.prob_key)
        if not isinstance(prob, MetaTensor):
            raise ValueError(
                f"UncertaintyWriter: the output item has no {self.prob_key!r} on the input's grid (keys: "
                f"{sorted(item)}); the write-back must keep the probabilities (writeback_spec keep_probabilities)."
            )
        if prob.ndim != 4:
            raise ValueError(f"UncertaintyWriter: {self.prob_key!r} must be (channels, X, Y, Z); got shape "
                             f"{list(prob.shape)}.")
        case = self._case(item)
        probabilities = prob.detach().cpu().float()
        entropy = entropy_map(probabilities)
        path = self.output_dir / f"{case}_{self.postfix}.nii.gz"
        # as SaveImaged writes the label map from the same metadata: the input's affine, no resampling
        writer = AtomicNibabelWriter(output_dtype=np.float32)
        writer.set_data_array(torch.from_numpy(entropy)[None], channel_dim=0, squeeze_end_dims=True)
        writer.set_metadata(meta_dict=dict(prob.meta), resample=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer.write(str(path))
        row = {"case": case, "mode": self.mode, "samples": self.samples,
               "score": study_uncertainty(probabilities, self.margin), "map": str(path)}
        self.rows[case] = row
        logger.info("uncertainty map of case %s written to %s (score %.4f)", case, path, row["score"])
        return row

    def iteration_completed(self, engine: Engine) -> None:
        """Write the map of every study of the current iteration's output."""
        output = engine.state.output
        items = decollate_batch(output, detach=True) if isinstance(output, Mapping) else output
        for item in items:
            self.write(item)

    def write_csv(self, rows: list[dict[str, Any]] | None = None) -> Path:
        """Write ``<output_dir>/uncertainty.csv``, atomically: the scores kept so far, or ``rows``, sorted by case.

        Returns:
            The file written.
        """
        rows = sorted(self.rows.values() if rows is None else rows, key=lambda row: row["case"])
        return write_metrics_csv([{key: row[key] for key in UNCERTAINTY_COLUMNS} for row in rows],
                                 self.output_dir / UNCERTAINTY_CSV, fieldnames=UNCERTAINTY_COLUMNS)

    def completed(self, engine: Engine | None = None) -> None:
        """Gather the scores of all processes; rank 0 writes the CSV."""
        rows = [row for part in idist.all_gather(list(self.rows.values())) for row in part]
        if idist.get_rank() != 0:
            return
        path = self.write_csv(rows)
        logger.info("uncertainty scores of %d studies written to %s", len(rows), path)
