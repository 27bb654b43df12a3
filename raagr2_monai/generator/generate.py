"""Write the four bundles from :mod:`raagr2_monai.generator.configs` (``raagr2 bundles``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from .configs import VARIANTS, bundle_files
from .docs import bundle_readme
from raagr2_monai.utils import atomic_write_text

__all__ = ["expected_files", "write_bundle", "write_bundles", "SCHEMA_PATH"]

#: The metadata schema kept in the package, so ``verify_metadata`` works offline.
SCHEMA_PATH = str(Path(__file__).with_name("metadata_schema.json"))


def expected_files(variant: str, license_text: str) -> Dict[str, str]:
    """Relative path -> text of every generated file of one bundle."""
    files = bundle_files(VARIANTS[variant])
    files["docs/README.md"] = bundle_readme(VARIANTS[variant])
    files["LICENSE"] = license_text
    return files


def write_bundle(folder: str, variant: str, license_text: str) -> List[str]:
    """(Re)write one bundle's generated files into ``folder``; trained weights under ``models/`` are kept.

    Returns:
        The paths written.
    """
    written = []
    for rel, text in expected_files(variant, license_text).items():
        path = os.path.join(folder, rel)
        atomic_write_text(path, text)
        written.append(path)
    return written


def write_bundles(
    root: str = "bundles", variants: Optional[Iterable[str]] = None, license_file: str = "LICENSE"
) -> List[str]:
    """(Re)write ``<root>/<variant>/`` for each variant (see :func:`write_bundle`).

    Returns:
        The paths written.
    """
    license_text = Path(license_file).read_text()
    written = []
    for name in variants or VARIANTS:
        if name not in VARIANTS:
            raise ValueError(f"Unknown variant {name!r}; valid: {', '.join(VARIANTS)}.")
        written += write_bundle(os.path.join(root, name), name, license_text)
    return written
