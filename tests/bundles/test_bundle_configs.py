"""The four bundles: generated from one source, differing only in the network, valid in MONAI's format checks."""

import json

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from raagr2_monai.networks import VARIANTS
from raagr2_monai.generator.generate import SCHEMA_PATH, expected_files
from raagr2_monai.handlers import BraTSMetricsWriter, OverlayWriter
from raagr2_monai.networks import get_network

from .conftest import BUNDLES, REPO, VARIANT_NAMES

CONFIGS = ["train", "evaluate", "inference", "multi_gpu_train", "metadata"]
DESCRIPTIVE_METADATA = {"name", "description"}


def load(variant: str, config: str) -> dict:
    return json.loads((BUNDLES / variant / "configs" / f"{config}.json").read_text())


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_bundle_files_match_the_generator(variant):
    license_text = (REPO / "LICENSE").read_text()
    for rel, text in expected_files(variant, license_text).items():
        path = BUNDLES / variant / rel
        assert path.is_file(), f"{path} missing: run `raagr2 bundles`"
        assert path.read_text() == text, f"{path} differs from the generator: edit raagr2_monai/bundle, then `raagr2 bundles`"


def _without_variant_parts(config: dict, name: str) -> dict:
    config = json.loads(json.dumps(config))
    if name == "metadata":
        for key in DESCRIPTIVE_METADATA:
            config.pop(key)
    else:
        for key in ("network_def", "network"):
            if isinstance(config.get(key), dict) and "_target_" in config[key] and key == "network_def":
                config[key].pop("_target_")
    return config


@pytest.mark.parametrize("config", CONFIGS)
def test_bundles_differ_only_in_network_and_description(config):
    reference = _without_variant_parts(load("baseline", config), config)
    for variant in VARIANT_NAMES[1:]:
        assert _without_variant_parts(load(variant, config), config) == reference, f"{variant}/{config}.json"
    if config in ("train", "inference"):
        targets = {load(v, config)["network_def"]["_target_"] for v in VARIANT_NAMES}
        assert targets == {v.network for v in VARIANTS.values()}


# The published counts: 8,911,301 / 5,046,221 / 5,051,061 / 6,606,701 parameters at 5 outputs; the 1x1 head has 33 parameters per
# output channel, so the bundles' 3 outputs have 66 fewer
DOCUMENTED_PARAMS = {"baseline": "8,911,235", "depthwise": "5,046,155", "paired": "5,050,995", "encdec": "6,606,635"}


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_documented_sizes_are_the_published_ones(variant):
    readme = (BUNDLES / variant / "docs" / "README.md").read_text()
    assert f"| parameters | {DOCUMENTED_PARAMS[variant]} (3 output channels) |" in readme
    if variant == "baseline":
        # The published count: 15,460,761,600 FLOPs at 5 outputs; 3 outputs drop 2 x 32 x 2 x 192 x 192 = 4,718,592 of the head
        assert "| FLOPs per 192x192 slice | 15.46 G " in readme


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_verify_metadata_offline(variant):
    verify_metadata(meta_file=str(BUNDLES / variant / "configs" / "metadata.json"), filepath=SCHEMA_PATH)


def test_verify_metadata_rejects_a_broken_file(tmp_path):
    meta = load("baseline", "metadata")
    del meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(Exception, match="channel_def"):
        verify_metadata(meta_file=str(bad), filepath=SCHEMA_PATH)


def test_metadata_describes_inputs_and_outputs_for_monai_label():
    meta = load("depthwise", "metadata")
    image, pred = meta["network_data_format"]["inputs"], meta["network_data_format"]["outputs"]
    assert list(image) == ["image"] and list(pred) == ["pred"]
    assert image["image"]["channel_def"] == {"0": "T1ce", "1": "T1", "2": "T2", "3": "FLAIR"}
    # MONAI Label names its labels from the output channel_def: the values of the written label map
    assert pred["pred"]["channel_def"] == {"0": "background", "1": "NCR", "2": "ED", "4": "ET"}
    assert pred["pred"]["num_channels"] == 3  # what the network emits, checked by verify_net_in_out
    assert len(image["image"]["spatial_shape"]) == 2  # MONAI Label reads the dimension from it


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_verify_net_in_out_and_ckpt_export(variant, tmp_path):
    configs = BUNDLES / variant / "configs"
    common = {
        "meta_file": str(configs / "metadata.json"),
        "config_file": str(configs / "inference.json"),
        "bundle_root": str(BUNDLES / variant),
    }
    verify_net_in_out(net_id="network_def", device="cpu", n=2, **common)
    ckpt = tmp_path / "model.pt"
    torch.manual_seed(0)
    net = get_network(variant).eval()
    torch.save(net.state_dict(), ckpt)
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(ckpt), **common)
    scripted = torch.jit.load(str(exported))
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)


