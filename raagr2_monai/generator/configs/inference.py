"""``configs/inference.json``: the inference workflow, a label map per case (also what MONAI Label runs)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from raagr2_monai.data.chains import preprocessing_spec, writeback_spec

from .common import _AMP, _CHECKS, _INFERER, _check, _common, _weights_check
from raagr2_monai.networks import Variant

__all__ = ["inference_config"]


def inference_config(variant: Variant, network_def: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``configs/inference.json``: a BraTS label map per case, in the input's own geometry; with ``uncertainty``
    ``tta`` or ``mc_dropout`` also ``<case>_uncertainty.nii.gz`` (the entropy of the mean prediction, on the same
    grid) and ``uncertainty.csv`` (one score per case) in ``output_dir``.

    ``network_def`` replaces the variant's network definition (see :func:`.common._common`).
    """
    config = _common(variant, network_def)
    config.update(
        {
            # the settings MONAI Label shows its users (scalars: its clients turn lists into choices); the ids below
            # read them, so the command line can set either
            "displayable_configs": {"roi_size": config["roi_size"][0], "overlap": config["overlap"],
                                    "threshold": config["threshold"]},
            "roi_size": "$[int(@displayable_configs#roi_size)] * 2",
            "overlap": "$float(@displayable_configs#overlap)",
            "threshold": "$float(@displayable_configs#threshold)",
            "output_dir": "$@bundle_root + '/runs/inference'",
            # the runtime behind the network: torch (models/model.pt, or ckpt_path), or onnxruntime / openvino
            # (models/model.onnx / model.xml from `raagr2 export`, checked against the bundle's weights); threads:
            # intra-op CPU threads, null = the runtime's default. amp_precision also sets what OpenVINO computes in:
            # "auto" is bf16 on CPUs with a bfloat16 unit (AVX512-BF16, AMX), else fp32
            "backend": "torch",
            "threads": None,
            "network": {
                "_target_": "raagr2_monai.deploy.inference_network",
                "network": "@network_def",
                "backend": "@backend",
                "bundle_dir": "@bundle_root",
                "device": "@device",
                "channels_last": "@channels_last",
                "threads": "@threads",
                "precision": "@amp_precision",
            },
            "datalist_section": "testing",
            "data": {
                "_target_": "raagr2_monai.data.inference_cases",
                "dataset_dir": "@dataset_dir",
                "datalist": "@datalist",
                "section": "@datalist_section",
                "label_convention": "@label_convention",
            },
            "output_postfix": "pred",
            # the label values written: "input" (each case's own convention) or brats2021, brats2023, msd
            "output_labels": "input",
            "preprocessing": preprocessing_spec(with_label=False),
            "dataset": {"_target_": "Dataset", "data": "@data", "transform": "@preprocessing"},
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@dataset",
                "batch_size": 1,
                "shuffle": False,
                "num_workers": "@num_workers",
            },
            "inferer": _INFERER,
            # uncertainty none: nothing of it computed or written (the copy of the probabilities and the writer of
            # the maps are disabled); else a map per study beside its label map, and the scores in uncertainty.csv
            "without_uncertainty": {"_target_": "raagr2_monai.networks.without_uncertainty", "mode": "@uncertainty"},
            "postprocessing": writeback_spec("@preprocessing", keep_probabilities="@without_uncertainty"),
            "handlers": [
                {
                    "_target_": "raagr2_monai.handlers.WeightsLoader",
                    "_disabled_": "$@backend != 'torch'",
                    "load_path": "@ckpt_path",
                    "network": "@network",
                },
                {"_target_": "StatsHandler", "iteration_log": False},
                {
                    "_target_": "raagr2_monai.handlers.UncertaintyWriter",
                    "_disabled_": "@without_uncertainty",
                    "output_dir": "@output_dir",
                    "mode": "@uncertainty",
                    "samples": "@uncertainty_samples",
                },
            ],
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@dataloader",
                "network": "@network",
                "inferer": "@inferer",
                "postprocessing": "@postprocessing",
                "val_handlers": "@handlers",
                **_AMP,
            },
            "initialize": [
                *_CHECKS,
                _check("raagr2_monai.deploy.check_backend", backend="@backend"),
                # Monte-Carlo dropout behind an export, or on a network without dropout layers
                _check("raagr2_monai.deploy.check_sampled_network", uncertainty="@uncertainty", network="@network_def",
                       backend="@backend", model="@bundle_root"),
                # the weights each WeightsLoader will load must exist, said before any study is read; none is asked
                # for with an exported backend or with the handlers replaced (stand-in networks)
                _weights_check("@handlers"),
            ],
            "run": ["$@evaluator.run()"],
            "inferring": "$@run",
        }
    )
    return config
