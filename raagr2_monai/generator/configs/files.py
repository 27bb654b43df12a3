"""A bundle's configs together, and the text of the files they are written as (with the shared ``logging.conf``)."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

from .evaluate import evaluate_config
from .inference import inference_config
from .metadata import metadata
from .multi_gpu import multi_gpu_config
from .prune import prune_config
from .train import train_config
from raagr2_monai.networks import Variant

__all__ = ["LOGGING_CONF", "config_files", "bundle_configs", "bundle_files"]


LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def config_files(configs: Mapping[str, Dict[str, Any]]) -> Dict[str, str]:
    """``{"train": {...}, ...}`` -> ``{"configs/train.json": text, ...}``, plus the shared ``logging.conf``."""
    files = {f"configs/{name}.json": json.dumps(config, indent=4) + "\n" for name, config in configs.items()}
    files["configs/logging.conf"] = LOGGING_CONF
    return files


def bundle_configs(variant: Variant, network_def: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """Every config of ``variant``'s bundle by name; ``network_def`` as in :func:`.common._common`."""
    return {
        "metadata": metadata(variant),
        "train": train_config(variant, network_def),
        "evaluate": evaluate_config(variant),
        "inference": inference_config(variant, network_def),
        "multi_gpu_train": multi_gpu_config(variant),
        "prune": prune_config(variant),
    }


def bundle_files(variant: Variant) -> Dict[str, str]:
    """Relative path -> text of every generated config file of ``variant``'s bundle."""
    return config_files(bundle_configs(variant))
