"""One check of a BraTS case's files, used two ways: report every problem (datalist building) or raise the first
(loading a case for training or inference).

A case is ``{"case": id, "image": [t1ce, t1, t2, flair] | one 4D path, "label": seg (optional)}``. The check runs in
two stages so that a loader can read the voxels only once:

1. :func:`header_problems`: files exist and have readable NIfTI headers; four 3D modality files, or one 4D file with
   four channels last; a 3D label (or 4D with one channel); invertible affines; every file on the same grid (shape
   and affine).
2. :func:`voxel_problems`: on the voxel arrays: no NaN or infinite value (naming the file, and the channel of a 4D
   file), an image that is not zero everywhere, and label values within the case's label convention.

:func:`case_problems` runs both on the files (reading every byte, so a truncated file is found); :func:`check_case`
raises the first problem. Every problem names its case, file and nature (:class:`Problem`).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from raagr2_monai.constants import CHANNELS, DEFAULT_CONVENTION, LABEL_CONVENTIONS

__all__ = [
    "Problem",
    "BraTSDataError",
    "same_grid",
    "case_files",
    "header_problems",
    "voxel_problems",
    "case_problems",
    "check_case",
    "check_cases",
    "raise_first",
    "image_channel_names",
    "file_channels",
    "read_label_file",
]

# Affines of one case may differ by float32 rounding of the header fields; 1e-3 mm is far below a voxel.
_AFFINE_ATOL = 1e-3
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error)

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: the case, the file (or folder) and what is wrong.

    ``missing`` marks a file that does not exist (raised as ``FileNotFoundError`` by :func:`raise_first`).
    """

    case: str
    file: str
    problem: str
    missing: bool = False

    def __str__(self) -> str:
        return f"case {self.case}: {self.file}: {self.problem}"


