"""Where a workflow's cases come from: a datalist file, a BraTS folder split in memory, or the built-in synthetic set
(generated on first use); and the cases an inference run segments."""

from __future__ import annotations

import json
import os
from typing import List, Optional, Tuple

from raagr2_monai.constants import DEFAULT_CONVENTION, SECTIONS

from .layouts import find_cases
from .split import DEFAULT_SPLIT, SplitLike, build_datalist
from .synthetic import default_dataset_dir, ensure_synthetic

__all__ = ["load_split", "resolve_dataset_dir", "check_data_source", "inference_cases"]


def load_split(
    dataset_dir: Optional[str],
    section: str,
    datalist: Optional[str] = None,
    seed: int = 0,
    split: SplitLike = DEFAULT_SPLIT,
    check: bool = False,
    label_convention: str = "auto",
    limit: Optional[int] = None,
) -> List[dict]:
    """One section of the data, for bundle configs.

    With ``datalist``, the section is read from that JSON with ``monai.data.load_decathlon_datalist`` (paths resolved
    against the JSON's folder; ``dataset_dir`` is not used). Without it, the cases of ``dataset_dir`` are found and
    split in memory exactly as :func:`build_datalist` does (absolute paths). When ``dataset_dir`` is the built-in
    synthetic folder (:func:`raagr2_monai.data.synthetic.default_dataset_dir`, also chosen by ``None``), it is
    generated first when absent or written by another generator version.

    Args:
        dataset_dir: the BraTS folder, or ``None`` for the built-in synthetic set.
        section: ``training``, ``validation``, ``testing`` or ``unlabelled``.
        datalist: a JSON written by :func:`write_datalist`.
        seed: seed of the in-memory split.
        split: fractions of the in-memory split.
        check: read every volume before splitting (slow on a full BraTS set; validate once with
            ``raagr2 datalist`` instead).
        label_convention: ``"auto"`` (each entry's own, from the layout or the datalist) or the convention every
            entry gets.
        limit: the first so many entries only (``None``: all), e.g. a training's ``val_cases``.

    Returns:
        The section's entries.

    Raises:
        ValueError: unknown section.
        FileNotFoundError: ``dataset_dir`` does not exist (and is not the synthetic default).
        BraTSDataError: bad cases.

    Example::

        train_files = load_split(None, "training")  # the synthetic set
        sorted(train_files[0])  # ['case', 'grade', 'image', 'label', 'label_convention']
    """
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}; got {section!r}.")
    if datalist:
        from monai.data import load_decathlon_datalist

        entries = load_decathlon_datalist(datalist, True, section)
        # MONAI joins any value that names an existing path to the JSON's folder, which can turn a case id or a
        # grade into a path: restore both from the file.
        with open(datalist) as f:
            raw = json.load(f)[section]
        for entry, original in zip(entries, raw):
            for key in ("case", "grade", "label_convention"):
                if key in original:
                    entry[key] = original[key]
            entry.setdefault("label_convention", DEFAULT_CONVENTION)
            if label_convention != "auto":
                entry["label_convention"] = label_convention
    else:
        folder = resolve_dataset_dir(dataset_dir)
        entries = build_datalist(folder, seed, split, check=check, label_convention=label_convention)[section]
    return entries if limit is None else entries[:limit]


def _dataset_path(dataset_dir: Optional[str]) -> Tuple[str, bool]:
    """The absolute folder and whether it is the built-in synthetic set (``None`` or its folder)."""
    default = default_dataset_dir()
    path = os.path.abspath(os.path.expanduser(str(dataset_dir))) if dataset_dir else default
    return path, os.path.realpath(path) == os.path.realpath(default)


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"dataset_dir {path} does not exist; pass a BraTS folder or leave it at the default to use the "
        f"built-in synthetic set ({default_dataset_dir()})."
    )


def resolve_dataset_dir(dataset_dir: Optional[str]) -> str:
    """The absolute path of a bundle's ``dataset_dir``; the built-in synthetic set (``None`` or its folder) is
    generated when absent.

    Raises:
        FileNotFoundError: any other folder that does not exist.
    """
    path, synthetic = _dataset_path(dataset_dir)
    if synthetic:
        ensure_synthetic(path)  # cheap when present: it only reads the set's synthetic.json
    if not os.path.isdir(path):
        raise _missing(path)
    return path


def check_data_source(dataset_dir: Optional[str], datalist: Optional[str] = None) -> str:
    """Check a workflow's data settings before anything is loaded: the datalist file when one is given, else the
    folder. The built-in synthetic set is not generated here but when its cases are first asked for, so that a run
    whose data comes from elsewhere (MONAI Label replaces the datasets) never makes it.

    Returns:
        The datalist's or the folder's absolute path.

    Raises:
        FileNotFoundError: the datalist or the folder does not exist.
    """
    if datalist:
        path = os.path.abspath(os.path.expanduser(str(datalist)))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"datalist {path} does not exist; write one with `raagr2 datalist`.")
        return path
    path, synthetic = _dataset_path(dataset_dir)
    if not synthetic and not os.path.isdir(path):
        raise _missing(path)
    return path


def inference_cases(
    dataset_dir: Optional[str],
    datalist: Optional[str] = None,
    section: str = "testing",
    label_convention: str = "auto",
) -> List[dict]:
    """The cases an inference run segments.

    With ``datalist``, its ``section`` (``testing`` by default). Otherwise every case in ``dataset_dir``, labelled or
    not, in any layout of :mod:`raagr2_monai.data.layouts` (case folders, a Decathlon ``dataset.json``, or 4D files
    lying in the folder with channels T1ce, T1, T2, FLAIR, the MONAI Label datastore form).

    Returns:
        Datalist entries with ``case``, ``image`` (a list of four paths, or one path), ``label_convention`` (the
        convention the written label map follows unless the bundle says otherwise) and, for a 4D file in another
        channel order, ``channels``.

    Raises:
        FileNotFoundError: ``dataset_dir`` does not exist.
        BraTSDataError: the folder holds no case, or a case misses a modality.

    Example::

        [e["case"] for e in inference_cases("/data/new_cases")]  # ['BraTS2021_00000', 'BraTS2021_00002']
    """
    if datalist:
        return load_split(None, section, datalist, label_convention=label_convention)
    cases = find_cases(resolve_dataset_dir(dataset_dir), label_convention=label_convention)
    keep = ("case", "image", "channels", "label_convention")
    return [{k: e[k] for k in keep if k in e} for e in cases]
