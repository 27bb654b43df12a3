"""Peak memory of one forward pass: on CUDA the allocator's peak; on CPU the peak resident set of a separate process.

On CPU there is no allocator to ask, so the figure is the peak resident set of a separate process that holds only the
one model, its input and its activations (besides the interpreter and the libraries): whatever the caller holds does
not count, nor do the models measured before it in that process (:class:`CpuMemoryProbe`).

:func:`peak_memory_during` measures any computation in this process instead (a training step of
:mod:`~raagr2_monai.benchmark.training`): the allocator's peak on CUDA, the process's peak resident set on the CPU.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import multiprocessing
import resource
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

__all__ = ["CpuMemoryProbe", "cuda_peak_memory", "peak_memory_during", "peak_rss_mb", "reset_peak_rss"]


def _proc_status_mb(field: str) -> Optional[float]:
    """A ``/proc/self/status`` memory field (kB) in MB, or ``None`` where there is no procfs."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set (``VmHWM``) of this process to its current resident set, so that
    :func:`peak_rss_mb` covers only what runs after it.

    Returns:
        ``False`` where that is not possible (no ``/proc/self/clear_refs``): the peak then counts from the start.

    Example::

        reset = reset_peak_rss()
        ...  # the work measured
        print(peak_rss_mb(), "MB", "since the reset" if reset else "since the process started")
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The peak resident set of this process in MB (10^6 bytes): ``VmHWM`` since :func:`reset_peak_rss`, or
    ``ru_maxrss`` (since the start) where there is no procfs.

    Example::

        >>> peak_rss_mb() > 0
        True
    """
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    # ru_maxrss is KiB on Linux and bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


def _release_freed_memory() -> None:
    """Hand the memory freed by earlier measurements back to the system (glibc's ``malloc_trim``), so that it does not
    count in the next model's resident set; a no-op where there is no glibc."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _child_peak_memory(model: nn.Module, shape: Tuple[int, ...], threads: int) -> Dict[str, Any]:
    """Run in the measuring process: one forward pass at ``shape``; its peak resident memory."""
    torch.set_num_threads(threads)
    model.eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    _release_freed_memory()
    before = _proc_status_mb("VmRSS")
    reset = reset_peak_rss()
    with torch.no_grad():
        model(x)
    return {"peak_mem_mb": peak_rss_mb(), "mem_before_forward_mb": before, "peak_since_start": not reset}


class CpuMemoryProbe:
    """Peak resident memory of one forward pass per model, measured in a separate process (multiprocessing ``spawn``)
    that holds only that model, its input and its activations besides the interpreter and the libraries.

    One process serves model after model: before each, the memory the previous one freed goes back to the system and
    the kernel's peak (``VmHWM``) is reset, so that models measured before do not count; where the peak cannot be reset
    (no ``/proc/self/clear_refs``), every model gets a fresh process. Starting a process costs seconds (it imports
    torch and the caller's main module again), which is what sharing one saves.

    Example::

        with CpuMemoryProbe() as probe:
            figures = {name: probe.measure(name, model, (8, 4, 192, 192)) for name, model in models.items()}
    """

    def __init__(self) -> None:
        self._pool: Optional[ProcessPoolExecutor] = None

    def __enter__(self) -> "CpuMemoryProbe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the measuring process."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def measure(self, name: str, model: nn.Module, shape: Tuple[int, ...]) -> Dict[str, Any]:
        """The peak resident set while ``model`` runs one forward pass at ``shape``.

        Args:
            name: the model's name, for the error message.
            model: the network (a copy goes to the process; the caller's model is not touched).
            shape: the input's shape.

        Returns:
            ``{"peak_mem_mb", "mem_before_forward_mb", "peak_since_start"}`` (MB = 10^6 bytes).

        Raises:
            RuntimeError: the process died (out of memory, or a caller whose top level is not ``__main__``-guarded).
        """
        # a copy goes to the child: passing tensors to a process moves their storage to shared memory, which must not
        # happen to the caller's model; the child maps that memory, so its resident set counts the weights once
        shared = copy.deepcopy(model).cpu()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        try:
            result = self._pool.submit(_child_peak_memory, shared, shape, torch.get_num_threads()).result()
        except BrokenProcessPool as err:
            self._pool = None
            raise RuntimeError(
                f"The process measuring the memory of {name!r} died: out of memory, or a calling script whose top "
                "level is not guarded by `if __name__ == '__main__':` (multiprocessing 'spawn' imports it again). "
                "Pass measure_memory=False to skip the measurement."
            ) from err
        if result["peak_since_start"]:
            self.close()  # that peak covers everything the process ran: the next model needs a fresh one
        return result


def cuda_peak_memory(model: nn.Module, shape: Tuple[int, ...], device: torch.device) -> Dict[str, Any]:
    """``torch.cuda.max_memory_allocated`` over one forward pass at ``shape`` on ``device`` (the model already there).

    Returns:
        ``{"peak_mem_mb", "mem_before_forward_mb"}`` (MB = 10^6 bytes).
    """
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) / 1e6
    with torch.no_grad():
        model(x)
    torch.cuda.synchronize(device)
    return {"peak_mem_mb": torch.cuda.max_memory_allocated(device) / 1e6, "mem_before_forward_mb": before}


def peak_memory_during(run: Callable[[], Any], device: torch.device) -> Dict[str, Any]:
    """The peak memory while ``run()`` runs in this process.

    On CUDA, ``torch.cuda.max_memory_allocated`` (tensors only: weights, gradients, optimizer state, activations;
    not the allocator's cache or the CUDA context). On the CPU, this process's peak resident set (``VmHWM``) after the
    memory freed before was released and the kernel's peak reset: the interpreter, the libraries and everything the
    process holds count too, and where the peak cannot be reset (no ``/proc/self/clear_refs``) it is the peak since
    the process started (``peak_since_start``).

    Args:
        run: the computation, e.g. one training step.
        device: where it runs.

    Returns:
        ``{"peak_mem_mb", "mem_before_mb", "peak_mem_kind", "peak_since_start"}`` (MB = 10^6 bytes).

    Example::

        >>> figures = peak_memory_during(lambda: torch.ones(1000, 1000).sum(), torch.device("cpu"))
        >>> figures["peak_mem_mb"] >= figures["mem_before_mb"] > 0
        True
    """
    if device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 1e6
        run()
        torch.cuda.synchronize(device)
        return {"peak_mem_mb": torch.cuda.max_memory_allocated(device) / 1e6, "mem_before_mb": before,
                "peak_mem_kind": "torch.cuda.max_memory_allocated", "peak_since_start": False}
    _release_freed_memory()
    before = _proc_status_mb("VmRSS")
    reset = reset_peak_rss()
    run()
    return {"peak_mem_mb": peak_rss_mb(), "mem_before_mb": before, "peak_mem_kind": "process peak RSS (VmHWM)",
            "peak_since_start": not reset}
