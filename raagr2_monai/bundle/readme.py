"""The parts of a bundle's ``docs/README.md`` both kinds of bundle share (the "Use" section, the commands to evaluate,
infer and export, the start of "Limits"), and a pruned bundle's whole README, which a pruning run writes
(:func:`pruned_bundle_readme`); :mod:`raagr2_monai.generator.docs` writes the base bundles' from the same parts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Union

from raagr2_monai.networks import Variant

__all__ = ["use_section", "run_commands", "export_commands", "limits_section", "pruned_bundle_readme"]

PathLike = Union[str, os.PathLike]


def use_section(commands: Sequence[str], intro: str = "") -> str:
    """The "Use" section: ``intro``, then ``commands`` (comment and command lines) as one bash block."""
    return "## Use\n\n" + (f"{intro}\n\n" if intro else "") + "```bash\n" + "\n".join(commands) + "\n```\n"


def run_commands(root: str) -> List[str]:
    """Evaluating and inferring with the bundle in ``root``, each command under a comment saying what it writes."""
    return [
        "# evaluate models/model.pt on the testing split: the written label maps scored against the seg files",
        "# -> runs/evaluate/metrics_per_subject.csv, metrics_summary.csv, predictions/, and one overlay picture per",
        "# subject in overlays/ (--write_overlays false skips the pictures)",
        "python -m monai.bundle run evaluating \\",
        f"    --config_file \"['{root}/configs/train.json','{root}/configs/evaluate.json']\"",
        "# label maps in each input's own grid and label convention -> runs/inference/<case>_pred.nii.gz",
        f"python -m monai.bundle run inferring --config_file {root}/configs/inference.json "
        "--dataset_dir /data/new_cases",
    ]


def export_commands(root: str) -> List[str]:
    """MONAI's checks of the network's input and output, and its TorchScript export, for the bundle in ``root``."""
    return [
        "# checks and TorchScript export",
        f"python -m monai.bundle verify_net_in_out network_def --meta_file {root}/configs/metadata.json \\",
        f"    --config_file {root}/configs/inference.json",
        f"python -m monai.bundle ckpt_export network_def --filepath {root}/models/model.ts --ckpt_file "
        f"{root}/models/model.pt \\",
        f"    --meta_file {root}/configs/metadata.json --config_file {root}/configs/inference.json",
    ]


def limits_section(only_as_good: str) -> str:
    """The start of the "Limits" section every README ends with (a bundle's own limits may follow on its last line).

    Args:
        only_as_good: what the weights are only as good as (with the line break of the paragraph).
    """
    return (
        f"## Limits\n\nResearch code for model compression, not for clinical use. {only_as_good}: a CPU run on the "
        "synthetic set proves the pipeline, not the model."
    )


_PRUNED_README = """# {title}, pruned: {method} {percent} %

{title} (`{source}`) pruned by **{method}** at ratio {ratio} and {tuned}. Written by `configs/prune.json` of the
{variant} bundle; every config here is that bundle's, with a `network_def` that {rebuilds}.{earlier}

| | before | after |
|---|---|---|
| parameters{param_note} | {params_before:,} | {params_after:,} |
| FLOPs at {shape} (dense convolutions) | {flops_before:,} | {flops_after:,} |

Requested ratio {ratio}; achieved {achieved_kind} {achieved:.4f}{reduction}.{sizes}{dice}
All figures are in `pruning.json` and under `pruning` in `configs/metadata.json`.

## Files

- `models/model.pt`: the weights, a plain state_dict (`torch.load(..., weights_only=True)`).
{model_files}
{use}
`configs/train.json` trains this structure again from a fresh initialisation{retrain_note}.{again}

{limits}
"""


def _display_path(path: PathLike) -> str:
    relative = os.path.relpath(os.path.abspath(path))
    return Path(relative if not relative.startswith("..") else os.path.abspath(path)).as_posix()


def pruned_bundle_readme(variant: Variant, report: Mapping[str, Any], root: PathLike) -> str:
    """A pruned bundle's ``docs/README.md``: how it was pruned, its figures before and after, its files and how to
    use it.

    Args:
        variant: the variant that was pruned.
        report: the pruning's figures (``pruning.json``: method, ratios, parameters and FLOPs before and after, file
            sizes, settings, best validation Dice).
        root: the pruned bundle's folder, shown in the commands relative to the working directory when inside it.
    """
    shown = _display_path(root)
    masks = report["sparsity"] is not None
    settings = report.get("settings") or {}
    epochs = settings.get("epochs")
    unit = "epoch" if epochs == 1 else "epochs"
    if settings.get("from_scratch"):
        tuned = f"then trained from initialisation for {epochs} {unit}"
    elif epochs:
        tuned = f"fine-tuned for {epochs} {unit}" + (" with the masks in force" if masks else "")
    elif epochs == 0:
        tuned = "not fine-tuned"
    else:
        tuned = "saved as pruned"
    sizes = ""
    if masks:
        sizes = (
            f"\nOn disk: `model.pt` {report['model_bytes']:,} bytes (dense, zeros stored), `model_sparse.pt` "
            f"{report['model_sparse_bytes']:,} bytes (non-zero values plus a bit mask)."
        )
    dice = ""
    if report.get("val_mean_dice") is not None:
        dice = f"\nBest validation mean Dice: {report['val_mean_dice']:.4f}."
    if masks:
        model_files = (
            "- `models/masks.pt`: the masks (parameter name -> boolean tensor, `True` = kept).\n"
            "- `models/model_sparse.pt`: the same weights compressed (`raagr2_monai.pruning.from_sparse_state_dict`).\n"
        )
        rebuilds = "is the variant's own class (the masks keep the shapes; the pruned weights are zeros)"
        retrain_note = ", with the masks kept in force (`raagr2_monai.handlers.MaskHandler`)"
    else:
        model_files = (
            "- `models/pruning_history.json`: the channels removed, from which `network_def` rebuilds the network.\n"
        )
        rebuilds = "rebuilds the channel-pruned network (`raagr2_monai.pruning.build_pruned_network`)"
        retrain_note = ""
    again = "" if masks else (
        "\n`configs/prune.json` prunes this network again by DepGraph: a step of iterative pruning, whose bundle's\n"
        "history extends this one's.")
    steps = report.get("earlier_steps", [])
    earlier = "".join(
        f"\nStep {k}: {step['method']} at ratio {step['requested_ratio']:.3g}, {step['params_before']:,} -> "
        f"{step['params_after']:,} parameters." for k, step in enumerate(steps, start=1)
    ) + (f"\nStep {len(steps) + 1}, this bundle's, is the one below." if steps else "")
    return _PRUNED_README.format(
        title=variant.title,
        source=variant.network,
        method=report["method"],
        percent=round(report["requested_ratio"] * 100),
        ratio=report["requested_ratio"],
        tuned=tuned,
        variant=variant.name,
        rebuilds=rebuilds,
        param_note=" (non-zero)" if masks else "",
        params_before=report["params_before"],
        params_after=report["params_after"],
        shape="x".join(str(s) for s in report["flops_shape"]),
        flops_before=report["flops_before"],
        flops_after=report["flops_after"],
        achieved_kind=report["achieved_kind"],
        achieved=report["achieved"],
        reduction=f"; parameter reduction {report['param_reduction']:.4f}" if masks else "",
        sizes=sizes,
        dice=dice,
        model_files=model_files,
        use=use_section([*run_commands(shown), *export_commands(shown)]),
        retrain_note=retrain_note,
        again=again,
        earlier=earlier,
        limits=limits_section("A pruned model is only as good as the trained model and\nthe fine-tuning behind it"),
    )
