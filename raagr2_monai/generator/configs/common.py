"""Config fragments that several workflows share: the checks, device, precision, network and inferer ids, the ids
every workflow of a bundle starts from (:func:`_common`), and the trainer's handlers (training and pruning)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from raagr2_monai.data.chains import slice_inferer_spec
from raagr2_monai.networks import Variant

# the configs' remaining expressions name the package; MONAI's parser knows torch and monai already
_IMPORTS = ["$import raagr2_monai"]


def _check(check: str, **args: Any) -> Dict[str, Any]:
    """A step of ``initialize`` running ``check`` (a dotted path) with ``args`` through ``raagr2_monai.bundle.checked``:
    on the ``monai.bundle`` command line a failed check ends the run in one line."""
    return {"_target_": "raagr2_monai.bundle.checked", "check": check, **args}


# first steps of every workflow: bad settings and a missing dataset_dir or datalist are reported before anything is
# built
_CHECKS = [
    _check("raagr2_monai.utils.resolve_device", device="@device"),
    # a misspelt override on the monai.bundle command line would otherwise be a new id nothing reads
    _check("raagr2_monai.bundle.check_overrides"),
    _check("raagr2_monai.data.check_roi_size", roi_size="@roi_size"),
    _check("raagr2_monai.data.check_data_source", dataset_dir="@dataset_dir", datalist="@datalist"),
    _check("raagr2_monai.networks.check_uncertainty", mode="@uncertainty", samples="@uncertainty_samples"),
]

# the precision of every engine, and of `raagr2 segment` (raagr2_monai.utils.autocast): on CUDA bfloat16 autocast
# where the GPU has it (compute capability 8.0 or later), else float16 (amp_precision "auto"; or bf16, fp16, fp32)
_AMP = {"amp": "@use_amp", "amp_kwargs": "@amp_kwargs"}
_NETWORK = {
    "_target_": "raagr2_monai.utils.prepare_network",
    "network": "@network_def",
    "device": "@device",
    "channels_last": "@channels_last",
}


def _fill_cache(dataset: str) -> Dict[str, Any]:
    """A step of ``run``: the studies of ``<dataset>#dataset`` preprocessed into the on-disk cache, once, before the
    first epoch (every later run reuses them)."""
    return {"_target_": "raagr2_monai.data.fill_cache", "dataset": f"@{dataset}#dataset",
            "num_workers": "@num_workers", "name": dataset}


_FILL_CACHES = [_fill_cache("train"), _fill_cache("validate")]
# validation, evaluation and inference alike: whole slices as the batch, or roi_size windows (whole_slice false);
# skip_empty: slices and windows without a brain voxel (all zeros after preprocessing) get the network's output for
# zeros, computed once, instead of a network run each
_INFERER = {
    **slice_inferer_spec(),
    "_target_": "raagr2_monai.deploy.BrainSliceInferer",
    "skip_empty": "@skip_empty",
    "whole_slice": "@whole_slice",
    "uncertainty": "@uncertainty",
    "samples": "@uncertainty_samples",
}


def _weights_check(handlers: str) -> Dict[str, Any]:
    """A check (for ``initialize``) that the weights each ``WeightsLoader`` among ``handlers`` (a config reference)
    will load exist; none is asked for where the loader is replaced (stand-in networks, exported backends)."""
    return _check("raagr2_monai.bundle.check_loader_weights", handlers=handlers)


def _for_rank(handlers: str) -> str:
    """The handlers of ``handlers`` (a reference) this process attaches: all on rank 0, no logging or saving ones on
    the other ranks of a multi-GPU run. An expression, not a component: MONAI's property check wants the engines'
    handlers as a reference or an expression."""
    return f"$raagr2_monai.bundle.handlers_for_rank({handlers})"


def _from_metrics(name: str) -> Dict[str, Any]:
    """A function of an engine reading its metric ``name`` (early stopping's score, the plateau schedule's step)."""
    return {"_target_": "monai.handlers.stopping_fn_from_metric", "metric_name": name}


def _setup(output_dir: str) -> List[Dict[str, Any]]:
    """The steps of ``initialize`` after the checks: seeds, backend settings, and the run's record in
    ``output_dir`` (a reference)."""
    return [
        {"_target_": "monai.utils.set_determinism", "seed": "@seed"},
        {"_target_": "raagr2_monai.utils.configure_backends", "device": "@device", "deterministic": "@deterministic"},
        {"_target_": "raagr2_monai.bundle.record_run", "output_dir": output_dir, "settings": "@run_settings",
         "seed": "@seed"},
    ]


def _split(section: str) -> Dict[str, Any]:
    """The studies of one ``section`` of the data (the datalist's, else the split by patient)."""
    return {
        "_target_": "raagr2_monai.data.load_split",
        "dataset_dir": "@dataset_dir",
        "section": section,
        "datalist": "@datalist",
        "seed": "@seed",
        "split": "@split",
        "label_convention": "@label_convention",
    }


def _common(variant: Variant, network_def: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Ids shared by every workflow of a bundle: where things are, the device, the network.

    ``network_def`` replaces the variant's class (a pruned bundle rebuilds its pruned network with it).
    """
    return {
        "imports": list(_IMPORTS),
        "bundle_root": {"_target_": "raagr2_monai.bundle.find_bundle_root"},
        "dataset_dir": {"_target_": "raagr2_monai.data.default_dataset_dir"},
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
        # several predictions per slice, averaged, for an uncertainty: "none", "tta" (in-plane flips, at most 4
        # samples) or "mc_dropout" (dropout on, BatchNorm on its running statistics)
        "uncertainty": "none",
        "uncertainty_samples": 4,
        "num_workers": 0,
        # CUDA when available, else the CPU; `--device cpu|cuda|cuda:1` sets it (MONAI Label too, as a plain string)
        "device": {"_target_": "raagr2_monai.utils.resolve_device"},
        # what only a GPU wants: pinned, non-blocking batch copies and fused Adam
        "cuda": {"_target_": "raagr2_monai.utils.is_cuda", "device": "@device"},
        "amp": True,
        "amp_precision": "auto",
        "use_amp": {"_target_": "raagr2_monai.utils.use_amp", "device": "@device", "amp": "@amp",
                    "precision": "@amp_precision"},
        "amp_kwargs": {"_target_": "raagr2_monai.utils.amp_kwargs", "device": "@device", "precision": "@amp_precision"},
        # the networks' activations in channels-last memory order (null: where that is faster, CUDA and x86 CPUs);
        # the same result up to the last bits of floating point
        "channels_last": None,
        "network_def": (
            dict(network_def)
            if network_def is not None
            else {"_target_": variant.network, "in_channels": 4, "out_channels": 3}
        ),
        "network": dict(_NETWORK),
        "variant": {"_target_": "raagr2_monai.networks.variant_of", "model": "@network_def"},
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
            "output_transform": {"_target_": "raagr2_monai.handlers.history.output_loss", "_mode_": "callable"},
            "iteration_log": {"_target_": "raagr2_monai.handlers.history.log_every", "every": "@log_every",
                              "device": "@device"},
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
