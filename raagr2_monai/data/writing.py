"""Writing label maps to disk: one file per case named after the case id, written atomically."""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

from monai.config import PathLike
from monai.data import NibabelWriter

from raagr2_monai.utils import atomic_write

from .transforms import CASE_KEY

__all__ = ["AtomicNibabelWriter", "brats_case_name_formatter"]

logger = logging.getLogger(__name__)

# Modality suffixes of BraTS 2018-2021 (t1ce), BraTS 2023 (t1c, t1n, t2w, t2f) and nnU-Net style (_0000).
_MODALITY_SUFFIX = re.compile(r"[_-](t1ce|t1gd|t1c|t1n|t1|t2w|t2f|t2|flair|0000)$", re.IGNORECASE)


def brats_case_name_formatter(metadict: Mapping[str, Any] | None, saver: Any) -> dict[str, Any]:
    """``SaveImaged`` name formatter: the subject is the case id, so the file is ``<case>_<postfix><ext>``.

    The case id is ``metadict["case"]`` (see :class:`CaseNameToMetad`), else the source file's name without its
    extension and modality suffix (``BraTS2021_00000_t1ce.nii.gz`` -> ``BraTS2021_00000``).

    Args:
        metadict: the saved tensor's metadata.
        saver: the calling ``SaveImage`` (unused; part of MONAI's formatter signature).

    Returns:
        Keyword arguments for ``FolderLayout.filename``.

    Raises:
        ValueError: when the metadata names neither a case nor a source file.

    Example::

        >>> brats_case_name_formatter({"filename_or_obj": "/d/c7/c7_t1ce.nii.gz"}, None)
        {'subject': 'c7.nii.gz', 'idx': None}
    """
    metadict = metadict or {}
    case = metadict.get(CASE_KEY)
    if not case:
        source = metadict.get("filename_or_obj")
        if not source:
            raise ValueError("Cannot name the output file: its metadata has neither a 'case' nor a source file name.")
        name = os.path.basename(os.fspath(source))
        name = re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE)
        case = _MODALITY_SUFFIX.sub("", name)
    # FolderLayout strips one extension; giving it ours keeps dots inside case ids intact.
    return {"subject": f"{case}.nii.gz", "idx": None}


class AtomicNibabelWriter(NibabelWriter):
    """``NibabelWriter`` that writes to a hidden temporary file beside the target, then renames it into place.

    A reader never sees a half-written segmentation, and an interrupted run leaves no truncated file. Each file
    written is logged (``INFO``, logger ``raagr2_monai.data.writing``) when ``SaveImaged(print_log=True)``.

    Example::

        SaveImaged("pred", output_dir="out", writer=AtomicNibabelWriter, print_log=True)
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        target = os.fspath(filename)
        # nibabel picks the format and compression from the extension, so the temporary name keeps it
        ext = ".nii.gz" if target.endswith(".nii.gz") else os.path.splitext(target)[1]
        atomic_write(target, lambda tmp: super(AtomicNibabelWriter, self).write(tmp, verbose=False, **obj_kwargs), ext)
        if verbose:
            logger.info("wrote %s", target)
