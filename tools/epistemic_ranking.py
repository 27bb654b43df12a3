"""Does MONAI Label's epistemic score point at the studies a model gets wrong? Its entropy beside the study's Dice.

Takes a finished study (``--study``, e.g. ``results/quick``) and, for each ``--models`` entry (``baseline``,
``depthwise``, ...: the study's ``train/<model>`` step), serves that model as MONAI Label 0.8.5's ``monaibundle`` app
serves it with ``--conf epistemic_model <model>``: ``init_scoring_methods`` builds
``BundleInferTask(bundle, conf, train_mode=True, skip_writer=True, dropout=--dropout, post_filter=[SaveImaged,
Invertd])`` and ``EpistemicScoring(task, max_samples=0, simulation_size=--samples)``, which this tool calls on a
MONAI Label ``LocalDatastore`` holding the study's test subjects (the ``testing`` split of the study's seed and
split, the subjects its evaluation scored), one 4D NIfTI per subject (T1ce, T1, T2, FLAIR stacked, the first
modality's header), none labelled. The stored ``epistemic_entropy`` of each subject is printed beside its Dice from
the study's evaluation of the same model (``evaluate/<model>``: TC, WT, ET and their mean, ET left out where both
the prediction and the truth are empty), then Spearman's rank correlation of entropy and mean Dice (a useful score
correlates negatively) and the AUROC of the entropy for finding the subjects whose mean Dice is below
``--threshold``.

The bundle served is the repository's ``bundles/<model>`` configs with the study model's ``network_def`` and
``models/`` (a study's own configs may predate the current generator), its ``displayable_configs#roi_size`` set to
half the study's ``window_size`` (the inference config doubles it) so that the network sees the windows the
study's evaluation used.

``focused`` is a second score from the same samples, for comparison: :func:`raagr2_monai.metrics.study_uncertainty`
of their mean probability (the entropy averaged over the voxels with some chance of tumour only, where MONAI Label
averages over the whole volume it restores).

Run from the repository root, in the MONAI Label environment (``make monailabel``)::

    .venv-monailabel/bin/python tools/epistemic_ranking.py --study results/quick --models baseline depthwise
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

import nibabel as nib
import numpy as np
import torch

from raagr2_monai.data.sources import load_split
from raagr2_monai.metrics import auroc, spearman, study_uncertainty

REPO = Path(__file__).resolve().parents[1]
REGIONS = ("TC", "WT", "ET")


def study_facts(study: Path) -> Dict[str, object]:
    """The study's seed, split, window size and step records, from its ``state.json``."""
    state = json.loads((study / "state.json").read_text())
    profile = state["settings"]["profile"]
    return {"seed": int(state["settings"].get("seed", 0)), "split": profile["split"],
            "window_size": int(profile["window_size"]), "data_dir": state["settings"].get("data_dir"),
            "steps": state["steps"]}


def testing_subjects(study: Path, facts: Dict[str, object], model: str) -> List[dict]:
    """The test subjects' datalist entries, as the study's evaluation of ``model`` read them: the ``testing`` split
    of the study's seed and split, of the folder that evaluation names."""
    run = json.loads((study / facts["steps"][f"evaluate/{model}"]["run_json"]).read_text())
    dataset_dir = run["settings"].get("dataset_dir") or facts["data_dir"]
    return load_split(dataset_dir, "testing", None, facts["seed"], facts["split"])


def study_dice(study: Path, facts: Dict[str, object], model: str) -> Dict[str, Dict[str, float]]:
    """Case -> ``{TC, WT, ET, mean}`` Dice from the study's per-subject evaluation of ``model``."""
    rows: Dict[str, Dict[str, float]] = {}
    with open(study / facts["steps"][f"evaluate/{model}"]["per_subject_csv"], newline="") as handle:
        for row in csv.DictReader(handle):
            dice = {r: float(row[f"dice_{r}"]) for r in REGIONS}
            dice["mean"] = float(np.nanmean([dice[r] for r in REGIONS]))
            rows[row["case"]] = dice
    return rows


def write_studies(entries: Sequence[dict], folder: Path) -> Dict[str, str]:
    """One 4D NIfTI per subject in ``folder`` (channels T1ce, T1, T2, FLAIR; the first modality's header), the
    MONAI Label datastore form; kept between runs. Returns case -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for entry in entries:
        path = folder / f"{entry['case']}.nii.gz"
        if not path.is_file():
            first = nib.load(entry["image"][0])
            volume = np.stack([np.asarray(nib.load(p).dataobj, dtype=np.float32) for p in entry["image"]], axis=-1)
            image = nib.Nifti1Image(volume, first.affine, first.header)
            image.set_data_dtype(np.float32)
            partial = path.with_name(path.name + ".part.nii.gz")
            nib.save(image, str(partial))
            os.replace(partial, path)
        files[entry["case"]] = str(path)
    return files


def app_bundle(study: Path, facts: Dict[str, object], model: str, app: Path) -> Path:
    """``<app>/model/<model>``: the repository's bundle configs with the study model's ``network_def`` and
    ``models/``, windows of the study's size."""
    source = study / facts["steps"][f"train/{model}"]["bundle"]
    root = app / "model" / model
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(REPO / "bundles" / model / "configs", root / "configs")
    shutil.copytree(source / "models", root / "models")
    path = root / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["network_def"] = json.loads((source / "configs" / "inference.json").read_text())["network_def"]
    config["displayable_configs"]["roi_size"] = facts["window_size"] // 2  # the config doubles it
    path.write_text(json.dumps(config, indent=4))
    return root


