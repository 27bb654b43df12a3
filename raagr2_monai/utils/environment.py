"""Where a measurement ran: the device and its name, the CPU, torch's threads, the platform and package versions."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Any, Dict, Optional

import torch

from .allocator import retained_memory_settings
from .device import DeviceLike, resolve_device
from .versions import versions

__all__ = ["environment", "usable_cpus"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> Optional[int]:
    """The CPUs this process may run on (its affinity mask, which a container or ``taskset`` narrows), or ``None``
    where the platform does not say (macOS, Windows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def environment(device: DeviceLike = None) -> Dict[str, Any]:
    """Where a benchmark ran: device and its name, CPU model and counts, torch threads, platform, package versions,
    the malloc settings of :func:`~.allocator.retain_freed_memory` (``None``: the defaults).

    Args:
        device: the device measured on (:func:`~.device.resolve_device`; default CUDA when available).

    Example::

        >>> environment("cpu")["torch_threads"] == torch.get_num_threads()
        True
    """
    dev = resolve_device(device)
    found: Dict[str, Any] = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_model(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "versions": versions(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # how the process's malloc treats freed memory changes eager CPU timings at large batches (utils.allocator)
        "malloc_settings": retained_memory_settings(),
    }
    if hasattr(os, "getloadavg"):
        # other processes on the machine distort timings: the load says how much
        found["load_average_1m"] = round(os.getloadavg()[0], 2)
    usable = usable_cpus()
    if usable is not None:
        found["usable_cpus"] = usable
    if dev.type == "cuda":
        found["cuda"] = torch.version.cuda
    return found
