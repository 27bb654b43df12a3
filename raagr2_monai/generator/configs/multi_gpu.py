"""``configs/multi_gpu_train.json``: distributed training, merged after train.json and started by torchrun."""

from __future__ import annotations

from typing import Any, Dict

from .common import _FILL_CACHES, _NETWORK, _check, _setup
from raagr2_monai.networks import Variant

__all__ = ["multi_gpu_config"]


def multi_gpu_config(variant: Variant) -> Dict[str, Any]:
    """``configs/multi_gpu_train.json``, merged after train.json and started by torchrun.

    NCCL on GPUs, gloo on CPUs (which is how the tests run it). Each rank trains on its share of the training
    volumes and validates on its share of the validation volumes; MONAI's metrics all-reduce, so every rank takes the
    same early-stopping and LR decisions, while only rank 0 logs and writes checkpoints. At the end every rank waits
    for the others before it leaves the process group (:func:`raagr2_monai.bundle.end_distributed`).
    """
    return {
        "local_rank": {"_target_": "raagr2_monai.bundle.local_rank"},
        # this process's GPU (the one of its LOCAL_RANK) when there are GPUs, else the CPU
        "device": {"_target_": "raagr2_monai.utils.resolve_device", "index": "@local_rank"},
        "network": {
            "_target_": "torch.nn.parallel.DistributedDataParallel",
            "module": dict(_NETWORK),
            "device_ids": {"_target_": "raagr2_monai.utils.ddp_device_ids", "device": "@device"},
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
            # checked: a GPU the machine lacks ends every rank in one line, before the group waits for the others
            _check("raagr2_monai.bundle.start_distributed", device="@device", local_rank="@local_rank"),
            "@checks",
            _check("raagr2_monai.bundle.check_rank_share", entries="@validate#datalist"),
            # run.json on rank 0 only
            *_setup("@output_dir"),
        ],
        "run": [*_FILL_CACHES, "$@validate#early_stop.set_trainer(@train#trainer)", "$@train#trainer.run()"],
        "finalize": [{"_target_": "raagr2_monai.bundle.end_distributed"}],
        "training": "$@run",
    }