def score(bundle: Path, files: Dict[str, str], datastore_dir: Path, samples: int, dropout: float,
          seed: int) -> Dict[str, Dict[str, float]]:
    """MONAI Label's epistemic scoring of ``bundle`` on the studies ``files`` (a fresh datastore of links to them):
    case -> ``{entropy, focused}``."""
    from monai.transforms import Invertd, SaveImaged
    from monailabel.datastore.local import LocalDatastore
    from monailabel.tasks.infer.bundle import BundleInferTask
    from monailabel.tasks.scoring.epistemic_v2 import EpistemicScoring

    class Recording(BundleInferTask):
        """MONAI Label's task, also summing each study's sampled region probabilities (for ``focused``)."""

        sums: Dict[str, List] = {}

        def __call__(self, request, callbacks=None):
            result = super().__call__(request, callbacks)
            pred = torch.as_tensor(result[1][self.output_label_key])[:3].float()
            entry = self.sums.setdefault(request["image"], [0, 0])
            entry[0], entry[1] = entry[0] + pred, entry[1] + 1
            return result

    shutil.rmtree(datastore_dir, ignore_errors=True)
    datastore_dir.mkdir(parents=True)
    for case, path in files.items():
        os.link(path, datastore_dir / f"{case}.nii.gz")
    datastore = LocalDatastore(str(datastore_dir), extensions=["*.nii.gz"], auto_reload=False)
    task = Recording(str(bundle), {}, train_mode=True, skip_writer=True, dropout=dropout,
                     post_filter=[SaveImaged, Invertd])
    if not task.is_valid():
        raise SystemExit(f"MONAI Label does not take {bundle} as a bundle.")
    torch.manual_seed(seed)
    summary = EpistemicScoring(task, max_samples=0, simulation_size=samples)(
        {"device": "cpu", "max_workers": 1}, datastore)
    if summary["executed"] != len(files):
        raise SystemExit(f"EpistemicScoring scored {summary['executed']} of {len(files)} studies: {summary}")
    out = {}
    for case in files:
        uri = datastore.get_image_uri(case)
        total, count = Recording.sums[uri]
        out[case] = {"entropy": float(datastore.get_image_info(case)["epistemic_entropy"]),
                     "focused": study_uncertainty(total / count)}
    return out


def report(model: str, scores: Dict[str, Dict[str, float]], dice: Dict[str, Dict[str, float]],
           threshold: float) -> Dict[str, float]:
    """Print the subjects by decreasing entropy beside their Dice, and the ranking statistics; return those."""
    cases = sorted(scores, key=lambda c: -scores[c]["entropy"])
    print(f"\n{model}: {len(cases)} test subjects, by decreasing epistemic_entropy")
    print(f"{'case':<18} {'entropy':>9} {'focused':>8} {'Dice':>6} {'TC':>6} {'WT':>6} {'ET':>6}")
    for case in cases:
        d = dice[case]
        marks = " <" if d["mean"] < threshold else ""
        print(f"{case:<18} {scores[case]['entropy']:9.5f} {scores[case]['focused']:8.4f} {d['mean']:6.3f} "
              + " ".join(f"{d[r]:6.3f}" if not math.isnan(d[r]) else f"{'-':>6}" for r in REGIONS) + marks)
    entropy = [scores[c]["entropy"] for c in cases]
    focused = [scores[c]["focused"] for c in cases]
    mean_dice = [dice[c]["mean"] for c in cases]
    wrong = [d < threshold for d in mean_dice]
    stats = {"spearman": spearman(entropy, mean_dice), "auroc": auroc(entropy, wrong),
             "spearman_focused": spearman(focused, mean_dice), "auroc_focused": auroc(focused, wrong),
             "below": int(sum(wrong)), "subjects": len(cases)}
    print(f"Spearman(entropy, mean Dice) = {stats['spearman']:+.3f}; AUROC(entropy, mean Dice < {threshold}) = "
          f"{stats['auroc']:.3f} ({stats['below']} of {len(cases)} below, marked <)")
    print(f"focused:  Spearman = {stats['spearman_focused']:+.3f}; AUROC = {stats['auroc_focused']:.3f}")
    return stats


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=REPO / "results" / "quick")
    parser.add_argument("--models", nargs="+", default=["baseline"])
    parser.add_argument("--samples", type=int, default=5, help="epistemic_simulation_size (MONAI Label's default 5)")
    parser.add_argument("--dropout", type=float, default=0.2, help="epistemic_dropout (MONAI Label's default 0.2)")
    parser.add_argument("--threshold", type=float, default=0.8, help="mean Dice below which a subject is wrong")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the dropout masks")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "raagr2-epistemic")
    parser.add_argument("--json", type=Path, help="also write the scores and statistics here")
    args = parser.parse_args(argv)
    logging.getLogger("monailabel").setLevel(logging.WARNING)

    import monailabel

    facts = study_facts(args.study)
    print(f"MONAI Label {monailabel.__version__} EpistemicScoring; study {args.study}; simulation_size "
          f"{args.samples}, dropout {args.dropout}, windows {facts['window_size']}, CPU")
    result = {}
    for model in args.models:
        entries = testing_subjects(args.study, facts, model)
        dice = study_dice(args.study, facts, model)
        if {e["case"] for e in entries} != set(dice):
            raise SystemExit(f"The testing split ({len(entries)}) and evaluate/{model} ({len(dice)}) differ.")
        files = write_studies(entries, args.work / "studies")
        bundle = app_bundle(args.study, facts, model, args.work / "app")
        start = time.perf_counter()
        scores = score(bundle, files, args.work / "datastore" / model, args.samples, args.dropout, args.seed)
        print(f"({model}: {len(files)} studies x {args.samples} samples in {time.perf_counter() - start:.0f} s)")
        stats = report(model, scores, dice, args.threshold)
        result[model] = {"scores": scores, "dice": dice, "statistics": stats}
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "models": result},
                                        indent=1))


if __name__ == "__main__":
    main()
