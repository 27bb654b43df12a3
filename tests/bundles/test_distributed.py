"""What the multi-GPU config adds to a workflow: every rank gets a subject to validate (``check_rank_share``) and the
ranks leave the process group together (``end_distributed``)."""

import json
import time
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from raagr2_monai.bundle import check_rank_share, end_distributed


def _leave(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    if rank == 0:
        time.sleep(1.0)  # rank 0 still writing its files
    arrived = time.time()
    end_distributed()
    times = {"arrived": arrived, "left": time.time(), "still_in_group": dist.is_initialized()}
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(times))


def test_the_first_rank_to_finish_waits_for_the_others(tmp_path):
    # a rank that left at once could exit while gloo still held its last collective's tensors (and abort)
    mp.spawn(_leave, args=(str(tmp_path),), nprocs=2, join=True)
    rank0, rank1 = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert rank1["left"] >= rank0["arrived"], "rank 1 left the group before rank 0 had finished"
    assert not rank0["still_in_group"] and not rank1["still_in_group"]


def test_outside_a_process_group_it_does_nothing():
    assert not dist.is_initialized()
    end_distributed()
    assert not dist.is_initialized()


def test_every_rank_needs_a_subject_to_validate():
    check_rank_share([{"case": "a"}, {"case": "b"}], 2)
    with pytest.raises(ValueError, match=r"1 subject\(s\) to validate or evaluate for 2 processes"):
        check_rank_share([{"case": "a"}], 2)
