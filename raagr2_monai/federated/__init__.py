"""Federated training of the bundles with NVIDIA FLARE: clients run a bundle's ``configs/train.json`` through MONAI's
``MonaiAlgo`` (driven by ``monai_nvflare``'s ``ClientAlgoExecutor``), the server averages them with FedAvg
(``ScatterAndGather``), all inside NVFlare's simulator.

One concern per module: the clients' data (:mod:`.clients`), the job folder (:mod:`.job`), the server's global model
(:mod:`.persistor`), the bytes exchanged (:mod:`.bytes`) and the run end to end (:mod:`.simulate`).

Only :mod:`raagr2_monai.cli` imports this package; NVFlare loads :mod:`.persistor` and :mod:`.bytes` by dotted path
from the job's configs.
"""

from .simulate import FederatedResult, prepare_clients, resolve_source_bundle, run_federated, write_global_bundle
from .clients import SPLITS, ClientData, split_studies

__all__ = ["FederatedResult", "prepare_clients", "resolve_source_bundle", "run_federated", "write_global_bundle",
           "SPLITS", "ClientData", "split_studies"]
