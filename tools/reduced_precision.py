"""Reduced precision at inference: OpenVINO in bf16, and int8 post-training quantization with ONNX Runtime, against
fp32: latency, agreement of the label maps, and Dice.

A measurement; bf16 ships (the bundles' ``amp_precision``, :func:`raagr2_monai.deploy.exported_precision`), int8 does
not. The network is a trained bundle's (``--bundle``, e.g. a study's hybrid model,
``results/quick/models/depthwise/pruned/hybrid-60``), or else a DepGraph-pruned ``--variant`` at ``--ratio``
trained briefly here (``--steps`` Adam steps of the thesis loss: label maps that are not one label everywhere, far
from a trained model). Slices come from ``--dataset_dir`` (the bundle's data: e.g. the quick study's synthetic set,
with its ``--split``) or a small synthetic set made here, preprocessed as for validation, whole slices of
``--slice_size``. The network is exported to ONNX and OpenVINO IR (fp32, :func:`raagr2_monai.deploy.export_network`);
OpenVINO also runs the IR with its bf16 inference precision where the CPU has a bfloat16 unit
(:func:`raagr2_monai.deploy.cpu_bf16`); the ONNX model is quantized with
``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights, uint8 activations, MinMax calibration on
``--calibration`` slices of training cases). Then, on ``--threads`` threads:

- latency (median of ``--repeats`` runs after 2 warm-ups, ``time.perf_counter``) of one ``--size`` x ``--size``
  slice, batch 1, for each;
- agreement of the bf16 and int8 label maps with the fp32 ones of the same runtime on the slices of the test cases:
  voxels equal, and the Dice of each region (TC, WT, ET) between the two thresholded maps, pooled over the slices;
- the Dice of each label map against the ground truth, per test subject (3D over the subject's brain slices on the
  preprocessed grid, BraTS convention: a region absent from both is not scored) and averaged: whether the reduced
  precision holds the model's quality.

Run from the repository root::

    PYTHONPATH=$PWD .venv/bin/python tools/reduced_precision.py --threads 2
    PYTHONPATH=$PWD .venv/bin/python tools/reduced_precision.py \
        --bundle results/quick/models/depthwise/pruned/hybrid-60 \
        --dataset_dir ~/.cache/raagr2_monai/synthetic-60x64x64x32 --split 0.5,0.15,0.35 --slice_size 64
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch

from raagr2_monai.bundle.load import load_bundle_network
from raagr2_monai.data import generate, load_split
from raagr2_monai.data.chains import val_transforms
from raagr2_monai.data.labels import nest_regions
from raagr2_monai.data.split import DEFAULT_SPLIT
from raagr2_monai.deploy import cpu_bf16, cpu_name, export_network
from raagr2_monai.losses import RAAGR2Loss
from raagr2_monai.metrics.functional import brats_metrics
from raagr2_monai.networks import get_network
from raagr2_monai.pruning import load_pruned, prune, save_pruned

REGIONS = ("TC", "WT", "ET")


def brain_slices(entries: List[dict], size: int) -> Dict[str, Any]:
    """Every axial slice with brain of ``entries``, preprocessed as for validation: image (N, 4, size, size), label
    (N, 3, size, size), and ``cases``: the number of slices of each entry, in order."""
    chain = val_transforms((size, size))
    images, labels, cases = [], [], []
    for entry in entries:
        data = chain(entry)
        image, label = data["image"].as_tensor(), data["label"].as_tensor()
        keep = image.ne(0).flatten(0, 2).any(0)
        images.append(image[:, :size, :size, keep].permute(3, 0, 1, 2))
        labels.append(label[:, :size, :size, keep].permute(3, 0, 1, 2))
        cases.append(int(keep.sum()))
    return {"image": torch.cat(images).contiguous(), "label": torch.cat(labels).contiguous(), "cases": cases}


def train(network: torch.nn.Module, data: Dict[str, torch.Tensor], steps: int, batch: int = 8) -> None:
    """``steps`` Adam steps of the thesis loss on random batches of ``data``."""
    loss_fn = RAAGR2Loss()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    network.train()
    for step in range(steps):
        pick = torch.randint(len(data["image"]), (batch,), generator=generator)
        optimizer.zero_grad()
        loss = loss_fn(network(data["image"][pick]), data["label"][pick])
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == steps - 1:
            print(f"  step {step}: loss {loss.item():.3f}", flush=True)
    network.eval()


class SliceReader:
    """``onnxruntime.quantization.CalibrationDataReader``: one slice per call."""

    def __init__(self, images: torch.Tensor, input_name: str) -> None:
        self.items: Iterator[torch.Tensor] = iter(images)
        self.input_name = input_name

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        image = next(self.items, None)
        return None if image is None else {self.input_name: image[None].numpy()}


def ort_session(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def openvino_model(path: Path, threads: int, precision: str = "fp32") -> Callable[[np.ndarray], np.ndarray]:
    """The model behind OpenVINO on the CPU, compiled for each input shape it meets, as the OpenVINO backend does
    (:class:`raagr2_monai.deploy.OpenVINOBackend`: fixed shapes get OpenVINO's fast kernels)."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    config = {hints.inference_precision: ov.Type.bf16 if precision == "bf16" else ov.Type.f32,
              hints.performance_mode: hints.PerformanceMode.LATENCY, props.num_streams: 1,
              props.inference_num_threads: threads}
    core = ov.Core()
    requests: Dict[tuple, Any] = {}

    def run(x: np.ndarray) -> np.ndarray:
        if x.shape not in requests:
            model = core.read_model(str(path))
            model.reshape({model.inputs[0]: ov.PartialShape(list(x.shape))})
            requests[x.shape] = core.compile_model(model, "CPU", config).create_infer_request()
        requests[x.shape].infer({0: x})
        return requests[x.shape].get_output_tensor(0).data.copy()

    return run


