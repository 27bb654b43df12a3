#!/usr/bin/env python3
"""The training throughput table of the GPU check: training steps of fresh networks timed on one device, one row per
network, batch size and setting (:func:`raagr2_monai.benchmark.training.throughput_grid`), printed as a table and
written as JSON.

Each network is measured with ``--precision`` autocast, channels-last on and off (and compiled with ``--compile``),
cuDNN autotuned; the first network also at the bundles' former settings (float16, NCHW, deterministic cuDNN, no
autotuning) at the first batch size, the reference the others are compared with in the same run. ``tools/gpu_check.py``
runs it alone on the GPU; on the CPU, at a tiny size, it checks itself::

    python tools/gpu_throughput.py --device cpu --size 32 --batches 2 --repeats 1 --warmup 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the source tree, when run from anywhere
    sys.path.insert(0, str(ROOT))


def settings(precision: str, compiled: bool) -> List[Dict[str, Any]]:
    """The settings measured for every network: ``precision`` channels-last, then NCHW, then (``compiled``)
    channels-last compiled."""
    chosen = [
        {"label": f"{precision} NHWC", "precision": precision, "channels_last": True},
        {"label": f"{precision} NCHW", "precision": precision, "channels_last": False},
    ]
    if compiled:
        chosen.append({"label": f"{precision} NHWC compiled", "precision": precision, "channels_last": True,
                       "compile": True})
    return chosen


#: The bundles' settings before the throughput work: float16 autocast, NCHW, set_determinism's deterministic cuDNN.
BEFORE = {"label": "before: fp16 NCHW deterministic", "precision": "fp16", "channels_last": False,
          "deterministic": True}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure and print the table; write the rows to ``--json``.

    Returns:
        0, or 2 when the device is not there.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="the device (default cuda)")
    parser.add_argument("--variants", default="baseline,depthwise", help="networks (default baseline,depthwise)")
    parser.add_argument("--batches", default="16,64", help="batch sizes (default 16,64)")
    parser.add_argument("--size", type=int, default=192, help="in-plane size of the slices (default 192)")
    parser.add_argument("--precision", default="bf16", help="auto, bf16, fp16 or fp32 (default bf16)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per row (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd networks (slow start)")
    parser.add_argument("--nobefore", action="store_true", help="leave the reference row at the former settings out")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="the device's peak TFLOP/s (default: the table of known GPUs)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)

    from raagr2_monai.benchmark.training import render_throughput, throughput_grid
    from raagr2_monai.networks import get_network
    from raagr2_monai.utils import check_precision, environment, parse_sequence, resolve_device, retain_freed_memory

    try:
        device = resolve_device(args.device)
        precision = check_precision(args.precision)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    batches = parse_sequence(args.batches, "batches", int)
    names = parse_sequence(args.variants, "variants")
    retain_freed_memory()  # on the CPU, large freed activations kept for the next step (as the benchmark does)
    common = {"repeats": args.repeats, "warmup": args.warmup, "peak_tflops": args.peak_tflops}
    start = time.perf_counter()
    rows = []
    if not args.nobefore:
        rows += throughput_grid({names[0]: get_network(names[0], out_channels=3)}, batches[:1], args.size, device,
                                [BEFORE], progress=lambda line: print(f"measuring {line}", flush=True), **common)
    rows += throughput_grid({name: get_network(name, out_channels=3) for name in names}, batches, args.size, device,
                            settings(precision, args.compile),
                            progress=lambda line: print(f"measuring {line}", flush=True), **common)
    device_name = environment(device)["device_name"]
    print(f"\ntraining throughput on {device} ({device_name}), {args.size}x{args.size} slices, {args.repeats} timed "
          f"steps after {args.warmup} warm-up steps, {time.perf_counter() - start:.0f} s in all; of peak: achieved "
          "TFLOP/s (3 x forward FLOPs) / the device's nominal dense peak for the dtype")
    print(render_throughput(rows), flush=True)
    if rows and not args.nobefore:
        before = rows[0]
        for row in rows[1:]:
            if row["model"] == before["model"] and row["batch"] == before["batch"]:
                speedup = before["step_ms"]["mean"] / row["step_ms"]["mean"]
                print(f"{row['model']} b{row['batch']} {row['label']}: {speedup:.2f}x the slices per second of "
                      f"{before['label']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
