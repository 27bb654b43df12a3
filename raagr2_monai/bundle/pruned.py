"""Run pruning as a bundle workflow (``configs/prune.json``) and write the pruned model as a bundle of its own.

A pruned bundle is self-contained: ``configs/`` written by the same generator as the four base bundles
(:mod:`raagr2_monai.bundle.configs`), with a ``network_def`` that rebuilds the pruned network; ``models/model.pt`` as
a plain state_dict; ``models/pruning_history.json`` (DepGraph) or ``models/masks.pt`` and ``models/model_sparse.pt``
(magnitude, SNIP); a ``pruning`` entry in ``configs/metadata.json`` with the figures; ``docs/README.md``; ``LICENSE``.
Every file is written to a temporary name, then renamed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ignite.engine import Engine
from torch import nn

from raagr2_monai.handlers import PruneHandler
from raagr2_monai.networks import load_weights, variant_of
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

from .configs import VARIANTS, Variant, bundle_configs, config_files
from .docs import pruned_bundle_readme

__all__ = [
    "check_prune_settings",
    "prepare_output_dir",
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
) -> None:
    """Refuse bad pruning settings before any data is loaded (the first step of ``prune.json``'s ``initialize``).

    ``source_method`` is how the bundle's own network was pruned (``None``: a base bundle). A DepGraph-pruned
    network can be pruned again by DepGraph (iterative pruning, each step fine-tuned); masks are not stacked.

    Raises:
        ValueError: for an unknown method or scope, a ratio outside (0, 1), a negative or non-integer
            ``finetune_epochs``, a non-boolean ``from_scratch``, ``from_scratch`` without training epochs (an
            untrained pruned network is what the thesis's "SNIP without fine-tuning" row measured), or a ``round_to``
            other than null or an integer >= 1, or one given to a mask method; a pruned bundle pruned again by another
            method than DepGraph, or one pruned by a mask method.

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


def run_pruning(trainer: Engine, evaluator: Engine, handler: PruneHandler, finetune_epochs: int) -> PruneHandler:
    """Prune and fine-tune (``trainer.run()``, the handler prunes at start), or with ``finetune_epochs`` 0 prune
    (and recalibrate BatchNorm, if the handler is set to) and validate once, which saves the model to ``ckpt_dir``.

    Returns:
        ``handler``, holding the pruning's ``result`` and ``report``.
    """
    if finetune_epochs > 0:
        trainer.run()
    else:
        handler(trainer)
        evaluator.run()
    if handler.result is None:
        raise RuntimeError("The trainer ran without pruning: attach the PruneHandler to it (train#handlers).")
    return handler


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


def _pruned_configs(
    variant: Variant, report: Mapping[str, Any], in_channels: int, out_channels: int, source_name: Optional[str]
) -> Dict[str, str]:
    method = report["method"]
    configs = bundle_configs(variant, pruned_network_def(variant.name, method, in_channels, out_channels))
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
    return config_files(configs)


def _source_pruning(source_bundle: Optional[PathLike]) -> Optional[Dict[str, Any]]:
    """What pruned the source bundle, when it is itself DepGraph-pruned (iterative pruning): its ``name``, its
    ``history`` (which the new step's history extends: each step's channel indices refer to the network the earlier
    steps left) and its ``steps`` (the earlier steps' reports, oldest first); ``None`` for a base bundle."""
    if source_bundle is None:
        return None
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
    report: Optional[Mapping[str, Any]] = None,
    best_ckpt: Optional[PathLike] = None,
    evaluator: Optional[Engine] = None,
    source_bundle: Optional[PathLike] = None,
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
        source_bundle: the bundle that was pruned; its ``LICENSE`` is copied and its path recorded.
        settings: the run's settings (fine-tuning epochs, learning rate, ...), recorded in the report.
        flops_size: see ``report``.

    Returns:
        ``output_dir`` as a path.

    Raises:
        ValueError: when the checkpoint revives weights the masks removed, or does not fit the pruned network.

    Example::

        result = prune(net, "depgraph", 0.2)
        write_pruned_bundle("bundles/baseline/pruned/depgraph-20", net, result)
    """
    out = Path(output_dir)
    model = unwrap(network)
    variant = VARIANTS[variant_of(model)]
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
    if source_bundle is not None:
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

    files = _pruned_configs(variant, report, int(model.in_channels), int(model.out_channels),
                            earlier["name"] if earlier is not None else None)
    files["docs/README.md"] = pruned_bundle_readme(variant, report, out)
    for rel, text in files.items():
        atomic_write_text(str(out / rel), text)
    atomic_write_json(out / "pruning.json", report, indent=4)
    license_file = Path(source_bundle) / "LICENSE" if source_bundle is not None else None
    if license_file is not None and license_file.is_file():
        atomic_write_text(str(out / "LICENSE"), license_file.read_text())
    logger.info("Wrote the pruned bundle %s", out)
    return out
