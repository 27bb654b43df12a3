"""``raagr2 federated``: FedAvg across NVFlare's simulated clients, each running a bundle's own training config through
MONAI's MonaiAlgo; the global model written as a bundle, the bytes exchanged measured, bad input refused up front."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from raagr2_monai import cli
from raagr2_monai.bundle.load import build_bundle_network
from raagr2_monai.bundle.pruned import pruned_network_def
from raagr2_monai.data import generate
from raagr2_monai.federated import SPLITS, run_federated, simulate, split_studies
from raagr2_monai.networks import DepthwiseSharedRAAGR2Net, get_network
from raagr2_monai.pruning import prune, save_pruned

REPO = Path(__file__).resolve().parents[2]
# two CPU cores: 32x32 crops, a few iterations per local epoch
TINY = {"roi_size": [32, 32], "batch_size": 4, "num_samples": 2, "num_workers": 0}


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("federated") / "brats"
    generate(str(root), cases=6, seed=3, shape=(48, 48, 16))
    return str(root)


@pytest.fixture(autouse=True)
def _isolated(isolated_workdir):
    """Every federated test in its own folder, away from the user's synthetic set."""


def _no_simulator(monkeypatch):
    """Fail the test if the simulator would start."""
    def refuse(*args, **kwargs):
        raise AssertionError("the simulator started")
    monkeypatch.setattr(simulate, "_run_simulator", refuse)


def _nbytes(state) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def _initial_state(bundle: Path) -> dict:
    torch.manual_seed(0)  # the persistor's seed
    network, _ = build_bundle_network(bundle)
    return network.state_dict()


def _check_bytes(report_path: Path, state: dict, clients=("site-1", "site-2")) -> None:
    report = json.loads(report_path.read_text())
    size = _nbytes(state)
    for client in clients:
        assert report["rounds"]["0"][client] == {"server_to_client": size, "client_to_server": size}
    assert report["total"] == {"server_to_client": len(clients) * size, "client_to_server": len(clients) * size,
                               "all": 2 * len(clients) * size}


@pytest.mark.slow
def test_two_clients_one_round_writes_a_global_bundle(studies, tmp_path, monkeypatch):
    out = tmp_path / "fed"
    result = run_federated(variant="depthwise", clients=2, rounds=1, data_dir=studies, output=str(out), device="cpu",
                           split="scanner", overrides=TINY)
    assert result.bundle == out / "bundle" and result.rounds_done == 1 and result.ran_rounds == 1

    # the global model: a plain state_dict with exactly the variant's keys, trained away from the initial weights
    state = torch.load(out / "bundle" / "models" / "model.pt", weights_only=True)
    network = DepthwiseSharedRAAGR2Net(in_channels=4, out_channels=3)
    assert sorted(state) == sorted(network.state_dict())
    network.load_state_dict(state, strict=True)
    initial = _initial_state(REPO / "bundles" / "depthwise")
    assert any(not torch.equal(state[k], initial[k]) for k in initial if state[k].is_floating_point())
    assert sorted(p.name for p in (out / "bundle" / "configs").iterdir()) == sorted(
        p.name for p in (REPO / "bundles" / "depthwise" / "configs").iterdir())

    # bytes: every client received the whole state dict and sent a difference of the same size
    _check_bytes(result.bytes_report, initial)

    # the job: FedAvg (ScatterAndGather) with min_clients, one app per client, each with its own datalist
    meta = json.loads((out / "job" / "meta.json").read_text())
    assert meta["raagr2"]["algorithm"] == "FedAvg" and meta["min_clients"] == 2
    assert meta["deploy_map"] == {"app_server": ["server"], "app_site-1": ["site-1"], "app_site-2": ["site-2"]}
    server = json.loads((out / "job" / "app_server" / "config" / "config_fed_server.json").read_text())
    workflow = server["workflows"][0]
    assert workflow["path"].endswith("ScatterAndGather") and workflow["args"]["min_clients"] == 2
    (aggregator,) = [c for c in server["components"] if c["id"] == "aggregator"]
    assert aggregator["args"]["aggregation_weights"] == {"site-1": 1.0, "site-2": 1.0}
    assert aggregator["args"]["weigh_by_local_iter"] is True
    overlays = [json.loads((out / "job" / f"app_site-{i}" / "bundle" / "configs" / "federated.json").read_text())
                for i in (1, 2)]
    assert [o["datalist"] for o in overlays] == [str(out / "datalists" / f"site-{i}.json") for i in (1, 2)]
    cases = [{e["case"] for e in json.loads(Path(o["datalist"]).read_text())["training"]} for o in overlays]
    assert cases[0] and cases[1] and not cases[0] & cases[1]  # split by patient
    # the scanner shift: the second client's preprocessing scales and shifts its intensities, the first's does not
    assert "train#preprocessing#transforms" not in overlays[0]
    shifted = [t["_target_"] for t in overlays[1]["train#preprocessing#transforms"]]
    assert shifted[shifted.index("NormalizeIntensityd") + 1:][:2] == ["ScaleIntensityd", "ShiftIntensityd"]

    # resume: all rounds done, so nothing runs; one more round starts at round 1 from the saved global model
    _no_simulator(monkeypatch)
    again = run_federated(variant="depthwise", clients=2, rounds=1, data_dir=studies, output=str(out), device="cpu",
                          split="scanner", overrides=TINY)
    assert again.ran_rounds == 0
    with pytest.raises(AssertionError, match="the simulator started"):
        run_federated(variant="depthwise", clients=2, rounds=2, data_dir=studies, output=str(out), device="cpu",
                      split="scanner", overrides=TINY)
    server = json.loads((out / "job" / "app_server" / "config" / "config_fed_server.json").read_text())
    assert (server["workflows"][0]["args"]["start_round"], server["workflows"][0]["args"]["num_rounds"]) == (1, 1)


