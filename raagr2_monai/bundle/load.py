"""A bundle folder as a network (its name, and its ``network_def`` built with its weights loaded) and as a workflow
run in this process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

from monai.bundle import ConfigParser, ConfigWorkflow
from torch import nn

from raagr2_monai.networks import load_weights, missing_weights

__all__ = [
    "build_bundle_network", "bundle_name", "bundle_workflow", "run_bundle_workflow", "check_bundle", "is_bundle",
    "load_bundle_network", "load_teacher",
]

PathLike = Union[str, os.PathLike]


def is_bundle(folder: PathLike) -> bool:
    """Whether ``folder`` is a bundle: it has a ``configs/inference.json``."""
    return (Path(folder) / "configs" / "inference.json").is_file()


def check_bundle(bundle_dir: PathLike) -> Path:
    """``bundle_dir`` as a path, once it is known to be a bundle folder.

    Raises:
        FileNotFoundError: the folder, or its ``configs/inference.json``, does not exist.
    """
    root = Path(bundle_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Bundle folder {root} does not exist.")
    if not is_bundle(root):
        raise FileNotFoundError(f"{root} is not a bundle: {root / 'configs' / 'inference.json'} is missing.")
    return root


def bundle_workflow(
    config_files: Union[PathLike, Sequence[PathLike]], run_id: str, bundle_root: PathLike, **override: Any
) -> ConfigWorkflow:
    """One of a bundle's workflows, initialised in this process, as ``python -m monai.bundle run`` would run it
    (without its logging set-up): the caller runs and finalises it.

    Args:
        config_files: the config file, or the files merged in order (e.g. ``train.json`` then ``evaluate.json``).
        run_id: the workflow (``training``, ``evaluating``, ``pruning``, ...).
        bundle_root: the bundle folder (its ``configs/metadata.json`` is the metadata).
        override: config ids to set (``output_dir``, ``epochs``, ``validate#handlers``, ...).
    """
    files = [config_files] if isinstance(config_files, (str, os.PathLike)) else list(config_files)
    wf = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(Path(bundle_root) / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=None,
        run_id=run_id,
        bundle_root=str(bundle_root),
        **override,
    )
    wf.initialize()
    return wf


def run_bundle_workflow(wf: ConfigWorkflow) -> float:
    """Run a workflow from :func:`bundle_workflow` and finalise it, also when the run raises (as ``monai.bundle run``
    would, so that ``finalize`` still closes what ``initialize`` opened).

    Returns:
        The seconds of the run and its finalisation (``time.perf_counter``).
    """
    start = time.perf_counter()
    try:
        wf.run()
    finally:
        wf.finalize()
    return time.perf_counter() - start


def bundle_name(bundle_dir: PathLike) -> str:
    """A bundle's name: its path relative to the folder holding its outermost enclosing bundle.

    ``bundles/baseline`` is ``baseline`` and ``bundles/baseline/pruned/depgraph-20`` (a bundle inside the baseline
    bundle) is ``baseline/pruned/depgraph-20``, whatever the working directory.

    Example::

        >>> bundle_name("bundles/depthwise")
        'depthwise'
    """
    path = Path(bundle_dir).resolve()
    top = path
    for parent in path.parents:
        if is_bundle(parent):
            top = parent
    return path.relative_to(top.parent).as_posix()


def build_bundle_network(bundle_dir: PathLike) -> Tuple[nn.Module, Optional[Path]]:
    """Build a bundle's ``network_def`` from its ``configs/inference.json``, without loading weights.

    The config is parsed by ``monai.bundle.ConfigParser`` with ``bundle_root`` set to the folder, so that a
    DepGraph-pruned bundle's ``network_def`` (``raagr2_monai.pruning.build_pruned_network`` with
    ``history: "$@bundle_root + '/models/pruning_history.json'"``) finds its history.

    Args:
        bundle_dir: the bundle folder.

    Returns:
        The network (CPU, initial weights) and the pruning history file its ``network_def`` replays, else ``None``.

    Raises:
        FileNotFoundError: the folder or its ``configs/inference.json`` does not exist.
        ValueError: the config has no ``network_def`` or it is not a ``torch.nn.Module``.
    """
    root = check_bundle(bundle_dir)
    config = root / "configs" / "inference.json"
    parser = ConfigParser()
    parser.read_config(str(config))
    if "network_def" not in parser:
        raise ValueError(f"{config} defines no 'network_def'.")
    parser["bundle_root"] = str(root.resolve())
    raw = parser.get("network_def")
    history = None
    if isinstance(raw, dict) and "history" in raw:
        history = Path(parser.get_parsed_content("network_def#history"))
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, nn.Module):
        raise ValueError(f"'network_def' of {config} is a {type(network).__name__}, not a torch.nn.Module.")
    return network, history


def load_bundle_network(bundle_dir: PathLike, require_weights: bool = False) -> nn.Module:
    """Build a bundle's network (:func:`build_bundle_network`) and load ``models/model.pt`` if it exists.

    Weights are read by :func:`raagr2_monai.networks.load_weights` (``weights_only=True``, strict); without
    ``models/model.pt`` the network keeps its initial weights, which is all that size, FLOPs and timings need.

    Args:
        bundle_dir: the bundle folder.
        require_weights: refuse a bundle without ``models/model.pt`` (what runs the network on data needs).

    Returns:
        The network on the CPU, in train mode.

    Raises:
        FileNotFoundError: the folder, its ``configs/inference.json`` or (``require_weights``) its
            ``models/model.pt`` does not exist.
        ValueError: the config has no ``network_def`` or it is not a ``torch.nn.Module``.
        raagr2_monai.networks.CheckpointMismatchError: ``models/model.pt`` does not fit the network.

    Example::

        >>> net = load_bundle_network("bundles/depthwise")
        >>> type(net).__name__
        'DepthwiseSharedRAAGR2Net'
    """
    network, _ = build_bundle_network(bundle_dir)
    weights = Path(bundle_dir) / "models" / "model.pt"
    if weights.is_file():
        load_weights(network, str(weights))
    elif require_weights:
        raise missing_weights(weights, setting=None)
    return network


def load_teacher(bundle_dir: Optional[PathLike], device: Any = None) -> Optional[nn.Module]:
    """A trained bundle's network on ``device``, the teacher of knowledge distillation; ``None`` without a bundle.

    Raises:
        FileNotFoundError: the bundle or its ``models/model.pt`` is missing (see :func:`load_bundle_network`).
    """
    if bundle_dir is None:
        return None
    return load_bundle_network(bundle_dir, require_weights=True).to(device)
