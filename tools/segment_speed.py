"""Time one BraTS-size study end to end behind each inference backend, stage by stage, with a DepGraph-pruned network.

Builds (once, in ``--work``) a synthetic ``--shape`` study and a DepGraph-pruned bundle of ``--variant`` at
``--ratio`` (channel counts multiples of ``--round_to``, as the study's hybrid row; 0: any count) with fresh weights (the structure sets the time, not the weights), exports it to ONNX and OpenVINO IR,
then segments the study ``--repeat`` times behind each backend of ``--backends`` with ``raagr2 segment``'s
:class:`~raagr2_monai.deploy.Segmenter` and prints each stage's median (load, preprocess, network, invert,
postprocess, write), the windows the network ran on, and how many voxels of each label map agree with the first
backend's. Each ``--modes`` entry is one setting of the inferer: ``windows`` (the bundle's ``roi_size`` windows),
``whole`` (``whole_slice``: one window per slice), each with ``-all`` to run the network on empty windows too
(``skip_empty`` off, the path before empty windows were skipped).

Run from the repository root::

    PYTHONPATH=$PWD .venv/bin/python tools/segment_speed.py --threads 2 --repeat 3 --modes whole,windows \\
        --backends openvino,onnxruntime,torch
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path
from typing import Dict, List, Optional

import nibabel as nib
import numpy as np
import torch

from raagr2_monai.bundle import write_pruned_bundle
from raagr2_monai.data import generate, inference_cases
from raagr2_monai.deploy import Segmenter, export_bundle
from raagr2_monai.deploy.segment import format_timing, median_timing
from raagr2_monai.generator.generate import write_bundle
from raagr2_monai.networks import get_network
from raagr2_monai.pruning import prune

MODES = {
    "windows": {"whole_slice": False, "skip_empty": True},
    "windows-all": {"whole_slice": False, "skip_empty": False},
    "whole": {"whole_slice": True, "skip_empty": True},
    "whole-all": {"whole_slice": True, "skip_empty": False},
}


def make_bundle(root: Path, variant: str, ratio: float, round_to: Optional[int], seed: int) -> Path:
    """A DepGraph-pruned bundle of ``variant`` with fresh weights, exported to ONNX and OpenVINO IR."""
    if (root / "models" / "model.xml.json").is_file():
        return root
    torch.manual_seed(seed)
    network = get_network(variant, in_channels=4, out_channels=3)
    result = prune(network, "depgraph", ratio, round_to=round_to)
    with torch.no_grad():  # fresh outputs start below the threshold (HEAD_PRIOR): the maps would all be background,
        network.head.bias.zero_()  # and the backends' agreement would say nothing
    source = root.with_name(f"{root.name}-source")  # the configs a pruned bundle takes over
    write_bundle(str(source), variant, "Apache-2.0\n")
    write_pruned_bundle(root, network.eval(), result, source)
    export_bundle(root, "onnx,openvino")
    return root


def make_study(root: Path, shape: str, seed: int) -> Path:
    """One synthetic study of ``shape`` in ``root`` (made once)."""
    if not root.is_dir():
        generate(str(root), cases=1, seed=seed, shape=shape)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/raagr2_segment_speed", help="where the study, bundle and maps go")
    parser.add_argument("--variant", default="depthwise")
    parser.add_argument("--ratio", type=float, default=0.6, help="DepGraph pruning ratio")
    parser.add_argument("--round_to", type=int, default=8, help="channel multiple of the pruned layers (0: any)")
    parser.add_argument("--shape", default="240,240,155")
    parser.add_argument("--backends", default="openvino,onnxruntime,torch")
    parser.add_argument("--modes", default="whole,windows", help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sw_batch_size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    work = Path(args.work)
    round_to = args.round_to or None
    name = f"{args.variant}-depgraph-{round(args.ratio * 100)}" + (f"-r{round_to}" if round_to else "")
    bundle = make_bundle(work / name, args.variant, args.ratio, round_to, 0)
    study = make_study(work / "study", args.shape, args.seed)
    (entry,) = inference_cases(str(study), None)
    torch.set_num_threads(args.threads)
    maps: Dict[str, np.ndarray] = {}
    for mode in args.modes.split(","):
        for backend in args.backends.split(","):
            name = f"{backend}/{mode}"
            out = work / "maps" / backend / mode
            segmenter = Segmenter(
                bundle, out, device="cpu", backend=backend, threads=args.threads,
                sw_batch_size=args.sw_batch_size, **MODES[mode],
            )
            runs = [segmenter(entry) for _ in range(args.repeat)]
            timing = median_timing(runs)
            totals: List[float] = [run.total for run in runs]
            (written,) = glob.glob(str(out / "*_pred.nii.gz"))
            maps[name] = np.asarray(nib.load(written).dataobj)
            # the same mode behind the first backend, and the same backend with skip_empty switched
            counterpart = f"{backend}/{mode[:-4] if mode.endswith('-all') else mode + '-all'}"
            others = [next(key for key in maps if key.endswith(f"/{mode}")), counterpart]
            agreement = "; ".join(
                f"voxels equal to {other} {float((maps[name] == maps[other]).mean()):.6f}"
                for other in dict.fromkeys(others) if other in maps and other != name
            )
            print(
                f"{name}: {format_timing(timing, args.repeat)}; totals {', '.join(f'{t:.2f}' for t in totals)} s; "
                f"network windows {segmenter.inferer.network_windows}; labels "
                f"{sorted(int(v) for v in np.unique(maps[name]))}; {agreement or 'nothing to compare with yet'}",
                flush=True,
            )
    print(f"stage times: medians of {args.repeat} runs, {args.threads} threads, time.perf_counter")


if __name__ == "__main__":
    main()
