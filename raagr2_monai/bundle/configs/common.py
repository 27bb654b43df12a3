"""Config fragments that several workflows share: the checks, device, precision, network and inferer ids, the ids
every workflow of a bundle starts from (:func:`_common`), and the trainer's handlers (training and pruning)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from raagr2_monai.data.chains import slice_inferer_spec

from .variants import Variant

_IMPORTS = ["$import os", "$import time", "$import torch", "$import monai", "$import raagr2_monai"]

# first steps of every workflow: bad settings and a missing dataset_dir or datalist are reported before anything is
# built
_CHECKS = [
    "$raagr2_monai.bundle.checked(raagr2_monai.utils.resolve_device, @device)",
    # a misspelt override on the monai.bundle command line would otherwise be a new id nothing reads
    "$raagr2_monai.bundle.checked(raagr2_monai.bundle.check_overrides)",
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
        # after the scaler handler, which may replace the trainer's scaler; off at weight 0
        {"_target_": "raagr2_monai.handlers.GroupSparsityHandler", "weight": "@group_sparsity",
         "roi_size": "@roi_size"},
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
