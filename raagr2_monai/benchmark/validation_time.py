"""The validation pass of a training, timed with ``roi_size`` windows and with whole slices, side by side.

Both passes are the bundle's own ``validate#evaluator`` (train.json: its dataset, inferer, post-processing and Dice),
built twice in one process with the same weights, on the same studies, and differ only in ``whole_slice``. The
figures: seconds per study (``time.perf_counter`` around ``evaluator.run()``, the dataset loaded once beforehand so
that neither pass pays for preprocessing), the mean Dice each pass reports, and how far the two passes' thresholded
predictions agree (the share of voxels of the TC/WT/ET masks on which they are equal).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from raagr2_monai.bundle import bundle_workflow
from raagr2_monai.generator.generate import write_bundle
from raagr2_monai.data.chains import check_roi_size
from raagr2_monai.networks import load_weights

__all__ = ["VALIDATION_MODES", "time_validation", "format_validation"]

#: The two passes compared: the name of each and its ``whole_slice`` setting.
VALIDATION_MODES: Dict[str, bool] = {"windows": False, "whole_slices": True}


def _workflow(bundle: Path, work: Path, **override: Any) -> ConfigWorkflow:
    # no checkpoint, no early stopping, no LR schedule: the pass alone
    return bundle_workflow(bundle / "configs" / "train.json", "training", bundle, output_dir=str(work / "runs"),
                           ckpt_dir=str(work / "models"), **{"validate#handlers": []}, **override)


def _run_pass(evaluator: Any) -> Dict[str, Any]:
    predictions: List[torch.Tensor] = []

    def keep(engine: Any) -> None:
        for item in engine.state.output:
            predictions.append(torch.as_tensor(item["pred"]).detach().cpu().bool())

    evaluator.add_event_handler(Events.ITERATION_COMPLETED, keep)
    start = time.perf_counter()
    evaluator.run()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "mean_dice": float(evaluator.state.metrics["val_mean_dice"]),
            "predictions": predictions}


def time_validation(
    datalist: str,
    variant: str = "baseline",
    roi_size: int = 192,
    cases: Optional[int] = None,
    sw_batch_size: int = 8,
    device: str = "cpu",
    seed: int = 0,
    cache_dir: Optional[str] = None,
    weights: Optional[str] = None,
) -> Dict[str, Any]:
    """Time the bundle's validation pass with ``roi_size`` windows and with whole slices, on the same studies and
    weights.

    Args:
        datalist: a datalist JSON whose ``validation`` section is validated.
        variant: the architecture.
        roi_size: the training crop and window size (192: the thesis's).
        cases: validate on the first this many studies (``None``: the whole split).
        sw_batch_size: windows, or whole slices, per network call.
        device: where the network runs.
        seed: the weights.
        cache_dir: the bundle's study cache (``None``: a temporary folder).
        weights: a trained ``variant``'s state_dict (``models/model.pt``); ``None``: initial weights of ``seed``,
            whose time is a trained model's but whose predictions are not a trained model's, so the agreement then
            says little.

    Returns:
        ``{"windows": {...}, "whole_slices": {...}, "agreement": float, "studies": int, "settings": {...}}``; each
        pass with ``seconds``, ``seconds_per_study`` and ``mean_dice``; ``agreement`` the share of equal voxels of the
        two passes' thresholded TC/WT/ET predictions.

    Raises:
        ValueError: for a bad ``roi_size`` or ``cases``.
    """
    size = check_roi_size((roi_size, roi_size))
    if cases is not None and int(cases) < 1:
        raise ValueError(f"cases must be a positive number of studies or None (all), got {cases}.")
    result: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="raagr2-validation-") as tmp:
        work = Path(tmp)
        bundle = work / "bundle"
        write_bundle(str(bundle), variant, "")
        state = None
        for mode, whole_slice in VALIDATION_MODES.items():
            override: Dict[str, Any] = {
                "datalist": str(datalist), "roi_size": size, "whole_slice": whole_slice,
                "sw_batch_size": int(sw_batch_size), "device": device, "seed": seed, "val_cases": cases,
                "cache_dir": cache_dir or str(work / "cache"),
            }
            wf = _workflow(bundle, work / mode, **override)
            network = wf.parser.get_parsed_content("network")
            # the given weights, or the first pass's initial ones (seeded by the workflow's set_determinism), for both
            if state is None:
                if weights:
                    load_weights(network, weights, setting="weights")
                state = {k: v.clone() for k, v in network.state_dict().items()}
            network.load_state_dict(state)
            dataset = wf.parser.get_parsed_content("validate#dataset")
            # preprocessing (or reading the study cache) happens here, outside the timed pass
            for i in range(len(dataset)):
                dataset[i]
            result[mode] = _run_pass(wf.parser.get_parsed_content("validate#evaluator"))
            result[mode]["studies"] = len(dataset)
    windows, whole = result["windows"], result["whole_slices"]
    equal = sum(int((a == b).sum()) for a, b in zip(windows["predictions"], whole["predictions"]))
    total = sum(a.numel() for a in windows["predictions"])
    studies = windows["studies"]
    summary: Dict[str, Any] = {"studies": studies, "agreement": equal / max(1, total)}
    for mode in VALIDATION_MODES:
        figures = {k: v for k, v in result[mode].items() if k != "predictions"}
        figures["seconds_per_study"] = figures["seconds"] / max(1, studies)
        summary[mode] = figures
    summary["speedup"] = windows["seconds"] / max(whole["seconds"], 1e-9)
    summary["settings"] = {"variant": variant, "roi_size": size, "sw_batch_size": int(sw_batch_size),
                           "device": device, "seed": seed,
                           "weights": weights or "initial (seed)", "timer": "time.perf_counter around evaluator.run()"}
    return summary



def format_validation(summary: Dict[str, Any]) -> str:
    """A :func:`time_validation` result as lines of text, the counter named.

    Example::

        print(format_validation(time_validation("datalist.json", cases=6)))
    """
    s, windows, whole = summary["settings"], summary["windows"], summary["whole_slices"]
    return "\n".join(
        [
            f"Validation pass (the bundle's validate#evaluator), {summary['studies']} studies, {s['variant']}, "
            f"weights {s['weights']}, roi {s['roi_size']}, {s['sw_batch_size']} windows or slices per call, "
            f"{s['device']}; {s['timer']}.",
            f"  roi windows:  {windows['seconds_per_study']:8.1f} s per study, mean Dice {windows['mean_dice']:.4f}",
            f"  whole slices: {whole['seconds_per_study']:8.1f} s per study, mean Dice {whole['mean_dice']:.4f}",
            f"  whole slices take 1/{summary['speedup']:.1f} of the windows' time; the thresholded TC/WT/ET masks "
            f"agree on {100 * summary['agreement']:.3f} % of voxels",
        ]
    )
