"""``torchrun`` (``python -m torch.distributed.run``) with ``multi_gpu_train.json`` on the test device: one process,
DistributedDataParallel over NCCL on CUDA (gloo on the CPU), one epoch, then ``--resume true`` to a second epoch from
``last.pt``, then the evaluation of that model in the same process group (the plain network, its rows gathered over
NCCL). ``--device cuda`` is given as a user gives it: the process's GPU is still the one of its ``LOCAL_RANK``."""

import csv
import sys

import torch

from raagr2_monai.networks import get_network

from .conftest import TINY, VARIANT, assert_ran_on, copy_bundle, is_cuda, run, run_record


def test_torchrun_trains_and_resumes_at_the_next_epoch(device, tiny_dataset, tmp_path, workdir):
    bundle = copy_bundle(tmp_path / VARIANT)
    out = tmp_path / "ddp"
    files = [str(bundle / "configs" / "train.json"), str(bundle / "configs" / "multi_gpu_train.json")]
    configs = str(files)

    def torchrun(*args, run_id="training", config_file=configs, output_dir=out):
        # NCCL_DEBUG=VERSION: NCCL prints its version once it sets up a communicator, which gloo never does
        return run(
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "monai.bundle",
            "run", run_id, "--config_file", config_file, "--dataset_dir", tiny_dataset, "--output_dir", output_dir,
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

    evaluate = str([*files, str(bundle / "configs" / "evaluate.json")])
    torchrun("--write_overlays", "false", run_id="evaluating", config_file=evaluate, output_dir=out / "eval")
    with open(out / "eval" / "metrics_per_subject.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(0.0 <= float(r["dice_WT"]) <= 1.0 for r in rows)  # the 2 test subjects of 9
    assert_ran_on(run_record(out / "eval"), device)
