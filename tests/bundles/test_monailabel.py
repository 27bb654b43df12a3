"""The four bundles driven the way MONAI Label 0.8.5's ``monaibundle`` app drives them.

MONAI Label's ``BundleInferTask`` and ``BundleTrainTask`` (``monailabel/tasks/{infer,train}/bundle.py``) use a bundle
like this:

- inference: ``inference.json`` parsed with ``bundle_root`` set to the bundle's folder and ``device`` replaced by a
  plain string (``"cpu"``); the network from ``network_def`` with ``models/model.pt`` loaded (``checkpoint.get("model",
  checkpoint)``, not strict); the transforms from ``preprocessing`` then ``pre_transforms`` and ``postprocessing``
  then ``post_transforms`` (a ``Compose`` is taken apart, the later id wins), ``SaveImaged`` dropped, a top-level
  ``LoadImaged`` switched to ``image_only=False``, and MONAI Label's own ``Restored(keys=<first output>,
  ref_image=<first input>)`` appended; the inferer from ``inferer``; the data a dictionary holding ``image`` *and*
  ``image_path`` (the same path) besides the request; the network output stored under ``pred``. The label names
  shown by ``/info`` are the first output's ``channel_def`` (name -> int(key), "background" left out).
- training: ``monai.bundle.run("run", init_id=None, final_id=None, ...)`` on ``train.json`` with the overrides
  ``bundle_root``, ``train#trainer#max_epochs``, ``train#dataset#data``, ``device`` (a plain string),
  ``train#handlers`` (the config's list with a ``CheckpointLoader`` of ``models/model.pt`` put first) and
  ``validate#dataset#data``: the datastore's studies split 80/20, so one or two labelled studies leave the
  validation list empty. The weights must land in ``models/model.pt``, which the inference task reads.
- epistemic scoring (``--conf epistemic_model <bundle>``, ``monailabel/tasks/scoring/epistemic_v2.py``): a
  ``BundleInferTask(train_mode=True, skip_writer=True, dropout=<epistemic_dropout>, post_filter=[SaveImaged,
  Invertd])``, so ``network_def`` gets a ``dropout`` argument and the network runs in training mode, and its output
  is neither inverted nor written; ``EpistemicScoring`` runs it ``simulation_size`` times per unlabelled study (two
  studies at a time in threads sharing one network), stacks the outputs, and stores the mean over the voxels of
  ``sum over channels of -p ln p`` of their mean as ``epistemic_entropy``.

The tests below do the same on a small synthetic 4D study (one NIfTI holding T1ce, T1, T2, FLAIR on a grid that is
neither RAS nor 1 mm in z), once with plain MONAI and, where ``monailabel`` is installed (``make monailabel``), once
with MONAI Label's own classes. The weights give a known answer: the network's last 1x1 convolution is zeroed and its
bias set so that every voxel it sees is predicted as one BraTS label, so the label map must hold that label exactly on
the brain's in-plane bounding box (all slices; roi 32 exceeds the brain) and 0 elsewhere, on the input's grid. The
scoring tests use weights whose output depends on dropout instead (and restore the known-answer weights to check
``/infer`` after it).
"""

import json
import shutil
from pathlib import Path

import monai.bundle
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor, partition_dataset
from monai.transforms import Compose, LoadImaged, Resize, SaveImaged

from raagr2_monai.bundle.pruned import pruned_network_def
from raagr2_monai.data import make_case
from raagr2_monai.networks import get_network
from raagr2_monai.pruning import build_pruned_network, prune, save_pruned

from .conftest import BUNDLES, VARIANT_NAMES

pytestmark = pytest.mark.slow

