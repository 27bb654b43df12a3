"""The four bundles' configs, written once: everything but the network and the descriptive metadata is shared.

``raagr2 bundles`` writes ``bundles/<variant>/`` from here; a test regenerates them and compares with the files in
the repository, so a hand edit of one bundle cannot drift from the other three.

Configs read top to bottom: settings users override -> data -> network -> loss/optimizer -> engines -> handlers ->
the workflow's steps. Ids follow the model zoo (``train#trainer``, ``validate#evaluator``, ``network_def``, ...).

One module per config file (:mod:`.train`, :mod:`.evaluate`, :mod:`.inference`, :mod:`.multi_gpu`, :mod:`.prune`,
:mod:`.metadata`), the fragments they share (:mod:`.common`), the variants (:mod:`.variants`), and a bundle's configs
assembled into its files (:mod:`.files`).
"""

from .evaluate import evaluate_config
from .files import LOGGING_CONF, bundle_configs, bundle_files, config_files
from .inference import inference_config
from .metadata import BUNDLE_VERSION, REQUIRED_VERSIONS, metadata
from .multi_gpu import multi_gpu_config
from .prune import prune_config
from .train import train_config
from raagr2_monai.networks import VARIANTS, Variant

__all__ = [
    "Variant",
    "VARIANTS",
    "BUNDLE_VERSION",
    "REQUIRED_VERSIONS",
    "train_config",
    "evaluate_config",
    "inference_config",
    "multi_gpu_config",
    "prune_config",
    "metadata",
    "LOGGING_CONF",
    "bundle_files",
    "bundle_configs",
    "config_files",
]
