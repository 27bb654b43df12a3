"""The four bundles' configs, written once: everything but the network and the descriptive metadata is shared.

``raagr2 bundles`` writes ``bundles/<variant>/`` from here; a test regenerates them and compares with the files in
the repository, so a hand edit of one bundle cannot drift from the other three.

Configs read top to bottom: settings users override -> data -> network -> loss/optimizer -> engines -> handlers ->
the workflow's steps. Ids follow the model zoo (``train#trainer``, ``validate#evaluator``, ``network_def``, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from raagr2_monai.data.chains import (
    preprocessing_spec,
    slice_inferer_spec,
    train_spec,
    validation_postprocessing_spec,
    validation_spec,
    writeback_spec,
)
from raagr2_monai.data.split import DEFAULT_SPLIT

__all__ = ["Variant", "VARIANTS", "BUNDLE_VERSION", "REQUIRED_VERSIONS", "train_config", "evaluate_config", "inference_config",
           "multi_gpu_config", "prune_config", "metadata", "LOGGING_CONF", "bundle_files"]

BUNDLE_VERSION = "0.1.0"


@dataclass(frozen=True)
class Variant:
    """What differs between the bundles: the network class and the words that describe it."""

    name: str
    network: str
    title: str
    summary: str


VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "baseline",
            "raagr2_monai.networks.RAAGR2Net",
            "RAAGR2-Net (baseline)",
            "the uncompressed RAAGR2-Net: ReASPP3 encoder stages, attention-gated skip connections and recurrent "
            "residual (RRCNN) decoder blocks",
        ),
        Variant(
            "depthwise",
            "raagr2_monai.networks.DepthwiseSharedRAAGR2Net",
            "Depthwise Shared RAAGR2-Net",
            "RAAGR2-Net whose encoder stages are redesigned around one depthwise 3x3 kernel per stage, shared by "
            "the stage's four dilated branches",
        ),
        Variant(
            "paired",
            "raagr2_monai.networks.PairedSharedRAAGR2Net",
            "Paired Shared RAAGR2-Net",
            "RAAGR2-Net whose encoder stages share two depthwise 3x3 kernels per stage, one for dilations 1 and 3 "
            "and one for dilations 6 and 9",
        ),
        Variant(
            "encdec",
            "raagr2_monai.networks.EncoderDecoderSharedRAAGR2Net",
            "Encoder-Decoder Shared RAAGR2-Net",
            "RAAGR2-Net with Depthwise Shared encoder stages whose kernels are reused by the decoder: each decoder "
            "level applies the kernel of the encoder stage of its width",
        ),
    )
}

_IMPORTS = ["$import os", "$import time", "$import torch", "$import monai", "$import raagr2_monai"]

# first steps of every workflow: bad settings and a missing dataset_dir or datalist are reported before anything is
# built
_CHECKS = [
    "$raagr2_monai.bundle.checked(raagr2_monai.utils.resolve_device, @device)",
    "$raagr2_monai.bundle.checked(raagr2_monai.data.chains.check_roi_size, @roi_size)",
    "$raagr2_monai.bundle.checked(raagr2_monai.data.check_data_source, @dataset_dir, @datalist)",
]

# CUDA when available, else the CPU; `--device cpu|cuda|cuda:1` sets it (MONAI Label too, as a plain string)
_DEVICE = "$raagr2_monai.utils.resolve_device()"
# the precision of every engine, and of `raagr2 segment` (raagr2_monai.utils.autocast): on CUDA bfloat16 autocast
# where the GPU has it (compute capability 8.0 or later), else float16 (amp_precision "auto"; or bf16, fp16, fp32)
_AMP = {"amp": "@use_amp", "amp_kwargs": "$raagr2_monai.utils.amp_kwargs(@device, @amp_precision)"}
_NETWORK = "raagr2_monai.utils.prepare_network(@network_def, @device, @channels_last)"
# the studies are preprocessed once, before the first epoch, into the on-disk cache every later run reuses
_FILL_CACHES = [
    "$raagr2_monai.data.fill_cache(@train#dataset, @num_workers, 'train')",
    "$raagr2_monai.data.fill_cache(@validate#dataset, @num_workers, 'validation')",
]
# validation, evaluation and inference alike: whole slices as the batch, or roi_size windows (whole_slice false);
# skip_empty: slices and windows without a brain voxel (all zeros after preprocessing) get the network's output for
# zeros, computed once, instead of a network run each
_INFERER = {
    **slice_inferer_spec(),
    "_target_": "raagr2_monai.deploy.BrainSliceInferer",
    "skip_empty": "@skip_empty",
    "whole_slice": "@whole_slice",
}


def _weights_check(handlers: str) -> str:
    """A check (for ``initialize``) that the weights each ``WeightsLoader`` among ``handlers`` (a config reference)
    will load exist; none is asked for where the loader is replaced (stand-in networks, exported backends)."""
    return (
        "$[raagr2_monai.bundle.checked(raagr2_monai.networks.check_weights, handler.load_path) "
        f"for handler in {handlers} if isinstance(handler, raagr2_monai.handlers.WeightsLoader)]"
    )


def _common(variant: Variant, network_def: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Ids shared by every workflow of a bundle: where things are, the device, the network.

    ``network_def`` replaces the variant's class (a pruned bundle rebuilds its pruned network with it).
    """
    return {
        "imports": list(_IMPORTS),
        "bundle_root": "$raagr2_monai.bundle.find_bundle_root()",
        "dataset_dir": "$raagr2_monai.data.default_dataset_dir()",
        "datalist": None,
        # "auto": each case's labels follow its layout's convention; or brats2021, brats2023, msd for every case
        "label_convention": "auto",
        "ckpt_dir": "$@bundle_root + '/models'",
        "ckpt_path": "$@ckpt_dir + '/model.pt'",
        "seed": 0,
        "roi_size": [96, 96],
        "batch_size": 8,
        # whole slices (whole_slice) or roi_size windows (overlap, blend_mode) per network call at inference
        "sw_batch_size": 8,
        "whole_slice": True,
        "skip_empty": True,
        "overlap": 0.25,
        "blend_mode": "gaussian",
        "threshold": 0.5,
        "num_workers": 0,
        "device": _DEVICE,
        "amp": True,
        "amp_precision": "auto",
        "use_amp": "$raagr2_monai.utils.use_amp(@device, @amp, @amp_precision)",
        # the networks' activations in channels-last memory order (null: where that is faster, CUDA and x86 CPUs);
        # the same result up to the last bits of floating point
        "channels_last": None,
        "network_def": (
            dict(network_def)
            if network_def is not None
            else {"_target_": variant.network, "in_channels": 4, "out_channels": 3}
        ),
        "network": f"${_NETWORK}",
        "variant": "$raagr2_monai.networks.variant_of(@network_def)",
    }


