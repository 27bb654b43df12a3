"""The thesis's published figures (its Tables 1-4), which rows of ours claim to be the same model, and what is wrong
with those figures.

Copied from the thesis and shown only in columns and sections marked "thesis (published)": nothing in this package
produced them.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

__all__ = ["THESIS_TABLE1", "THESIS_TABLE2", "THESIS_TABLE3", "THESIS_TABLE4", "THESIS_ROW", "THESIS_NOTES"]

# Thesis Table 1 ("Performance Metrics Comparison Across All Model Variants"), as published. Its columns: pooled
# "Dice Coef." (soft, all channels incl. background-like ones, per batch of slices), "Mean IoU", and "C2/C3/C4 Dice",
# which the thesis calls NCR/NET, ET, ED but which were in fact the TC, ET and WT output channels.
THESIS_TABLE1: Dict[str, Dict[str, float]] = {
    "Base RAAGR2-Net": {"pooled_dice": 0.9849, "mean_iou": 0.9710, "TC": 0.8254, "ET": 0.8247, "WT": 0.8513},
    "Depthwise Shared": {"pooled_dice": 0.9837, "mean_iou": 0.9690, "TC": 0.7638, "ET": 0.6408, "WT": 0.8526},
    "Paired Shared": {"pooled_dice": 0.9786, "mean_iou": 0.9599, "TC": 0.6934, "ET": 0.6719, "WT": 0.7727},
    "Encoder-Decoder Shared": {"pooled_dice": 0.9841, "mean_iou": 0.9695, "TC": 0.7717, "ET": 0.7818, "WT": 0.8248},
    "Magnitude 10%": {"pooled_dice": 0.7415, "mean_iou": 0.8697, "TC": 0.1874, "ET": 0.0209, "WT": 0.0439},
    "Magnitude 20%": {"pooled_dice": 0.7547, "mean_iou": 0.8931, "TC": 0.0022, "ET": 0.0209, "WT": 0.0004},
    "Magnitude 30%": {"pooled_dice": 0.6077, "mean_iou": 0.8443, "TC": 0.0308, "ET": 0.0209, "WT": 0.0016},
    "SNIP 10%": {"pooled_dice": 0.2855, "mean_iou": 0.0053, "TC": 0.0309, "ET": 0.0209, "WT": 0.0731},
    "SNIP 20%": {"pooled_dice": 0.2789, "mean_iou": 0.0169, "TC": 0.0310, "ET": 0.0210, "WT": 0.0737},
    "SNIP 30%": {"pooled_dice": 0.2866, "mean_iou": 0.1113, "TC": 0.0310, "ET": 0.0210, "WT": 0.0741},
    "DepGraph 10%": {"pooled_dice": 0.9528, "mean_iou": 0.9154, "TC": 0.2480, "ET": 0.1773, "WT": 0.2461},
    "DepGraph 20%": {"pooled_dice": 0.5970, "mean_iou": 0.4392, "TC": 0.0633, "ET": 0.0010, "WT": 0.0350},
    "DepGraph 30%": {"pooled_dice": 0.5970, "mean_iou": 0.4392, "TC": 0.0633, "ET": 0.0010, "WT": 0.0350},
    "Magnitude 20% (FT)": {"pooled_dice": 0.9851, "mean_iou": 0.9716, "TC": 0.8274, "ET": 0.8312, "WT": 0.8252},
    "SNIP 20% (FT)": {"pooled_dice": 0.9854, "mean_iou": 0.9719, "TC": 0.8458, "ET": 0.8262, "WT": 0.8565},
}

# Thesis Table 2 ("Model Statistics and Computational Benchmarks"), as published: parameters, size (MB), inference
# (ms, GPU), FLOPs (ptflops, 2 x MACs, in G), peak GPU memory (GB), execution time (s).
_THESIS_TABLE2_KEYS = ("params", "size_mb", "latency_ms", "gflops", "peak_gb", "time_s")
THESIS_TABLE2: Dict[str, Dict[str, float]] = {
    name: dict(zip(_THESIS_TABLE2_KEYS, values))
    for name, values in (
        ("Base RAAGR2-Net", (8911301, 34.26, 12.88, 15.92, 0.55, 8.50)),
        ("Depthwise Shared", (5046221, 19.44, 12.68, 11.86, 0.47, 7.75)),
        ("Paired Shared", (5051061, 19.47, 12.00, 11.86, 0.29, 7.83)),
        ("Encoder-Decoder Shared", (6621141, 25.50, 11.79, 15.79, 0.68, 8.17)),
        ("Magnitude 10%", (8911301, 34.32, 14.13, 15.92, 0.51, 8.87)),
        ("Magnitude 20%", (8911301, 34.32, 13.48, 15.92, 0.51, 8.50)),
        ("Magnitude 30%", (8911301, 34.32, 13.29, 15.92, 0.41, 8.78)),
        ("SNIP 10%", (8911301, 34.25, 13.49, 15.92, 0.51, 8.68)),
        ("SNIP 20%", (8911301, 34.25, 13.39, 15.92, 0.41, 8.59)),
        ("SNIP 30%", (8911301, 34.25, 13.98, 15.92, 0.34, 8.62)),
        ("DepGraph 10%", (7293449, 28.13, 13.97, 13.01, 0.45, 8.88)),
        ("DepGraph 20%", (6141273, 23.72, 13.69, 10.84, 0.42, 8.24)),
        ("DepGraph 30%", (6141273, 23.72, 13.69, 10.84, 0.42, 8.24)),
        ("Magnitude 20% (FT)", (8911301, 34.26, 13.31, 15.92, 0.48, 8.37)),
        ("SNIP 20% (FT)", (8911301, 34.26, 12.62, 15.92, 0.51, 8.33)),
    )
}

# Thesis Table 3 ("Percentage Reductions Relative to Base RAAGR2-Net Model"), as published, in percent (positive =
# reduction; the thesis prints reductions as up-arrows and increases as down-arrows). Unstructured rows: 0 % for
# parameters, size and FLOPs (the thesis's dagger: "theoretical sparsity").
THESIS_TABLE3: Dict[str, Dict[str, float]] = {
    "Depthwise Shared": {"params": 43.4, "size": 43.2, "flops": 25.5, "gpu_mem": 14.5, "time": 8.8},
    "Paired Shared": {"params": 43.3, "size": 43.2, "flops": 25.5, "gpu_mem": 47.3, "time": 7.9},
    "Encoder-Decoder Shared": {"params": 25.7, "size": 25.6, "flops": 0.8, "gpu_mem": -23.6, "time": 3.9},
    "DepGraph 10%": {"params": 18.2, "size": 17.9, "flops": 18.3, "gpu_mem": 18.2, "time": -4.5},
    "DepGraph 20%": {"params": 31.1, "size": 30.8, "flops": 31.9, "gpu_mem": 23.6, "time": 3.1},
    "DepGraph 30%": {"params": 31.1, "size": 30.8, "flops": 31.9, "gpu_mem": 23.6, "time": 3.1},
    "Magnitude 10%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 7.3, "time": -4.4},
    "Magnitude 20%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 7.3, "time": 0.0},
    "Magnitude 30%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 25.5, "time": -3.3},
    "SNIP 10%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 7.3, "time": -2.1},
    "SNIP 20%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 25.5, "time": -1.1},
    "SNIP 30%": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 38.2, "time": -1.4},
    "Magnitude 20% (FT)": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 12.7, "time": 1.5},
    "SNIP 20% (FT)": {"params": 0.0, "size": 0.0, "flops": 0.0, "gpu_mem": 7.3, "time": 2.0},
}

# Thesis Table 4 ("Training Efficiency Comparison Across Model Variants"): 35 epochs on a GPU, in minutes.
THESIS_TABLE4: Dict[str, Dict[str, Any]] = {
    "Base RAAGR2-Net": {"train_minutes": 47.5, "time_reduction_pct": None, "memory_reduction_pct": None},
    "Encoder-Decoder Shared": {"train_minutes": 46.9, "time_reduction_pct": 1.3, "memory_reduction_pct": 0.0},
    "Paired Shared": {"train_minutes": 42.2, "time_reduction_pct": 11.2, "memory_reduction_pct": 25.7},
    "Depthwise Shared": {"train_minutes": 39.9, "time_reduction_pct": 16.0, "memory_reduction_pct": 25.7},
}

#: Our row name -> the thesis's row that claims to be the same model.
THESIS_ROW: Dict[str, str] = {
    "baseline": "Base RAAGR2-Net",
    "depthwise": "Depthwise Shared",
    "paired": "Paired Shared",
    "encdec": "Encoder-Decoder Shared",
    **{f"{m}-{p}": f"{t} {p}%" for m, t in (("magnitude", "Magnitude"), ("snip", "SNIP"), ("depgraph", "DepGraph"))
       for p in (10, 20, 30)},
    "magnitude-20-ft": "Magnitude 20% (FT)",
    "snip-20-ft": "SNIP 20% (FT)",
}

#: What is wrong with the thesis's figures; printed under every comparison.
THESIS_NOTES: Tuple[str, ...] = (
    "Its \"C2/C3/C4\" Dice columns, labelled NCR/NET, ET and ED, were the TC, ET and WT output channels; they are "
    "shown here under TC, ET and WT.",
    "Its headline \"Dice Coef.\" pools all output channels and voxels of a batch of slices, background-like ones "
    "included, on soft predictions; it is comparable only with our column \"thesis-style pooled Dice\", not with the "
    "per-subject BraTS Dice.",
    "Its DepGraph 20 % and 30 % rows are identical copies of one run.",
    "Its \"SNIP (unfinetuned)\" rows measured an untrained network (Dice about 0.28).",
    "Its \"fine-tuned\" Magnitude and SNIP rows were dense networks trained from scratch (the masks were not kept), "
    "which is why their parameters, size and FLOPs equal the baseline's.",
    "Its FLOPs come from ptflops (2 x MACs, activations double-counted, functional convolutions missed); ours from "
    "torch.utils.flop_counter.FlopCounterMode (every convolution, a multiply-add = 2 FLOPs).",
    "Its Encoder-Decoder Shared count (6,621,141) includes 4,840 unused parameters and ties nothing across encoder "
    "and decoder; ours ties the decoder to the encoder's kernels (6,606,701 at 5 outputs).",
    "Its latency, memory and time figures are from a GPU; the quick profile's are from the CPU it ran on.",
)