PRUNED = "baseline-depgraph-50"  # a DepGraph-pruned baseline, as configs/prune.json writes it
#: The bundles served: the four variants and a pruned bundle, whose network_def rebuilds the pruned network.
SERVED = [*VARIANT_NAMES, PRUNED]
DEVICE = "cpu"  # what MONAI Label puts in the config: a string, not a torch.device
SHAPE = (40, 32, 16)  # synthesised; brain extents stay below 32 in-plane, so the roi 32 window only pads
SLICES = slice(4, 12)  # eight of its slices are kept: 15 after resampling to 1 mm, for a fast slice-by-slice pass
# x and y reversed (not RAS), 2 mm slices (Spacingd resamples z), an offset origin
AFFINE = np.array([[-1.0, 0.0, 0.0, 20.0], [0.0, -1.0, 0.0, 15.0], [0.0, 0.0, 2.0, -8.0], [0.0, 0.0, 0.0, 1.0]])
# head bias per variant -> the BraTS label every voxel gets: TC+WT -> 1 (NCR), WT only -> 2 (ED), all three -> 4 (ET)
HEAD_BIAS = {
    "baseline": ((10.0, 10.0, -10.0), 1),
    "depthwise": ((-10.0, 10.0, -10.0), 2),
    "paired": ((10.0, 10.0, 10.0), 4),
    "encdec": ((10.0, 10.0, -10.0), 1),
    PRUNED: ((10.0, 10.0, 10.0), 4),
}


def _save_nifti(array: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, AFFINE)
    img.set_qform(AFFINE, code=1)
    img.set_sform(AFFINE, code=1)
    nib.save(img, str(path))


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    """A MONAI Label datastore with one labelled 4D study: ``<root>/study.nii.gz``, ``<root>/labels/final/...``."""
    root = tmp_path_factory.mktemp("datastore")
    images, seg, _ = make_case(0, seed=5, shape=SHAPE)
    volume = np.stack([images[m] for m in ("t1ce", "t1", "t2", "flair")], axis=-1)[:, :, SLICES]
    _save_nifti(volume, root / "study.nii.gz")
    (root / "labels" / "final").mkdir(parents=True)
    _save_nifti(seg[:, :, SLICES], root / "labels" / "final" / "study.nii.gz")
    return root


def expected_labelmap(studies: Path, value: int) -> np.ndarray:
    """``value`` on the brain's in-plane bounding box over all slices, 0 elsewhere, on the input's voxel grid."""
    volume = np.asarray(nib.load(str(studies / "study.nii.gz")).dataobj)
    brain = (volume > 0).any(axis=(2, 3))
    xs, ys = np.nonzero(brain.any(axis=1))[0], np.nonzero(brain.any(axis=0))[0]
    assert xs.size <= 32 and ys.size <= 32  # the premise: roi 32 pads, never crops
    expected = np.zeros(volume.shape[:3], np.uint8)
    expected[xs.min() : xs.max() + 1, ys.min() : ys.max() + 1, :] = value
    return expected


def _zero_head(network: torch.nn.Module, bias) -> torch.nn.Module:
    heads = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 3]
    with torch.no_grad():
        heads[-1].weight.zero_()
        heads[-1].bias.copy_(torch.tensor(bias))
    return network


def _write_weights(variant: str, models: Path) -> None:
    """``models/model.pt`` whose every voxel gets the variant's label; for the pruned bundle, also its history."""
    if variant != PRUNED:
        torch.save(_zero_head(get_network(variant), HEAD_BIAS[variant][0]).state_dict(), models / "model.pt")
        return
    network = get_network("baseline")
    result = prune(network, "depgraph", 0.5, example_inputs=torch.zeros(1, 4, 32, 32))
    save_pruned(models, _zero_head(network, HEAD_BIAS[variant][0]), result.history, {"method": "depgraph"})


