"""raagr2_monai: slim RAAGR2-Net brain-tumour segmentation models, shipped as MONAI bundles.

Sub-packages load on first use (``raagr2_monai.networks``, ``raagr2_monai.data``, ...), so that a bundle config's
``"$import raagr2_monai"`` is enough for every dotted path below it, without importing everything up front.
"""

import importlib
import pkgutil
from typing import Any

__version__ = "0.1.0"

# every module and sub-package beside this file, found rather than listed, so that a new one is reachable at once
_SUBMODULES = frozenset(module.name for module in pkgutil.iter_modules(__path__))


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
