"""Patient-level splits: a BraTS folder -> checked cases -> training / validation / testing (stratified by grade),
written as a MONAI (Decathlon-style) datalist.

A datalist has four sections: ``training``, ``validation`` and ``testing`` (labelled cases, split by patient,
stratified by grade) and ``unlabelled`` (cases without ``seg``; never part of the split).

Error policy: every problem found is reported with its case, file and nature in one
:class:`~raagr2_monai.data.validation.BraTSDataError`, and nothing is written while any case is bad, so one run lists
everything that has to be fixed.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from raagr2_monai.constants import CHANNEL_NAMES, LABEL_CONVENTIONS, SECTIONS
from raagr2_monai.utils import atomic_write_json, parse_sequence

from .layouts import scan_cases
from .validation import BraTSDataError, case_problems

__all__ = ["DEFAULT_SPLIT", "parse_split", "split_cases", "build_datalist", "write_datalist"]

#: Training, validation and testing fractions.
DEFAULT_SPLIT: Tuple[float, float, float] = (0.7, 0.15, 0.15)

SplitLike = Union[Sequence[float], str]


def parse_split(split: SplitLike) -> Tuple[float, float, float]:
    """Training/validation/testing fractions from a sequence or a ``"0.7,0.15,0.15"`` string."""
    try:
        fractions = tuple(parse_sequence(split, "split", float))
    except ValueError:
        raise ValueError(f"split must be three numbers (train, validation, test); got {split!r}.") from None
    if len(fractions) != 3 or any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise ValueError(f"split must be three non-negative fractions with train > 0; got {split!r}.")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1; got {split!r} (sum {sum(fractions):g}).")
    return fractions  # type: ignore[return-value]


def _apportion(n: int, fractions: Sequence[float]) -> List[int]:
    """Split ``n`` items by ``fractions`` (largest remainder); when ``n >= 3``, every positive fraction gets one."""
    exact = [n * f for f in fractions]
    counts = [int(np.floor(x)) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))[: n - sum(counts)]:
        counts[i] += 1
    if n >= len(fractions):
        for i, f in enumerate(fractions):
            if f > 0 and counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] += 1
    return counts


def split_cases(
    entries: Sequence[dict], seed: int = 0, split: SplitLike = DEFAULT_SPLIT
) -> Dict[str, List[dict]]:
    """Split cases by patient into training, validation and testing, stratified by grade.

    Each grade (HGG, LGG, unknown) is shuffled with a generator seeded by ``seed`` and divided by the fractions
    (largest remainder), so the counts follow the fractions per grade and every grade with at least three cases
    appears in every split. With three or more cases in all, no split with a positive fraction is empty. The result
    depends only on the case ids, grades, ``seed`` and ``split``.

    Args:
        entries: datalist entries; each case is one patient and lands in exactly one split.
        seed: seed of the shuffle.
        split: training, validation and testing fractions (a sequence or ``"0.7,0.15,0.15"``).

    Returns:
        ``{"training": [...], "validation": [...], "testing": [...]}``, each sorted by case id.

    Raises:
        ValueError: bad fractions, or a case id that appears twice.

    Example::

        >>> parts = split_cases([{"case": f"c{i}", "grade": "HGG"} for i in range(10)], seed=0)
        >>> [len(parts[k]) for k in ("training", "validation", "testing")]
        [7, 2, 1]
    """
    fractions = parse_split(split)
    ids = [e["case"] for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"case ids must be unique; repeated: {sorted({c for c in ids if ids.count(c) > 1})}.")
    rng = np.random.default_rng(seed)
    strata: Dict[str, List[dict]] = {}
    for entry in sorted(entries, key=lambda e: e["case"]):
        strata.setdefault(str(entry.get("grade")), []).append(entry)
    parts: List[List[dict]] = [[], [], []]
    for key in sorted(strata):
        members = strata[key]
        order = rng.permutation(len(members))
        start = 0
        for part, count in zip(parts, _apportion(len(members), fractions)):
            part.extend(members[i] for i in order[start : start + count])
            start += count
    if len(entries) >= 3:
        # Small strata can leave a split empty in total: move one case from the largest split to each empty one.
        for i, f in enumerate(fractions):
            if f > 0 and not parts[i]:
                donor = max(range(3), key=lambda j: len(parts[j]))
                parts[i].append(parts[donor].pop())
    names = SECTIONS[:3]
    return {name: sorted(part, key=lambda e: e["case"]) for name, part in zip(names, parts)}


def build_datalist(
    data_dir: str,
    seed: int = 0,
    split: SplitLike = DEFAULT_SPLIT,
    grades_csv: Optional[str] = None,
    check: bool = True,
    label_convention: str = "auto",
) -> Dict[str, List[dict]]:
    """Find, check and split the cases of a BraTS folder (absolute paths).

    Labelled cases are split by patient with :func:`split_cases`; cases without ``seg`` go to ``unlabelled`` only.

    Args:
        data_dir: the BraTS folder (any layout of :mod:`raagr2_monai.data.layouts`).
        seed: seed of the split.
        split: training, validation and testing fractions.
        grades_csv: optional case -> grade CSV (default: ``<data_dir>/grades.csv`` if present).
        check: ``True`` reads every volume (readability, shapes, affines, NaN/inf, label values);
            ``False`` reads the file headers only (existence, dimensions, shapes, affines).
        label_convention: ``"auto"`` (the layout's convention) or the name of the one all labels follow.

    Returns:
        ``{"training", "validation", "testing", "unlabelled"}`` -> lists of entries.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        BraTSDataError: every problem of every case at once (nothing is split while any case is bad).

    Example::

        parts = build_datalist("/data/BraTS2021_Training_Data", seed=0)
        sorted(parts)
        # ['testing', 'training', 'unlabelled', 'validation']
    """
    root, entries, problems = scan_cases(data_dir, grades_csv, label_convention)
    problems += [p for entry in entries for p in case_problems(entry, read_voxels=check)]
    if problems:
        raise BraTSDataError(problems, f"bad BraTS data in {root}")
    parts: Dict[str, List[dict]] = dict(split_cases([e for e in entries if "label" in e], seed, split))
    parts["unlabelled"] = [e for e in entries if "label" not in e]
    return parts


def _relative(entry: dict, base: str) -> dict:
    out = dict(entry)
    image = entry["image"]
    out["image"] = os.path.relpath(image, base) if isinstance(image, str) else [os.path.relpath(p, base) for p in image]
    if "label" in entry:
        out["label"] = os.path.relpath(entry["label"], base)
    return out


def _labels(parts: Dict[str, List[dict]]) -> Dict[str, Dict[str, str]]:
    """Label value -> meaning, per convention found among the entries."""
    names = sorted({e["label_convention"] for part in parts.values() for e in part})
    return {name: {str(v): n for v, n in LABEL_CONVENTIONS[name].names.items()} for name in names}


def write_datalist(
    data_dir: str,
    output: str,
    seed: int = 0,
    split: SplitLike = DEFAULT_SPLIT,
    grades_csv: Optional[str] = None,
    check: bool = True,
    label_convention: str = "auto",
) -> dict:
    """Build a datalist (see :func:`build_datalist`) and write it as Decathlon-style JSON, atomically.

    Paths are written relative to the output file's folder, so that
    ``monai.data.load_decathlon_datalist(output, True, "training")`` resolves them wherever the pair is moved
    together. The JSON also records ``seed``, ``split``, ``data_dir`` (absolute) and ``grades_csv``. On any problem
    nothing is written.

    Args:
        data_dir: the BraTS folder.
        output: the JSON file to write (its folder is created).
        seed: seed of the split.
        split: training, validation and testing fractions.
        grades_csv: optional case -> grade CSV.
        check: read every volume (``True``) or only the file headers.
        label_convention: ``"auto"`` or the convention all labels follow.

    Returns:
        The written JSON document.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        BraTSDataError: every bad case at once.

    Example::

        doc = write_datalist("/data/BraTS2021_Training_Data", "/data/datalist.json")
        from monai.data import load_decathlon_datalist
        files = load_decathlon_datalist("/data/datalist.json", True, "training")
    """
    fractions = parse_split(split)
    root = os.path.abspath(os.path.expanduser(str(data_dir)))
    parts = build_datalist(root, seed, fractions, grades_csv, check, label_convention)
    output = os.path.abspath(os.path.expanduser(str(output)))
    base = os.path.dirname(output)
    doc: dict = {
        "name": "BraTS",
        "description": "BraTS cases split by patient, stratified by grade (raagr2_monai.data.split)",
        "data_dir": root,
        "grades_csv": os.path.abspath(grades_csv) if grades_csv is not None else None,
        "seed": int(seed),
        "split": list(fractions),
        "modality": {str(i): name for i, name in enumerate(CHANNEL_NAMES)},
        "labels": _labels(parts),
        "numTraining": len(parts["training"]),
    }
    for name in SECTIONS:
        doc[name] = [_relative(e, base) for e in parts[name]]
    atomic_write_json(output, doc)
    return doc