@pytest.fixture
def bundle(variant, studies, tmp_path) -> Path:
    """A copy of the bundle as MONAI Label holds it (``<app>/model/<name>``), with ``models/model.pt``.

    Edited only where a user would edit a copy for speed: roi 32, small batches. ``dataset_dir`` points at the
    datastore because MONAI Label does not override it, and the training ``initialize`` checks it (the default is
    the built-in synthetic set, which would be generated first: 24 volumes of 96x96x64).
    """
    root = tmp_path / "model" / variant
    source = BUNDLES / ("baseline" if variant == PRUNED else variant)
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("runs", "models", "pruned"))
    for name in ("inference.json", "train.json"):
        path = root / "configs" / name
        config = json.loads(path.read_text())
        config.update(roi_size=[32, 32], batch_size=8, num_samples=2, num_workers=0, dataset_dir=str(studies))
        if variant == PRUNED:
            config["network_def"] = pruned_network_def("baseline", "depgraph")  # as pruned bundles have it
        path.write_text(json.dumps(config, indent=4))
    (root / "models").mkdir()
    _write_weights(variant, root / "models")
    return root


def _first_io(root: Path) -> tuple:
    """What BundleInferTask reads from metadata.json: first input key, first output key and its channel_def."""
    metadata = json.loads((root / "configs" / "metadata.json").read_text())
    key_image, _ = next(iter(metadata["network_data_format"]["inputs"].items()))
    key_pred, pred = next(iter(metadata["network_data_format"]["outputs"].items()))
    return key_image, key_pred, pred.get("channel_def", {})


def _parsed_chain(parser: ConfigParser, ids) -> list:
    chain: list = []
    for k in ids:  # the later id wins, as in BundleInferTask
        if parser.get(k):
            c = parser.get_parsed_content(k, instantiate=True)
            chain = list(c.transforms) if isinstance(c, Compose) else list(c)
    return chain


def _restored(d: dict, key: str, ref_image: str) -> dict:
    """``monailabel.transform.post.Restored(keys=key, ref_image=ref_image)`` with its defaults (0.8.5), for an
    environment without monailabel: resize back to the loaded image's spatial shape if it differs, drop a single
    channel, and give the label the loaded image's original affine (what the writer then uses)."""
    meta = d[ref_image].meta if isinstance(d.get(ref_image), MetaTensor) else d.get(f"{ref_image}_meta_dict", {})
    result = d[key]
    current = tuple(result.shape[1:])
    spatial = tuple(meta.get("spatial_shape", current))[-len(current) :]
    if np.any(np.not_equal(current, spatial)):
        result = Resize(spatial_size=spatial, mode="nearest")(result)
    d[key] = result if result.ndim <= 3 else result[0] if result.shape[0] == 1 else result
    d.setdefault(f"{key}_meta_dict", {})["affine"] = meta.get("original_affine")
    return d


@pytest.mark.parametrize("variant", SERVED)
def test_info_names_labels_by_written_value(variant, bundle):
    key_image, key_pred, channel_def = _first_io(bundle)
    assert (key_image, key_pred) == ("image", "pred")  # MONAI Label feeds "image" and stores the output as "pred"
    labels = {v.lower(): int(k) for k, v in channel_def.items() if v.lower() != "background"}
    assert sorted(labels.values()) == [1, 2, 4]


