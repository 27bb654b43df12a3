"""Segment studies with a bundle, outside an engine, timing every stage: the bundle's own preprocessing, inferer and
write-back (``configs/inference.json``), so the result is what ``monai.bundle run inferring`` writes.

``raagr2 segment`` uses it; so do the benchmarks that report how long one study takes end to end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from raagr2_monai.networks import load_weights

__all__ = ["Segmenter", "StudyTiming"]

PathLike = Union[str, os.PathLike]

#: Stage of each transform of the bundle's chains, by class name; anything else counts as ``preprocess``.
_STAGES = {"LoadBraTSd": "load", "Invertd": "invert", "SaveImaged": "write"}


@dataclass
class StudyTiming:
    """Where the time of one study went (seconds, ``time.perf_counter``)."""

    case: str
    seconds: Dict[str, float] = field(default_factory=dict)
    output: Optional[str] = None

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def _timed_compose(chain: Compose, timing: StudyTiming, default: str) -> Callable[[Any], Any]:
    transforms = list(chain.transforms)

    def run(data: Any) -> Any:
        for transform in transforms:
            start = time.perf_counter()
            data = transform(data)
            timing.add(_STAGES.get(type(transform).__name__, default), time.perf_counter() - start)
        return data

    return run


class Segmenter:
    """A bundle's inference pipeline, built once, applied to one study at a time.

    Args:
        bundle_dir: the bundle folder (``configs/inference.json``; weights from ``models/model.pt`` unless
            ``ckpt_path`` says otherwise).
        output_dir: where label maps are written.
        ckpt_path: the weights; ``None`` = the bundle's ``models/model.pt``.
        device: ``cpu`` or ``cuda``; ``None`` = the bundle's default (CUDA when available).
        overrides: other config ids to set (``roi_size``, ``overlap``, ``sw_batch_size``, ``threshold``, ...).

    Raises:
        FileNotFoundError: the bundle or its weights do not exist.
        raagr2_monai.networks.CheckpointMismatchError: the weights do not fit the bundle's network.

    Example::

        segmenter = Segmenter("bundles/depthwise", "out")
        timing = segmenter({"case": "BraTS2021_00000", "image": [t1ce, t1, t2, flair]})
        print(timing.output, timing.seconds)
    """

    def __init__(
        self,
        bundle_dir: PathLike,
        output_dir: PathLike,
        ckpt_path: Optional[PathLike] = None,
        device: Optional[str] = None,
        **overrides: Any,
    ) -> None:
        root = Path(bundle_dir)
        config = root / "configs" / "inference.json"
        if not config.is_file():
            raise FileNotFoundError(f"{root} is not a bundle: {config} does not exist.")
        parser = ConfigParser()
        parser.read_config(str(config))
        parser["bundle_root"] = str(root.resolve())
        parser["output_dir"] = str(output_dir)
        if device is not None:
            parser["device"] = f"$torch.device('{device}')"
        for key, value in overrides.items():
            parser[key] = value
        self.device = parser.get_parsed_content("device")
        self.network = parser.get_parsed_content("network").eval()
        weights = Path(ckpt_path) if ckpt_path is not None else root / "models" / "model.pt"
        load_weights(self.network, str(weights))
        self.preprocessing: Compose = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")
        self.postprocessing: Compose = parser.get_parsed_content("postprocessing")
        self.weights = str(weights)

    def __call__(self, entry: Mapping[str, Any]) -> StudyTiming:
        """Segment one study (a datalist entry: ``case`` and ``image``) and write its label map.

        Returns:
            The timing of each stage (``load``, ``preprocess``, ``network``, ``invert``, ``postprocess``,
            ``write``) and the written file.
        """
        timing = StudyTiming(case=str(entry.get("case", "")))
        data = _timed_compose(self.preprocessing, timing, "preprocess")(dict(entry))
        start = time.perf_counter()
        with torch.no_grad():
            image = data["image"].unsqueeze(0).to(self.device)
            data["pred"] = self.inferer(image, self.network)[0].cpu()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timing.add("network", time.perf_counter() - start)
        data["image"] = data["image"].cpu()
        data = _timed_compose(self.postprocessing, timing, "postprocess")(data)
        meta = data["pred"].meta
        timing.output = str(meta.get("saved_to", "")) or None
        return timing

    def run(self, entries: Sequence[Mapping[str, Any]]) -> List[StudyTiming]:
        """Segment every study of ``entries``."""
        return [self(entry) for entry in entries]
