"""Helpers every part of the package uses: atomic file writing and JSON (:mod:`.io`), recorded versions
(:mod:`.versions`), the machine a measurement ran on (:mod:`.environment`), the device and precision a network runs
at, and what a GPU training sets up for throughput (:mod:`.device`), DDP unwrapping (:mod:`.modules`), list-valued settings and switches (:mod:`.parsing`), progress
bars shown only on a terminal (:mod:`.progress`), freed memory kept for reuse by eager CPU inference
(:mod:`.allocator`)."""

from .allocator import retain_freed_memory, retained_memory_settings
from .device import (
    AMP_DTYPE,
    PRECISIONS,
    DeviceLike,
    GradScalerHandler,
    amp_dtype,
    amp_kwargs,
    autocast,
    check_precision,
    configure_backends,
    ddp_device_ids,
    distributed_backend,
    is_cuda,
    model_device,
    needs_grad_scaler,
    prepare_network,
    resolve_device,
    use_amp,
    uses_channels_last,
)
from .environment import environment, usable_cpus
from .io import atomic_save, atomic_write, atomic_write_json, atomic_write_text, to_jsonable
from .modules import is_wrapped, unwrap
from .parsing import as_flag, parse_sequence
from .progress import is_terminal, progress_bar
from .versions import PACKAGES, package_version, versions

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_save",
    "to_jsonable",
    "is_wrapped",
    "unwrap",
    "as_flag",
    "parse_sequence",
    "is_terminal",
    "progress_bar",
    "PACKAGES",
    "package_version",
    "versions",
    "AMP_DTYPE",
    "PRECISIONS",
    "DeviceLike",
    "resolve_device",
    "is_cuda",
    "model_device",
    "check_precision",
    "amp_dtype",
    "use_amp",
    "amp_kwargs",
    "autocast",
    "needs_grad_scaler",
    "GradScalerHandler",
    "configure_backends",
    "uses_channels_last",
    "prepare_network",
    "distributed_backend",
    "ddp_device_ids",
    "environment",
    "usable_cpus",
    "retain_freed_memory",
    "retained_memory_settings",
]
