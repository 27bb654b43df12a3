"""Segment studies with a bundle, outside an engine, timing every stage: the bundle's own preprocessing, inferer and
write-back (``configs/inference.json``), so the result is what ``monai.bundle run inferring`` writes.

``raagr2 segment`` uses it, with any inference backend; so do the benchmarks that report how long one study takes end to end.
With an uncertainty setting (test-time flips or Monte-Carlo dropout) each study also gets its uncertainty map and score
(:class:`~raagr2_monai.handlers.UncertaintyWriter`, as the inference workflow writes them).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from raagr2_monai.data import check_data_source, inference_cases
from raagr2_monai.data.chains import parse_roi_size
from raagr2_monai.handlers import UncertaintyWriter
from raagr2_monai.networks import check_uncertainty, load_weights
from raagr2_monai.utils import as_flag, autocast, check_precision, progress_bar, resolve_device

from .backends import check_backend, cpu_name, exported_precision
from .inferer import check_sampled_network

__all__ = ["Segmenter", "SegmentSettings", "StudyTiming", "STAGES", "median_timing", "format_timing", "segment_command"]

PathLike = Union[str, os.PathLike]

#: The stages of one study, in the order they run (``uncertainty``: the map and the score, with an uncertainty setting).
STAGES = ("load", "preprocess", "network", "invert", "postprocess", "write", "uncertainty")
#: Stage of each transform of the bundle's chains, by class name; anything else counts as ``preprocess``.
_STAGES = {"LoadBraTSd": "load", "Invertd": "invert", "SaveImaged": "write"}


@dataclass
class StudyTiming:
    """Where the time of one study went (seconds, ``time.perf_counter``); with an uncertainty setting, the study's
    score (:func:`raagr2_monai.metrics.study_uncertainty`) and the map written."""

    case: str
    seconds: Dict[str, float] = field(default_factory=dict)
    output: Optional[str] = None
    uncertainty: Optional[float] = None
    uncertainty_map: Optional[str] = None

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
        device: ``cpu``, ``cuda`` or ``cuda:<index>``; ``None`` = the bundle's default (CUDA when available). The
            network runs at the bundle's precision (its ``amp`` and ``amp_precision`` settings: autocast on CUDA, in
            bfloat16 on GPUs of compute capability 8.0 and later, float16 before), as the bundle's own inference does,
            so both write the same label map.
        precision: ``auto``, ``bf16``, ``fp16`` or ``fp32`` (:func:`raagr2_monai.utils.amp_dtype`); ``None`` = the
            bundle's ``amp_precision`` (``auto`` where the bundle has none). Give the evaluation the same setting to
            get the same label map. Behind OpenVINO it is what the CPU computes in (``auto``: bf16 where the CPU has
            a bfloat16 unit, else fp32; :func:`~raagr2_monai.deploy.exported_precision`); ONNX Runtime takes fp32
            or ``auto``. :attr:`computes_in` says what was used.
        backend: ``torch``, or ``onnxruntime`` / ``openvino`` to run the bundle's exported ``models/model.onnx`` /
            ``model.xml`` (``raagr2 export``; checked against the bundle's weights, so ``ckpt_path`` does not apply).
        threads: intra-op CPU threads of the backend (``None``: the runtime's default).
        overrides: other config ids to set (``roi_size``, ``overlap``, ``sw_batch_size``, ``threshold``,
            ``whole_slice``, ``skip_empty``, ``uncertainty``, ``uncertainty_samples``, ...). With ``uncertainty``
            ``tta`` or ``mc_dropout`` every study also gets ``<case>_uncertainty.nii.gz`` in ``output_dir``
            (:attr:`uncertainty_writer`; :meth:`write_uncertainty_csv` writes the scores).

    Raises:
        ValueError: a device this machine does not have; a bad uncertainty setting, or ``mc_dropout`` behind an
            exported backend or on a network without dropout layers (before the export is read).
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
        backend: str = "torch",
        threads: Optional[int] = None,
        precision: Optional[str] = None,
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
            parser["device"] = str(resolve_device(device))
        if backend != "torch" and ckpt_path is not None:
            raise ValueError(f"ckpt_path applies to the torch backend only; {backend} runs the bundle's export.")
        parser["backend"] = backend
        parser["threads"] = threads
        if ("uncertainty" in overrides or "uncertainty_samples" in overrides) and "without_uncertainty" not in parser:
            raise ValueError(f"{config} has no uncertainty setting (written before there was one): write the bundle "
                             "again to segment with an uncertainty.")
        for key, value in overrides.items():
            parser[key] = value
        check_backend(backend)
        mode, samples = ("none", 1)
        if "uncertainty" in parser:
            mode, samples = check_uncertainty(parser.get_parsed_content("uncertainty"),
                                              parser.get_parsed_content("uncertainty_samples"))
        if backend != "torch":
            check_sampled_network(mode, backend=backend, model=root)  # before the export is read
        if threads is not None and backend == "torch":
            torch.set_num_threads(int(threads))
        if precision is not None:
            parser["amp_precision"] = check_precision(precision)  # the config's use_amp reads it where it has it
        elif "amp_precision" in parser:
            precision = parser.get_parsed_content("amp_precision")
        self.precision = check_precision(precision)
        if backend != "torch":
            exported_precision(backend, self.precision)  # refused before the export is read
        self.device = resolve_device(parser.get_parsed_content("device"))
        self.amp = bool(parser.get_parsed_content("use_amp"))
        self.network = parser.get_parsed_content("network").eval()
        if backend == "torch":
            check_sampled_network(mode, self.network, backend, root)
        self.computes_in = self._computes_in(backend)
        weights = Path(ckpt_path) if ckpt_path is not None else root / "models" / "model.pt"
        if backend == "torch":
            load_weights(self.network, str(weights))
        self.preprocessing: Compose = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")
        self.postprocessing: Compose = parser.get_parsed_content("postprocessing")
        self.weights = str(weights)
        #: Writes each study's uncertainty map and keeps its score; ``None`` without an uncertainty setting.
        self.uncertainty_writer = None if mode == "none" else UncertaintyWriter(output_dir, mode, samples)

    def _computes_in(self, backend: str) -> str:
        if backend != "torch":
            return f"{self.network.precision} ({backend} on {cpu_name()})"
        if self.device.type == "cuda" and self.amp:
            return f"{self.precision} autocast (torch on {torch.cuda.get_device_name(self.device)})"
        return f"fp32 (torch on {self.device.type})"

    def __call__(self, entry: Mapping[str, Any]) -> StudyTiming:
        """Segment one study (a datalist entry: ``case`` and ``image``) and write its label map.

        Returns:
            The timing of each stage (``load``, ``preprocess``, ``network``, ``invert``, ``postprocess``,
            ``write``; ``uncertainty`` with an uncertainty setting) and the written file (with the score and map).
        """
        timing = StudyTiming(case=str(entry.get("case", "")))
        data = _timed_compose(self.preprocessing, timing, "preprocess")(dict(entry))
        start = time.perf_counter()
        with torch.no_grad(), autocast(self.device, self.amp, self.precision):
            image = data["image"].unsqueeze(0).to(self.device)
            data["pred"] = self.inferer(image, self.network)[0]  # the write-back takes it to the CPU
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timing.add("network", time.perf_counter() - start)
        data = _timed_compose(self.postprocessing, timing, "postprocess")(data)
        meta = data["pred"].meta
        timing.output = str(meta.get("saved_to", "")) or None
        if self.uncertainty_writer is not None:
            start = time.perf_counter()
            row = self.uncertainty_writer.write(data)
            timing.add("uncertainty", time.perf_counter() - start)
            timing.uncertainty, timing.uncertainty_map = row["score"], row["map"]
        return timing

    def write_uncertainty_csv(self) -> Optional[Path]:
        """Write ``uncertainty.csv`` in the output folder (case, mode, samples, score of every study segmented so
        far), atomically; ``None`` without an uncertainty setting."""
        return None if self.uncertainty_writer is None else self.uncertainty_writer.write_csv()

    def run(self, entries: Sequence[Mapping[str, Any]]) -> List[StudyTiming]:
        """Segment every study of ``entries``."""
        return [self(entry) for entry in entries]


def median_timing(runs: Sequence[StudyTiming]) -> StudyTiming:
    """Each stage's median over several runs of the same study, so that one slow run (the first, warming caches up;
    one disturbed by other work) does not count; the total is then the sum of those medians.

    Args:
        runs: the timings of the runs, at least one.

    Returns:
        A :class:`StudyTiming` with the first run's case and output.

    Example::

        >>> runs = [StudyTiming("c", {"load": t, "network": 1.0}) for t in (0.1, 0.2, 0.9)]
        >>> median_timing(runs).seconds
        {'load': 0.2, 'network': 1.0}
    """
    if not runs:
        raise ValueError("median_timing needs at least one run.")
    stages = dict.fromkeys(stage for run in runs for stage in run.seconds)
    seconds = {stage: statistics.median(run.seconds.get(stage, 0.0) for run in runs) for stage in stages}
    return StudyTiming(case=runs[0].case, seconds=seconds, output=runs[0].output, uncertainty=runs[0].uncertainty,
                       uncertainty_map=runs[0].uncertainty_map)


def format_timing(timing: StudyTiming, runs: int = 1) -> str:
    """One line for a study: its case, the file written, the seconds of each stage (:data:`STAGES` order), and its
    uncertainty score and map where it has them.

    Args:
        timing: the study's timing (a median one for ``runs`` > 1).
        runs: the number of runs it summarises.

    Returns:
        The line.

    Example::

        >>> format_timing(StudyTiming("c", {"network": 1.5, "load": 0.25}, "out/c_pred.nii.gz"))
        'c: out/c_pred.nii.gz; load 0.250 s, network 1.500 s, total 1.750 s'
        >>> format_timing(StudyTiming("c", {"network": 1.5}, "o/c_pred.nii.gz", 0.1234, "o/c_uncertainty.nii.gz"))
        'c: o/c_pred.nii.gz; network 1.500 s, total 1.500 s; uncertainty 0.1234 (o/c_uncertainty.nii.gz)'
    """
    order = [s for s in STAGES if s in timing.seconds] + [s for s in timing.seconds if s not in STAGES]
    stages = ", ".join(f"{stage} {timing.seconds[stage]:.3f} s" for stage in order)
    median = f" (median of {runs} runs)" if runs > 1 else ""
    score = "" if timing.uncertainty is None else f"; uncertainty {timing.uncertainty:.4f} ({timing.uncertainty_map})"
    return f"{timing.case}: {timing.output or 'nothing written'}; {stages}, total {timing.total:.3f} s{median}{score}"


@dataclass(frozen=True)
class SegmentSettings:
    """How ``raagr2 segment`` runs a bundle: everything but the bundle, the studies and the output folder, passed whole
    from the command line to :func:`segment_command` and checked at once by :meth:`check`.

    Attributes:
        ckpt_path: the weights (default: the bundle's ``models/model.pt``).
        device: ``cpu`` or ``cuda`` (default: CUDA when available).
        roi_size: in-plane size of the slices the network sees (one size or two, multiples of 16; default: the
            bundle's).
        repeat: runs per study; with more than one, each stage's median (:func:`median_timing`).
        backend: ``torch``, ``onnxruntime`` or ``openvino`` (the last two run the bundle's export).
        threads: intra-op CPU threads of the backend (default: the runtime's own).
        whole_slice: one window per slice, the whole slice, instead of ``roi_size`` windows (a faster pass, and
            another result: the network sees another context; default: the bundle's, on).
        sw_batch_size: windows (slices, with ``whole_slice``) per network call (default: the bundle's, 8).
        skip_empty: give windows without a brain voxel the network's output for zeros, computed once, instead of
            running the network on each (the same label map; default: the bundle's, on).
        precision: ``auto``, ``bf16``, ``fp16`` or ``fp32``: the autocast dtype on CUDA (default: the bundle's
            ``amp_precision``, else ``auto``: bfloat16 on GPUs of compute capability 8.0 and later, float16 before);
            the same as the evaluation's, for the same label map. Behind OpenVINO, what the CPU computes in
            (``auto``: bf16 on a CPU with a bfloat16 unit, else fp32); the summary says which.
        uncertainty: ``none``, ``tta`` (the slices and their in-plane flips) or ``mc_dropout`` (the network's dropout
            layers on, BatchNorm on its running statistics; the torch backend only): the label map then comes from
            the mean of ``uncertainty_samples`` predictions, and each study gets ``<case>_uncertainty.nii.gz`` and a
            row of ``uncertainty.csv`` (default: the bundle's, ``none``).
        uncertainty_samples: predictions per slice, at least 2 (at most 4 for ``tta``; default: the bundle's, 4).

    Example::

        >>> SegmentSettings(roi_size="96", whole_slice="false").check()
        {'roi_size': [96, 96], 'whole_slice': False}
    """

    ckpt_path: Optional[str] = None
    device: Optional[str] = None
    roi_size: Any = None
    repeat: int = 1
    backend: str = "torch"
    threads: Optional[int] = None
    whole_slice: Any = None
    sw_batch_size: Optional[int] = None
    skip_empty: Any = None
    precision: Optional[str] = None
    uncertainty: Optional[str] = None
    uncertainty_samples: Any = None

    def check(self, bundle: Optional[PathLike] = None) -> Dict[str, Any]:
        """Check every setting before anything is built.

        Args:
            bundle: the bundle the settings are for, named in the messages.

        Returns:
            The bundle config ids these settings override (``roi_size``, ``sw_batch_size``, ``whole_slice``,
            ``skip_empty``, ``uncertainty``, ``uncertainty_samples``), as the bundle takes them.

        Raises:
            ValueError: a bad ``roi_size``, ``repeat``, ``threads``, ``sw_batch_size``, switch, precision, backend,
                device or uncertainty setting; ``mc_dropout`` behind an exported backend.
        """
        if isinstance(self.repeat, bool) or not isinstance(self.repeat, int) or self.repeat < 1:
            raise ValueError(f"repeat must be a whole number >= 1; got {self.repeat!r}.")
        overrides: Dict[str, Any] = {}
        if self.roi_size is not None:
            overrides["roi_size"] = parse_roi_size(self.roi_size)
        if self.device is not None:
            resolve_device(self.device)  # a device this machine lacks is refused before the network is built on it
        precision = None if self.precision is None else check_precision(self.precision)
        check_backend(self.backend)
        if self.backend != "torch" and precision is not None:
            exported_precision(self.backend, precision)
        for name, value in (("threads", self.threads), ("sw_batch_size", self.sw_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1; got {value!r}.")
        if self.sw_batch_size is not None:
            overrides["sw_batch_size"] = self.sw_batch_size
        for name, value in (("whole_slice", self.whole_slice), ("skip_empty", self.skip_empty)):
            if value is not None:
                overrides[name] = as_flag(value, name)
        overrides.update(self._uncertainty(bundle))
        return overrides

    def _uncertainty(self, bundle: Optional[PathLike]) -> Dict[str, Any]:
        """The uncertainty ids to override, checked; a count given alone must be one too (a whole number >= 2)."""
        given: Dict[str, Any] = {}
        samples = self.uncertainty_samples
        if samples is not None:
            given["uncertainty_samples"] = check_uncertainty("mc_dropout", samples)[1]
        if self.uncertainty is not None:
            given["uncertainty"] = check_uncertainty(self.uncertainty, 2 if samples is None else samples)[0]
        if self.backend != "torch":
            check_sampled_network(given.get("uncertainty"), backend=self.backend, model=bundle)
        return given


def segment_command(
    bundle: PathLike,
    output_dir: PathLike,
    dataset_dir: Optional[str] = None,
    datalist: Optional[str] = None,
    settings: SegmentSettings = SegmentSettings(),
    echo: Callable[[str], None] = print,
) -> str:
    """``raagr2 segment``: segment every study of a folder or datalist with a bundle, timing each stage.

    Every setting is checked before the network is built; each study's line (:func:`format_timing`) goes to
    ``echo`` as soon as it is written; on a terminal, with several studies, a progress bar on stderr counts them (with
    the time left).

    Args:
        bundle: the bundle folder.
        output_dir: where the label maps are written (``<case>_pred.nii.gz``; with an uncertainty setting also
            ``<case>_uncertainty.nii.gz`` and ``uncertainty.csv``).
        dataset_dir: a folder of studies, in any layout :func:`raagr2_monai.data.inference_cases` reads.
        datalist: a datalist JSON instead (its ``testing`` section).
        settings: how to run the bundle (:class:`SegmentSettings`).
        echo: where the lines go.

    Returns:
        The summary line: studies segmented and the median total time per study.

    Raises:
        ValueError: neither or both of ``dataset_dir`` and ``datalist``, a bad setting (:meth:`SegmentSettings.check`),
            a datalist without studies.
        FileNotFoundError: the bundle, its weights, the folder or the datalist does not exist.
        raagr2_monai.data.BraTSDataError: the folder holds no study, or a study misses a modality.
        raagr2_monai.networks.CheckpointMismatchError: the weights do not fit the bundle's network.

    Example::

        segment_command("bundles/depthwise", "out", dataset_dir="/data/new_cases", settings=SegmentSettings(repeat=5))
    """
    if (dataset_dir is None) == (datalist is None):
        raise ValueError("pass the studies as --dataset_dir DIR or as --datalist FILE (one of the two).")
    overrides = settings.check(bundle)
    check_data_source(dataset_dir, datalist)
    entries = inference_cases(dataset_dir, datalist)
    if not entries:  # inference_cases refuses a folder without studies, not an empty datalist section
        raise ValueError(f"{datalist} holds no study in its testing section.")
    segmenter = Segmenter(
        bundle, output_dir, ckpt_path=settings.ckpt_path, device=settings.device, backend=settings.backend,
        threads=settings.threads, precision=settings.precision, **overrides
    )
    totals = []
    with progress_bar(entries, "segment", unit="study") as bar:
        for entry in bar:
            timing = median_timing([segmenter(entry) for _ in range(settings.repeat)])
            with bar.external_write_mode():  # the line goes above the bar, not through it
                echo(format_timing(timing, settings.repeat))
            totals.append(timing.total)
    scores = segmenter.write_uncertainty_csv()
    writer = segmenter.uncertainty_writer
    return (
        f"segmented {len(entries)} {'study' if len(entries) == 1 else 'studies'} with {bundle} into {output_dir}; "
        f"median {statistics.median(totals):.3f} s per study; network in {segmenter.computes_in}"
        + ("" if writer is None else f"; uncertainty {writer.mode} of {writer.samples} samples, scores in {scores}")
    )