def infer_as_bundle_infer_task(bundle: Path, study: Path, variant: str, device: str) -> dict:
    """One study through ``bundle`` as MONAI Label's ``BundleInferTask`` drives it (module docstring), with ``device``
    the plain string MONAI Label puts in the config; returns the data dictionary MONAI Label's writer receives. The
    network's output must be on ``device``."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(bundle), "device": device})
    key_image, key_pred, _ = _first_io(bundle)

    network = parser.get_parsed_content("network_def", instantiate=True).to(torch.device(device))
    checkpoint = torch.load(bundle / "models" / "model.pt", map_location=device, weights_only=True)
    state = checkpoint.get("model", checkpoint)
    assert set(state) == set(network.state_dict())
    network.load_state_dict(state, strict=False)
    network.eval()

    path = str(study)
    data = {"model": variant, "image": path, "image_path": path, "device": device, "result_extension": ".nii.gz"}
    pre = _parsed_chain(parser, ["preprocessing", "pre_transforms"])
    for t in pre:
        if isinstance(t, LoadImaged):
            t._loader.image_only = False
    for t in pre:
        data = t(data)

    inferer = parser.get_parsed_content("inferer", instantiate=True)
    with torch.no_grad():
        data[key_pred] = inferer(data[key_image][None].to(torch.device(device)), network)[0]
    assert data[key_pred].device.type == torch.device(device).type, "the network ran on the device asked for"

    post = [t for t in _parsed_chain(parser, ["postprocessing", "post_transforms"]) if not isinstance(t, SaveImaged)]
    for t in post:
        data = t(data)
    return _restored(data, key_pred, key_image)


@pytest.mark.parametrize("variant", SERVED)
def test_infer_as_bundle_infer_task(variant, bundle, studies):
    data = infer_as_bundle_infer_task(bundle, studies / "study.nii.gz", variant, DEVICE)
    label = np.asarray(data["pred"])
    np.testing.assert_array_equal(label, expected_labelmap(studies, HEAD_BIAS[variant][1]))
    np.testing.assert_allclose(np.asarray(data["pred_meta_dict"]["affine"]), AFFINE, atol=1e-5)
    assert not list(bundle.rglob("*.nii.gz")), "nothing is written into the bundle: MONAI Label writes the result"


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("variant", SERVED)
def test_train_as_bundle_train_task(variant, bundle, studies):
    model_pt = bundle / "models" / "model.pt"
    before = _weights(model_pt)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    handlers = parser.get("train#handlers", [])
    handlers.insert(0, {"_target_": "CheckpointLoader", "load_path": str(model_pt), "load_dict": {"model": "$@network"},
                        "strict": False})
    datalist = [{"image": str(studies / "study.nii.gz"), "label": str(studies / "labels" / "final" / "study.nii.gz")}]
    train_ds, val_ds = partition_dataset(datalist, ratios=[0.8, 0.2], shuffle=False)
    assert (len(train_ds), len(val_ds)) == (1, 0)  # what MONAI Label's default val_split gives one study

    monai.bundle.run(
        run_id="run",
        init_id=None,
        final_id=None,
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "train.json"),
        **{
            "bundle_root": str(bundle),
            "train#trainer#max_epochs": 1,
            "train#dataset#data": train_ds,
            "device": DEVICE,
            "train#handlers": handlers,
            "validate#dataset#data": val_ds,
        },
    )

    after = _weights(model_pt)
    assert set(after) == set(before)  # a plain state_dict that BundleInferTask loads
    assert any(not torch.equal(after[k], before[k]) for k in before), "models/model.pt holds the trained weights"


@pytest.mark.parametrize("variant", SERVED)
def test_monailabel_infer_task(variant, bundle, studies):
    bundle_infer = pytest.importorskip("monailabel.tasks.infer.bundle")
    task = bundle_infer.BundleInferTask(str(bundle), {})
    assert task.is_valid()

    result_file, result = task({"image": str(studies / "study.nii.gz"), "device": DEVICE})
    try:
        written = nib.load(result_file)
        np.testing.assert_array_equal(np.asarray(written.dataobj), expected_labelmap(studies, HEAD_BIAS[variant][1]))
        np.testing.assert_allclose(written.affine, AFFINE, atol=1e-5)
    finally:
        Path(result_file).unlink(missing_ok=True)
    assert result["label_names"] == task.labels
    assert sorted(task.labels.values()) == [1, 2, 4]  # what /info shows


@pytest.mark.parametrize("variant", SERVED)
def test_monailabel_train_task(variant, bundle, studies):
    bundle_train = pytest.importorskip("monailabel.tasks.train.bundle")
    from monailabel.datastore.local import LocalDatastore

    model_pt = bundle / "models" / "model.pt"
    before = _weights(model_pt)
    task = bundle_train.BundleTrainTask(str(bundle), {})
    assert task.is_valid()
    datastore = LocalDatastore(str(studies), extensions=["*.nii.gz"], auto_reload=False)
    assert len(datastore.datalist()) == 1

    task({"model": variant, "max_epochs": 1, "device": DEVICE, "multi_gpu": False}, datastore)

    after = _weights(model_pt)
    assert set(after) == set(before)
    assert any(not torch.equal(after[k], before[k]) for k in before), "models/model.pt holds the trained weights"


@pytest.fixture
def unlabelled(studies, tmp_path) -> Path:
    """A MONAI Label datastore holding the study without its label: what epistemic scoring ranks."""
    root = tmp_path / "unlabelled"
    root.mkdir()
    shutil.copyfile(studies / "study.nii.gz", root / "study.nii.gz")
    return root


def _sampled_weights(variant: str, models: Path) -> dict:
    """``models/model.pt`` whose output depends on dropout: the network as built (seeded), the head's bias at 0
    (probabilities around 0.5, where an entropy is large), BatchNorm's running statistics away from their initial
    values (so that an update by training-mode BatchNorm would show)."""
    torch.manual_seed(0)
    if variant == PRUNED:
        network = build_pruned_network("baseline", str(models / "pruning_history.json"))
    else:
        network = get_network(variant)
    heads = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 3]
    with torch.no_grad():
        heads[-1].bias.zero_()
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in network.state_dict().items()}
    torch.save(state, models / "model.pt")
    return state


def _scoring_task(bundle: Path):
    """The scoring's inference task as ``init_scoring_methods`` builds it (``--conf epistemic_dropout`` 0.2), keeping
    the networks it ran and the samples it returned."""
    from monai.transforms import Invertd
    from monailabel.tasks.infer.bundle import BundleInferTask

    class Recording(BundleInferTask):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.networks, self.samples = [], []

        def _get_network(self, device, data):
            network = super()._get_network(device, data)
            self.networks.append(network)
            return network

        def __call__(self, request, callbacks=None):
            result = super().__call__(request, callbacks)
            self.samples.append(torch.as_tensor(result[1][self.output_label_key]).clone())
            return result

    task = Recording(str(bundle), {}, train_mode=True, skip_writer=True, dropout=0.2,
                     post_filter=[SaveImaged, Invertd])
    assert task.is_valid()
    return task


@pytest.mark.parametrize("variant", SERVED)
def test_monailabel_epistemic_scoring(variant, bundle, studies, unlabelled, tmp_path):
    """The monaibundle app's ``--conf epistemic_model <bundle>``: ``init_scoring_methods`` wraps a
    ``BundleInferTask(train_mode=True, skip_writer=True, dropout=..., post_filter=[SaveImaged, Invertd])`` in
    ``EpistemicScoring``. Every sample is the trained network with dropout on (BatchNorm on its running statistics,
    which stay as loaded), written as region probabilities and their complements, so the stored entropy is the mean
    over the voxels of the three regions' binary entropies of the mean probability: finite, non-negative. The
    ordinary ``/infer`` task of the same bundle still writes the label map."""
    bundle_infer = pytest.importorskip("monailabel.tasks.infer.bundle")
    from monailabel.datastore.local import LocalDatastore
    from monailabel.tasks.scoring.epistemic_v2 import EpistemicScoring

    from raagr2_monai.metrics import entropy_map
    from raagr2_monai.networks import dropout_layers

    labelled_weights = tmp_path / "labelled.pt"
    shutil.copyfile(bundle / "models" / "model.pt", labelled_weights)
    state = _sampled_weights(variant, bundle / "models")
    task = _scoring_task(bundle)
    datastore = LocalDatastore(str(unlabelled), extensions=["*.nii.gz"], auto_reload=False)
    assert datastore.get_unlabeled_images() == ["study"]

    summary = EpistemicScoring(task, max_samples=0, simulation_size=2)({"device": DEVICE}, datastore)

    assert summary["executed"] == 1
    entropy = datastore.get_image_info("study")["epistemic_entropy"]
    assert np.isfinite(entropy) and entropy >= 0
    shape = nib.load(str(unlabelled / "study.nii.gz")).shape[:3]
    assert len(task.samples) == 2
    for sample in task.samples:  # the probabilities (TC, WT, ET) and their complements on the input's grid
        assert sample.shape == (6, *shape) and sample.dtype == torch.float32
        assert float(sample.min()) >= 0 and float(sample.max()) <= 1
        torch.testing.assert_close(sample[3:], 1 - sample[:3])
    assert not torch.equal(task.samples[0], task.samples[1]), "dropout is on: the samples differ"
    mean = torch.stack(task.samples).mean(0)[:3]
    assert entropy == pytest.approx(float(entropy_map(mean).mean()), rel=1e-3, abs=1e-3)
    assert 0.01 < entropy <= 3 * np.log(2)  # heads at 0: the regions are uncertain somewhere

    network = task.networks[-1]
    assert network.training, "sampled in training mode"
    assert dropout_layers(network) and {m.p for m in dropout_layers(network)} == {0.2}
    after = network.state_dict()
    assert all(torch.equal(after[k].cpu(), state[k]) for k in state), "BatchNorm's running statistics untouched"

    # the ordinary /infer task of the same bundle: the label map, as before
    shutil.copyfile(labelled_weights, bundle / "models" / "model.pt")
    result_file, _ = bundle_infer.BundleInferTask(str(bundle), {})({"image": str(studies / "study.nii.gz"),
                                                                    "device": DEVICE})
    try:
        written = nib.load(result_file)
        assert written.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(written.dataobj), expected_labelmap(studies, HEAD_BIAS[variant][1]))
    finally:
        Path(result_file).unlink(missing_ok=True)


@pytest.mark.parametrize("variant", ["baseline"])
def test_monailabel_epistemic_scoring_two_studies_at_a_time(variant, bundle, unlabelled):
    """With more than one unlabelled study the scoring samples two at a time (``max_workers`` 2, its default) in
    threads sharing one network: BatchNorm stays on its running statistics all along.

    Without ``displayable_configs`` here: with them, MONAI Label 0.8.5's ``BundleInferTask.pre_transforms``
    re-parses the task's one ``ConfigParser`` on every request, and a second thread resolving a reference meanwhile
    fails now and then (``ValueError: Unsupported option 'preprocessing::transforms::1'``), a race inside MONAI
    Label, not in the bundle; the bundle docs have the scoring run with ``max_workers`` 1."""
    pytest.importorskip("monailabel.tasks.infer.bundle")
    from monailabel.datastore.local import LocalDatastore
    from monailabel.tasks.scoring.epistemic_v2 import EpistemicScoring

    path = bundle / "configs" / "inference.json"
    config = json.loads(path.read_text())
    options = config.pop("displayable_configs")
    config.update(overlap=options["overlap"], threshold=options["threshold"])  # roi_size is set already
    path.write_text(json.dumps(config, indent=4))
    shutil.copyfile(unlabelled / "study.nii.gz", unlabelled / "second.nii.gz")
    state = _sampled_weights(variant, bundle / "models")
    task = _scoring_task(bundle)
    datastore = LocalDatastore(str(unlabelled), extensions=["*.nii.gz"], auto_reload=False)

    summary = EpistemicScoring(task, max_samples=0, simulation_size=2)({"device": DEVICE}, datastore)

    assert summary["executed"] == 2 and len(task.samples) == 4
    for image_id in ("study", "second"):
        entropy = datastore.get_image_info(image_id)["epistemic_entropy"]
        assert np.isfinite(entropy) and entropy > 0
    for network in task.networks:
        after = network.state_dict()
        assert all(torch.equal(after[k].cpu(), state[k]) for k in state), "BatchNorm's running statistics untouched"
