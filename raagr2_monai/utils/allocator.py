"""Keeping freed memory for reuse (glibc's ``malloc``), so that eager PyTorch on a CPU does not fault its large
activations in afresh on every forward pass.

Eager PyTorch on a CPU allocates every activation of a forward pass and frees it again. glibc's ``malloc`` serves
blocks above its ``mmap`` threshold (at most 32 MB by default) with ``mmap`` and returns them with ``munmap`` when
they are freed, so that the next pass faults every page of them in again, zeroed by the kernel; it also gives the
top of its heap back to the system above a trim threshold. At batch 8 on 192 x 192 slices most of the RAAGR2
family's activations are such blocks: on this project's 2-core machine a fresh process ran the trained baseline at
5.0 s per batch, 2.7 s with the thresholds raised (``time.perf_counter``, median of 4, one process each, same
machine), which is what a long-running process whose heap happens to have grown sees anyway. Batch 1 is not
affected (its blocks stay under the threshold).

:func:`retain_freed_memory` raises both thresholds (``mallopt``), so that freed blocks stay in the process for the
next pass: what the inference commands and the benchmark's timing process do, and what the benchmark records. The
peak memory stays that of one pass; the resident memory between passes stays at that peak instead of falling back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Dict, Optional

__all__ = ["retain_freed_memory", "retained_memory_settings"]

#: mallopt parameters (malloc.h) and the values set: blocks up to 1 GiB come from the heap, and the heap keeps up to
#: 2 GiB (the largest value mallopt's int takes) of free memory at its top.
_MALLOPT = {"M_MMAP_THRESHOLD": (-3, 1 << 30), "M_TRIM_THRESHOLD": (-1, (1 << 31) - 1)}
_applied: Optional[Dict[str, int]] = None


def retain_freed_memory() -> Optional[Dict[str, int]]:
    """Have glibc's ``malloc`` keep freed blocks of up to 1 GiB for reuse in this process (see the module's notes).

    Idempotent. Elsewhere than Linux with glibc (macOS, Windows, musl) nothing is changed.

    Returns:
        The ``mallopt`` settings in force (name -> value), or ``None`` where nothing was changed.

    Example::

        retain_freed_memory()  # {'M_MMAP_THRESHOLD': 1073741824, 'M_TRIM_THRESHOLD': 2147483647} with glibc
        network(torch.randn(8, 4, 192, 192))  # the second pass reuses the first one's blocks
    """
    global _applied
    if _applied is not None:
        return dict(_applied)
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc's own symbol: musl has mallopt as a stub that does nothing
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = {name: value for name, (param, value) in _MALLOPT.items() if mallopt(param, value) == 1}
    _applied = applied or None
    return None if _applied is None else dict(_applied)


def retained_memory_settings() -> Optional[Dict[str, int]]:
    """The settings :func:`retain_freed_memory` put in force in this process, or ``None`` if it has not (for the
    record of a measurement)."""
    return None if _applied is None else dict(_applied)
