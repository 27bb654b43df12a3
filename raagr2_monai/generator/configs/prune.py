"""``configs/prune.json``: prune a trained model, fine-tune it and write the pruned bundle, merged after train.json."""

from __future__ import annotations

from typing import Any, Dict

from raagr2_monai.networks import Variant

from .common import _FILL_CACHES, _check, _setup, _train_handlers
from .train import train_config

__all__ = ["prune_config"]


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
        "teacher": {"_target_": "raagr2_monai.bundle.load_teacher", "bundle_dir": "@teacher_bundle", "device": "@device"},
        "overwrite": False,
        # how this bundle's own network was pruned: null in a base bundle; a DepGraph-pruned bundle says depgraph and
        # can be pruned again by DepGraph (iterative pruning, the steps' histories composed into the new bundle's)
        "source_method": None,
        "source_ckpt": "$@bundle_root + '/models/model.pt'",
        "output_dir": {"_target_": "raagr2_monai.bundle.pruned_bundle_dir", "bundle_root": "@bundle_root",
                       "method": "@method", "ratio": "@ratio"},
        "ckpt_dir": "$@output_dir + '/models'",
        "run_dir": "$@output_dir + '/runs/prune'",
        "tracking_uri": {"_target_": "raagr2_monai.bundle.tracking_uri", "folder": "@run_dir"},
        "run_name": {"_target_": "raagr2_monai.bundle.run_name", "parts": ["@variant", "prune", "@method"]},
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
        "train#trainer#loss_function": {
            "_target_": "raagr2_monai.losses.distilled_loss",
            "loss": "@loss",
            "teacher": "@teacher",
            "student": "@network",
            "weight": "@distill_weight",
        },
        # a trainer needs at least one epoch; with finetune_epochs 0 it is built (its loader feeds SNIP) but not run
        "train#trainer#max_epochs": "$max(1, @finetune_epochs)",
        # recorded as far as they apply (snip_size for SNIP, distill_weight with a teacher, source_ckpt unless
        # from_scratch)
        "run_settings#_target_": "raagr2_monai.bundle.pruning_run_settings",
        "run_settings#settings#epochs": "@finetune_epochs",
        "run_settings#settings#method": "@method",
        "run_settings#settings#ratio": "@ratio",
        "run_settings#settings#scope": "@scope",
        "run_settings#settings#snip_size": "@snip_size",
        "run_settings#settings#round_to": "@round_to",
        "run_settings#settings#from_scratch": "@from_scratch",
        "run_settings#settings#teacher_bundle": "@teacher_bundle",
        "run_settings#settings#distill_weight": "@distill_weight",
        "run_settings#settings#source_ckpt": "@source_ckpt",
        "run_settings#settings#output_dir": "@output_dir",
        "initialize": [
            # and the trained weights to prune: without them there is nothing to prune, said before anything is
            # read or written
            _check(
                "raagr2_monai.bundle.check_prune_settings",
                method="@method",
                ratio="@ratio",
                scope="@scope",
                finetune_epochs="@finetune_epochs",
                from_scratch="@from_scratch",
                round_to="@round_to",
                source_method="@source_method",
                source_ckpt="@source_ckpt",
            ),
            "@checks",
            {"_target_": "raagr2_monai.bundle.prepare_output_dir", "output_dir": "@output_dir",
             "overwrite": "@overwrite"},
            *_setup("@run_dir"),
        ],
        "run": [
            *_FILL_CACHES,
            "$@validate#early_stop.set_trainer(@train#trainer)",
            {
                "_target_": "raagr2_monai.bundle.run_pruning",
                "trainer": "@train#trainer",
                "evaluator": "@validate#evaluator",
                "handler": "@prune_handler",
                "finetune_epochs": "@finetune_epochs",
                "source_ckpt": "@source_ckpt",
                "from_scratch": "@from_scratch",
            },
            (
                "$raagr2_monai.bundle.write_pruned_bundle(@output_dir, @network, @prune_handler.result, "
                "report=@prune_handler.report, best_ckpt=@ckpt_path, evaluator=@validate#evaluator, "
                "source_bundle=@bundle_root, settings=@run_settings)"
            ),
        ],
        "pruning": "$@run",
    }