def test_write_overlays_switches_the_overlay_writer_off(tmp_path):
    """``write_overlays`` false (a bool, or the text the command line passes) leaves the OverlayWriter out of the
    evaluator's handlers, so no ``overlays`` folder is made; the metrics writer stays."""
    evaluate = load("depthwise", "evaluate")
    assert evaluate["write_overlays"] is True and evaluate["run_settings#settings#write_overlays"] == "@write_overlays"
    for flag, expected in ((True, 1), (False, 0), ("false", 0), ("true", 1)):
        parser = ConfigParser(load("depthwise", "train"))
        parser.update(evaluate)
        # an empty test split and a stand-in network: only the wiring of the handlers is built, nothing is read
        parser.update({"write_overlays": flag, "validate#datalist": [], "output_dir": str(tmp_path),
                       "ckpt_path": str(tmp_path / "model.pt"), "network": "$torch.nn.Identity()"})
        handlers = parser.get_parsed_content("validate#handlers")
        writers = [h for h in handlers if isinstance(h, OverlayWriter)]
        assert len(writers) == expected, flag
        assert [h.output_dir for h in writers] == [tmp_path / "overlays"] * expected
        assert sum(isinstance(h, BraTSMetricsWriter) for h in handlers) == 1
    assert not (tmp_path / "overlays").exists()
    parser = ConfigParser(load("depthwise", "train"))
    parser.update(evaluate)
    parser.update({"write_overlays": "maybe", "validate#datalist": [], "output_dir": str(tmp_path),
                   "ckpt_path": str(tmp_path / "model.pt"), "network": "$torch.nn.Identity()"})
    with pytest.raises(RuntimeError) as raised:  # MONAI's wrapping of a failed expression
        parser.get_parsed_content("validate#handlers")
    assert str(raised.value.__cause__) == "write_overlays must be true or false; got 'maybe'."


def test_evaluation_under_torchrun_scores_with_the_plain_network():
    """Merged after multi_gpu_train.json (as ``torchrun ... run evaluating`` merges it), evaluate.json builds the
    network without the DistributedDataParallel wrapper: scoring syncs no gradients, and DDP would keep the process
    group (and gloo's worker threads) alive past ``end_distributed``. Training under torchrun keeps the wrapper."""
    from torch.nn.parallel import DistributedDataParallel

    def network(*configs):
        parser = ConfigParser(load("depthwise", "train"))
        for config in configs:
            parser.update(load("depthwise", config))
        parser.update({"device": "cpu"})  # not the rank's device: no process group here
        return parser.get_parsed_content("network", lazy=False)

    assert load("depthwise", "multi_gpu_train")["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    scored = network("multi_gpu_train", "evaluate")
    assert not isinstance(scored, DistributedDataParallel)
    assert type(scored) is type(get_network("depthwise"))
    assert load("depthwise", "evaluate")["network"] == load("depthwise", "train")["network"]


def _strings(node):
    """Every string of a parsed JSON config."""
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_every_dotted_path_in_the_configs_resolves_from_a_bare_import():
    """A config's ``$raagr2_monai.a.b(...)`` expression is evaluated after ``import raagr2_monai`` alone (the package
    loads its sub-packages on first use), so each such path must resolve by attribute access in a fresh interpreter;
    a plain string naming a class or function (``_target_``, a writer) is imported by ``locate`` and must import."""
    import re
    import subprocess
    import sys

    expressions, targets = set(), set()
    for config in BUNDLES.glob("*/configs/*.json"):
        for text in _strings(json.loads(config.read_text())):
            found = re.findall(r"raagr2_monai(?:\.[A-Za-z_]\w*)+", text)
            (expressions if text.startswith("$") else targets).update(found)
    assert any(".bundle." in p for p in expressions) and any(".deploy." in p for p in targets)
    script = (
        "import functools, pydoc, sys, raagr2_monai\n"
        "split = sys.argv.index('--')\n"
        "for path in sys.argv[1:split]:\n"
        "    functools.reduce(getattr, path.split('.')[1:], raagr2_monai)\n"
        "for path in sys.argv[split + 1:]:\n"
        "    assert pydoc.locate(path) is not None, path\n"
    )
    subprocess.run([sys.executable, "-c", script, *sorted(expressions), "--", *sorted(targets)], check=True, timeout=300)
