"""Backends on exported bundles: label maps through SliceInferer agree with torch, and exported files that do not
belong to the bundle are refused with a message naming both files."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer, SlidingWindowInferer

from raagr2_monai.data.labels import regions_to_labelmap
from raagr2_monai.deploy import (
    BACKENDS,
    ExportMismatchError,
    record_path,
    OnnxRuntimeBackend,
    OpenVINOBackend,
    TorchBackend,
    cpu_bf16,
    cpu_name,
    export_bundle,
    export_network,
    exported_precision,
    load_backend,
)
from raagr2_monai.deploy import backends as backends_module
from raagr2_monai.networks import get_network
from raagr2_monai.pruning import prune, save_pruned
from raagr2_monai.utils import atomic_save

from .conftest import PARITY, SMALL, pruned_bundle, small_bundle

EXPORTS = {"onnxruntime": ("model.onnx", "model.onnx.json"), "openvino": ("model.xml", "model.bin", "model.xml.json")}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """An unpruned and a DepGraph-pruned bundle, both exported to ONNX and OpenVINO IR."""
    root = tmp_path_factory.mktemp("bundles")
    made = {"plain": small_bundle(root / "plain"), "pruned": pruned_bundle(root / "pruned")}
    for bundle in made.values():
        export_bundle(bundle, parity_shapes=PARITY)
    return made


@pytest.fixture
def copy_of(bundles, tmp_path):
    def copy(name):
        return shutil.copytree(bundles[name], tmp_path / name)

    return copy


def _volume(seed=0):
    # a (1, 4, H, W, D) volume as LoadImaged gives it: a MetaTensor with an affine
    generator = torch.Generator().manual_seed(seed)
    return MetaTensor(torch.randn(1, 4, 48, 64, 6, generator=generator), affine=torch.eye(4))


@pytest.mark.parametrize("name", ["plain", "pruned"])
def test_label_maps_agree_with_torch(bundles, name):
    image = _volume()
    inferer = SliceInferer(roi_size=(32, 32), spatial_dim=2, sw_batch_size=4, overlap=0.25)
    maps = {}
    for backend in BACKENDS:
        network = load_backend(bundles[name], backend, threads=1)
        probabilities = inferer(image, network)
        assert probabilities.shape == (1, 3, 48, 64, 6) and probabilities.dtype == torch.float32
        maps[backend] = regions_to_labelmap(probabilities[0])
    assert len(torch.unique(maps["torch"])) > 1  # the maps hold more than one label, so agreement says something
    for backend in ("onnxruntime", "openvino"):
        agreement = float((maps[backend] == maps["torch"]).float().mean())
        assert agreement >= 0.9999, (backend, agreement)


def test_sliding_window_batches_through_exported_backend(bundles):
    image = _volume(1)[..., 0]  # (1, 4, 48, 64)
    torch_net = load_backend(bundles["plain"], "torch", threads=1)
    onnx_net = load_backend(bundles["plain"], "onnxruntime", threads=1)
    calls = []
    original = onnx_net.run
    onnx_net.run = lambda array: calls.append(array.shape) or original(array)
    inferer = SlidingWindowInferer(roi_size=(32, 32), sw_batch_size=3, overlap=0.5)
    # on probabilities, what the label maps come from (the backends return logits)
    difference = (torch.sigmoid(inferer(image, onnx_net)) - torch.sigmoid(inferer(image, torch_net))).abs().max()
    assert float(difference) <= 1e-4
    assert calls[0] == (3, 4, 32, 32)  # sw_batch_size windows in one runtime call


def test_pruned_bundle_records_its_history(bundles):
    network = load_backend(bundles["pruned"], "openvino", threads=1)
    assert network.record.source.history_file == str(bundles["pruned"] / "models" / "pruning_history.json")
    assert network.record.source.history_sha256 is not None


@pytest.mark.parametrize("what,channels", [("input", {"in_channels": 8}), ("output", {"out_channels": 5})])
def test_wrong_channels_are_refused_naming_both_files(copy_of, tmp_path, what, channels):
    bundle = copy_of("plain")
    other = small_bundle(tmp_path / "other")
    config = other / "configs" / "inference.json"
    text = config.read_text()
    for key, value in channels.items():
        text = text.replace(f'"{key}": {4 if key == "in_channels" else 3}', f'"{key}": {value}')
    config.write_text(text)
    atomic_save(get_network("baseline", features=SMALL, **channels).state_dict(), other / "models" / "model.pt")
    export_bundle(other, formats="onnx", parity_shapes=((1, 16, 16),))
    for name in EXPORTS["onnxruntime"]:
        shutil.copy(other / "models" / name, bundle / "models" / name)
    with pytest.raises(ExportMismatchError) as raised:
        load_backend(bundle, "onnxruntime")
    exported, expected = (8, 4) if what == "input" else (5, 3)
    assert str(raised.value).startswith(
        f"{bundle / 'models' / 'model.onnx'} has {exported} {what} channels but the network of "
        f"{bundle / 'configs' / 'inference.json'} has {expected}"
    )


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_unpruned_export_in_pruned_bundle_is_refused(bundles, copy_of, backend):
    bundle = copy_of("pruned")
    for name in EXPORTS[backend]:
        shutil.copy(bundles["plain"] / "models" / name, bundle / "models" / name)
    with pytest.raises(ExportMismatchError) as raised:
        load_backend(bundle, backend)
    assert str(raised.value).startswith(
        f"{bundle / 'models' / EXPORTS[backend][0]} was exported from an unpruned network, but the bundle replays the "
        f"pruning history {bundle / 'models' / 'pruning_history.json'}"
    )


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_an_export_from_before_the_networks_returned_logits_is_refused(bundles, copy_of, backend):
    # its graph ends in the sigmoid, which the inferer would apply a second time
    bundle = copy_of("plain")
    main = bundle / "models" / EXPORTS[backend][0]
    record = record_path(main)
    document = json.loads(record.read_text())
    record.write_text(json.dumps({**document, "format": "raagr2_monai.export/1"}))
    with pytest.raises(ExportMismatchError) as raised:
        load_backend(bundle, backend)
    assert str(raised.value).startswith(
        f"{main} was exported before the networks returned logits (its record {record} is of format "
        "raagr2_monai.export/1)"
    )
    assert f"export the bundle again (raagr2 export {bundle} --formats" in str(raised.value)


def test_pruned_export_in_unpruned_bundle_is_refused(bundles, copy_of):
    bundle = copy_of("plain")
    for name in EXPORTS["onnxruntime"]:
        shutil.copy(bundles["pruned"] / "models" / name, bundle / "models" / name)
    with pytest.raises(ExportMismatchError, match="was exported from a DepGraph-pruned network") as raised:
        load_backend(bundle, "onnxruntime")
    assert str(bundle / "models" / "model.onnx") in str(raised.value)
    assert str(bundle / "configs" / "inference.json") in str(raised.value)


def test_other_pruning_history_is_refused(copy_of, tmp_path):
    bundle = copy_of("pruned")
    # another history with the same channels in and out: a small network pruned, exported with its history file
    network = get_network("baseline", features=SMALL)
    result = prune(network, "depgraph", 0.5, example_inputs=torch.zeros(1, 4, 32, 32))
    _, history = save_pruned(tmp_path / "other", network, result.history)
    export_network(network, tmp_path / "other", formats="onnx", history=history, parity_shapes=((1, 16, 16),))
    for name in EXPORTS["onnxruntime"]:
        shutil.copy(tmp_path / "other" / name, bundle / "models" / name)
    with pytest.raises(ExportMismatchError) as raised:
        load_backend(bundle, "onnxruntime")
    assert str(raised.value).startswith(
        f"{bundle / 'models' / 'model.onnx'} was exported with another pruning history ({history}) than the "
        f"bundle's {bundle / 'models' / 'pruning_history.json'}"
    )


def test_retrained_weights_are_refused(copy_of):
    bundle = copy_of("plain")
    torch.manual_seed(99)
    atomic_save(get_network("baseline", features=SMALL).state_dict(), bundle / "models" / "model.pt")
    with pytest.raises(ExportMismatchError) as raised:
        load_backend(bundle, "openvino")
    assert str(raised.value).startswith(
        f"{bundle / 'models' / 'model.xml'} was exported from other weights than {bundle / 'models' / 'model.pt'}"
    )
    assert isinstance(load_backend(bundle, "torch"), TorchBackend)


def test_replaced_or_missing_files_are_refused(copy_of):
    bundle = copy_of("plain")
    models = bundle / "models"
    with open(models / "model.bin", "ab") as f:
        f.write(b"\0")
    damaged = f"{models / 'model.bin'} is not the file exported with record {models / 'model.xml.json'}"
    with pytest.raises(ExportMismatchError, match=re.escape(damaged)):
        load_backend(bundle, "openvino")
    (models / "model.onnx.json").unlink()
    missing = f"{models / 'model.onnx'} has no export record {models / 'model.onnx.json'}"
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        OnnxRuntimeBackend(models / "model.onnx")
    (models / "model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="does not exist: export the bundle first"):
        load_backend(bundle, "onnxruntime")


def test_bad_settings_and_inputs_are_refused(bundles):
    with pytest.raises(ValueError, match="Unknown backend 'tensorrt'; valid backends: torch, onnxruntime, openvino"):
        load_backend(bundles["plain"], "tensorrt")
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        load_backend(bundles["plain"], "openvino", threads=0)
    with pytest.raises(ValueError, match="channels_last applies to the torch backend only"):
        load_backend(bundles["plain"], "onnxruntime", channels_last=True)
    network = load_backend(bundles["plain"], "onnxruntime", threads=1)
    assert (network.in_channels, network.out_channels, network.threads) == (4, 3, 1)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 4, H, W\); got \[1, 3, 32, 32\]"):
        network(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"multiples of 16; got \[1, 4, 32, 40\]"):
        network(torch.zeros(1, 4, 32, 40))


def test_torch_backend_channels_last_and_threads(bundles):
    threads = torch.get_num_threads()
    try:
        eager = load_backend(bundles["plain"], "torch", threads=2)
        assert torch.get_num_threads() == 2
        fast = load_backend(bundles["plain"], "torch", channels_last=True)
    finally:
        torch.set_num_threads(threads)
    x = torch.randn(2, 4, 32, 48)
    out = fast(x)
    assert out.is_contiguous() and float((torch.sigmoid(out) - torch.sigmoid(eager(x))).abs().max()) <= 1e-4


@pytest.mark.slow
def test_bundle_inference_with_each_backend_writes_the_same_label_map(bundles, tmp_path):
    """``--backend onnxruntime|openvino`` in the bundle's own inference workflow: same preprocessing and write-back,
    label maps equal to torch's on >= 99.99 % of voxels in fp32; with OpenVINO in bf16, where the CPU has it, other
    label maps (the precision is in force) on >= 95 % (fresh weights put many outputs near the threshold; a trained
    model's agree on 99.99 %); a backend without its exported file is refused first."""
    import nibabel as nib
    import numpy as np
    from monai.bundle import ConfigWorkflow

    from raagr2_monai.data import generate

    data = tmp_path / "data"
    generate(str(data), cases=1, seed=4, shape=(48, 40, 16))
    maps = {}
    runs = [(backend, "fp32") for backend in BACKENDS] + [("openvino", "bf16")] * cpu_bf16()
    for backend, precision in runs:
        out = tmp_path / f"{backend}-{precision}"
        wf = ConfigWorkflow(
            config_file=str(bundles["plain"] / "configs" / "inference.json"), workflow_type="infer",
            bundle_root=str(bundles["plain"]), dataset_dir=str(data), output_dir=str(out), backend=backend,
            threads=1, roi_size=[32, 32], sw_batch_size=4, amp_precision=precision,
        )
        wf.initialize()
        if backend != "torch":
            assert wf.parser.get_parsed_content("network").precision == precision
        wf.run()
        wf.finalize()
        (written,) = out.glob("*_pred.nii.gz")
        maps[backend, precision] = np.asarray(nib.load(str(written)).dataobj)
    reference = maps["torch", "fp32"]
    assert len(np.unique(reference)) > 1
    for (backend, precision), labels in maps.items():
        assert labels.shape == reference.shape
        agreement = float((labels == reference).mean())
        assert agreement >= 0.9999 if precision == "fp32" else 0.95 <= agreement < 1.0, (backend, precision)
    (bundles["plain"] / "models" / "model.onnx").rename(tmp_path / "model.onnx")
    try:
        wf = ConfigWorkflow(
            config_file=str(bundles["plain"] / "configs" / "inference.json"), workflow_type="infer",
            bundle_root=str(bundles["plain"]), dataset_dir=str(data), output_dir=str(tmp_path / "none"),
            backend="onnxruntime",
        )
        with pytest.raises(Exception) as info:  # refused at initialize, before any data is read
            wf.initialize()
            wf.run()
        assert "model.onnx" in str(info.value) or "model.onnx" in repr(info.value.__cause__)
        assert not (tmp_path / "none").exists() or not list((tmp_path / "none").glob("*.nii.gz"))
    finally:
        (tmp_path / "model.onnx").rename(bundles["plain"] / "models" / "model.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_skipping_empty_windows_writes_the_same_label_map(bundles, tmp_path, backend):
    """``raagr2 segment``'s pipeline with and without ``skip_empty``: the same label map (torch: every voxel;
    exported runtimes, whose last bits may depend on the batch: >= 99.99 %), with fewer windows through the network;
    ``whole_slice`` runs one window per slice with brain, plus the zeros once."""
    import nibabel as nib
    import numpy as np

    from raagr2_monai.data import generate, inference_cases
    from raagr2_monai.deploy import Segmenter

    generate(str(tmp_path / "data"), cases=1, seed=4, shape=(48, 40, 24))
    (entry,) = inference_cases(str(tmp_path / "data"), None)
    maps, windows = {}, {}
    for skip in (False, True):
        segmenter = Segmenter(bundles["plain"], tmp_path / str(skip), device="cpu", backend=backend, threads=1,
                              roi_size=[32, 32], sw_batch_size=4, skip_empty=skip, whole_slice=False,
                              precision="fp32")
        assert segmenter.computes_in == ("fp32 (torch on cpu)" if backend == "torch"
                                         else f"fp32 ({backend} on {cpu_name()})")
        maps[skip] = np.asarray(nib.load(segmenter(entry).output).dataobj)
        windows[skip] = segmenter.inferer.network_windows
    assert len(np.unique(maps[False])) > 1
    agreement = float((maps[True] == maps[False]).mean())
    assert agreement == 1.0 if backend == "torch" else agreement >= 0.9999, agreement
    # without skipping, the inferer does not count; 48 x 48 after padding: 2 x 2 windows on each of 24 slices
    assert windows[False] is None and 0 < windows[True] < 2 * 2 * 24
    image = np.stack([np.asarray(nib.load(path).dataobj) for path in entry["image"]])
    brain = int(image.any(axis=(0, 1, 2)).sum())
    assert 0 < brain < 24  # slices without brain exist, so skipping them is tested
    whole = Segmenter(bundles["plain"], tmp_path / "whole", device="cpu", backend=backend, threads=1,
                      roi_size=[32, 32], sw_batch_size=2, whole_slice="true")
    assert Path(whole(entry).output).is_file() and whole.inferer.network_windows == brain + 1


def test_segment_settings_are_checked_first(tmp_path):
    from raagr2_monai.deploy import SegmentSettings, segment_command

    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="sw_batch_size must be a whole number >= 1; got 0"):
        segment_command(nowhere, tmp_path, dataset_dir=nowhere, settings=SegmentSettings(sw_batch_size=0))
    with pytest.raises(ValueError, match="whole_slice must be true or false; got 'maybe'"):
        segment_command(nowhere, tmp_path, dataset_dir=nowhere, settings=SegmentSettings(whole_slice="maybe"))
    with pytest.raises(ValueError, match="onnxruntime backend computes in fp32 only; got precision 'bf16'"):
        segment_command(nowhere, tmp_path, dataset_dir=nowhere,
                        settings=SegmentSettings(backend="onnxruntime", precision="bf16"))
    # the settings the bundle takes become its config overrides, as the bundle spells them
    settings = SegmentSettings(roi_size="96", sw_batch_size=4, whole_slice="false", skip_empty=True, threads=2)
    assert settings.check() == {"roi_size": [96, 96], "sw_batch_size": 4, "whole_slice": False, "skip_empty": True}
    assert SegmentSettings().check() == {}
    with pytest.raises(ValueError, match="repeat must be a whole number >= 1; got 0"):
        SegmentSettings(repeat=0).check()


@pytest.mark.parametrize("has_bf16", [True, False])
def test_exported_precision_follows_the_cpu(monkeypatch, has_bf16):
    monkeypatch.setattr(backends_module, "cpu_bf16", lambda: has_bf16)
    assert exported_precision("openvino", "auto") == ("bf16" if has_bf16 else "fp32")
    assert exported_precision("openvino", None) == exported_precision("openvino", "AUTO")
    assert exported_precision("openvino", "fp32") == "fp32"
    assert exported_precision("onnxruntime", "auto") == "fp32"
    if has_bf16:
        assert exported_precision("openvino", "bf16") == "bf16"
    else:
        with pytest.raises(ValueError, match=rf"bf16 needs a CPU with a bfloat16 unit.*\({re.escape(cpu_name())}\)"):
            exported_precision("openvino", "bf16")
    with pytest.raises(ValueError, match="openvino backend computes in bf16 or fp32 on a CPU; got precision 'fp16'"):
        exported_precision("openvino", "fp16")
    with pytest.raises(ValueError, match="onnxruntime backend computes in fp32 only; got precision 'bf16'"):
        exported_precision("onnxruntime", "bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        exported_precision("openvino", "int4")


def test_precision_is_refused_before_the_export_is_read(copy_of, monkeypatch):
    bundle = copy_of("plain")
    (bundle / "models" / "model.xml").unlink()
    monkeypatch.setattr(backends_module, "cpu_bf16", lambda: False)
    with pytest.raises(ValueError, match="bf16 needs a CPU with a bfloat16 unit"):
        load_backend(bundle, "openvino", precision="bf16")
    with pytest.raises(FileNotFoundError, match="model.xml"):
        load_backend(bundle, "openvino", precision="fp32")


@pytest.mark.skipif(not cpu_bf16(), reason="this CPU has no bfloat16 unit")
def test_openvino_bf16_is_compiled_in_bf16_and_close_to_fp32(bundles):
    x = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    fp32 = load_backend(bundles["plain"], "openvino", threads=1, precision="fp32")
    bf16 = load_backend(bundles["plain"], "openvino", threads=1, precision="auto")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert str(bf16.compiled_for(x.shape).get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    difference = (torch.sigmoid(bf16(x)) - torch.sigmoid(fp32(x))).abs()
    # bf16 keeps 8 bits of mantissa: outputs move, most of them little (a fresh network's few large moves are why the
    # study measures agreement on trained ones)
    assert float(difference.max()) > 0 and float(difference.median()) < 0.05, difference.median()


def test_openvino_compiles_each_input_shape_and_keeps_the_last_few(bundles):
    network = load_backend(bundles["plain"], "openvino", threads=1, precision="fp32")
    eager = load_backend(bundles["plain"], "torch")
    shapes = [(1, 4, 32, 32), (2, 4, 32, 32), (1, 4, 48, 32), (1, 4, 32, 64), (3, 4, 16, 16)]
    generator = torch.Generator().manual_seed(5)
    for shape in shapes:
        x = torch.randn(*shape, generator=generator)
        assert float((torch.sigmoid(network(x)) - torch.sigmoid(eager(x))).abs().max()) < 1e-3
    assert network.shapes == shapes[-OpenVINOBackend.SHAPES_KEPT:]
    assert str(network.compiled_for(shapes[-1]).input(0).get_shape()) == "[3,4,16,16]"  # a fixed shape
    network(torch.zeros(2, 4, 32, 32))  # compiled again: it was dropped
    assert network.shapes[-1] == (2, 4, 32, 32) and len(network.shapes) == OpenVINOBackend.SHAPES_KEPT