def _pruned_depthwise(root: Path) -> Path:
    """A DepGraph-pruned depthwise bundle: the shipped configs with the pruned ``network_def``, and its history."""
    torch.manual_seed(1)
    network = get_network("depthwise")
    result = prune(network, "depgraph", 0.5, example_inputs=torch.zeros(1, 4, 32, 32))
    save_pruned(root / "models", network, result.history, {"method": "depgraph", "ratio": 0.5})
    (root / "models" / "model.pt").unlink(missing_ok=True)  # start from the pruned structure's initial weights
    shutil.copytree(REPO / "bundles" / "depthwise" / "configs", root / "configs")
    for name in ("train.json", "inference.json"):
        path = root / "configs" / name
        document = json.loads(path.read_text())
        document["network_def"] = pruned_network_def("depthwise", "depgraph")
        path.write_text(json.dumps(document, indent=4))
    return root


@pytest.mark.slow
def test_a_pruned_bundle_federates_with_its_pruned_structure_past_a_failing_client(studies, tmp_path, monkeypatch):
    source = _pruned_depthwise(tmp_path / "pruned")
    data = tmp_path / "brats"
    shutil.copytree(studies, data)
    out = tmp_path / "fed"
    run_simulator = simulate._run_simulator

    def break_site_2(*args, **kwargs):
        # checked and split already: a study of site-2 disappears, so site-2 fails its round
        first = json.loads((out / "datalists" / "site-2.json").read_text())["training"][0]
        Path(first["label"]).unlink()
        return run_simulator(*args, **kwargs)

    monkeypatch.setattr(simulate, "_run_simulator", break_site_2)
    result = run_federated(bundle=str(source), clients=2, rounds=1, min_clients=1, data_dir=str(data),
                           output=str(out), device="cpu", overrides=TINY)
    pruned = _initial_state(source)
    state = torch.load(result.bundle / "models" / "model.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in pruned.items()}
    assert any(not torch.equal(state[k], pruned[k]) for k in pruned if state[k].is_floating_point())
    assert _nbytes(pruned) < _nbytes(DepthwiseSharedRAAGR2Net(in_channels=4, out_channels=3).state_dict())
    assert (result.bundle / "models" / "pruning_history.json").is_file()
    # site-1's update made the round; site-2 received the model and sent nothing back
    report = json.loads(result.bytes_report.read_text())
    size = _nbytes(pruned)
    assert report["rounds"]["0"] == {"site-1": {"server_to_client": size, "client_to_server": size},
                                     "site-2": {"server_to_client": size}}


def test_too_few_studies_for_the_clients_is_refused(tmp_path, monkeypatch):
    _no_simulator(monkeypatch)
    data = tmp_path / "three"
    generate(str(data), cases=3, seed=0, shape=(16, 16, 16))
    with pytest.raises(ValueError) as error:
        run_federated(variant="depthwise", clients=2, rounds=1, data_dir=str(data), output=str(tmp_path / "o"))
    message = str(error.value)
    assert "3 labelled studies cannot be split across 2 clients" in message and "\n" not in message
    assert not (tmp_path / "o").exists()


def test_unknown_variant_is_refused_in_one_line(capsys, monkeypatch):
    _no_simulator(monkeypatch)
    with pytest.raises(SystemExit) as status:
        cli.main(["federated", "--variant", "nope", "--clients", "2"])
    err = capsys.readouterr().err
    assert status.value.code == 1
    assert err == "error: unknown variant 'nope'; one of baseline, depthwise, paired, encdec.\n"


def test_an_invalid_study_is_refused_naming_client_and_file(tmp_path, monkeypatch):
    _no_simulator(monkeypatch)
    data = tmp_path / "brats"
    generate(str(data), cases=4, seed=0, shape=(16, 16, 16))
    broken = sorted(data.glob("*/*_flair.nii.gz"))[2]
    broken.write_bytes(b"not a NIfTI file")
    with pytest.raises(ValueError) as error:
        run_federated(variant="depthwise", clients=2, rounds=1, data_dir=str(data), output=str(tmp_path / "o"),
                      seed=0)
    message = str(error.value)
    assert message.startswith("client site-") and f"{broken}: case {broken.parent.name}:" in message
    assert "\n" not in message


def test_splits_keep_patients_apart_and_skew_grades_on_request():
    entries = [{"case": f"c{i:02d}", "grade": "HGG" if i % 3 else "LGG"} for i in range(12)]
    for mode in SPLITS:
        parts = split_studies(entries, 3, mode, seed=1)
        cases = [e["case"] for p in parts for e in p.training + p.validation]
        assert sorted(cases) == sorted(e["case"] for e in entries)  # every patient in exactly one client
        assert all(p.training and p.validation for p in parts)
    grades = [{e["grade"] for e in p.training + p.validation} for p in split_studies(entries, 3, "iid", seed=1)]
    assert grades == [{"HGG", "LGG"}] * 3  # IID: every client sees both grades
    grades = [{e["grade"] for e in p.training + p.validation} for p in split_studies(entries, 3, "grade", seed=1)]
    assert {"LGG"} in grades and sum(g == {"HGG"} for g in grades) >= 1  # by grade: clients of one grade
    shifts = [(p.scale, p.offset) for p in split_studies(entries, 3, "scanner", seed=1)]
    assert shifts[0] == (1.0, 0.0) and len(set(shifts)) == 3
    with pytest.raises(ValueError, match="split must be one of iid, grade, scanner"):
        split_studies(entries, 3, "random")


def test_an_invalid_study_in_a_client_datalist_is_refused(tmp_path, monkeypatch):
    _no_simulator(monkeypatch)
    data = tmp_path / "brats"
    generate(str(data), cases=4, seed=0, shape=(16, 16, 16))
    folders = sorted(p for p in data.iterdir() if p.is_dir())
    entries = [{"case": f.name, "image": [str(f / f"{f.name}_{m}.nii.gz") for m in ("t1ce", "t1", "t2", "flair")],
                "label": str(f / f"{f.name}_seg.nii.gz")} for f in folders]
    lists = []
    for i, pair in enumerate((entries[:2], entries[2:])):
        path = tmp_path / f"client{i}.json"
        path.write_text(json.dumps({"training": [pair[0]], "validation": [pair[1]]}))
        lists.append(str(path))
    Path(entries[3]["label"]).write_bytes(b"garbage")
    with pytest.raises(ValueError) as error:
        run_federated(variant="depthwise", clients=2, rounds=1, datalists=",".join(lists),
                      output=str(tmp_path / "o"))
    message = str(error.value)
    assert message.startswith(f"client site-2: {entries[3]['label']}: case {entries[3]['case']}:")
    assert "\n" not in message
