"""What a run ran on: Python, the installed packages (read from their metadata) and the git commit."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Dict

__all__ = ["PACKAGES", "versions", "package_version"]

#: Distributions whose versions every run records.
PACKAGES = ("torch", "monai", "pytorch-ignite", "torch-pruning", "mlflow", "nibabel", "numpy", "raagr2_monai")


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name`` from its metadata, or ``None`` when it is not installed.

    Package metadata, not ``module.__version__``: some packages state a stale one there (torch-pruning 1.6.1 says
    ``1.6.0``).
    """
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> Dict[str, str]:
    """Versions of Python and of :data:`PACKAGES`, and the git commit of the source tree when it is a checkout.

    Example::

        >>> sorted(versions())[:3]
        ['git_commit', 'mlflow', 'monai']
    """
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        version = package_version(name)
        if version is not None:
            found[name] = version
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode == 0:
            found["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return found
