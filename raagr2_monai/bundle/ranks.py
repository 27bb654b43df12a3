"""A bundle workflow across processes (``torchrun``): joining and leaving the process group, and which handlers a
rank attaches."""

from __future__ import annotations

import os
from typing import Any, Iterable, List, Optional, Sequence

from raagr2_monai.utils import DeviceLike, distributed_backend, resolve_device

__all__ = ["local_rank", "is_rank_zero", "handlers_for_rank", "check_rank_share", "start_distributed", "end_distributed"]


def local_rank() -> int:
    """This process's rank on its machine, as torchrun sets it (``LOCAL_RANK``; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_rank_zero() -> bool:
    """Whether this process writes a run's files: the only process, or rank 0 of a process group."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


# Handlers that only log or write files: in a multi-GPU run only rank 0 keeps them. TrainingCheckpoint (every rank
# loads it on resume) and BraTSMetricsWriter (every rank takes part in gathering the rows) stay on every rank and write
# on rank 0 themselves.
_RANK_ZERO_ONLY = ("StatsHandler", "CheckpointSaver", "MLFlowHandler")


def handlers_for_rank(handlers: Optional[Iterable[Any]]) -> List[Any]:
    """The handlers this process should attach: all on rank 0, and on other ranks all but logging/saving ones.

    Validation, early stopping and LR scheduling must run on every rank (their metrics are all-reduced, so every
    rank takes the same decision); logging and checkpoint writing happen once.
    """
    handlers = list(handlers or [])
    if is_rank_zero():
        return handlers
    return [h for h in handlers if type(h).__name__ not in _RANK_ZERO_ONLY]


def check_rank_share(entries: Sequence[Any], world_size: Optional[int] = None) -> None:
    """Refuse a multi-process run in which a process would have no subject to validate or evaluate.

    The validation and evaluation samplers do not repeat subjects (a repeat would count twice in the metrics), so
    every process needs one of its own. MONAI's ``DistributedSampler`` refuses such a split too, but only once the
    evaluator is built, under some ninety lines of config-parser traceback per rank; this check says it in one line
    at ``initialize``, with the way out.

    Args:
        entries: the datalist that the processes share.
        world_size: the number of processes; ``None``: the process group's (1 outside one).

    Raises:
        ValueError: fewer entries than processes.
    """
    if world_size is None:
        import torch.distributed as dist

        world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if len(entries) < world_size:
        raise ValueError(
            f"{len(entries)} subject(s) to validate or evaluate for {world_size} processes: every process needs at "
            "least one (start fewer with torchrun --nproc_per_node, or give more subjects)"
        )


def start_distributed(device: DeviceLike, local_rank: int = 0) -> None:
    """Join a torchrun run's process group for a process on ``device``: NCCL between GPUs, gloo between CPUs
    (:func:`raagr2_monai.utils.distributed_backend`). A GPU process also makes its GPU the current one, the GPU of
    its ``local_rank`` where ``device`` names none (``--device cuda``), so that the network, the batches, DDP and NCCL
    all use that GPU rather than GPU 0. Does nothing to a group already joined.
    """
    import torch
    import torch.distributed as dist

    dev = resolve_device(device, index=local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=distributed_backend(dev))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)


def end_distributed() -> None:
    """Leave a torchrun run's process group: wait until every rank is done, then destroy the group.

    Without the barrier, a rank that finishes first (it has no files to write) exits straight after its last
    collective. On CPU, a gloo worker thread may then still hold that collective's tensors and free them while the
    interpreter shuts down; the rank aborts ("terminate called without an active exception") and torchrun reports the
    whole run as failed although every file was written. Destroying the group joins gloo's worker threads while the
    interpreter is whole, unless a DistributedDataParallel wrapper still holds the group (training: its threads then
    live until exit); hence evaluation under torchrun scores with the plain network. Does nothing outside a process
    group.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
