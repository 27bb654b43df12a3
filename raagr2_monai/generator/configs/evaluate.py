"""``configs/evaluate.json``: per-subject metrics of a trained model, merged after train.json."""

from __future__ import annotations

from typing import Any, Dict

from raagr2_monai.data.chains import writeback_spec

from .common import _CHECKS, _NETWORK, _split, _weights_check
from raagr2_monai.networks import Variant

__all__ = ["evaluate_config"]


def evaluate_config(variant: Variant) -> Dict[str, Any]:
    """``configs/evaluate.json``, merged after train.json: per-subject metrics of ``models/model.pt`` on a split.

    The evaluator runs the validation chain and inferer, then the inference write-back: every prediction is
    inverted onto its input's grid, written as a label map to ``<output_dir>/predictions/``, and scored from that
    very label map against the case's seg file, in the input's voxel spacing (``BraTSMetricsWriter``). With
    ``write_overlays`` (the default) each subject's overlay picture goes to ``<output_dir>/overlays/``
    (``OverlayWriter``); ``write_overlays=False`` leaves the handler out, e.g. for a study that never shows them.

    With ``uncertainty`` ``tta`` or ``mc_dropout`` (train.json's setting, ``uncertainty_samples`` predictions per
    slice, averaged) each subject is scored from the mean prediction and also gets its uncertainty, and the
    evaluation writes how well that score predicts failure (``failure_prediction.json``, ``reliability.png``): a
    subject whose mean Dice over TC, WT and ET is below ``failure_dice`` counts as a failure.
    """
    return {
        "output_dir": "$@bundle_root + '/runs/evaluate'",
        "prediction_dir": "$@output_dir + '/predictions'",
        "output_postfix": "pred",
        "eval_section": "testing",
        # "brats": the official BraTS evaluation's rules; "thesis": both-empty regions score 1 (see the docs)
        "metric_convention": "brats",
        "lesionwise": "brats2023-gli",
        "write_overlays": True,
        # with an uncertainty (tta, mc_dropout): a subject below this mean Dice (TC/WT/ET) is a failure to predict
        "failure_dice": 0.8,
        # the label maps are written from float32 images, as `run inferring` and `raagr2 segment` write them: the test
        # studies are cached as preprocessed, in float32 (exact), for the evaluations of every model of a study
        "compact": False,
        # the label maps of an evaluation computed with the kernels every run of it picks
        "deterministic": True,
        # the plain network, also under torchrun (merged after multi_gpu_train.json): scoring needs no gradient sync,
        # and a DistributedDataParallel wrapper would hold the process group past `end_distributed`, leaving gloo's
        # worker threads alive into interpreter shutdown, where one still releasing a gathered tensor aborts the rank
        "network": dict(_NETWORK),
        "validate#datalist": _split("@eval_section"),
        "validate#postprocessing": writeback_spec(
            "@validate#preprocessing", keep_probabilities=True, output_dir="@prediction_dir", output_labels=False
        ),
        "validate#key_metric": None,
        "validate#additional_metrics": None,
        "validate#handlers": [
            {"_target_": "raagr2_monai.handlers.WeightsLoader", "load_path": "@ckpt_path", "network": "@network"},
            {"_target_": "StatsHandler", "iteration_log": False},
            {
                "_target_": "raagr2_monai.handlers.BraTSMetricsWriter",
                "output_dir": "@output_dir",
                "prob_key": "pred_prob",
                "convention": "@metric_convention",
                "lesionwise": "@lesionwise",
                "uncertainty": "@uncertainty",
                "failure_dice": "@failure_dice",
            },
            {
                "_target_": "raagr2_monai.handlers.OverlayWriter",
                # a disabled component is dropped from the list: no handler, no overlays folder. Read by as_flag
                # because the command line (Fire) passes `--write_overlays false` as the string 'false'
                "_disabled_": "$not raagr2_monai.utils.as_flag(@write_overlays, 'write_overlays')",
                "output_dir": "$@output_dir + '/overlays'",
                "datalist": "@validate#datalist",
                "convention": "@metric_convention",
            },
        ],
        "run_settings#settings#eval_section": "@eval_section",
        "run_settings#settings#metric_convention": "@metric_convention",
        "run_settings#settings#lesionwise": "@lesionwise",
        "run_settings#settings#write_overlays": "@write_overlays",
        "run_settings#settings#uncertainty": "@uncertainty",
        "run_settings#settings#uncertainty_samples": "@uncertainty_samples",
        "run_settings#settings#failure_dice": "@failure_dice",
        # weights that are not there stop the run before any data is read, with one line naming the setting; none is
        # asked for with the loader replaced (stand-in networks)
        "checks": [
            *_CHECKS,
            _weights_check("@validate#handlers"),
        ],
        "run": ["$@validate#evaluator.run()"],
        "evaluating": "$@run",
    }
