"""Run pruning as a bundle workflow (``configs/prune.json``) and write the pruned model as a bundle of its own.

A pruned bundle is self-contained: ``configs/`` written by the same generator as the four base bundles
(:mod:`raagr2_monai.bundle.configs`), with a ``network_def`` that rebuilds the pruned network; ``models/model.pt`` as
a plain state_dict; ``models/pruning_history.json`` (DepGraph) or ``models/masks.pt`` and ``models/model_sparse.pt``
(magnitude, SNIP); a ``pruning`` entry in ``configs/metadata.json`` with the figures; ``docs/README.md``; ``LICENSE``.
Every file is written to a temporary name, then renamed.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ignite.engine import Engine
from torch import nn

from raagr2_monai.handlers import PruneHandler
from raagr2_monai.networks import VARIANTS, Variant, check_weights, load_weights, variant_of
from raagr2_monai.pruning import (
    PruneResult,
    check_method,
    check_method_round_to,
    check_ratio,
    check_scope,
    pruning_report,
    read_history,
    save_pruned,
    serialized_nbytes,
    to_sparse_state_dict,
)
from raagr2_monai.utils import atomic_save, atomic_write_json, atomic_write_text, to_jsonable, unwrap

from .readme import pruned_bundle_readme
from .records import run_settings

__all__ = [
    "check_prune_settings",
    "pruned_bundle_dir",
    "prepare_output_dir",
    "pruning_run_settings",
    "run_pruning",
    "pruned_network_def",
    "write_pruned_bundle",
    "MODEL_FILES",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: Files under ``models/`` that a pruning run writes (and ``overwrite`` clears first).
MODEL_FILES = ("model.pt", "model_sparse.pt", "masks.pt", "pruning_history.json")


def check_prune_settings(
    method: Any,
    ratio: Any,
    scope: Any = "global",
    finetune_epochs: Any = 0,
    from_scratch: Any = False,
    round_to: Any = None,
    source_method: Optional[str] = None,
    source_ckpt: Optional[PathLike] = None,
) -> None:
    """Refuse bad pruning settings before any data is loaded (the first step of ``prune.json``'s ``initialize``).

    ``source_method`` is how the bundle's own network was pruned (``None``: a base bundle). A DepGraph-pruned
    network can be pruned again by DepGraph (iterative pruning, each step fine-tuned); masks are not stacked.
    ``source_ckpt``, the trained weights to prune, must exist unless ``from_scratch``: without them there is nothing
    to prune, said before anything is read or written.

    Raises:
        ValueError: for an unknown method or scope, a ratio outside (0, 1), a negative or non-integer
            ``finetune_epochs``, a non-boolean ``from_scratch``, ``from_scratch`` without training epochs (an
            untrained pruned network is what the thesis's "SNIP without fine-tuning" row measured), or a ``round_to``
            other than null or an integer >= 1, or one given to a mask method; a pruned bundle pruned again by another
            method than DepGraph, or one pruned by a mask method.
        FileNotFoundError: ``source_ckpt`` given, not ``from_scratch``, and missing.

    Example::

        >>> check_prune_settings("depgraph", 0.2, "global", 20, False, round_to=8)
        >>> check_prune_settings("depgraph", 0.25, source_method="depgraph")
    """
    check_method(method)
    if source_method is not None and (source_method != "depgraph" or method != "depgraph"):
        raise ValueError(
            f"This bundle's network was pruned by {source_method}; only a DepGraph-pruned network is pruned again, "
            f"by DepGraph (iterative pruning); got method {method!r}. Prune the base bundle instead."
        )
    check_ratio(ratio)
    check_scope(scope)
    check_method_round_to(method, round_to)
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be an integer >= 0 (0: no fine-tuning); got {finetune_epochs!r}.")
    if not isinstance(from_scratch, bool):
        raise ValueError(f"from_scratch must be true or false; got {from_scratch!r}.")
    if from_scratch and finetune_epochs == 0:
        raise ValueError(
            "from_scratch prunes the untrained network and then trains it: set finetune_epochs to the number of "
            "training epochs (> 0)."
        )
    if source_ckpt is not None and not from_scratch:
        check_weights(source_ckpt, "source_ckpt")


def prepare_output_dir(output_dir: PathLike, overwrite: bool = False) -> Path:
    """Make sure a pruning run does not silently mix with an earlier pruned bundle in ``output_dir``.

    The best fine-tuned checkpoint is taken from ``<output_dir>/models/model.pt``; a file left there by an earlier
    run would be mistaken for it.

    Args:
        output_dir: the pruned bundle's folder.
        overwrite: delete the earlier run's model files (:data:`MODEL_FILES`) instead of refusing.

    Returns:
        ``output_dir`` as a path.

    Raises:
        FileExistsError: when ``output_dir/models`` already holds model files and ``overwrite`` is false.
    """
    models = Path(output_dir) / "models"
    existing = [models / name for name in MODEL_FILES if (models / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds a pruned model ({', '.join(p.name for p in existing)}); pass "
            "--overwrite true to replace it or choose another --output_dir."
        )
    for path in existing:
        path.unlink()
    return Path(output_dir)


def run_pruning(
    trainer: Engine,
    evaluator: Engine,
    handler: PruneHandler,
    finetune_epochs: int,
    source_ckpt: Optional[PathLike] = None,
    from_scratch: bool = False,
) -> PruneHandler:
    """Load the trained weights to prune (``source_ckpt``, unless ``from_scratch``), then prune and fine-tune
    (``trainer.run()``, the handler prunes at start), or with ``finetune_epochs`` 0 prune (and recalibrate
    BatchNorm, if the handler is set to) and validate once, which saves the model to ``ckpt_dir``.

    Returns:
        ``handler``, holding the pruning's ``result`` and ``report``.
    """
    if source_ckpt is not None and not from_scratch:
        load_weights(unwrap(trainer.network), str(source_ckpt), setting="source_ckpt")
    if finetune_epochs > 0:
        trainer.run()
    else:
        handler(trainer)
        evaluator.run()
    if handler.result is None:
        raise RuntimeError("The trainer ran without pruning: attach the PruneHandler to it (train#handlers).")
    return handler


def pruned_bundle_dir(bundle_root: PathLike, method: str, ratio: float) -> str:
    """Where a pruning run writes its bundle by default: ``<bundle_root>/pruned/<method>-<percent>``.

    Example::

        >>> pruned_bundle_dir("bundles/baseline", "depgraph", 0.2)
        'bundles/baseline/pruned/depgraph-20'
    """
    return f"{bundle_root}/pruned/{method}-{round(ratio * 100)}"


def pruning_run_settings(settings: Mapping[str, Any], datasets: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """A pruning run's record (:func:`raagr2_monai.bundle.run_settings`), without the settings that did not apply:
    ``snip_size`` but for SNIP, ``distill_weight`` without a ``teacher_bundle``, ``source_ckpt`` ``from_scratch``."""
    recorded = run_settings(settings, datasets)
    for key, applies in (
        ("snip_size", recorded.get("method") == "snip"),
        ("distill_weight", recorded.get("teacher_bundle") is not None),
        ("source_ckpt", not recorded.get("from_scratch")),
    ):
        if key in recorded and not applies:
            recorded[key] = None
    return recorded


def pruned_network_def(variant: str, method: str, in_channels: int = 4, out_channels: int = 3) -> Dict[str, Any]:
    """The ``network_def`` of a pruned bundle: the pruned structure rebuilt from ``models/pruning_history.json``
    (DepGraph), else the variant's own class (masks keep the shapes)."""
    if method == "depgraph":
        return {
            "_target_": "raagr2_monai.pruning.build_pruned_network",
            "variant": variant,
            "history": "$@bundle_root + '/models/pruning_history.json'",
            "in_channels": in_channels,
            "out_channels": out_channels,
        }
    return {"_target_": VARIANTS[variant].network, "in_channels": in_channels, "out_channels": out_channels}


#: The config files a pruned bundle takes from its source (``prune.json`` only where it can be pruned again).
_CONFIGS = ("metadata", "train", "evaluate", "inference", "multi_gpu_train", "prune")


def _source_configs(source_bundle: PathLike) -> Dict[str, Any]:
    """The source bundle's configs (name -> parsed JSON) and its ``logging.conf`` (``"logging"`` -> text), read before
    anything is written, so that an unreadable source leaves no half-written bundle."""
    folder = Path(source_bundle) / "configs"
    configs: Dict[str, Any] = {}
    for name in _CONFIGS:
        path = folder / f"{name}.json"
        try:
            configs[name] = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read the source bundle's config ({error}).") from None
    try:
        configs["logging"] = (folder / "logging.conf").read_text()
    except OSError as error:
        raise ValueError(f"{folder / 'logging.conf'}: cannot read the source bundle's config ({error}).") from None
    return configs


def _pruned_configs(
    source: Mapping[str, Any], variant: Variant, report: Mapping[str, Any], network_def: Mapping[str, Any],
    source_name: Optional[str],
) -> Dict[str, str]:
    """The pruned bundle's ``configs/`` files: the source bundle's (:func:`_source_configs`; the pruning run never
    needs the generator that wrote them), with ``network_def`` replaced and the metadata describing the pruning."""
    configs = copy.deepcopy({name: source[name] for name in _CONFIGS})
    for name in ("train", "inference"):
        configs[name]["network_def"] = dict(network_def)
    method = report["method"]
    if method == "depgraph":
        configs["prune"].update(method="depgraph", source_method="depgraph")
    else:
        del configs["prune"]  # masks are not stacked: a mask-pruned bundle is not pruned again
        # retraining this bundle keeps its sparsity pattern
        configs["train"]["train"]["handlers"].insert(
            0, {"_target_": "raagr2_monai.handlers.MaskHandler", "masks": "$@bundle_root + '/models/masks.pt'"}
        )
    percent = round(report["requested_ratio"] * 100)
    meta = configs["metadata"]
    pruned = f"{method}-pruned {percent} %"
    meta["name"] = f"{source_name}, then {pruned}" if source_name else f"{variant.title}, {pruned}"
    meta["changelog"] = {
        meta["version"]: f"{method} pruning at ratio {report['requested_ratio']} of the "
                         f"{source_name or variant.name} bundle"
    }
    achieved = f"{report['achieved_kind']} {report['achieved']:.4f}"
    meta["description"] = (
        f"{meta['description']} Pruned by {method} at ratio {report['requested_ratio']} ({achieved}; "
        f"{report['params_before']:,} -> {report['params_after']:,} parameters)."
    )
    meta["pruning"] = dict(report)
    if report.get("val_mean_dice") is not None:
        meta["eval_metrics"] = {"val_mean_dice": report["val_mean_dice"]}
    files = {f"configs/{name}.json": json.dumps(config, indent=4) + "\n" for name, config in configs.items()}
    files["configs/logging.conf"] = source["logging"]
    return files


def _source_pruning(source_bundle: PathLike) -> Optional[Dict[str, Any]]:
    """What pruned the source bundle, when it is itself DepGraph-pruned (iterative pruning): its ``name``, its
    ``history`` (which the new step's history extends: each step's channel indices refer to the network the earlier
    steps left) and its ``steps`` (the earlier steps' reports, oldest first); ``None`` for a base bundle."""
    root = Path(source_bundle)
    history_file = root / "models" / "pruning_history.json"
    if not history_file.is_file():
        return None
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    report = {k: v for k, v in meta.get("pruning", {}).items() if k != "earlier_steps"}
    steps = [*meta.get("pruning", {}).get("earlier_steps", []), report]
    return {"name": meta.get("name"), "history": read_history(history_file)["history"], "steps": steps}


def write_pruned_bundle(
    output_dir: PathLike,
    network: nn.Module,
    result: PruneResult,
    source_bundle: PathLike,
    report: Optional[Mapping[str, Any]] = None,
    best_ckpt: Optional[PathLike] = None,
    evaluator: Optional[Engine] = None,
    settings: Optional[Mapping[str, Any]] = None,
    flops_size: int = 192,
) -> Path:
    """Write the pruned network as a self-contained MONAI bundle.

    Args:
        output_dir: the bundle's folder (created; files already there that this writes are replaced).
        network: the pruned network (as pruned and fine-tuned).
        result: :func:`raagr2_monai.pruning.prune`'s result for it.
        report: the pruning figures (:attr:`PruneHandler.report`); computed from ``result`` at
            ``(1, C, flops_size, flops_size)`` when omitted.
        best_ckpt: the best fine-tuned checkpoint (``CheckpointSaver``'s ``model.pt``); loaded into ``network``
            when it exists, else ``network``'s current weights are saved.
        evaluator: the validation engine; its best ``val_mean_dice`` is recorded.
        source_bundle: the bundle that was pruned: its configs become the pruned bundle's (``network_def``
            replaced), its ``LICENSE`` is copied and its path recorded.
        settings: the run's settings (fine-tuning epochs, learning rate, ...), recorded in the report.
        flops_size: see ``report``.

    Returns:
        ``output_dir`` as a path.

    Raises:
        ValueError: when the checkpoint revives weights the masks removed, or does not fit the pruned network.

    Example::

        result = prune(net, "depgraph", 0.2)
        write_pruned_bundle("bundles/baseline/pruned/depgraph-20", net, result, "bundles/baseline")
    """
    out = Path(output_dir)
    model = unwrap(network)
    variant = VARIANTS[variant_of(model)]
    source = _source_configs(source_bundle)
    if best_ckpt is not None and os.path.isfile(best_ckpt):
        load_weights(model, str(best_ckpt))
        tuned = (settings or {}).get("epochs") != 0
        logger.info("Saving the %s, %s", "best fine-tuned weights" if tuned else "pruned weights (not fine-tuned)",
                    best_ckpt)
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    if result.masks is not None:
        revived = {name: int((state[name][~mask.cpu()] != 0).sum()) for name, mask in result.masks.masks.items()}
        revived = {name: n for name, n in revived.items() if n}
        if revived:
            raise ValueError(
                f"{best_ckpt or 'The network'} has non-zero weights where the masks pruned them ({revived}); it was "
                "not trained with the masks in force."
            )
    if report is None:
        shape = (1, int(model.in_channels), flops_size, flops_size)
        report = pruning_report(result, model, shape)
    report = dict(report)
    if evaluator is not None and getattr(evaluator.state, "best_metric", -1) != -1:
        report["val_mean_dice"] = float(evaluator.state.best_metric)
    if settings is not None:
        report["settings"] = to_jsonable(dict(settings))
    report["source_bundle"] = str(Path(source_bundle).resolve())

    earlier = _source_pruning(source_bundle)
    if earlier is not None:
        report["earlier_steps"] = earlier["steps"]
    models = out / "models"
    if result.history is not None:
        history = (earlier["history"] if earlier is not None else []) + list(result.history)
        steps = earlier["steps"] if earlier is not None else []
        ratios = [step["requested_ratio"] for step in steps] + [result.requested_ratio]
        save_pruned(models, model, history, {"method": result.method, "ratio": result.requested_ratio,
                                             "step_ratios": ratios})
    else:
        atomic_save(state, str(models / "model.pt"))
    if result.masks is not None:
        atomic_save(result.masks.state_dict(), str(models / "masks.pt"))
        packed = to_sparse_state_dict(state, list(result.masks))
        atomic_save(packed, str(models / "model_sparse.pt"))
        report["sparse_format"] = packed["format"]
    report["model_bytes"] = os.path.getsize(models / "model.pt")
    if result.masks is not None:
        report["model_sparse_bytes"] = os.path.getsize(models / "model_sparse.pt")
    report["state_dict_bytes"] = serialized_nbytes(state)

    network_def = pruned_network_def(variant.name, result.method, int(model.in_channels), int(model.out_channels))
    files = _pruned_configs(source, variant, report, network_def, earlier["name"] if earlier else None)
    files["docs/README.md"] = pruned_bundle_readme(variant, report, out)
    for rel, text in files.items():
        atomic_write_text(str(out / rel), text)
    atomic_write_json(out / "pruning.json", report, indent=4)
    license_file = Path(source_bundle) / "LICENSE"
    if license_file.is_file():
        atomic_write_text(str(out / "LICENSE"), license_file.read_text())
    logger.info("Wrote the pruned bundle %s", out)
    return out
