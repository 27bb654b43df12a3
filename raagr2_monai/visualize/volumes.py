"""A case's modalities read from disk on their own grid, for the pictures."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np

from raagr2_monai.constants import CHANNELS
from raagr2_monai.data.validation import BraTSDataError, Problem, case_files, header_problems, raise_first

__all__ = ["file_channels", "read_modalities"]


def file_channels(entry: Mapping[str, Any], channels: Sequence[str] = CHANNELS) -> tuple[str, ...]:
    """The modality of each image file, or of each channel of a 4D file, of a datalist entry: ``channels``, or the
    entry's own order when it has ``"channels"`` (a Decathlon study: the file channel of each of
    :data:`~raagr2_monai.constants.CHANNELS`, in that order).

    Example::

        >>> file_channels({"image": "c.nii.gz", "channels": [2, 0, 1, 3]})  # T1ce in file channel 2, T1 in 0, ...
        ('t1', 't2', 't1ce', 'flair')
        >>> file_channels({"image": ["a", "b", "c", "d"]})
        ('t1ce', 't1', 't2', 'flair')
    """
    if entry.get("channels") is None:
        return tuple(channels)
    names = [""] * len(CHANNELS)
    for modality, file_channel in zip(CHANNELS, entry["channels"]):
        names[int(file_channel)] = modality
    return tuple(names)


def read_modalities(
    image: str | os.PathLike | Sequence[str | os.PathLike],
    names: Sequence[str] = ("flair", "t1ce"),
    channels: Sequence[str] = CHANNELS,
    case: str = "-",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Some modalities of a case, as stored (file voxel order, no resampling), and the grid's affine.

    Args:
        image: the case's image files in ``channels`` order, or one 4D file whose last axis holds them (a datalist
            entry's ``image``).
        names: the modalities to read, among ``channels``.
        channels: the modality of each file or 4D channel.
        case: the case id, for error messages.

    Returns:
        ``({name: (X, Y, Z) array}, affine)``, the 4x4 voxel-to-world matrix shared by the files.

    Raises:
        FileNotFoundError: a file does not exist.
        raagr2_monai.data.validation.BraTSDataError: the files are not four 3D volumes or one 4D volume with four
            channels, are unreadable, or lie on different grids (each problem names the file).
        ValueError: a name is not among ``channels``.

    Example::

        images, affine = read_modalities(entry["image"], ("flair", "t1ce"), case=entry["case"])
    """
    unknown = [n for n in names if n not in channels]
    if unknown:
        raise ValueError(f"Case {case}: modalities {unknown} are not among the channels {tuple(channels)}.")
    paths, _ = case_files({"image": image})
    raise_first(header_problems({"case": case, "image": paths}), "cannot draw the case")
    affine = np.asarray(nib.load(paths[0]).affine)
    if len(paths) == 1:
        volume = _voxels(paths[0], case)
        return {n: volume[..., list(channels).index(n)] for n in names}, affine
    return {n: _voxels(paths[list(channels).index(n)], case) for n in names}, affine


def _voxels(path: str, case: str) -> np.ndarray:
    try:
        return np.asanyarray(nib.load(path).dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:  # a sound header over truncated or corrupt data
        reason = " ".join(str(err).split())
        raise BraTSDataError([Problem(case, path, f"unreadable voxels ({type(err).__name__}: {reason})")],
                             "cannot draw the case") from None
