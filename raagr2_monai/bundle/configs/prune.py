"""``configs/prune.json``: prune a trained model, fine-tune it and write the pruned bundle, merged after train.json."""

from __future__ import annotations

from typing import Any, Dict

from .common import _FILL_CACHES, _train_handlers
from .train import train_config
from .variants import Variant

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
        "teacher": (
            "$None if @teacher_bundle is None else "
            "raagr2_monai.bundle.load_bundle_network(@teacher_bundle, require_weights=True).to(@device)"
        ),
        "overwrite": False,
        # how this bundle's own network was pruned: null in a base bundle; a DepGraph-pruned bundle says depgraph and
        # can be pruned again by DepGraph (iterative pruning, the steps' histories composed into the new bundle's)
        "source_method": None,
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
                "@method, @ratio, @scope, @finetune_epochs, @from_scratch, @round_to, @source_method)"
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