class BraTSDataError(ValueError):
    """Bad BraTS input. The message lists every problem found, each naming its case, file and nature.

    Args:
        problems: what is wrong; kept in :attr:`problems`.
        context: the first line of the message (e.g. the folder that was read).
    """

    def __init__(self, problems: Iterable[Problem], context: str = "invalid BraTS data") -> None:
        self.problems: Tuple[Problem, ...] = tuple(problems)
        self.cases: Tuple[str, ...] = tuple(dict.fromkeys(p.case for p in self.problems))
        lines = [f"{context}: {len(self.problems)} problem(s) in {len(self.cases)} case(s):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def raise_first(problems: Iterable[Problem], context: str = "bad BraTS case") -> None:
    """Raise the first of ``problems``, if any: ``FileNotFoundError`` for a missing file, else
    :class:`BraTSDataError`. Later problems are not looked for (``problems`` may be a lazy generator)."""
    for problem in problems:
        if problem.missing:
            raise FileNotFoundError(str(problem))
        raise BraTSDataError([problem], context)


def same_grid(affine: np.ndarray, reference: np.ndarray) -> bool:
    """Whether two NIfTI affines describe one voxel grid (co-registered modalities, their label)."""
    return bool(np.allclose(affine, reference, rtol=0.0, atol=_AFFINE_ATOL))


def file_channels(entry: Mapping) -> List[int]:
    """The channel of a single 4D image file that holds T1ce, T1, T2, FLAIR (``entry["channels"]``; in that order
    when absent)."""
    channels = entry.get("channels")
    return list(range(len(CHANNELS))) if channels is None else [int(c) for c in channels]


def case_files(entry: Mapping) -> Tuple[List[str], Optional[str]]:
    """The image paths (four, or one 4D file) and the label path (or ``None``) of a datalist entry."""
    image = entry["image"]
    paths = [os.fspath(image)] if isinstance(image, (str, os.PathLike)) else [os.fspath(p) for p in image]
    label = entry.get("label")
    return paths, (os.fspath(label) if label is not None else None)


def _case_name(entry: Mapping, paths: Sequence[str]) -> str:
    if entry.get("case"):
        return str(entry["case"])
    return os.path.basename(paths[0]) if paths else "?"


def _header(path: str):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        return nib.load(path)
    except (ImageFileError,) + _READ_ERRORS as err:
        raise _Unreadable(err) from err


class _Unreadable(Exception):
    """A file that nibabel cannot read; ``str()`` says why on one line."""

    def __init__(self, err: BaseException) -> None:
        reason = " ".join(str(err).split())  # nibabel messages can span lines
        super().__init__(f"unreadable or truncated NIfTI ({type(err).__name__}: {reason})")


def header_problems(entry: Mapping) -> Iterator[Problem]:
    """Stage 1: everything wrong with a case that the file headers show (nothing but headers is read).

    Yields, in this order: missing files, unreadable headers, a wrong number of image files or channels, a modality
    or label of the wrong dimension, shapes or affines that differ from the first image file's.
    """
    paths, label = case_files(entry)
    case = _case_name(entry, paths)
    files = paths + ([label] if label is not None else [])
    missing = [Problem(case, f, "file does not exist", missing=True) for f in files if not os.path.isfile(f)]
    yield from missing
    if missing:
        return
    if len(paths) not in (1, len(CHANNELS)):
        yield Problem(case, paths[0] if paths else "-",
                      f"expected {len(CHANNELS)} image files ({', '.join(CHANNELS)}) or one 4D file with "
                      f"{len(CHANNELS)} channels last; got {len(paths)}")
        return
    headers = {}
    for path in files:
        try:
            headers[path] = _header(path)
        except _Unreadable as err:
            yield Problem(case, path, str(err))
    if len(headers) < len(files):
        return
    reference: Optional[Tuple[str, Tuple[int, ...], np.ndarray]] = None
    for path in files:
        shape = tuple(headers[path].shape)
        if path == label:
            if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
                yield Problem(case, path, f"expected a 3D label map, got shape {shape}")
                continue
            shape = shape[:3]
        elif len(paths) == 1:
            if len(shape) != 4 or shape[3] != len(CHANNELS):
                yield Problem(case, path, f"shape {shape}: a single image file must be 4D with {len(CHANNELS)} "
                                          f"channels last ({', '.join(CHANNELS)}); or give four 3D files")
                continue
            shape = shape[:3]
        elif len(shape) != 3:
            yield Problem(case, path, f"expected a 3D volume, got shape {shape}")
            continue
        affine = np.asarray(headers[path].affine)
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            yield Problem(case, path, f"the affine is not invertible (voxel axes {affine[:3, :3].tolist()}): "
                                      "the file does not say where its voxels are")
            continue
        if reference is None:
            reference = (os.path.basename(path), shape, affine)
        elif shape != reference[1]:
            yield Problem(case, path, f"shape {shape} differs from {reference[0]}'s {reference[1]}")
        elif not same_grid(affine, reference[2]):
            worst = float(np.max(np.abs(affine - reference[2])))
            yield Problem(case, path, f"affine differs from {reference[0]}'s (by up to {worst:.4g})")


def _nonfinite(array) -> int:
    if isinstance(array, np.ndarray):
        return int(np.count_nonzero(~np.isfinite(array))) if np.issubdtype(array.dtype, np.inexact) else 0
    import torch

    return int((~torch.isfinite(array)).sum()) if array.is_floating_point() else 0


def _unique(array) -> np.ndarray:
    return np.unique(np.asarray(array))


def voxel_problems(
    case: str,
    images: Sequence[Tuple[str, object]],
    label: Optional[Tuple[str, object]] = None,
    convention: Optional[str] = None,
) -> Iterator[Problem]:
    """Stage 2: everything wrong with a case's voxels.

    Args:
        case: the case id.
        images: ``(name, array)`` per image channel, in channel order: the file name, or for a 4D file
            ``"<file> (channel i, <modality>)"``. Arrays are numpy arrays or torch tensors.
        label: ``(file name, array)`` of the label, if any.
        convention: the label convention the values must follow (``raagr2_monai.constants.LABEL_CONVENTIONS``);
            ``None``: any one of them.

    Yields:
        NaN or infinite voxels per file or channel, an image that is zero everywhere, label values outside the
        convention (or fitting none).
    """
    for name, array in images:
        bad = _nonfinite(array)
        if bad:
            yield Problem(case, name, f"{bad} NaN or infinite voxel(s)")
    if images and all(not bool((np.asarray(a) != 0).any()) for _, a in images):
        yield Problem(case, images[0][0].split(" (channel")[0], "the image is zero everywhere: no brain in it")
    if label is not None:
        name, array = label
        bad = _nonfinite(array)
        if bad:
            yield Problem(case, name, f"{bad} NaN or infinite voxel(s)")
            return
        values = _unique(array)
        names = [convention] if convention is not None else list(LABEL_CONVENTIONS)
        allowed = sorted({v for n in names for v in LABEL_CONVENTIONS[n].values})
        outside = values[np.isin(values, allowed, invert=True)]
        fitting = [n for n, c in LABEL_CONVENTIONS.items() if np.isin(values, c.values).all()]
        if outside.size or not fitting:
            bad = outside if outside.size else values
            count = int(np.isin(np.asarray(array), bad).sum())
            shown = ", ".join(f"{v:g}" for v in bad[:8]) + (", ..." if bad.size > 8 else "")
            where = (f"{{{', '.join(map(str, allowed))}}} of the {convention} convention" if convention is not None
                     else f"every label convention ({'; '.join(c.description for c in LABEL_CONVENTIONS.values())})")
            hint = f"; they fit {' and '.join(fitting)}: set label_convention" if fitting else ""
            yield Problem(case, name, f"label values {{{shown}}} outside {where} ({count} voxels){hint}")


def image_channel_names(paths: Sequence[str], channels: Optional[Sequence[int]] = None) -> List[str]:
    """How :func:`voxel_problems` names each image channel (T1ce, T1, T2, FLAIR): its file, or the 4D file with the
    file channel that holds it."""
    if len(paths) == 1:
        order = range(len(CHANNELS)) if channels is None else channels
        return [f"{paths[0]} (channel {i}, {m})" for i, m in zip(order, CHANNELS)]
    return list(paths)


def _read(path: str) -> np.ndarray:
    try:
        return np.asanyarray(_header(path).dataobj)
    except _READ_ERRORS as err:  # the header was fine, the data is truncated or corrupt
        raise _Unreadable(err) from err


def case_problems(entry: Mapping, read_voxels: bool = True) -> List[Problem]:
    """Every problem of one case: :func:`header_problems`, then (``read_voxels``) every byte of every file and
    :func:`voxel_problems`.

    Example::

        problems = case_problems({"case": "c1", "image": [...], "label": "c1_seg.nii.gz"})
        print("\\n".join(map(str, problems)))
    """
    problems = list(header_problems(entry))
    if problems or not read_voxels:
        return problems
    paths, label = case_files(entry)
    case = _case_name(entry, paths)
    arrays = {}
    for path in paths + ([label] if label is not None else []):
        try:
            arrays[path] = _read(path)
        except _Unreadable as err:
            problems.append(Problem(case, path, str(err)))
    if problems:
        return problems
    if len(paths) == 1:
        channels = file_channels(entry)
        images = [(n, arrays[paths[0]][..., c]) for c, n in zip(channels, image_channel_names(paths, channels))]
    else:
        images = [(p, arrays[p]) for p in paths]
    label_data = (label, arrays[label]) if label is not None else None
    return list(voxel_problems(case, images, label_data, entry.get("label_convention", DEFAULT_CONVENTION)))


def check_case(entry: Mapping, read_voxels: bool = True) -> None:
    """Raise the first problem of a case (see :func:`raise_first`); headers first, then voxels."""
    raise_first(header_problems(entry))
    if read_voxels:
        raise_first(case_problems(entry))


def check_cases(entries: Iterable[Mapping], read_voxels: bool = True, context: str = "bad BraTS cases") -> None:
    """Check cases and report every problem of every case at once.

    Args:
        entries: datalist entries.
        read_voxels: read every volume (see :func:`case_problems`); ``False`` checks the headers only.
        context: the first line of the error message.

    Raises:
        BraTSDataError: listing every problem.
    """
    problems = [p for entry in entries for p in case_problems(entry, read_voxels)]
    if problems:
        raise BraTSDataError(problems, context)


def read_label_file(
    path: PathLike, case: str = "-", convention: Optional[str] = None
) -> Tuple[np.ndarray, Tuple[float, ...]]:
    """A checked label map read from disk on its own grid, with its voxel spacing (mm, in the array's axis order).

    Args:
        path: the seg file (3D, or 4D with one channel).
        case: the case id, for error messages.
        convention: the label convention its values must follow; ``None``: any.

    Returns:
        The (X, Y, Z) label array and the spacing from the header.

    Raises:
        FileNotFoundError: the file does not exist.
        BraTSDataError: unreadable, not 3D, NaN voxels or label values outside the convention.

    Example::

        labels, spacing = read_label_file("BraTS2021_00000/BraTS2021_00000_seg.nii.gz")
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(str(Problem(case, path, "file does not exist", missing=True)))
    try:
        image = _header(path)
        array = _read(path)
    except _Unreadable as err:
        raise BraTSDataError([Problem(case, path, str(err))], "bad label file") from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise BraTSDataError([Problem(case, path, f"expected a 3D label map, got shape {array.shape}")], "bad label file")
    raise_first(voxel_problems(case, [], (path, array), convention), "bad label file")
    return np.asarray(array), tuple(float(z) for z in image.header.get_zooms()[:3])