def latency_ms(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, repeats: int) -> float:
    for _ in range(2):
        run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """The networks return logits; thresholds and differences are on probabilities."""
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def agreement(run: Callable[[np.ndarray], np.ndarray], reference: Callable[[np.ndarray], np.ndarray],
              images: torch.Tensor) -> str:
    """Voxels equal and per-region Dice between the nested, thresholded maps of ``run`` and ``reference``; the
    largest and mean difference of the probabilities, and the share of the reference's within 0.05 of the threshold
    (where a small error flips a voxel)."""
    equal = total = 0
    overlap = np.zeros(3)
    sizes = np.zeros(3)
    largest, differences, near = 0.0, [], []
    for image in images.split(8):
        x = image.numpy()
        out, ref = _sigmoid(run(x)), _sigmoid(reference(x))
        largest = max(largest, float(np.abs(out - ref).max()))
        differences.append(float(np.abs(out - ref).mean()))
        near.append(float((np.abs(ref - 0.5) < 0.05).mean()))
        # regions first: (3, slices, H, W)
        a = nest_regions(torch.from_numpy(out).transpose(0, 1), 0.5).numpy().astype(bool)
        b = nest_regions(torch.from_numpy(ref).transpose(0, 1), 0.5).numpy().astype(bool)
        equal += int((a == b).all(axis=0).sum())
        total += a[0].size
        overlap += (a & b).sum(axis=(1, 2, 3))
        sizes += a.sum(axis=(1, 2, 3)) + b.sum(axis=(1, 2, 3))
    dice = ", ".join(f"{region} {2 * o / s:.4f} ({int(s / 2)} voxels)" if s else f"{region} empty"
                     for region, o, s in zip(REGIONS, overlap, sizes))
    return (f"voxels equal {equal / total:.5f}; Dice {dice}; probabilities differ by {largest:.3g} at most, "
            f"{np.mean(differences):.3g} on average; reference within 0.05 of 0.5: {np.mean(near):.1%}")


def predict(run: Callable[[np.ndarray], np.ndarray], images: torch.Tensor) -> torch.Tensor:
    """The nested, thresholded regions (N, 3, H, W) of ``run`` on ``images``, 8 slices per call."""
    out = np.concatenate([_sigmoid(run(image.numpy())) for image in images.split(8)])
    return nest_regions(torch.from_numpy(out).transpose(0, 1), 0.5).transpose(0, 1)


