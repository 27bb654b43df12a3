"""Bytes exchanged per round, measured from the state dicts themselves.

:class:`StateDictBytesFilter` is an NVFlare filter on the client: as a task data filter it sees the global weights a
client receives (``server_to_client``), as a task result filter the weights (or weight differences) it sends back
(``client_to_server``). It sums the ``nbytes`` of every array of the exchanged DXO (the payload, not NVFlare's
framing or compression) and appends one JSON line per exchange to ``<log_dir>/<client>.jsonl``; each client runs in
its own process, so each writes its own file. :func:`summarise_bytes` folds the lines into the report.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping

from nvflare.apis.dxo import from_shareable
from nvflare.apis.filter import Filter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants

from raagr2_monai.utils import atomic_write_json

__all__ = ["DIRECTIONS", "payload_nbytes", "StateDictBytesFilter", "summarise_bytes"]

#: The two directions of an exchange, as recorded.
DIRECTIONS = ("server_to_client", "client_to_server")

# fl_ctx property carrying the round from the task data filter to the result filter of the same task
_ROUND_PROP = "raagr2_federated_round"


def payload_nbytes(weights: Mapping[str, Any]) -> int:
    """Bytes of the arrays of a state dict (numpy arrays or torch tensors); other values count nothing.

    Example::

        >>> import numpy as np, torch
        >>> payload_nbytes({"a": np.zeros(3, dtype=np.float32), "b": torch.zeros(2, dtype=torch.int64)})
        28
    """
    total = 0
    for value in weights.values():
        if hasattr(value, "nbytes"):
            total += int(value.nbytes)
        elif hasattr(value, "element_size") and hasattr(value, "numel"):
            total += int(value.element_size() * value.numel())
    return total


class StateDictBytesFilter(Filter):
    """NVFlare filter that records the bytes of the weights passing through it.

    Args:
        log_dir: the folder of the per-client JSON-lines logs (absolute; created).
        direction: ``server_to_client`` (as a task data filter) or ``client_to_server`` (as a task result filter).

    Raises:
        ValueError: an unknown direction.
    """

    def __init__(self, log_dir: str, direction: str) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}.")
        self.log_dir = log_dir
        self.direction = direction

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        """Record the payload's bytes and pass the shareable on unchanged."""
        try:
            dxo = from_shareable(shareable)
        except Exception:
            return shareable  # an error reply carries no weights: nothing was exchanged
        if not isinstance(dxo.data, Mapping):
            return shareable
        if self.direction == "server_to_client":
            round_ = shareable.get_header(AppConstants.CURRENT_ROUND)
            fl_ctx.set_prop(_ROUND_PROP, round_, private=True, sticky=False)
        else:
            round_ = fl_ctx.get_prop(_ROUND_PROP)
        client = fl_ctx.get_identity_name()
        record = {"round": None if round_ is None else int(round_), "client": client, "direction": self.direction,
                  "bytes": payload_nbytes(dxo.data), "arrays": len(dxo.data), "data_kind": str(dxo.data_kind)}
        os.makedirs(self.log_dir, exist_ok=True)
        # one short line per write, appended: a crash leaves at most one torn line, which summarise_bytes skips
        with open(os.path.join(self.log_dir, f"{client}.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        return shareable


def summarise_bytes(log_dir: str, output: str) -> Dict[str, Any]:
    """Fold the clients' logs into ``output`` (JSON, written atomically): bytes per round, per client and
    direction, and totals.

    A round seen twice for the same client and direction (a resumed job reran it) counts once, the last record.

    Returns:
        ``{"rounds": {round: {client: {direction: bytes}}}, "per_client": {client: {direction: bytes}},
        "total": {direction: bytes, "all": bytes}, "unit": "bytes", "measured": ...}``.
    """
    latest: Dict[tuple, int] = {}
    if os.path.isdir(log_dir):
        for name in sorted(os.listdir(log_dir)):
            if not name.endswith(".jsonl"):
                continue
            with open(os.path.join(log_dir, name)) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    latest[(rec["round"], rec["client"], rec["direction"])] = int(rec["bytes"])
    rounds: Dict[str, Dict[str, Dict[str, int]]] = {}
    per_client: Dict[str, Dict[str, int]] = {}
    total = {d: 0 for d in DIRECTIONS}
    for (round_, client, direction), nbytes in sorted(latest.items(), key=lambda kv: (kv[0][0] or -1, kv[0][1:])):
        rounds.setdefault(str(round_), {}).setdefault(client, {})[direction] = nbytes
        per_client.setdefault(client, {d: 0 for d in DIRECTIONS})[direction] += nbytes
        total[direction] += nbytes
    doc = {
        "unit": "bytes",
        "measured": "sum of nbytes of the arrays of the state dict each client receives (global weights) and sends "
                    "(weights or weight differences), by an NVFlare filter on the client; framing and compression "
                    "are not counted",
        "rounds": rounds,
        "per_client": per_client,
        "total": {**total, "all": sum(total.values())},
    }
    atomic_write_json(output, doc)
    return doc
