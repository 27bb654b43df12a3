"""configs/prune.json end to end: ConfigWorkflow runs of the pruning workflow on a tiny synthetic set, and the pruned
bundles they write (rebuilt from disk, verified, exported, run for inference)."""

import json
import re
from pathlib import Path

import nibabel as nib
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_net_in_out

from raagr2_monai.networks import load_weights
from raagr2_monai.generator.generate import expected_files
from raagr2_monai.data.synthetic import generate
from raagr2_monai.networks import count_parameters, get_network
from raagr2_monai.pruning import MaskSet, from_sparse_state_dict, load_pruned

VARIANT = "depthwise"  # the smallest network keeps the runs short
MODALITIES = ("t1ce", "t1", "t2", "flair")



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(str(root / "data"), cases=6, seed=0, shape=(48, 48, 16))
    return root / "data"


@pytest.fixture()
def bundle(tmp_path):
    """A trained-looking bundle: the generated configs and a (random) models/model.pt."""
    root = tmp_path / VARIANT
    for rel, text in expected_files(VARIANT, "test licence\n").items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    torch.manual_seed(0)
    (root / "models").mkdir()
    torch.save(get_network(VARIANT).state_dict(), root / "models" / "model.pt")
    return root


def _prune(bundle, dataset, **override):
    settings = {
        "bundle_root": str(bundle),
        "dataset_dir": str(dataset),
        "roi_size": [32, 32],
        "batch_size": 2,
        "num_samples": 2,
        "finetune_epochs": 1,
        "train#trainer#epoch_length": 1,
        **override,
    }
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / "train.json"), str(bundle / "configs" / "prune.json")],
        logging_file=False,
        workflow_type=None,
        run_id="pruning",
        **settings,
    )
    workflow.initialize()
    workflow.run()
    return workflow


def _network_from_config(out: Path) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(out / "configs" / "inference.json"))
    parser["bundle_root"] = str(out)
    net = parser.get_parsed_content("network_def")
    return load_weights(net, str(out / "models" / "model.pt"))


def test_depgraph_bundle_rebuilds_verifies_exports_and_infers(bundle, dataset):
    workflow = _prune(bundle, dataset, method="depgraph", ratio=0.2, round_to=8)
    out = bundle / "pruned" / "depgraph-20"
    assert sorted(p.name for p in (out / "models").iterdir()) == ["model.pt", "pruning_history.json"]
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    report = meta["pruning"]
    assert (report["method"], report["requested_ratio"], report["settings"]["epochs"]) == ("depgraph", 0.2, 1)
    assert report["round_to"] == report["settings"]["round_to"] == 8
    assert report["params_before"] == count_parameters(get_network(VARIANT)) > report["params_after"]
    assert report["flops_before"] > report["flops_after"]
    assert report["achieved"] == pytest.approx(1 - report["params_after"] / report["params_before"])
    assert json.loads((out / "pruning.json").read_text()) == report
    assert (out / "LICENSE").read_text() == "test licence\n"
    assert (out / "docs" / "README.md").read_text().startswith("# Depthwise Shared RAAGR2-Net, pruned: depgraph 20 %")
    assert json.loads((out / "configs" / "inference.json").read_text())["network_def"]["_target_"] == (
        "raagr2_monai.pruning.build_pruned_network"
    )

    # the bundle on disk gives what the pruned, fine-tuned network gives
    pruned = workflow.parser.get_parsed_content("network").eval()
    rebuilt = _network_from_config(out).eval()
    assert count_parameters(rebuilt) == report["params_after"]
    assert all(m.out_channels % 8 == 0 for name, m in rebuilt.named_modules()
               if isinstance(m, torch.nn.Conv2d) and not name.startswith("head"))
    x = torch.rand(2, 4, 32, 32)
    assert torch.allclose(rebuilt(x), pruned(x), atol=1e-6)
    loaded = load_pruned(VARIANT, out / "models" / "model.pt", out / "models" / "pruning_history.json").eval()
    assert torch.allclose(loaded(x), pruned(x), atol=1e-6)

    files = dict(meta_file=str(out / "configs" / "metadata.json"), config_file=str(out / "configs" / "inference.json"))
    verify_net_in_out(net_id="network_def", n=2, **files, bundle_root=str(out))
    ckpt_export(
        net_id="network_def",
        filepath=str(out / "models" / "model.ts"),
        ckpt_file=str(out / "models" / "model.pt"),
        **files,
        bundle_root=str(out),
    )
    scripted = torch.jit.load(str(out / "models" / "model.ts"))
    assert torch.allclose(scripted(x), pruned(x), atol=1e-5)

    case = sorted(p for p in dataset.iterdir() if p.is_dir())[0]
    infer = ConfigWorkflow(
        config_file=str(out / "configs" / "inference.json"),
        logging_file=False,
        workflow_type=None,
        run_id="inferring",
        bundle_root=str(out),
        data=[{"case": case.name, "image": [str(case / f"{case.name}_{m}.nii.gz") for m in MODALITIES]}],
        roi_size=[32, 32],
    )
    infer.initialize()
    infer.run()
    seg = nib.load(str(out / "runs" / "inference" / f"{case.name}_pred.nii.gz"))
    assert seg.shape == (48, 48, 16)
    assert set(torch.unique(torch.as_tensor(seg.get_fdata())).tolist()) <= {0.0, 1.0, 2.0, 4.0}


