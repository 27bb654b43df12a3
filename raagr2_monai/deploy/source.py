"""What a model is exported from: a network (any RAAGR2-Net variant, mask- or DepGraph-pruned included) and, for a
bundle, the files that define it (``configs/inference.json``, ``models/model.pt``, ``models/pruning_history.json``).

:class:`ModelSource` holds the facts an exported model must agree with: variant, input and output channels, the
fingerprints of the weights and of the pruning history, and the files they were read from (named in error messages).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from torch import nn

from raagr2_monai.bundle.load import build_bundle_network, check_bundle
from raagr2_monai.networks import load_weights, missing_weights, variant_of
from raagr2_monai.pruning import read_history
from raagr2_monai.utils import unwrap

from .fingerprint import history_sha256, state_dict_sha256

__all__ = ["ModelSource", "BundleModel", "source_of", "read_bundle"]

PathLike = Union[str, os.PathLike]
History = Sequence[Sequence[Any]]


@dataclass(frozen=True)
class ModelSource:
    """The facts an exported model is checked against.

    Attributes:
        variant: ``baseline``, ``depthwise``, ``paired`` or ``encdec``.
        network_class: the network's class name.
        in_channels: input channels.
        out_channels: output channels.
        size_divisor: H and W must be multiples of it.
        weights_sha256: :func:`~raagr2_monai.deploy.fingerprint.state_dict_sha256` of the weights.
        history_sha256: :func:`~raagr2_monai.deploy.fingerprint.history_sha256` of the DepGraph pruning history,
            ``None`` for a network that was not structurally pruned.
        weights_file: the checkpoint the weights came from, if any (for messages).
        history_file: the history file, if any (for messages).
    """

    variant: str
    network_class: str
    in_channels: int
    out_channels: int
    size_divisor: int
    weights_sha256: str
    history_sha256: Optional[str] = None
    weights_file: Optional[str] = None
    history_file: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The source as a JSON-friendly dict (the ``source`` entry of an export record)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "ModelSource":
        """Inverse of :meth:`to_dict`; ``KeyError``/``TypeError`` for a malformed entry."""
        return cls(**{key: document[key] for key in cls.__dataclass_fields__})


def source_of(
    network: nn.Module,
    history: Union[PathLike, History, None] = None,
    weights_file: Optional[PathLike] = None,
) -> ModelSource:
    """The :class:`ModelSource` of a network as it is now.

    Args:
        network: a RAAGR2-Net variant (a ``DistributedDataParallel`` wrapper is unwrapped).
        history: the DepGraph pruning history it was built with: a file written by
            :func:`raagr2_monai.pruning.save_pruned` or the steps themselves; ``None`` if it was not channel-pruned.
        weights_file: the checkpoint its weights were loaded from, recorded for messages.

    Raises:
        ValueError: ``network`` is not a RAAGR2-Net variant, or ``history`` is not a valid history file.

    Example::

        >>> from raagr2_monai.networks import get_network
        >>> source_of(get_network("depthwise")).in_channels
        4
    """
    model = unwrap(network)
    steps: Optional[List[Any]] = None
    history_file = None
    if isinstance(history, (str, os.PathLike)):
        steps = read_history(history)["history"]
        history_file = str(history)
    elif history is not None:
        steps = [list(step) for step in history]
    return ModelSource(
        variant=variant_of(model),
        network_class=type(model).__name__,
        in_channels=int(model.in_channels),
        out_channels=int(model.out_channels),
        size_divisor=int(model.size_divisor),
        weights_sha256=state_dict_sha256(model.state_dict()),
        history_sha256=None if steps is None else history_sha256(steps),
        weights_file=None if weights_file is None else str(weights_file),
        history_file=history_file,
    )


@dataclass(frozen=True)
class BundleModel:
    """A bundle's network, with its trained weights, and the files it was built from.

    Attributes:
        root: the bundle folder.
        config: its ``configs/inference.json``.
        weights: its ``models/model.pt``.
        history: the pruning history its ``network_def`` replays (DepGraph-pruned bundles), else ``None``.
        network: the network, on the CPU, in eval mode, weights loaded.
    """

    root: Path
    config: Path
    weights: Path
    history: Optional[Path]
    network: nn.Module

    @property
    def source(self) -> ModelSource:
        """The bundle's :class:`ModelSource`."""
        return source_of(self.network, self.history, self.weights)


def read_bundle(bundle_dir: PathLike) -> BundleModel:
    """A bundle's network (:func:`raagr2_monai.bundle.build_bundle_network`) with ``models/model.pt`` loaded, and the
    files it was built from. The weights are loaded with :func:`raagr2_monai.networks.load_weights`
    (``weights_only=True``, strict).

    Args:
        bundle_dir: the bundle folder.

    Returns:
        A :class:`BundleModel`.

    Raises:
        FileNotFoundError: the folder, its ``configs/inference.json`` or its ``models/model.pt`` does not exist
            (an untrained bundle has nothing to export).
        ValueError: the config has no ``network_def``, or it is not a RAAGR2-Net.
        raagr2_monai.networks.CheckpointMismatchError: ``models/model.pt`` does not fit the network.

    Example::

        model = read_bundle("bundles/baseline/pruned/depgraph-50")
        model.history  # .../models/pruning_history.json
    """
    root = check_bundle(bundle_dir)
    config = root / "configs" / "inference.json"
    weights = root / "models" / "model.pt"
    if not weights.is_file():
        raise missing_weights(weights, setting=None)
    network, history = build_bundle_network(root)
    try:
        variant_of(network)
    except ValueError as err:
        raise ValueError(f"'network_def' of {config}: {err}") from None
    load_weights(network, str(weights))
    return BundleModel(root=root, config=config, weights=weights, history=history, network=network.cpu().eval())