def _train_handlers(checkpoint_path: str) -> List[Dict[str, Any]]:
    """The trainer's handlers: validation every ``val_interval`` epochs, loss logging, the resumable checkpoint, and
    the final weights as ``model.pt`` when there is nothing to validate on (the best validated model is written by
    the validator's saver otherwise; MONAI Label trains on one or two studies with an empty validation split)."""
    return [
        {
            "_target_": "ValidationHandler",
            "validator": "@validate#evaluator",
            "epoch_level": True,
            "interval": "@val_interval",
        },
        {
            # the cosine schedule follows the epochs; the thesis's plateau schedule follows validation (below)
            "_target_": "LrScheduleHandler",
            "_disabled_": "$@lr_schedule != 'cosine'",
            "lr_scheduler": "@lr_scheduler",
            "print_lr": False,
            "epoch_level": True,
        },
        {
            "_target_": "StatsHandler",
            "tag_name": "train_loss",
            "output_transform": "$raagr2_monai.handlers.history.output_loss",
            "iteration_log": "$raagr2_monai.handlers.history.log_every(@log_every)",
        },
        # bfloat16 needs no loss scaling, and the scaler reads the GPU back every step: MONAI's only for float16
        {"_target_": "raagr2_monai.utils.GradScalerHandler", "device": "@device", "amp": "@use_amp",
         "precision": "@amp_precision"},
        {
            "_target_": "raagr2_monai.handlers.TrainingCheckpoint",
            "path": checkpoint_path,
            "save_dict": {"network": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler"},
            "resume": "@resume",
        },
        {
            "_target_": "CheckpointSaver",
            "_disabled_": "$len(@validate#dataset#data) > 0",
            "save_dir": "@ckpt_dir",
            "save_dict": {"model": "@network"},
            "save_final": True,
            "final_filename": "model.pt",
        },
    ]


def train_config(variant: Variant, network_def: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``configs/train.json``: SupervisedTrainer on 2D slices, SupervisedEvaluator on whole volumes.

    ``network_def`` replaces the variant's network definition (see :func:`_common`).
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
            "cache_dir": "$raagr2_monai.data.default_cache_dir(@bundle_root)",
            "compact": True,
            "num_samples": 4,
            "tumour_fraction": 0.5,
            "early_stop_patience": 10,
            "early_stop_min_delta": 0.0001,
            "resume": False,
            # cuDNN picks its fastest kernels (not bit-for-bit reproducible on a GPU); true: deterministic ones
            "deterministic": False,
            # the loss logged every so many iterations (reading it waits for the GPU)
            "log_every": "$20 if raagr2_monai.utils.is_cuda(@device) else 1",
            "experiment_name": "raagr2_monai",
            "run_name": "$@variant + '-train-' + time.strftime('%Y%m%d-%H%M%S')",
            "tracking_uri": "$monai.utils.path_to_sqlite_uri(@output_dir + '/mlruns.db')",
            "loss": {"_target_": "raagr2_monai.losses.RAAGR2Loss", "lambda_bce": 0.5},
            "optimizer": {
                "_target_": "torch.optim.Adam",
                "params": "$@network.parameters()",
                "lr": "@learning_rate",
                "fused": "$raagr2_monai.utils.is_cuda(@device)",
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
                "datalist": "$raagr2_monai.data.load_split(@dataset_dir, 'training', @datalist, @seed, @split, label_convention=@label_convention)",
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
                    "pin_memory": "$raagr2_monai.utils.is_cuda(@device)",
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
                    "train_handlers": "$raagr2_monai.bundle.handlers_for_rank(@train#handlers)",
                    "non_blocking": "$raagr2_monai.utils.is_cuda(@device)",
                    "optim_set_to_none": True,
                    **_AMP,
                },
            },
            "validate": {
                "datalist": "$raagr2_monai.data.load_split(@dataset_dir, 'validation', @datalist, @seed, @split, label_convention=@label_convention)[:@val_cases]",
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
                        "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                    }
                },
                "additional_metrics": {
                    f"val_dice_{region}": {
                        "_target_": "raagr2_monai.handlers.BraTSMeanDice",
                        "output_transform": f"$monai.handlers.from_engine(['pred_{region}', 'label_{region}'])",
                    }
                    for region in ("tc", "wt", "et")
                },
                # the trainer is set when the run starts: trainer -> validator -> early stop -> trainer is a cycle
                "early_stop": {
                    "_target_": "EarlyStopHandler",
                    "patience": "@early_stop_patience",
                    "min_delta": "@early_stop_min_delta",
                    "score_function": "$lambda engine: engine.state.metrics['val_mean_dice']",
                    "epoch_level": True,
                },
                "handlers": [
                    {
                        "_target_": "LrScheduleHandler",
                        "_disabled_": "$@lr_schedule != 'plateau'",
                        "lr_scheduler": "@lr_scheduler",
                        "print_lr": True,
                        "epoch_level": True,
                        "step_transform": "$lambda engine: engine.state.metrics['val_mean_dice']",
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
                    "val_handlers": "$raagr2_monai.bundle.handlers_for_rank(@validate#handlers)",
                    **_AMP,
                },
            },
            "run_settings": {
                "variant": "@variant",
                "dataset_dir": "@dataset_dir",
                "datalist": "@datalist",
                "split": "$None if @datalist else @split",
                # what ran, also when MONAI Label replaces the data and the epochs
                "epochs": "@train#trainer#max_epochs",
                "training_cases": "$len(@train#dataset#data)",
                "validation_cases": "$len(@validate#dataset#data)",
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
                "device": "$str(@device)",
                "amp": "@use_amp",
                "amp_precision": "@amp_precision",
                "channels_last": "@channels_last",
                "deterministic": "@deterministic",
            },
            # the settings' checks, run first: a list of their own, so that evaluate.json can add to them and
            # multi_gpu_train.json, which sets up the process group before them, can reuse them
            "checks": [
                *_CHECKS,
                "$raagr2_monai.bundle.checked(raagr2_monai.bundle.check_validation_settings, @val_interval, @val_cases)",
            ],
            "initialize": [
                "@checks",
                "$monai.utils.set_determinism(seed=@seed)",
                "$raagr2_monai.utils.configure_backends(@device, @deterministic)",
                "$raagr2_monai.bundle.record_run(@output_dir, @run_settings, @seed)",
            ],
            "run": [
                *_FILL_CACHES,
                "$@validate#early_stop.set_trainer(@train#trainer)",
                "$@train#trainer.run()",
                "$raagr2_monai.bundle.log_mlflow_artifacts(@tracking_uri, @experiment_name, @run_name, [@ckpt_path])",
            ],
            # `monai.bundle run training` runs `initialize`, then this, then `finalize`
            "training": "$@run",
        }
    )
    return config


