#!/usr/bin/env python3
"""Is a training step faster in the channels-last memory format on this CPU? The figures behind
``raagr2_monai.utils.uses_channels_last`` for the CPU.

One fresh network, trained in both layouts in one process (the training step of ``raagr2_monai.benchmark.training``:
zero_grad, forward, RAAGR2Loss, backward, Adam; float32), the steps of the two layouts interleaved (ABBA order) so
that a change of the machine's load hits both; wall time (``time.perf_counter``) and this process's CPU time
(``time.process_time``, less moved by other processes on a shared machine) per step, medians, and their ratio::

    python tools/channels_last_cpu.py --variant baseline --batch 16 --size 192 --rounds 3 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the source tree, when run from anywhere
    sys.path.insert(0, str(ROOT))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure both layouts and print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="baseline", help="the network (default baseline)")
    parser.add_argument("--batch", type=int, default=16, help="slices per step (default 16)")
    parser.add_argument("--size", type=int, default=192, help="in-plane size (default 192)")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per layout (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)

    import torch

    from raagr2_monai.benchmark.training import _training_step
    from raagr2_monai.networks import get_network
    from raagr2_monai.utils import prepare_network, retain_freed_memory

    retain_freed_memory()  # large freed activations kept for the next step, as the benchmark does
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = get_network(args.variant, out_channels=3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((args.batch, 4, args.size, args.size), generator=generator)
    y = (torch.rand((args.batch, 3, args.size, args.size), generator=generator) > 0.5).float()
    steps = {}
    for name, layout in (("contiguous", False), ("channels_last", True)):
        net = prepare_network(copy.deepcopy(model), cpu, channels_last=layout).train()
        steps[name] = _training_step(net, x, y, cpu, "fp32", False)
        steps[name]()  # warm-up
    wall: Dict[str, List[float]] = {name: [] for name in steps}
    busy: Dict[str, List[float]] = {name: [] for name in steps}
    for index in range(args.rounds):
        for name in (list(steps) if index % 2 == 0 else list(reversed(list(steps)))):
            start, used = time.perf_counter(), time.process_time()
            steps[name]()
            wall[name].append((time.perf_counter() - start) * 1e3)
            busy[name].append((time.process_time() - used) * 1e3)
    print(f"{args.variant} training step, batch {args.batch}, {args.size}x{args.size}, float32, "
          f"{torch.get_num_threads()} thread(s), {args.rounds} interleaved steps per layout after one warm-up; load "
          f"average {load:.2f} before, {os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan'):.2f} after")
    for name in steps:
        print(f"  {name}: wall median {statistics.median(wall[name]):.0f} ms {[round(t) for t in wall[name]]}, "
              f"CPU time median {statistics.median(busy[name]):.0f} ms")
    ratio = statistics.median(wall["channels_last"]) / statistics.median(wall["contiguous"])
    ratio_cpu = statistics.median(busy["channels_last"]) / statistics.median(busy["contiguous"])
    print(f"  channels_last / contiguous: wall {ratio:.3f}, CPU time {ratio_cpu:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