def test_magnitude_bundle_keeps_its_masks_and_a_smaller_sparse_copy(bundle, dataset):
    _prune(bundle, dataset, method="magnitude", ratio=0.3)
    out = bundle / "pruned" / "magnitude-30"
    models = out / "models"
    assert sorted(p.name for p in models.iterdir()) == ["masks.pt", "model.pt", "model_sparse.pt"]
    masks = MaskSet.from_state_dict(torch.load(models / "masks.pt", weights_only=True))
    assert masks.sparsity() == pytest.approx(0.3, abs=1e-6)
    state = torch.load(models / "model.pt", weights_only=True)
    for name, mask in masks.masks.items():
        assert torch.count_nonzero(state[name][~mask]) == 0, name
    # the fine-tuning moved the kept weights away from the source's
    source = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert sum(not torch.equal(state[k], source[k] * m) for k, m in masks.masks.items()) == len(masks)
    packed = torch.load(models / "model_sparse.pt", weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in from_sparse_state_dict(packed).items())

    report = json.loads((out / "pruning.json").read_text())
    assert report["achieved"] == pytest.approx(0.3, abs=1e-6)
    assert report["model_bytes"] == (models / "model.pt").stat().st_size
    assert report["model_sparse_bytes"] == (models / "model_sparse.pt").stat().st_size < report["model_bytes"]
    train = json.loads((out / "configs" / "train.json").read_text())
    assert train["train"]["handlers"][0]["_target_"] == "raagr2_monai.handlers.MaskHandler"

    # saved and loaded through the bundle's own network_def, the masks are intact
    assert MaskSet.from_model(_network_from_config(out)).masks.keys() == masks.masks.keys()
    assert all(torch.equal(a, masks.masks[k]) for k, a in MaskSet.from_model(_network_from_config(out)).masks.items())


def test_snip_from_scratch_and_no_finetuning(bundle, dataset):
    _prune(bundle, dataset, method="snip", ratio=0.5, from_scratch=True, snip_batches=1)
    report = json.loads((bundle / "pruned" / "snip-50" / "pruning.json").read_text())
    assert report["settings"]["from_scratch"] is True and report["settings"]["source_ckpt"] is None
    assert report["settings"]["learning_rate"] == 0.001
    assert report["sparsity"] == pytest.approx(0.5, abs=1e-6)

    # finetune_epochs 0: pruned, BN recalibrated, validated once, saved; the conv weights are the source's, masked
    _prune(bundle, dataset, method="magnitude", ratio=0.2, finetune_epochs=0, bn_recalibration_batches=1)
    out = bundle / "pruned" / "magnitude-20"
    state = torch.load(out / "models" / "model.pt", weights_only=True)
    source = torch.load(bundle / "models" / "model.pt", weights_only=True)
    masks = torch.load(out / "models" / "masks.pt", weights_only=True)
    assert all(torch.equal(state[k], source[k] * m) for k, m in masks.items())
    bn = next(k for k in state if k.endswith("running_mean"))
    assert not torch.equal(state[bn], source[bn])
    report = json.loads((out / "pruning.json").read_text())
    assert report["settings"]["epochs"] == 0 and "val_mean_dice" in report