def evaluate_config(variant: Variant) -> Dict[str, Any]:
    """``configs/evaluate.json``, merged after train.json: per-subject metrics of ``models/model.pt`` on a split.

    The evaluator runs the validation chain and inferer, then the inference write-back: every prediction is
    inverted onto its input's grid, written as a label map to ``<output_dir>/predictions/``, and scored from that
    very label map against the case's seg file, in the input's voxel spacing (``BraTSMetricsWriter``). With
    ``write_overlays`` (the default) each subject's overlay picture goes to ``<output_dir>/overlays/``
    (``OverlayWriter``); ``write_overlays=False`` leaves the handler out, e.g. for a study that never shows them.
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
        # the label maps are written from float32 images, as `run inferring` and `raagr2 segment` write them: the test
        # studies are cached as preprocessed, in float32 (exact), for the evaluations of every model of a study
        "compact": False,
        # the label maps of an evaluation computed with the kernels every run of it picks
        "deterministic": True,
        "validate#datalist": "$raagr2_monai.data.load_split(@dataset_dir, @eval_section, @datalist, @seed, @split, label_convention=@label_convention)",
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
        "run_settings#eval_section": "@eval_section",
        "run_settings#metric_convention": "@metric_convention",
        "run_settings#lesionwise": "@lesionwise",
        "run_settings#write_overlays": "@write_overlays",
        # weights that are not there stop the run before any data is read, with one line naming the setting; none is
        # asked for with the loader replaced (stand-in networks)
        "checks": [
            *_CHECKS,
            _weights_check("@validate#handlers"),
        ],
        "run": ["$@validate#evaluator.run()"],
        "evaluating": "$@run",
    }


def inference_config(variant: Variant, network_def: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``configs/inference.json``: a BraTS label map per case, in the input's own geometry.

    ``network_def`` replaces the variant's network definition (see :func:`_common`).
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
            "network": f"${_NETWORK} if @backend == 'torch' "
            "else raagr2_monai.bundle.checked(raagr2_monai.deploy.load_backend, @bundle_root, @backend, @threads, "
            "precision=@amp_precision)",
            "datalist_section": "testing",
            "data": "$raagr2_monai.data.inference_cases(@dataset_dir, @datalist, @datalist_section, @label_convention)",
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
            "postprocessing": writeback_spec("@preprocessing"),
            "handlers": [
                {
                    "_target_": "raagr2_monai.handlers.WeightsLoader",
                    "_disabled_": "$@backend != 'torch'",
                    "load_path": "@ckpt_path",
                    "network": "@network",
                },
                {"_target_": "StatsHandler", "iteration_log": False},
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
                "$raagr2_monai.bundle.checked(raagr2_monai.deploy.check_backend, @backend)",
                "$torch.set_num_threads(int(@threads)) if @threads and @backend == 'torch' else None",
                # the weights each WeightsLoader will load must exist, said before any study is read; none is asked
                # for with an exported backend or with the handlers replaced (stand-in networks)
                _weights_check("@handlers"),
            ],
            "run": ["$@evaluator.run()"],
            "inferring": "$@run",
        }
    )
    return config


def multi_gpu_config(variant: Variant) -> Dict[str, Any]:
    """``configs/multi_gpu_train.json``, merged after train.json and started by torchrun.

    NCCL on GPUs, gloo on CPUs (which is how the tests run it). Each rank trains on its share of the training
    volumes and validates on its share of the validation volumes; MONAI's metrics all-reduce, so every rank takes the
    same early-stopping and LR decisions, while only rank 0 logs and writes checkpoints. At the end every rank waits
    for the others before it leaves the process group (:func:`raagr2_monai.bundle.end_distributed`).
    """
    return {
        "local_rank": "$int(os.environ.get('LOCAL_RANK', 0))",
        # this process's GPU (the one of its LOCAL_RANK) when there are GPUs, else the CPU
        "device": "$raagr2_monai.utils.resolve_device(None, @local_rank)",
        "network": {
            "_target_": "torch.nn.parallel.DistributedDataParallel",
            "module": f"${_NETWORK}",
            "device_ids": "$raagr2_monai.utils.ddp_device_ids(@device)",
        },
        "train#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@train#dataset",
            "even_divisible": True,
            "shuffle": True,
        },
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "validate#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@validate#dataset",
            "even_divisible": False,
            "shuffle": False,
        },
        "validate#dataloader#sampler": "@validate#sampler",
        "initialize": [
            "$import torch.distributed as dist",
            # checked: a GPU the machine lacks ends every rank in one line, before the group waits for the others
            "$raagr2_monai.bundle.checked(raagr2_monai.bundle.start_distributed, @device, @local_rank)",
            "@checks",
            "$raagr2_monai.bundle.checked(raagr2_monai.bundle.check_rank_share, @validate#datalist, "
            "dist.get_world_size())",
            "$monai.utils.set_determinism(seed=@seed)",
            "$raagr2_monai.utils.configure_backends(@device, @deterministic)",
            "$raagr2_monai.bundle.record_run(@output_dir, @run_settings, @seed) if dist.get_rank() == 0 else None",
        ],
        "run": [*_FILL_CACHES, "$@validate#early_stop.set_trainer(@train#trainer)", "$@train#trainer.run()"],
        "finalize": ["$raagr2_monai.bundle.end_distributed()"],
        "training": "$@run",
    }


def prune_config(variant: Variant) -> Dict[str, Any]:
    """``configs/prune.json``, merged after train.json (run id ``pruning``): prune the trained ``models/model.pt``,
    fine-tune it with the masks kept in force, and write a self-contained bundle of the pruned model.

    The fine-tuning run is train.json's, with :class:`raagr2_monai.handlers.PruneHandler` first among the trainer's
    handlers (it prunes at ``STARTED``), ``ckpt_dir`` inside the new bundle so that the best fine-tuned model lands
    there, and its logs, ``last.pt`` and copies of the configs in ``<output_dir>/runs/prune``. With
    ``finetune_epochs`` 0 the model is pruned (BatchNorm optionally recalibrated), validated once and saved.
    ``from_scratch`` prunes the untrained network (SNIP at initialisation, Lee et al. 2019) and then trains it for
    ``finetune_epochs`` at train.json's learning rate.
    """
    train_lr = train_config(variant)["learning_rate"]
    return {
        "method": "magnitude",
        "ratio": 0.2,
        "scope": "global",
        "finetune_epochs": 20,
        "learning_rate": f"$({train_lr} if @from_scratch else 0.0001)",
        "from_scratch": False,
        "snip_batches": 4,
        # SNIP scores on batches padded with background to a BraTS slice (240 x 240): on small crops the deepest dilated
        # taps would only see padding, score 0 and be removed first (raagr2_monai.pruning.padded_batches)
        "snip_size": [240, 240],
        "bn_recalibration_batches": 0,
        # DepGraph keeps each pruned layer's channel count a multiple of this (null: any count); 8 suits CPU runtimes,
        # whose kernels and in-place concatenations work on blocks of 8 (AVX2) or 16 (AVX-512) channels
        "round_to": None,
        # knowledge distillation while fine-tuning: a trained bundle (e.g. the baseline's) whose predictions the
        # pruned network also learns from, with this share of the loss; null: the plain loss
        "teacher_bundle": None,
        "distill_weight": 0.5,
        "teacher": (
            "$None if @teacher_bundle is None else "
            "raagr2_monai.bundle.load_bundle_network(@teacher_bundle, require_weights=True).to(@device)"
        ),
        "overwrite": False,
        "source_ckpt": "$@bundle_root + '/models/model.pt'",
        "output_dir": "$@bundle_root + '/pruned/' + @method + '-' + str(round(@ratio * 100))",
        "ckpt_dir": "$@output_dir + '/models'",
        "run_dir": "$@output_dir + '/runs/prune'",
        "tracking_uri": "$monai.utils.path_to_sqlite_uri(@run_dir + '/mlruns.db')",
        "run_name": "$@variant + '-prune-' + @method + '-' + time.strftime('%Y%m%d-%H%M%S')",
        "prune_handler": {
            "_target_": "raagr2_monai.handlers.PruneHandler",
            "method": "@method",
            "ratio": "@ratio",
            "scope": "@scope",
            "loss_function": "@loss",
            "roi_size": "@roi_size",
            "snip_batches": "@snip_batches",
            "snip_size": "@snip_size",
            "bn_recalibration_batches": "@bn_recalibration_batches",
            "round_to": "@round_to",
        },
        "train#handlers": ["@prune_handler", *_train_handlers("$@run_dir + '/last.pt'")],
        "train#trainer#loss_function": (
            "$@loss if @teacher is None else raagr2_monai.losses.DistillationLoss(@loss, @teacher, @network, "
            "@distill_weight)"
        ),
        # a trainer needs at least one epoch; with finetune_epochs 0 it is built (its loader feeds SNIP) but not run
        "train#trainer#max_epochs": "$max(1, @finetune_epochs)",
        "run_settings#epochs": "@finetune_epochs",
        "run_settings#method": "@method",
        "run_settings#ratio": "@ratio",
        "run_settings#scope": "@scope",
        "run_settings#snip_size": "$@snip_size if @method == 'snip' else None",
        "run_settings#round_to": "@round_to",
        "run_settings#from_scratch": "@from_scratch",
        "run_settings#teacher_bundle": "@teacher_bundle",
        "run_settings#distill_weight": "$None if @teacher_bundle is None else @distill_weight",
        "run_settings#source_ckpt": "$None if @from_scratch else @source_ckpt",
        "run_settings#output_dir": "@output_dir",
        "initialize": [
            (
                "$raagr2_monai.bundle.checked(raagr2_monai.bundle.check_prune_settings, "
                "@method, @ratio, @scope, @finetune_epochs, @from_scratch, @round_to)"
            ),
            # without trained weights there is nothing to prune: say so before anything is read or written
            (
                "$None if @from_scratch else "
                "raagr2_monai.bundle.checked(raagr2_monai.networks.check_weights, @source_ckpt, 'source_ckpt')"
            ),
            "@checks",
            "$raagr2_monai.bundle.prepare_output_dir(@output_dir, @overwrite)",
            "$monai.utils.set_determinism(seed=@seed)",
            "$raagr2_monai.utils.configure_backends(@device, @deterministic)",
            "$raagr2_monai.bundle.record_run(@run_dir, @run_settings, @seed)",
        ],
        "run": [
            (
                "$None if @from_scratch else "
                "raagr2_monai.bundle.load_weights(@network, @source_ckpt, setting='source_ckpt')"
            ),
            *_FILL_CACHES,
            "$@validate#early_stop.set_trainer(@train#trainer)",
            "$raagr2_monai.bundle.run_pruning(@train#trainer, @validate#evaluator, @prune_handler, @finetune_epochs)",
            (
                "$raagr2_monai.bundle.write_pruned_bundle(@output_dir, @network, @prune_handler.result, "
                "report=@prune_handler.report, best_ckpt=@ckpt_path, evaluator=@validate#evaluator, "
                "source_bundle=@bundle_root, settings=@run_settings)"
            ),
        ],
        "pruning": "$@run",
    }


#: The versions the bundles are made and tested with: the pins of the project's ``constraints.txt`` (a test checks
#: that the two agree). Stated here, not read from whatever happens to be installed when the bundles are generated.
REQUIRED_VERSIONS: Dict[str, str] = {
    "monai": "1.6.1",
    "torch": "2.13.0",
    "numpy": "2.4.6",
    "nibabel": "5.4.2",
    "pytorch-ignite": "0.5.5",
    "torch-pruning": "1.6.1",
    "mlflow": "3.17.2",
}


def metadata(variant: Variant) -> Dict[str, Any]:
    """``configs/metadata.json`` in the model zoo's schema (kept offline in ``raagr2_monai/bundle/schema.json``)."""
    import raagr2_monai

    spatial = ["16*n", "16*n"]
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: "first release: train, evaluate, inference and multi-GPU workflows"},
        "monai_version": REQUIRED_VERSIONS["monai"],
        "pytorch_version": REQUIRED_VERSIONS["torch"],
        "numpy_version": REQUIRED_VERSIONS["numpy"],
        "required_packages_version": {
            "raagr2_monai": raagr2_monai.__version__,
            **{name: REQUIRED_VERSIONS[name] for name in ("nibabel", "pytorch-ignite", "torch-pruning", "mlflow")},
        },
        "name": variant.title,
        "task": "Brain tumour sub-region segmentation (TC, WT, ET) from multi-modal MRI, slice by slice",
        "description": (
            f"{variant.title}: {variant.summary}. A 2D network applied to axial slices of a BraTS-style study "
            "(T1ce, T1, T2, FLAIR); its sigmoid outputs are the tumour core, whole tumour and enhancing tumour."
        ),
        "authors": "raagr2_monai developers",
        "copyright": "Copyright (c) raagr2_monai developers",
        "data_source": "BraTS 2018-2021 (https://www.synapse.org/brats) or the built-in synthetic BraTS-like set",
        "data_type": "nibabel",
        "image_classes": "4 channel data, T1ce, T1, T2, FLAIR, z-scored over brain voxels, 1x1x1 mm",
        "label_classes": "3 channel data: channel 0 tumour core (labels 1, 4), 1 whole tumour (1, 2, 4), 2 enhancing "
        "tumour (4)",
        "pred_classes": "the network: 3 sigmoid channels TC, WT, ET; what is written (and what channel_def of pred "
        "lists, as MONAI Label reads its labels there): a label map 0 background, 1 NCR, 2 ED, 4 ET, with ET inside TC "
        "inside WT",
        "intended_use": "Research on model compression; not for clinical or diagnostic use",
        "references": [
            "Rehman M.U. et al. RAAGR2-Net: A brain tumor segmentation network using parallel processing of "
            "multiple spatial frames. Computers in Biology and Medicine, 2023.",
            "Atiene J. Slim Models Creation using Pruning and Sharing Weights on RAAGR2-Net Models. MSc thesis, "
            "De Montfort University, Leicester, 2025.",
        ],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "MR",
                    "num_channels": 4,
                    "spatial_shape": spatial,
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {"0": "T1ce", "1": "T1", "2": "T2", "3": "FLAIR"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": 3,
                    "spatial_shape": spatial,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    # label values of the written map, not channel indices: MONAI Label names its labels from here
                    "channel_def": {"0": "background", "1": "NCR", "2": "ED", "4": "ET"},
                }
            },
        },
    }


LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def config_files(configs: Mapping[str, Dict[str, Any]]) -> Dict[str, str]:
    """``{"train": {...}, ...}`` -> ``{"configs/train.json": text, ...}``, plus the shared ``logging.conf``."""
    files = {f"configs/{name}.json": json.dumps(config, indent=4) + "\n" for name, config in configs.items()}
    files["configs/logging.conf"] = LOGGING_CONF
    return files


def bundle_configs(variant: Variant, network_def: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """Every config of ``variant``'s bundle by name; ``network_def`` as in :func:`_common`."""
    return {
        "metadata": metadata(variant),
        "train": train_config(variant, network_def),
        "evaluate": evaluate_config(variant),
        "inference": inference_config(variant, network_def),
        "multi_gpu_train": multi_gpu_config(variant),
        "prune": prune_config(variant),
    }


def bundle_files(variant: Variant) -> Dict[str, str]:
    """Relative path -> text of every generated config file of ``variant``'s bundle."""
    return config_files(bundle_configs(variant))
