"""Where a workflow's cases come from: a datalist file, a BraTS folder split in memory, or the built-in synthetic set
(generated on first use); and the cases an inference run segments."""

from __future__ import annotations

import json
import os
from typing import List, Optional

from raagr2_monai.constants import SECTIONS

from .layouts import EXTENSIONS, find_cases, strip_extension
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

    Returns:
        The section's entries.

    Raises:
        ValueError: unknown section.
        FileNotFoundError: ``dataset_dir`` does not exist (and is not the synthetic default).
        BraTSDataError: bad cases.

    Example::

        train_files = load_split(None, "training")  # the synthetic set
        sorted(train_files[0])
        # ['case', 'grade', 'image', 'label']
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
            for key in ("case", "grade"):
                if key in original:
                    entry[key] = original[key]
        return entries
    return build_datalist(resolve_dataset_dir(dataset_dir), seed, split, check=check)[section]


def resolve_dataset_dir(dataset_dir: Optional[str]) -> str:
    """The absolute path of a bundle's ``dataset_dir``; the built-in synthetic set (``None`` or its folder) is
    generated when absent.

    Raises:
        FileNotFoundError: any other folder that does not exist.
    """
    default = default_dataset_dir()
    path = os.path.abspath(os.path.expanduser(str(dataset_dir))) if dataset_dir else default
    if os.path.realpath(path) == os.path.realpath(default):
        ensure_synthetic(path)  # cheap when present: it only reads the set's synthetic.json
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"dataset_dir {path} does not exist; pass a BraTS folder or leave it at the default to use the "
            f"built-in synthetic set ({default})."
        )
    return path


def check_data_source(dataset_dir: Optional[str], datalist: Optional[str] = None) -> str:
    """Check a workflow's data settings before anything is loaded: the datalist file when one is given, else the
    folder (the built-in synthetic set is generated when it is the one asked for).

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
    return resolve_dataset_dir(dataset_dir)


def inference_cases(dataset_dir: Optional[str], datalist: Optional[str] = None, section: str = "testing") -> List[dict]:
    """The cases an inference run segments.

    With ``datalist``, its ``section`` (``testing`` by default). Otherwise every case in ``dataset_dir``, labelled or
    not: BraTS case folders (four modality files each), and ``*.nii``/``*.nii.gz`` files lying directly in the folder,
    each read as one 4-channel volume in the order T1ce, T1, T2, FLAIR (the Medical Segmentation Decathlon and MONAI
    Label datastore form).

    Returns:
        Datalist entries with ``case`` and ``image`` (a list of four paths, or one path).

    Raises:
        FileNotFoundError: ``dataset_dir`` does not exist.
        BraTSDataError: the folder holds neither BraTS cases nor 4-channel volumes, or a case misses a modality.

    Example::

        [e["case"] for e in inference_cases("/data/new_cases")]
        # ['BraTS2021_00000', 'BraTS2021_00002']
    """
    if datalist:
        return load_split(None, section, datalist)
    root = resolve_dataset_dir(dataset_dir)
    volumes = [
        {"case": strip_extension(name), "image": os.path.join(root, name)}
        for name in sorted(os.listdir(root))
        if name.endswith(EXTENSIONS) and os.path.isfile(os.path.join(root, name))
    ]
    has_case_folders = any(os.path.isdir(os.path.join(root, n)) for n in os.listdir(root))
    cases = find_cases(root) if has_case_folders or not volumes else []
    return [{"case": e["case"], "image": e["image"]} for e in cases] + volumes