@pytest.mark.parametrize(
    "override, error, message",
    [
        ({"method": "random"}, ValueError, "Unknown pruning method 'random'; valid methods: magnitude, snip, depgraph"),
        ({"ratio": 1.5}, ValueError, "strictly between 0 and 1; got 1.5"),
        ({"ratio": "abc"}, ValueError, "strictly between 0 and 1; got 'abc'"),
        ({"finetune_epochs": -1}, ValueError, "finetune_epochs must be an integer >= 0"),
        ({"from_scratch": True, "finetune_epochs": 0}, ValueError, "from_scratch prunes the untrained network"),
        ({"method": "depgraph", "round_to": 0}, ValueError, "round_to must be null or an integer >= 1"),
        ({"round_to": 8}, ValueError, "round_to applies to DepGraph's channel counts; magnitude zeroes weights"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(bundle, dataset, override, error, message):
    # MONAI reports a failing config expression as a RuntimeError caused by the library's own error
    with pytest.raises(RuntimeError) as raised:
        _prune(bundle, dataset, **override)
    assert isinstance(raised.value.__cause__, error)
    assert re.search(message, str(raised.value.__cause__))
    assert not (bundle / "pruned").exists()


def test_an_earlier_pruned_model_is_not_overwritten_silently(bundle, dataset):
    models = bundle / "pruned" / "depgraph-10" / "models"
    models.mkdir(parents=True)
    (models / "model.pt").write_bytes(b"old")
    with pytest.raises(RuntimeError) as raised:
        _prune(bundle, dataset, method="depgraph", ratio=0.1)
    assert isinstance(raised.value.__cause__, FileExistsError)
    assert "already holds a pruned model (model.pt); pass --overwrite true" in str(raised.value.__cause__)
    assert (models / "model.pt").read_bytes() == b"old"


def test_a_depgraph_bundle_is_pruned_again_and_its_histories_compose(bundle, dataset):
    _prune(bundle, dataset, method="depgraph", ratio=0.2, round_to=8)
    first = bundle / "pruned" / "depgraph-20"
    _prune(first, dataset, ratio=0.25, round_to=8, finetune_epochs=0)  # the pruned bundle's method: depgraph
    second = first / "pruned" / "depgraph-25"
    meta = json.loads((second / "configs" / "metadata.json").read_text())
    report, earlier = meta["pruning"], meta["pruning"]["earlier_steps"]
    assert [step["requested_ratio"] for step in earlier] == [0.2] and report["requested_ratio"] == 0.25
    assert report["params_before"] == earlier[0]["params_after"] > report["params_after"]
    assert meta["name"] == "Depthwise Shared RAAGR2-Net, depgraph-pruned 20 %, then depgraph-pruned 25 %"
    history = json.loads((second / "models" / "pruning_history.json").read_text())
    first_history = json.loads((first / "models" / "pruning_history.json").read_text())["history"]
    assert history["history"][:len(first_history)] == first_history
    assert history["meta"]["step_ratios"] == [0.2, 0.25]
    readme = (second / "docs" / "README.md").read_text()
    assert f"Step 1: depgraph at ratio 0.2, {earlier[0]['params_before']:,} -> {earlier[0]['params_after']:,}" in readme
    assert "Step 2, this bundle's, is the one below." in readme

    # the composed history rebuilds the twice-pruned network from the base network, weights and outputs included
    rebuilt = _network_from_config(second).eval()
    assert count_parameters(rebuilt) == report["params_after"]
    source = _network_from_config(first).eval()
    x = torch.rand(1, 4, 32, 32)
    assert rebuilt(x).shape == source(x).shape == (1, 3, 32, 32)
    # a twice-pruned bundle is pruned a third time the same way
    assert json.loads((second / "configs" / "prune.json").read_text())["source_method"] == "depgraph"


def test_a_mask_pruned_bundle_is_not_pruned_again(bundle, dataset):
    _prune(bundle, dataset, method="magnitude", ratio=0.3, finetune_epochs=0)
    out = bundle / "pruned" / "magnitude-30"
    assert not (out / "configs" / "prune.json").exists()
    # and a DepGraph-pruned bundle refuses the mask methods
    _prune(bundle, dataset, method="depgraph", ratio=0.2, finetune_epochs=0)
    first = bundle / "pruned" / "depgraph-20"
    with pytest.raises(RuntimeError) as raised:
        _prune(first, dataset, method="magnitude")
    assert "pruned by depgraph; only a DepGraph-pruned network is pruned again" in str(raised.value.__cause__)
    assert not (first / "pruned").exists()


def test_a_pruned_bundle_takes_its_configs_from_the_source_bundle_on_disk(bundle, tmp_path):
    """The pruning run writes its bundle from the source's files, never from the generator: a setting edited in the
    source bundle carries over, only ``network_def`` (and, for masks, the handler and prune.json) differ."""
    from raagr2_monai.bundle import write_pruned_bundle
    from raagr2_monai.pruning import prune

    train_file = bundle / "configs" / "train.json"
    edited = json.loads(train_file.read_text())
    edited["learning_rate"] = 0.0042
    train_file.write_text(json.dumps(edited, indent=4))
    source = {name: json.loads((bundle / "configs" / f"{name}.json").read_text())
              for name in ("train", "inference", "evaluate", "multi_gpu_train", "prune")}

    torch.manual_seed(0)
    net = get_network(VARIANT)
    out = write_pruned_bundle(tmp_path / "dg", net, prune(net, "depgraph", 0.2), bundle)
    written = {name: json.loads((out / "configs" / f"{name}.json").read_text()) for name in source}
    assert written["train"]["learning_rate"] == 0.0042
    for name in ("train", "inference"):
        assert written[name]["network_def"]["_target_"] == "raagr2_monai.pruning.build_pruned_network"
        assert {k: v for k, v in written[name].items() if k != "network_def"} == \
            {k: v for k, v in source[name].items() if k != "network_def"}
    assert written["evaluate"] == source["evaluate"] and written["multi_gpu_train"] == source["multi_gpu_train"]
    assert written["prune"] == {**source["prune"], "method": "depgraph", "source_method": "depgraph"}
    assert (out / "configs" / "logging.conf").read_text() == (bundle / "configs" / "logging.conf").read_text()
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["name"] == "Depthwise Shared RAAGR2-Net, depgraph-pruned 20 %"

    torch.manual_seed(0)
    net = get_network(VARIANT)
    out = write_pruned_bundle(tmp_path / "mag", net, prune(net, "magnitude", 0.2), bundle)
    train = json.loads((out / "configs" / "train.json").read_text())
    assert train["network_def"] == source["train"]["network_def"]  # masks keep the variant's own class
    assert train["train"]["handlers"][0]["_target_"] == "raagr2_monai.handlers.MaskHandler"
    assert train["train"]["handlers"][1:] == source["train"]["train"]["handlers"]
    assert not (out / "configs" / "prune.json").exists()


def test_a_source_bundle_without_configs_is_named(bundle, tmp_path):
    from raagr2_monai.bundle import write_pruned_bundle
    from raagr2_monai.pruning import prune

    (bundle / "configs" / "evaluate.json").unlink()
    net = get_network(VARIANT)
    with pytest.raises(ValueError, match=r"evaluate\.json: cannot read the source bundle's config"):
        write_pruned_bundle(tmp_path / "dg", net, prune(net, "depgraph", 0.2), bundle)
    assert not (tmp_path / "dg").exists()  # nothing written before the source was read
