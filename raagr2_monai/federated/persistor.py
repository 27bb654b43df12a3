"""The server's global model: built from the source bundle's ``network_def`` (a pruned bundle with its pruned
structure), written atomically after every round, and reloaded to resume a job.

NVFlare's ``PTFileModelPersistor`` writes into the run's workspace, which the simulator deletes when it starts again;
this persistor keeps the global model and the number of finished rounds in a folder of the job's own output, so a
rerun can continue from there.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

import numpy as np
import torch
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey, make_model_learnable
from nvflare.app_common.abstract.model_persistor import ModelPersistor
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

from raagr2_monai.bundle.load import build_bundle_network
from raagr2_monai.networks import load_weights
from raagr2_monai.utils import atomic_save, atomic_write_json

__all__ = ["GLOBAL_MODEL", "STATE_FILE", "AtomicBundlePersistor", "read_state"]

#: The global model in the state folder: a plain state_dict.
GLOBAL_MODEL = "model.pt"
#: The rounds finished so far, beside it.
STATE_FILE = "state.json"


def read_state(state_dir: str) -> Optional[Dict[str, Any]]:
    """The state of a job's global model (``{"rounds_done": n, ...}``), or ``None`` where there is none yet.

    Example::

        >>> read_state("/nonexistent") is None
        True
    """
    path = os.path.join(state_dir, STATE_FILE)
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(state_dir, GLOBAL_MODEL))):
        return None
    with open(path) as f:
        return json.load(f)


class AtomicBundlePersistor(ModelPersistor):
    """NVFlare model persistor for a bundle's network.

    Args:
        source_bundle: the bundle folder whose ``configs/inference.json`` builds the network (absolute path).
        state_dir: where the global model and :data:`STATE_FILE` are written (absolute path).
        seed: seed of the initial weights when neither a saved global model nor the bundle's weights exist.
        job: settings recorded in the state file (what the job was), so a resume can be checked against them.
    """

    def __init__(self, source_bundle: str, state_dir: str, seed: int = 0, job: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.source_bundle = source_bundle
        self.state_dir = state_dir
        self.seed = int(seed)
        self.job = dict(job or {})
        self._network: Optional[torch.nn.Module] = None
        self._empty_round = False

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        """Note whether the round's aggregation had any client update (the controller saves the model either way)."""
        if event_type == AppEventType.AFTER_AGGREGATION:
            result = fl_ctx.get_prop(AppConstants.AGGREGATION_RESULT)
            try:
                self._empty_round = not from_shareable(result).data
            except Exception:
                self._empty_round = True

    def _build(self) -> torch.nn.Module:
        if self._network is None:
            torch.manual_seed(self.seed)  # the initial weights of a bundle without models/model.pt
            self._network, _ = build_bundle_network(self.source_bundle)
        return self._network

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        """The last global model of this job if there is one (resume), else the bundle's weights, else initial ones."""
        network = self._build()
        saved = os.path.join(self.state_dir, GLOBAL_MODEL)
        bundle_weights = os.path.join(self.source_bundle, "models", "model.pt")
        if read_state(self.state_dir) is not None:
            load_weights(network, saved, setting=None)
            self.log_info(fl_ctx, f"resuming from the global model {saved}")
        elif os.path.isfile(bundle_weights):
            load_weights(network, bundle_weights, setting=None)
            self.log_info(fl_ctx, f"starting from the bundle's weights {bundle_weights}")
        else:
            self.log_info(fl_ctx, f"starting from initial weights (seed {self.seed})")
        weights = {k: v.detach().cpu().numpy() for k, v in network.state_dict().items()}
        return make_model_learnable(weights, {})

    def save_model(self, model: ModelLearnable, fl_ctx: FLContext) -> None:
        """Write the global model (temporary name, then ``os.replace``), then the number of finished rounds.

        A round no client contributed to is not saved: the job then ends short of its rounds and a rerun resumes it.
        """
        if self._empty_round:
            self.log_error(fl_ctx, "no client update was aggregated this round; the global model is not saved")
            return
        network = self._build()
        reference = network.state_dict()
        weights = model[ModelLearnableKey.WEIGHTS]
        missing = sorted(set(reference) - set(weights))
        if missing:
            raise KeyError(f"the aggregated model lacks {len(missing)} key(s) of the network, e.g. {missing[:3]}")
        # aggregation returns float arrays, also for integer buffers (BatchNorm's num_batches_tracked): cast back
        state = {k: torch.as_tensor(np.asarray(weights[k])).to(reference[k].dtype).reshape(reference[k].shape)
                 for k in reference}
        network.load_state_dict(state, strict=True)
        atomic_save(state, os.path.join(self.state_dir, GLOBAL_MODEL))
        round_ = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        done = 0 if round_ is None else int(round_) + 1
        atomic_write_json(os.path.join(self.state_dir, STATE_FILE), {"rounds_done": done, "job": self.job})
        self.log_info(fl_ctx, f"global model after round {done} written to {self.state_dir}")
