"""``configs/train.json``: the training workflow, which evaluate.json, multi_gpu_train.json and prune.json build on."""

from __future__ import annotations

from typing import Any, Dict, Optional

from raagr2_monai.data.chains import negated_switch, train_spec, validation_postprocessing_spec, validation_spec
from raagr2_monai.data.split import DEFAULT_SPLIT
from raagr2_monai.networks import Variant

from .common import (
    _AMP,
    _CHECKS,
    _FILL_CACHES,
    _INFERER,
    _check,
    _common,
    _for_rank,
    _from_metrics,
    _setup,
    _split,
    _train_handlers,
)

__all__ = ["train_config"]


def _from_engine(*keys: str) -> Dict[str, Any]:
    """A metric's ``output_transform``: ``keys`` of the engine's output batch (MONAI's ``from_engine``)."""
    return {"_target_": "monai.handlers.from_engine", "keys": list(keys)}


def train_config(variant: Variant, network_def: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``configs/train.json``: SupervisedTrainer on 2D slices, SupervisedEvaluator on whole volumes.

    ``network_def`` replaces the variant's network definition (see :func:`.common._common`).
    """
    config = _common(variant, network_def)
    config.update(
        {
            "output_dir": "$@bundle_root + '/runs/train'",
            "epochs": 2,
            "learning_rate": 0.001,
            # validation every val_interval epochs on the first val_cases validation studies (null: all, the thesis's
            # setting); both are recorded in run_settings
            "val_interval": 1,
            "val_cases": None,
            # training / validation / testing fractions of the split by patient made without a datalist
            "split": list(DEFAULT_SPLIT),
            # each study preprocessed once into cache_dir (a float16 image and a uint8 label map, keyed by the study's
            # files and the preprocessing settings) and read from there by every training, pruning and validation;
            # compact false caches float32 images and region channels instead. Default: $RAAGR2_CACHE_DIR, else the
            # bundle's cache/ folder
            "cache_dir": {"_target_": "raagr2_monai.data.default_cache_dir", "bundle_root": "@bundle_root"},
            "compact": True,
            **negated_switch("@compact"),
            "num_samples": 4,
            "tumour_fraction": 0.5,
            "early_stop_patience": 10,
            "early_stop_min_delta": 0.0001,
            "resume": False,
            # group-norm sparsity regularisation (torch-pruning's GroupNormPruner) before DepGraph pruning: whole
            # channel groups are pushed towards zero so that pruning removes what the network learnt to do without
            "group_sparsity": 0.0,
            # cuDNN picks its fastest kernels (not bit-for-bit reproducible on a GPU); true: deterministic ones
            "deterministic": False,
            # the loss logged every so many iterations (reading it waits for the GPU); null: 20 on CUDA, else 1
            "log_every": None,
            "experiment_name": "raagr2_monai",
            "run_name": {"_target_": "raagr2_monai.bundle.run_name", "parts": ["@variant", "train"]},
            "tracking_uri": {"_target_": "raagr2_monai.bundle.tracking_uri", "folder": "@output_dir"},
            "loss": {"_target_": "raagr2_monai.losses.RAAGR2Loss", "lambda_bce": 0.5},
            "optimizer": {
                "_target_": "torch.optim.Adam",
                "params": "$@network.parameters()",
                "lr": "@learning_rate",
                "fused": "@cuda",
            },
            "lr_schedule": "plateau",
            "lr_scheduler": {
                "_target_": "raagr2_monai.schedules.make_lr_scheduler",
                "optimizer": "@optimizer",
                "schedule": "@lr_schedule",
                "epochs": "@train#trainer#max_epochs",
                "factor": 0.5,
                "patience": 3,
            },
            "train": {
                "datalist": _split("training"),
                "preprocessing": train_spec("@compact"),
                "dataset": {
                    "_target_": "raagr2_monai.data.StudyCacheDataset",
                    "data": "@train#datalist",
                    "transform": "@train#preprocessing",
                    "cache_dir": "@cache_dir",
                },
                "dataloader": {
                    "_target_": "DataLoader",
                    "dataset": "@train#dataset",
                    "batch_size": "$max(1, @batch_size // @num_samples)",
                    "shuffle": True,
                    "num_workers": "@num_workers",
                    "pin_memory": "@cuda",
                },
                "inferer": {"_target_": "SimpleInferer"},
                "handlers": _train_handlers("$@output_dir + '/last.pt'"),
                "trainer": {
                    "_target_": "SupervisedTrainer",
                    "max_epochs": "@epochs",
                    "device": "@device",
                    "train_data_loader": "@train#dataloader",
                    "network": "@network",
                    "loss_function": "@loss",
                    "optimizer": "@optimizer",
                    "inferer": "@train#inferer",
                    "train_handlers": _for_rank("@train#handlers"),
                    "non_blocking": "@cuda",
                    "optim_set_to_none": True,
                    **_AMP,
                },
            },
            "validate": {
                "datalist": {**_split("validation"), "limit": "@val_cases"},
                "preprocessing": validation_spec("@compact"),
                "dataset": {
                    "_target_": "raagr2_monai.data.StudyCacheDataset",
                    "data": "@validate#datalist",
                    "transform": "@validate#preprocessing",
                    "cache_dir": "@cache_dir",
                },
                "dataloader": {
                    "_target_": "DataLoader",
                    "dataset": "@validate#dataset",
                    "batch_size": 1,
                    "shuffle": False,
                    "num_workers": "@num_workers",
                },
                "inferer": _INFERER,
                "postprocessing": validation_postprocessing_spec(),
                "key_metric": {
                    "val_mean_dice": {
                        "_target_": "raagr2_monai.handlers.BraTSMeanDice",
                        "output_transform": _from_engine("pred", "label"),
                    }
                },
                "additional_metrics": {
                    f"val_dice_{region}": {
                        "_target_": "raagr2_monai.handlers.BraTSMeanDice",
                        "output_transform": _from_engine(f"pred_{region}", f"label_{region}"),
                    }
                    for region in ("tc", "wt", "et")
                },
                # the trainer is set when the run starts: trainer -> validator -> early stop -> trainer is a cycle
                "early_stop": {
                    "_target_": "EarlyStopHandler",
                    "patience": "@early_stop_patience",
                    "min_delta": "@early_stop_min_delta",
                    "score_function": _from_metrics("val_mean_dice"),
                    "epoch_level": True,
                },
                "handlers": [
                    {
                        "_target_": "LrScheduleHandler",
                        "_disabled_": "$@lr_schedule != 'plateau'",
                        "lr_scheduler": "@lr_scheduler",
                        "print_lr": True,
                        "epoch_level": True,
                        "step_transform": _from_metrics("val_mean_dice"),
                    },
                    "@validate#early_stop",
                    {"_target_": "StatsHandler", "iteration_log": False},
                    {
                        "_target_": "CheckpointSaver",
                        "save_dir": "@ckpt_dir",
                        "save_dict": {"model": "@network"},
                        "save_key_metric": True,
                        "key_metric_filename": "model.pt",
                    },
                ],
                "evaluator": {
                    "_target_": "SupervisedEvaluator",
                    "device": "@device",
                    "val_data_loader": "@validate#dataloader",
                    "network": "@network",
                    "inferer": "@validate#inferer",
                    "postprocessing": "@validate#postprocessing",
                    "key_val_metric": "@validate#key_metric",
                    "additional_metrics": "@validate#additional_metrics",
                    "val_handlers": _for_rank("@validate#handlers"),
                    **_AMP,
                },
            },
            # what the run records (run.json, MLflow parameters), with the studies each dataset held and the split only
            # where no datalist chose them
            "run_settings": {
                "_target_": "raagr2_monai.bundle.run_settings",
                "datasets": {"training": "@train#dataset", "validation": "@validate#dataset"},
                "settings": {
                    "variant": "@variant",
                    "dataset_dir": "@dataset_dir",
                    "datalist": "@datalist",
                    "split": "@split",
                    # what ran, also when MONAI Label replaces the epochs
                    "epochs": "@train#trainer#max_epochs",
                    "val_interval": "@val_interval",
                    "batch_size": "@batch_size",
                    "learning_rate": "@learning_rate",
                    "lr_schedule": "@lr_schedule",
                    "roi_size": "@roi_size",
                    "compact": "@compact",
                    "cache_dir": "@cache_dir",
                    "validation_roi_size": "@validate#inferer#roi_size",
                    "whole_slice": "@whole_slice",
                    "skip_empty": "@skip_empty",
                    "sw_batch_size": "@sw_batch_size",
                    "overlap": "@overlap",
                    "blend_mode": "@blend_mode",
                    "threshold": "@threshold",
                    "device": "@device",
                    "amp": "@use_amp",
                    "amp_precision": "@amp_precision",
                    "channels_last": "@channels_last",
                    "deterministic": "@deterministic",
                    "group_sparsity": "@group_sparsity",
                },
            },
            # the settings' checks, run first: a list of their own, so that evaluate.json can add to them and
            # multi_gpu_train.json, which sets up the process group before them, can reuse them
            "checks": [
                *_CHECKS,
                _check("raagr2_monai.bundle.check_validation_settings", val_interval="@val_interval",
                       val_cases="@val_cases"),
            ],
            "initialize": ["@checks", *_setup("@output_dir")],
            "run": [
                *_FILL_CACHES,
                "$@validate#early_stop.set_trainer(@train#trainer)",
                "$@train#trainer.run()",
                {
                    "_target_": "raagr2_monai.bundle.complete_mlflow_run",
                    "tracking_uri": "@tracking_uri",
                    "experiment_name": "@experiment_name",
                    "run_name": "@run_name",
                    "paths": ["@ckpt_path"],
                    "settings": "@run_settings",
                },
            ],
            # `monai.bundle run training` runs `initialize`, then this, then `finalize`
            "training": "$@run",
        }
    )
    return config