def subject_dice(regions: torch.Tensor, slices: Dict[str, Any]) -> str:
    """Per-subject Dice of ``regions`` against the labels (3D over each subject's slices), averaged over subjects."""
    scores = []
    for pred, label in zip(regions.split(slices["cases"]), slices["label"].split(slices["cases"])):
        # (slices, 3, H, W) -> (1, 3, H, W, slices): one subject's volume on the preprocessed grid
        metrics = brats_metrics(pred.permute(1, 2, 3, 0)[None], label.permute(1, 2, 3, 0)[None])
        scores.append([float(metrics[f"dice_{region}"][0]) for region in REGIONS])
    means = np.nanmean(np.array(scores), axis=0)
    return ", ".join(f"{region} {m:.4f}" for region, m in zip(REGIONS, means)) + f"; mean {np.mean(means):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="a trained bundle (pruned ones included) to quantize instead of training one")
    parser.add_argument("--dataset_dir", help="the slices' data (default: a small synthetic set made here)")
    parser.add_argument("--slice_size", type=int, default=96, help="in-plane size of the preprocessed slices")
    parser.add_argument("--split", default=None, help="the data's training/validation/testing fractions (e.g. the "
                        "study's 0.5,0.15,0.35; default: the bundles' 0.7,0.15,0.15)")
    parser.add_argument("--variant", default="depthwise")
    parser.add_argument("--ratio", type=float, default=0.6)
    parser.add_argument("--steps", type=int, default=60, help="training steps before quantizing")
    parser.add_argument("--calibration", type=int, default=32, help="calibration slices")
    parser.add_argument("--size", type=int, default=192, help="slice size of the latency measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--work", default="/tmp/raagr2_int8", help="keeps the trained network between runs")
    parser.add_argument("--reduce_range", action="store_true",
                        help="7-bit weights: avoids the saturation of AVX2 (without VNNI) uint8 x int8 products")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    trained = Path(args.work) / f"{args.variant}-depgraph-{round(args.ratio * 100)}-{args.steps}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.dataset_dir
        if data is None:
            data = str(work / "data")
            generate(data, cases=8, seed=0)
        fractions = [float(f) for f in args.split.split(",")] if args.split else DEFAULT_SPLIT
        slices = {split: brain_slices(load_split(data, split, seed=0, split=fractions), args.slice_size)
                  for split in ("training", "testing")}
        print(f"slices: {len(slices['training']['image'])} training, {len(slices['testing']['image'])} held out "
              f"({len(slices['testing']['cases'])} test subjects)")
        if args.bundle:
            network = load_bundle_network(args.bundle, require_weights=True).eval()
            print(f"network: {args.bundle} ({sum(p.numel() for p in network.parameters()):,} parameters)")
        elif (trained / "pruning_history.json").is_file():
            network = load_pruned(args.variant, trained / "model.pt", trained / "pruning_history.json").eval()
        else:
            torch.manual_seed(0)
            network = get_network(args.variant, in_channels=4, out_channels=3)
            result = prune(network, "depgraph", args.ratio)
            train(network, slices["training"], args.steps)
            save_pruned(trained, network, result.history)
        paths = export_network(network, work / "fp32", "onnx,openvino")
        from onnxruntime.quantization import (
            CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static,
        )

        prepared = work / "prepared.onnx"
        # the graph's height and width are free: ONNX Runtime's symbolic shape inference cannot resolve them all
        quant_pre_process(str(paths["onnx"]), str(prepared), skip_symbolic_shape=True)
        int8 = work / "int8.onnx"
        generator = torch.Generator().manual_seed(1)
        pick = torch.randperm(len(slices["training"]["image"]), generator=generator)[: args.calibration]
        quantize_static(
            str(prepared), str(int8), SliceReader(slices["training"]["image"][pick], "image"),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, reduce_range=args.reduce_range,
        )
        runs = {
            "onnxruntime fp32": ort_session(paths["onnx"], args.threads),
            "onnxruntime int8": ort_session(int8, args.threads),
            "openvino fp32": openvino_model(paths["openvino"], args.threads),
            "openvino int8 (QDQ)": openvino_model(int8, args.threads),
        }
        print(f"CPU: {cpu_name()}, {'with' if cpu_bf16() else 'without'} a bfloat16 unit")
        if cpu_bf16():
            runs["openvino bf16"] = openvino_model(paths["openvino"], args.threads, "bf16")
        x = np.random.default_rng(0).standard_normal((1, 4, args.size, args.size), dtype=np.float32)
        for name, run in runs.items():
            print(f"{name}: {latency_ms(run, x, args.repeats):.1f} ms per {args.size}x{args.size} slice, batch 1, "
                  f"{args.threads} threads", flush=True)
        held_out = slices["testing"]["image"]
        eager = torch.no_grad()(lambda array: network(torch.from_numpy(array)).numpy())
        print(f"fp32 ORT vs eager: {agreement(runs['onnxruntime fp32'], eager, held_out)}")
        for name in [n for n in runs if "fp32" not in n]:
            reference = runs[name.split(" ")[0] + " fp32"]
            print(f"{name} vs fp32 on {len(held_out)} held-out slices: {agreement(runs[name], reference, held_out)}")
        for name, run in {"eager PyTorch fp32": eager, **runs}.items():
            print(f"Dice against the ground truth, {name}: {subject_dice(predict(run, held_out), slices['testing'])}")


if __name__ == "__main__":
    main()
