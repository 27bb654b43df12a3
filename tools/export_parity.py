"""Where the fp32 differences between eager PyTorch and an exported model come from.

For a network (a reduced-width baseline with BatchNorm statistics calibrated on random inputs, as the deploy tests
make it, and a DepGraph-pruned depthwise network with fresh weights), exports ONNX and OpenVINO IR without a parity
limit, then compares on random normal inputs and on preprocessed slices of a synthetic study (zero background,
z-scored brain), against an fp64 evaluation of the same network:

- eager fp32 against fp64: the rounding error of fp32 itself for this network and input;
- each runtime against fp64 and against eager fp32, on probabilities and on logits (where the fp64 logit is below 10
  in magnitude: the logit of a saturated fp32 probability is not defined);
- the probability where the largest difference lies, and the largest gain of a BatchNorm layer,
  ``|gamma| / sqrt(running_var + eps)``, which multiplies the rounding errors of its input.

Run from the repository root::

    PYTHONPATH=$PWD .venv/bin/python tools/export_parity.py
"""

from __future__ import annotations

import copy
import tempfile
from typing import Dict, List, Tuple

import torch

from raagr2_monai.data import generate, inference_cases
from raagr2_monai.data.chains import inference_transforms
from raagr2_monai.deploy import OnnxRuntimeBackend, OpenVINOBackend, export_network
from raagr2_monai.networks import get_network
from raagr2_monai.pruning import prune

SMALL = (8, 16, 32, 64, 128)


def calibrated_small() -> torch.nn.Module:
    """The deploy tests' network: width SMALL, BatchNorm statistics from two random batches."""
    torch.manual_seed(0)
    network = get_network("baseline", features=SMALL)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    network.train()
    with torch.no_grad():
        for _ in range(2):
            network(torch.randn(2, 4, 32, 32))
    return network.eval()


def pruned_depthwise() -> torch.nn.Module:
    torch.manual_seed(0)
    network = get_network("depthwise", out_channels=3)
    prune(network, "depgraph", 0.6)
    return network.eval()


def study_slices(size: int = 96) -> torch.Tensor:
    """Eight preprocessed axial slices through the brain of a synthetic study, cropped to ``size``."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, cases=1, seed=3, shape=(96, 96, 64))
        (entry,) = inference_cases(tmp, None)
        image = inference_transforms((size, size))(entry)["image"].as_tensor()
    depth = image.shape[-1]
    picks = torch.linspace(depth * 0.3, depth * 0.7, 8).long()
    return image[:, :size, :size, picks].permute(3, 0, 1, 2).contiguous()


def logit(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.double().clamp(1e-12, 1 - 1e-12))


def report(name: str, network: torch.nn.Module, inputs: Dict[str, List[torch.Tensor]]) -> None:
    double = copy.deepcopy(network).double()
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_network(network, tmp, "onnx,openvino", tolerance=float("inf"), parity_shapes=((1, 32, 32),))
        runtimes = {"onnxruntime": OnnxRuntimeBackend(paths["onnx"], 1),
                    "openvino": OpenVINOBackend(paths["openvino"], 1)}
        norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        gain = max(float((m.weight.detach().abs() / torch.sqrt(m.running_var + m.eps)).max()) for m in norms)
        print(f"{name}: running_var from {min(float(m.running_var.min()) for m in norms):.3g} to "
              f"{max(float(m.running_var.max()) for m in norms):.3g}; largest BatchNorm gain {gain:.3g}")
        for kind, batch in inputs.items():
            rows: Dict[str, Tuple[float, float, float, float]] = {}
            with torch.no_grad():
                for x in batch:
                    # the networks return logits; the label maps come from their sigmoid
                    reference = torch.sigmoid(double(x.double()))
                    eager = torch.sigmoid(network(x))
                    outputs = {"eager fp32": eager,
                               **{key: torch.sigmoid(runtime(x)) for key, runtime in runtimes.items()}}
                    for key, out in outputs.items():
                        for against, ref in (("fp64", reference), ("eager", eager.double())):
                            if key == "eager fp32" and against == "eager":
                                continue
                            diff = (out.double() - ref).abs()
                            where = int(diff.argmax())
                            unsaturated = logit(ref).abs() < 10
                            dlogit = (logit(out) - logit(ref)).abs()[unsaturated]
                            row = (float(diff.max()), float(ref.flatten()[where]),
                                   float(dlogit.max()) if dlogit.numel() else 0.0, float(logit(ref).abs().max()))
                            label = f"{key} vs {against}"
                            if label not in rows or row[0] > rows[label][0]:
                                rows[label] = row
            for label, (diff, p, dlogit, zmax) in rows.items():
                print(f"  {kind:7s} {label:24s} max|dp| {diff:.2e} (at p={p:.3f}), max|dlogit| {dlogit:.2e}, "
                      f"max|logit| {zmax:.1f}")


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    shapes = ((2, 64, 64), (1, 96, 64), (3, 48, 80))
    normal = [torch.randn(b, 4, h, w, generator=generator) for b, h, w in shapes]
    realistic = [study_slices()]
    for name, network in (("small baseline, calibrated BN", calibrated_small()),
                          ("depthwise DepGraph 60 %, fresh", pruned_depthwise())):
        report(name, network, {"normal": normal, "study": realistic})


if __name__ == "__main__":
    main()
