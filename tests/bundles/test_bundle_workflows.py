"""Bundle workflows run for real, in the model zoo's style: train, resume, evaluate, infer, multi-GPU, MLflow."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from raagr2_monai.data import load_split
from raagr2_monai.networks import CheckpointMismatchError, get_network

from .conftest import BUNDLES, REPO, TINY

pytestmark = pytest.mark.slow


def workflow(bundle: str, configs, workflow_type, **override) -> ConfigWorkflow:
    """Build and initialise a bundle workflow; a typed one (train / infer) must have the model zoo's properties."""
    folder = BUNDLES / bundle / "configs"
    files = [str(folder / f"{c}.json") for c in ([configs] if isinstance(configs, str) else configs)]
    wf = ConfigWorkflow(
        config_file=files,
        meta_file=str(folder / "metadata.json"),
        logging_file=str(folder / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(BUNDLES / bundle),
        **override,
    )
    wf.initialize()
    if workflow_type:
        assert wf.check_properties() == []
    return wf


def root_cause(error: BaseException) -> BaseException:
    """MONAI's config parser wraps an expression's error: the original is at the end of the chain."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """One epoch of the depthwise bundle through ConfigWorkflow; returns its output folder."""
    out = tmp_path_factory.mktemp("train")
    wf = workflow(
        "depthwise", "train", "train", dataset_dir=tiny_dataset, output_dir=str(out), ckpt_dir=str(out / "models"),
        cache_dir=str(out / "cache"), **TINY,
    )
    wf.run()
    wf.finalize()
    return out


def test_training_writes_model_checkpoint_and_run_record(trained, tiny_dataset):
    state = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert set(state) == set(get_network("depthwise").state_dict())  # a plain state_dict, no wrapper
    last = torch.load(trained / "last.pt", weights_only=True)
    assert set(last) == {"network", "optimizer", "lr_scheduler", "trainer"}
    assert last["trainer"]["iteration"] == last["trainer"]["epoch_length"]  # one epoch
    record = json.loads((trained / "run.json").read_text())
    assert record["seed"] == 0
    assert record["settings"]["variant"] == "depthwise"
    assert record["settings"]["dataset_dir"] == tiny_dataset
    assert record["settings"]["cache_dir"] == str(trained / "cache") and record["settings"]["compact"] is True
    # the five training and two validation studies, each preprocessed once into the compact cache
    assert len(list((trained / "cache").glob("*.pt"))) == 7
    assert record["versions"]["torch"] == torch.__version__
    assert not [p for p in trained.rglob(".tmp-*")], "no temporary file left behind"


def test_training_is_seeded_and_reads_the_cache_it_wrote(trained, tiny_dataset, tmp_path):
    cache = trained / "cache"
    written = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.pt")}
    wf = workflow(
        "depthwise", "train", "train", dataset_dir=tiny_dataset, output_dir=str(tmp_path), ckpt_dir=str(tmp_path / "m"),
        cache_dir=str(cache), **TINY,
    )
    wf.run()
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.pt")} == written  # nothing rebuilt
    first = torch.load(trained / "last.pt", weights_only=True)["network"]
    second = torch.load(tmp_path / "last.pt", weights_only=True)["network"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_cosine_schedule_anneals_the_rate_to_zero_over_the_training(tiny_dataset, tmp_path):
    settings = dict(TINY, epochs=2)
    wf = workflow(
        "depthwise", "train", "train", dataset_dir=tiny_dataset, output_dir=str(tmp_path), ckpt_dir=str(tmp_path / "m"),
        lr_schedule="cosine", **settings,
    )
    wf.run()
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["lr_scheduler"]["T_max"] == 2  # CosineAnnealingLR over the run's epochs
    assert last["lr_scheduler"]["last_epoch"] == 2  # stepped once per epoch by the trainer, not by the validator
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert json.loads((tmp_path / "run.json").read_text())["settings"]["lr_schedule"] == "cosine"


def test_training_resumes_from_the_last_checkpoint(trained, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((trained / "last.pt").read_bytes())
    settings = dict(TINY, epochs=2)
    wf = workflow(
        "depthwise", "train", "train", dataset_dir=tiny_dataset, output_dir=str(out), ckpt_dir=str(out / "models"),
        resume=True, **settings,
    )
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2
    # one epoch was run, not two: the iteration counter continued from the checkpoint's
    epoch_length = trainer.state.epoch_length
    assert trainer.state.iteration == 2 * epoch_length
    assert torch.load(out / "last.pt", weights_only=True)["trainer"]["iteration"] == 2 * epoch_length


def test_resuming_a_finished_run_says_nothing_is_left(trained, tiny_dataset, tmp_path, capfd):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((trained / "last.pt").read_bytes())
    wf = workflow(
        "depthwise", "train", "train", dataset_dir=tiny_dataset, output_dir=str(out), ckpt_dir=str(out / "models"),
        resume=True, **dict(TINY, epochs=1),
    )
    wf.run()
    logged = "".join(capfd.readouterr())  # the bundle's logging.conf sends the log to the console
    assert f"{out / 'last.pt'} is at epoch 1, the last of this run: nothing is left to train" in logged
    assert wf.parser.get_parsed_content("train#trainer").state.epoch == 1


def test_missing_dataset_dir_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError) as err:
        workflow("baseline", "train", "train", dataset_dir=str(tmp_path / "nowhere"), output_dir=str(tmp_path)).run()
    cause = root_cause(err.value)
    assert isinstance(cause, FileNotFoundError)
    assert f"dataset_dir {tmp_path / 'nowhere'} does not exist" in str(cause)


def test_evaluation_writes_per_subject_and_summary_csv(trained, tiny_dataset, tmp_path):
    wf = workflow(
        "depthwise", ["train", "evaluate"], None, dataset_dir=tiny_dataset, output_dir=str(tmp_path),
        ckpt_dir=str(trained / "models"), **TINY,
    )
    wf.run()
    with open(tmp_path / "metrics_per_subject.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == [e["case"] for e in load_split(tiny_dataset, "testing")]
    columns = set(rows[0])
    for region in ("TC", "WT", "ET", "NCR", "ED"):
        assert {f"dice_{region}", f"hd95_{region}"} <= columns
    assert {"thesis_pooled_dice", "mean_iou"} <= columns
    assert 0.0 <= float(rows[0]["dice_WT"]) <= 1.0
    assert (tmp_path / "metrics_summary.csv").is_file()
    pictures = sorted(p.name for p in (tmp_path / "overlays").iterdir())
    assert pictures == sorted(f"{r['case']}.png" for r in rows)


def test_evaluation_with_an_uncertainty_writes_how_well_it_predicts_failure(trained, tiny_dataset, tmp_path):
    wf = workflow(
        "depthwise", ["train", "evaluate"], None, dataset_dir=tiny_dataset, output_dir=str(tmp_path),
        ckpt_dir=str(trained / "models"), uncertainty="tta", uncertainty_samples=2, failure_dice=0.9,
        write_overlays=False, **TINY,
    )
    wf.run()
    with open(tmp_path / "metrics_per_subject.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == [e["case"] for e in load_split(tiny_dataset, "testing")]
    assert list(rows[0])[-1] == "uncertainty" and all(float(r["uncertainty"]) >= 0.0 for r in rows)
    figures = json.loads((tmp_path / "failure_prediction.json").read_text())
    assert (figures["uncertainty"], figures["subjects"], figures["failure_dice"]) == ("tta", 2, 0.9)
    assert figures["reliability"]["voxels"] == 3 * 2 * 48 * 48 * 16  # every voxel of both test studies, each region
    assert (tmp_path / "reliability.png").is_file() and not (tmp_path / "overlays").exists()
    settings = json.loads((tmp_path / "run.json").read_text())["settings"]
    assert (settings["uncertainty"], settings["uncertainty_samples"], settings["failure_dice"]) == ("tta", 2, 0.9)


def _labels_of(case_dir: Path):
    return nib.load(str(next(case_dir.glob("*_t1ce.nii.gz"))))


def test_inference_writes_label_maps_in_the_input_geometry(trained, tiny_dataset, tmp_path):
    out = tmp_path / "pred"
    wf = workflow(
        "depthwise", "inference", "infer", dataset_dir=tiny_dataset, output_dir=str(out),
        ckpt_path=str(trained / "models" / "model.pt"), roi_size=[32, 32],
    )
    wf.run()
    cases = sorted(p.name for p in Path(tiny_dataset).iterdir() if p.is_dir())
    assert sorted(p.name for p in out.iterdir()) == [f"{c}_pred.nii.gz" for c in cases]
    for case in cases:
        source = _labels_of(Path(tiny_dataset) / case)
        written = nib.load(str(out / f"{case}_pred.nii.gz"))
        assert written.shape == source.shape
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 4}


def test_inference_on_a_four_channel_volume(trained, tiny_dataset, tmp_path):
    case = sorted(p for p in Path(tiny_dataset).iterdir() if p.is_dir())[0]
    images = [nib.load(str(case / f"{case.name}_{m}.nii.gz")) for m in ("t1ce", "t1", "t2", "flair")]
    folder = tmp_path / "datastore"
    folder.mkdir()
    stacked = np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in images], axis=-1)
    nib.save(nib.Nifti1Image(stacked, images[0].affine), str(folder / "patient7.nii.gz"))
    out = tmp_path / "pred"
    wf = workflow(
        "depthwise", "inference", "infer", dataset_dir=str(folder), output_dir=str(out),
        ckpt_path=str(trained / "models" / "model.pt"), roi_size=[32, 32],
    )
    wf.run()
    written = nib.load(str(out / "patient7_pred.nii.gz"))
    assert written.shape == images[0].shape


def test_checkpoint_of_another_variant_is_refused(trained, tiny_dataset, tmp_path):
    wf = workflow(
        "baseline", "inference", "infer", dataset_dir=tiny_dataset, output_dir=str(tmp_path),
        ckpt_path=str(trained / "models" / "model.pt"), roi_size=[32, 32],
    )
    with pytest.raises(RuntimeError) as err:
        wf.run()
    cause = root_cause(err.value)
    assert isinstance(cause, CheckpointMismatchError)
    assert "does not fit RAAGR2Net" in str(cause) and "it fits the 'depthwise' variant" in str(cause)
    assert not list(tmp_path.glob("*.nii.gz"))


def _bundle_cli(*args, env=None, cwd=REPO, timeout=600):
    env = dict(os.environ, **(env or {}))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_training_command_with_mlflow_tracking(tiny_dataset, tmp_path):
    import mlflow

    out = tmp_path / "train"
    result = _bundle_cli(
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", "bundles/paired/configs/train.json",
        "--dataset_dir", tiny_dataset, "--output_dir", str(out), "--ckpt_dir", str(out / "models"),
        "--roi_size", "[32,32]", "--epochs", "1", "--batch_size", "4", "--num_samples", "2",
        "--tracking", "mlflow",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "configs" / "train.json").is_file(), "the run keeps a copy of its config"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("raagr2_monai")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name.startswith("paired-train-")
    assert {"train_loss", "val_mean_dice", "val_dice_et"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert artifacts == {"model/model.pt"}
    # the run's settings are parameters, beside MONAI's max_epochs and epoch_length
    params = client.get_run(run.info.run_id).data.params
    assert (params["variant"], params["learning_rate"], params["epochs"], params["max_epochs"]) == (
        "paired", "0.001", "1", "1")
    assert params["batch_size"] == "4" and params["roi_size"] == "[32, 32]"


def test_two_processes_train_resume_and_evaluate_on_cpu(tiny_dataset, tmp_path):
    """torchrun with two gloo processes: train one epoch, resume to two (every rank restores the checkpoint), then
    evaluate with each rank scoring its share of the test subjects into one CSV; more processes than test subjects
    are refused."""
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    configs = "['bundles/encdec/configs/train.json','bundles/encdec/configs/multi_gpu_train.json']"
    common = [
        "--dataset_dir", tiny_dataset, "--output_dir", str(out), "--ckpt_dir", str(out / "models"),
        "--roi_size", "[32,32]", "--batch_size", "4", "--num_samples", "2",
    ]

    def run(run_id, config_file, *args):
        result = _bundle_cli(
            str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run", run_id,
            "--config_file", config_file, *common, *args, env={"OMP_NUM_THREADS": "1"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    run("training", configs, "--epochs", "1")
    state = torch.load(out / "models" / "model.pt", weights_only=True)
    assert set(state) == set(get_network("encdec").state_dict()), "rank 0 saves the unwrapped network"
    assert json.loads((out / "run.json").read_text())["settings"]["variant"] == "encdec"
    first = torch.load(out / "last.pt", weights_only=True)["trainer"]

    log = run("training", configs, "--epochs", "2", "--resume", "true")
    assert log.count("Resumed from") == 2, "both ranks restore the checkpoint"
    last = torch.load(out / "last.pt", weights_only=True)["trainer"]
    assert last["iteration"] == 2 * first["epoch_length"]  # two epochs, the first one not redone

    evaluate = configs[:-1] + ",'bundles/encdec/configs/evaluate.json']"
    run("evaluating", evaluate, "--output_dir", str(tmp_path / "eval"), "--uncertainty", "tta")
    with open(tmp_path / "eval" / "metrics_per_subject.csv") as f:
        cases = [row["case"] for row in csv.DictReader(f)]
    assert cases == [e["case"] for e in load_split(tiny_dataset, "testing")]  # every subject once, in order
    assert len(cases) == 2 and len(list((tmp_path / "eval" / "predictions").iterdir())) == 2
    # with an uncertainty, the failure prediction of both ranks' subjects: their scores and reliability sums gathered
    figures = json.loads((tmp_path / "eval" / "failure_prediction.json").read_text())
    assert figures["subjects"] == 2 and figures["reliability"]["voxels"] == 3 * 2 * 48 * 48 * 16

    # three processes for the two test subjects: each rank refuses in one line at initialize, before writing anything
    result = _bundle_cli(
        str(torchrun), "--standalone", "--nproc_per_node=3", "-m", "monai.bundle", "run", "evaluating",
        "--config_file", evaluate, *common, "--output_dir", str(tmp_path / "eval3"), env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0
    refusal = "error: 2 subject(s) to validate or evaluate for 3 processes: every process needs at least one"
    assert result.stderr.count(refusal) == 3 and "DistributedSampler" not in result.stderr
    assert not (tmp_path / "eval3").exists()


def test_each_workflow_initialises_once(tiny_dataset, tmp_path, monkeypatch):
    """``monai.bundle run`` calls ``initialize`` itself: the run ids must not run it again."""
    import raagr2_monai.bundle

    calls = []
    real = raagr2_monai.bundle.record_run
    monkeypatch.setattr(raagr2_monai.bundle, "record_run", lambda *a, **k: calls.append(a) or real(*a, **k))
    wf = ConfigWorkflow(
        config_file=str(BUNDLES / "depthwise" / "configs" / "train.json"), run_id="training", workflow_type=None,
        bundle_root=str(BUNDLES / "depthwise"), dataset_dir=tiny_dataset, output_dir=str(tmp_path),
        ckpt_dir=str(tmp_path / "models"), **TINY,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    assert len(calls) == 1


def test_missing_dataset_dir_on_the_command_line_ends_with_one_message(tmp_path):
    result = _bundle_cli(
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", "bundles/baseline/configs/train.json", "--dataset_dir", str(tmp_path / "nowhere"),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: dataset_dir {tmp_path / 'nowhere'} does not exist; pass a BraTS folder or leave it at the default "
        f"to use the built-in synthetic set ({tmp_path / 'default-synthetic'})."
    )


def test_a_misspelt_override_on_the_command_line_is_refused_with_the_closest_id(tmp_path):
    result = _bundle_cli(
        sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "bundles/depthwise/configs/train.json",
        "--epoch", "1", "--output_dir", str(tmp_path / "out"),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --epoch (did you mean --epochs?): not a setting of bundles/depthwise/configs/train.json; MONAI would "
        "add it as a new id and the run would ignore it."
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, unknown",
    [
        (["--epochs", "1", "--train#trainer#max_epochs", "1", "--device=cpu"], None),
        (["--tracking", "mlflow", "--experiment_name", "x"], None),  # MONAI's tracking settings are ids then
        (["--run_name", "x", "--learnig_rate", "1"], "--learnig_rate (did you mean --learning_rate?)"),
        (["--train#trainer#max_epoch", "1"], "--train#trainer#max_epoch (did you mean --train#trainer#max_epochs?)"),
    ],
)
def test_check_overrides_knows_the_ids_of_the_config_files(extra, unknown):
    from raagr2_monai.bundle import check_overrides

    configs = [str(REPO / "bundles" / "depthwise" / "configs" / f"{name}.json") for name in ("train", "prune")]
    argv = ["monai/bundle/__main__.py", "run", "training", "--config_file", str(configs), *extra]
    if unknown is None:
        check_overrides(argv)
    else:
        with pytest.raises(ValueError, match=re.escape(unknown)):
            check_overrides(argv)
    check_overrides(["raagr2", "train", "--epoch", "1"])  # not a monai.bundle command line: the CLI checks its own


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
@pytest.mark.parametrize(
    "workflow_id, configs",
    [("training", ["train"]), ("inferring", ["inference"]), ("training", ["train", "multi_gpu_train"])],
)
def test_a_gpu_this_machine_lacks_is_refused_in_one_line(tmp_path, workflow_id, configs):
    files = str([f"bundles/depthwise/configs/{name}.json" for name in configs])
    result = _bundle_cli(
        sys.executable, "-m", "monai.bundle", "run", workflow_id, "--config_file", files, "--device", "cuda",
        "--output_dir", str(tmp_path / "out"),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: device 'cuda': CUDA is not available on this machine; use 'cpu'."
    )
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint_stops_inference_before_any_study(tiny_dataset, tmp_path):
    """No weights: initialising the inference workflow fails naming the file, before any study is read; on the
    command line with that message alone."""
    missing = tmp_path / "models" / "model.pt"
    with pytest.raises(RuntimeError) as err:
        workflow("depthwise", "inference", "infer", dataset_dir=tiny_dataset, output_dir=str(tmp_path / "out"),
                 ckpt_path=str(missing))
    cause = root_cause(err.value)
    assert isinstance(cause, FileNotFoundError) and f"Checkpoint {missing} does not exist" in str(cause)
    result = _bundle_cli(
        sys.executable, "-m", "monai.bundle", "run", "inferring",
        "--config_file", "bundles/depthwise/configs/inference.json", "--dataset_dir", tiny_dataset,
        "--output_dir", str(tmp_path / "out"), "--ckpt_path", str(missing),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: Checkpoint {missing} does not exist: set ckpt_path to a trained checkpoint."
    )
    assert not (tmp_path / "out").exists()


class _SliceCounter(torch.nn.Module):
    """Predicts nothing and counts the axial slices it is given: how the preprocessing resampled the study."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.slices = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.slices += x.shape[0]
        return torch.zeros(x.shape[0], 3, *x.shape[2:]) + 0.0 * self.anchor


def test_a_transform_argument_is_overridden_by_its_config_id(tiny_dataset, tmp_path):
    """``--preprocessing#transforms#2#pixdim "[1,1,2]"`` (what ``monai.bundle run`` passes as an override) reaches the
    Spacingd of the inference chain: 2 mm slices halve the slices the network sees; the label map still comes back on
    the input's grid."""
    entry = load_split(tiny_dataset, "testing")[0]
    depth = nib.load(entry["image"][0]).shape[2]
    counts = {}
    for pixdim in ([1.0, 1.0, 1.0], [1.0, 1.0, 2.0]):
        network = _SliceCounter()
        wf = workflow(
            "depthwise", "inference", "infer", datalist=None, dataset_dir=tiny_dataset,
            output_dir=str(tmp_path / str(pixdim[2])), network_def=network, handlers=[], skip_empty=False,
            **{"preprocessing#transforms#2#pixdim": pixdim, "data": [entry]},
        )
        assert type(wf.parser.get_parsed_content("preprocessing").transforms[2]).__name__ == "SpacingKeepPathsd"
        wf.run()
        wf.finalize()
        counts[pixdim[2]] = network.slices
        written = nib.load(str(tmp_path / str(pixdim[2]) / f"{entry['case']}_pred.nii.gz"))
        assert written.shape == nib.load(entry["image"][0]).shape
    assert counts == {1.0: depth, 2.0: depth // 2}


def test_missing_checkpoint_stops_evaluation_before_any_subject(tiny_dataset, tmp_path):
    missing = tmp_path / "models" / "model.pt"
    result = _bundle_cli(
        sys.executable, "-m", "monai.bundle", "run", "evaluating",
        "--config_file", "['bundles/depthwise/configs/train.json','bundles/depthwise/configs/evaluate.json']",
        "--dataset_dir", tiny_dataset, "--output_dir", str(tmp_path / "out"), "--ckpt_path", str(missing),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: Checkpoint {missing} does not exist: set ckpt_path to a trained checkpoint."
    )
    assert not (tmp_path / "out").exists()
