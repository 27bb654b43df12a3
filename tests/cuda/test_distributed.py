"""``torchrun`` (``python -m torch.distributed.run``) with ``multi_gpu_train.json`` on the test device: one process,
DistributedDataParallel over NCCL on CUDA (gloo on the CPU), one epoch, then ``--resume true`` to a second epoch from
``last.pt``. ``--device cuda`` is given as a user gives it: the process's GPU is still the one of its ``LOCAL_RANK``."""

import sys

import torch

from raagr2_monai.networks import get_network

from .conftest import TINY, VARIANT, assert_ran_on, copy_bundle, is_cuda, run, run_record


def test_torchrun_trains_and_resumes_at_the_next_epoch(device, tiny_dataset, tmp_path, workdir):
    bundle = copy_bundle(tmp_path / VARIANT)
    out = tmp_path / "ddp"
    configs = str([str(bundle / "configs" / "train.json"), str(bundle / "configs" / "multi_gpu_train.json")])

    def torchrun(*args):
        # NCCL_DEBUG=VERSION: NCCL prints its version once it sets up a communicator, which gloo never does
        return run(
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "monai.bundle",
            "run", "training", "--config_file", configs, "--dataset_dir", tiny_dataset, "--output_dir", out,
            "--ckpt_dir", out / "models", "--device", device, *TINY, *args, cwd=workdir, env={"NCCL_DEBUG": "VERSION"},
        )

    log = torchrun("--epochs", "1")
    assert ("NCCL version" in log) is is_cuda(device)
    first = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["trainer"]
    assert first["iteration"] == first["epoch_length"]
    state = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(state) == set(get_network(VARIANT).state_dict()), "the unwrapped network is saved, not DDP's"
    assert_ran_on(run_record(out), device)

    log = torchrun("--epochs", "2", "--resume", "true")
    assert log.count("Resumed from") == 1 and f"Resumed from {out / 'last.pt'} at epoch 1" in log
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["trainer"]
    assert last["iteration"] == 2 * first["epoch_length"], "the resumed run trained the second epoch only"
