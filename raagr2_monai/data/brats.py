"""Find and check BraTS cases, and split them by patient into a MONAI (Decathlon-style) datalist.

A BraTS case is a folder ``<case>/`` holding ``<case>_{t1,t1ce,t2,flair,seg}.nii[.gz]``. Two layouts are found:
the flat one of BraTS 2021 (``<root>/<case>/``) and the grouped one of BraTS 2018-2020 (``<root>/{HGG,LGG}/<case>/``,
the grade taken from the folder). A case without ``seg`` is valid for inference only.

A datalist entry is ``{"case": id, "grade": "HGG" | "LGG" | None, "image": [t1ce, t1, t2, flair], "label": seg}``:
the images are listed in the network's channel order (T1ce, T1, T2, FLAIR) and ``label`` is absent for a case without
``seg``. A datalist has four sections: ``training``, ``validation`` and ``testing`` (labelled cases, split by patient,
stratified by grade) and ``unlabelled`` (cases without ``seg``; never part of the split).

Error policy: every problem found is reported with its case, file and nature in one :class:`BraTSDataError`, and
nothing is written while any case is bad, so one run lists everything that has to be fixed.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import zlib
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "CHANNELS",
    "LABEL_SUFFIX",
    "LABEL_VALUES",
    "GRADES",
    "SECTIONS",
    "DEFAULT_SPLIT",
    "Problem",
    "BraTSDataError",
    "find_cases",
    "check_cases",
    "split_cases",
    "build_datalist",
    "write_datalist",
    "load_split",
]

#: Image file suffixes in the network's channel order (as MONAI's BraTS bundle).
CHANNELS: Tuple[str, ...] = ("t1ce", "t1", "t2", "flair")
#: Suffix of the label file.
LABEL_SUFFIX = "seg"
#: The raw BraTS label values: background, NCR/NET, edema, enhancing tumour.
LABEL_VALUES: Tuple[int, ...] = (0, 1, 2, 4)
#: Grades, as the 2018-2020 folders name them.
GRADES: Tuple[str, ...] = ("HGG", "LGG")
#: The sections of a datalist.
SECTIONS: Tuple[str, ...] = ("training", "validation", "testing", "unlabelled")
#: Training, validation and testing fractions.
DEFAULT_SPLIT: Tuple[float, float, float] = (0.7, 0.15, 0.15)

_EXTENSIONS = (".nii.gz", ".nii")
_GRADES_FILE = "grades.csv"
# Affines of one case may differ by float32 rounding of the header fields; 1e-3 mm is far below a voxel.
_AFFINE_ATOL = 1e-3


def same_grid(affine: np.ndarray, reference: np.ndarray) -> bool:
    """Whether two NIfTI affines describe one voxel grid (co-registered modalities, their label)."""
    return bool(np.allclose(affine, reference, rtol=0.0, atol=_AFFINE_ATOL))
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error)

SplitLike = Union[Sequence[float], str]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: the case, the file (or folder) and what is wrong."""

    case: str
    file: str
    problem: str

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


def _case_file(folder: str, case: str, suffix: str) -> Tuple[Optional[str], Optional[Problem]]:
    """The file ``<case>_<suffix>.nii[.gz]`` in ``folder``, or ``None``; a problem if both extensions are there."""
    found = [os.path.join(folder, f"{case}_{suffix}{ext}") for ext in _EXTENSIONS]
    found = [f for f in found if os.path.isfile(f)]
    if len(found) > 1:
        return None, Problem(case, found[0], f"ambiguous: both {os.path.basename(found[0])} and "
                                             f"{os.path.basename(found[1])} exist")
    return (found[0] if found else None), None


def _read_grades(grades_csv: str) -> Dict[str, str]:
    """Case -> grade from a CSV with a header: ``case,grade``, or BraTS 2020's ``name_mapping.csv`` columns."""
    if not os.path.isfile(grades_csv):
        raise FileNotFoundError(f"grades_csv {grades_csv} does not exist.")
    with open(grades_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields = {name.strip().lower(): name for name in (reader.fieldnames or [])}
        case_col = fields.get("case") or fields.get("brats_2020_subject_id")
        grade_col = fields.get("grade")
        if case_col is None or grade_col is None:
            raise BraTSDataError(
                [Problem("-", grades_csv, f"needs a header with 'case' and 'grade' columns; got {reader.fieldnames}")],
                "invalid grades CSV",
            )
        grades, problems = {}, []
        for row in reader:
            case, grade = (row[case_col] or "").strip(), (row[grade_col] or "").strip().upper()
            if not case:
                continue
            if grade not in GRADES:
                problems.append(Problem(case, grades_csv, f"grade {row[grade_col]!r} is not one of {GRADES}"))
            grades[case] = grade
    if problems:
        raise BraTSDataError(problems, f"invalid grades CSV {grades_csv}")
    return grades


def _candidate_folders(root: str) -> List[Tuple[str, str, Optional[str]]]:
    """(case, folder, grade from the layout) for every sub-folder of ``root`` and of ``root/{HGG,LGG}``."""
    found = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        if name in GRADES:
            found += [(c, os.path.join(path, c), name) for c in sorted(os.listdir(path))
                      if os.path.isdir(os.path.join(path, c))]
        else:
            found.append((name, path, None))
    return found


def _scan(data_dir: str, grades_csv: Optional[str]) -> Tuple[str, List[dict], List[Problem]]:
    """The folder, its complete cases and the problems found by looking at file names only."""
    root = os.path.abspath(os.path.expanduser(str(data_dir)))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"BraTS folder {root} does not exist or is not a folder.")
    if grades_csv is None and os.path.isfile(os.path.join(root, _GRADES_FILE)):
        grades_csv = os.path.join(root, _GRADES_FILE)
    csv_grades = _read_grades(str(grades_csv)) if grades_csv is not None else {}

    entries: List[dict] = []
    problems: List[Problem] = []
    seen: Dict[str, str] = {}
    for case, folder, layout_grade in _candidate_folders(root):
        files: Dict[str, Optional[str]] = {}
        case_problems: List[Problem] = []
        for suffix in CHANNELS + (LABEL_SUFFIX,):
            files[suffix], problem = _case_file(folder, case, suffix)
            if problem is not None:
                case_problems.append(problem)
        if not any(files.values()) and not case_problems:
            continue
        if case in seen:
            problems.append(Problem(case, folder, f"case id also found in {seen[case]}"))
            continue
        seen[case] = folder
        for suffix in CHANNELS:
            if files[suffix] is None and not any(f"_{suffix}." in p.file for p in case_problems):
                case_problems.append(Problem(case, os.path.join(folder, f"{case}_{suffix}.nii.gz"),
                                             f"missing {suffix} modality (no .nii.gz or .nii file)"))
        grade = layout_grade
        if case in csv_grades:
            if layout_grade is not None and csv_grades[case] != layout_grade:
                case_problems.append(Problem(case, str(grades_csv), f"grade {csv_grades[case]} conflicts with the "
                                                                    f"{layout_grade}/ folder the case is in"))
            grade = csv_grades[case]
        problems += case_problems
        if case_problems:
            continue
        entry = {"case": case, "grade": grade, "image": [files[s] for s in CHANNELS]}
        if files[LABEL_SUFFIX] is not None:
            entry["label"] = files[LABEL_SUFFIX]
        entries.append(entry)
    if not entries and not problems:
        problems.append(Problem("-", root, "no BraTS cases found: expected <case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz "
                                           "folders, directly or under HGG/ and LGG/"))
    entries.sort(key=lambda e: e["case"])
    return root, entries, problems


def find_cases(data_dir: str, grades_csv: Optional[str] = None) -> List[dict]:
    """Find the BraTS cases in a folder (flat 2021 layout or 2018-2020 ``HGG/``/``LGG/`` layout).

    A sub-folder is a case when it holds at least one ``<folder>_<suffix>.nii[.gz]`` file; other folders are ignored.
    Only file names are looked at here (see :func:`check_cases` for the contents).

    Args:
        data_dir: the BraTS folder.
        grades_csv: optional CSV mapping case -> grade (columns ``case,grade``, or BraTS 2020's ``name_mapping.csv``).
            When ``None``, ``<data_dir>/grades.csv`` is used if it exists. Grades from the folder layout and the CSV
            must agree.

    Returns:
        One datalist entry per case, sorted by case id, with absolute paths.

    Raises:
        FileNotFoundError: ``data_dir`` (or ``grades_csv``) does not exist.
        BraTSDataError: no case found; or, all at once, cases missing an image modality, a file present with both
            extensions, a case id found twice, a grade conflict or an invalid grade in the CSV.

    Example::

        >>> entries = find_cases("/data/BraTS2021_Training_Data")
        >>> entries[0]["image"][0]  # T1ce first
        '/data/BraTS2021_Training_Data/BraTS2021_00000/BraTS2021_00000_t1ce.nii.gz'
    """
    root, entries, problems = _scan(data_dir, grades_csv)
    if problems:
        raise BraTSDataError(problems, f"bad BraTS data in {root}")
    return entries


def _check_problems(entries: Sequence[dict], load: bool) -> List[Problem]:
    problems: List[Problem] = []
    for entry in entries:
        files = list(entry["image"]) + ([entry["label"]] if "label" in entry else [])
        missing = [Problem(entry["case"], f, "file does not exist") for f in files if not os.path.isfile(f)]
        problems += missing
        if load and not missing:
            problems += _case_problems(entry)
    return problems


class _Unreadable(Exception):
    """A file that nibabel cannot read to the end; the message says why."""


def _load(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """The voxel array and affine of a NIfTI file, reading every byte (a truncated file fails here)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        img = nib.load(path)
        return np.asanyarray(img.dataobj), np.asarray(img.affine)
    except (ImageFileError,) + _READ_ERRORS as err:
        reason = " ".join(str(err).split())  # nibabel messages can span lines
        raise _Unreadable(f"unreadable or truncated NIfTI ({type(err).__name__}: {reason})") from err



def _case_problems(entry: dict) -> List[Problem]:
    """Everything wrong with one case's volumes: unreadable, not 3D, shape/affine mismatch, NaN/inf, bad labels."""
    case = entry["case"]
    problems: List[Problem] = []
    ref: Optional[Tuple[str, Tuple[int, ...], np.ndarray]] = None
    files = list(entry["image"]) + ([entry["label"]] if "label" in entry else [])
    for path in files:
        name = os.path.basename(path)
        try:
            data, affine = _load(path)
        except _Unreadable as err:
            problems.append(Problem(case, path, str(err)))
            continue
        if data.ndim != 3:
            problems.append(Problem(case, path, f"expected a 3D volume, got shape {tuple(data.shape)}"))
            continue
        if ref is None:
            ref = (name, tuple(data.shape), affine)
        elif tuple(data.shape) != ref[1]:
            problems.append(Problem(case, path, f"shape {tuple(data.shape)} differs from {ref[0]}'s {ref[1]}"))
        elif not same_grid(affine, ref[2]):
            worst = float(np.max(np.abs(affine - ref[2])))
            problems.append(Problem(case, path, f"affine differs from {ref[0]}'s (by up to {worst:.4g})"))
        if np.issubdtype(data.dtype, np.inexact):
            bad = int(np.count_nonzero(~np.isfinite(data)))
            if bad:
                problems.append(Problem(case, path, f"{bad} NaN or infinite voxel(s)"))
        if path == entry.get("label"):
            outside = np.isin(data, LABEL_VALUES, invert=True)
            if np.any(outside):
                values = np.unique(data[outside])
                shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if values.size > 8 else "")
                problems.append(Problem(case, path, f"label values {{{shown}}} outside {{0, 1, 2, 4}} "
                                                    f"({int(np.count_nonzero(outside))} voxels)"))
    return problems


def check_cases(entries: Sequence[dict], load: bool = True) -> None:
    """Check cases and report every problem at once.

    Args:
        entries: datalist entries (from :func:`find_cases`).
        load: read every volume and check that it is a readable 3D NIfTI, that the modalities and the label share
            shape and affine (affine within 1e-3), that no voxel is NaN or infinite and that labels lie in
            {0, 1, 2, 4}. When ``False``, only that the files exist.

    Raises:
        BraTSDataError: listing every bad file of every case.

    Example::

        >>> check_cases(find_cases("/data/BraTS2021_Training_Data"))
    """
    problems = _check_problems(entries, load)
    if problems:
        raise BraTSDataError(problems, "bad BraTS cases")


def _parse_split(split: SplitLike) -> Tuple[float, float, float]:
    """Training/validation/testing fractions from a sequence or a ``"0.7,0.15,0.15"`` string."""
    values = split.replace("(", "").replace(")", "").split(",") if isinstance(split, str) else list(split)
    try:
        fractions = tuple(float(v) for v in values)
    except (TypeError, ValueError):
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
    fractions = _parse_split(split)
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
) -> Dict[str, List[dict]]:
    """Find, check and split the cases of a BraTS folder (absolute paths).

    Labelled cases are split by patient with :func:`split_cases`; cases without ``seg`` go to ``unlabelled`` only.

    Args:
        data_dir: the BraTS folder (either layout).
        seed: seed of the split.
        split: training, validation and testing fractions.
        grades_csv: optional case -> grade CSV (default: ``<data_dir>/grades.csv`` if present).
        check: ``True`` reads every volume (readability, shapes, affines, NaN/inf, label values);
            ``False`` only checks that the files exist.

    Returns:
        ``{"training", "validation", "testing", "unlabelled"}`` -> lists of entries.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        BraTSDataError: every problem of every case at once (nothing is split while any case is bad).

    Example::

        >>> parts = build_datalist("/data/BraTS2021_Training_Data", seed=0)
        >>> sorted(parts)
        ['testing', 'training', 'unlabelled', 'validation']
    """
    root, entries, problems = _scan(data_dir, grades_csv)
    problems += _check_problems(entries, check)
    if problems:
        raise BraTSDataError(problems, f"bad BraTS data in {root}")
    parts: Dict[str, List[dict]] = dict(split_cases([e for e in entries if "label" in e], seed, split))
    parts["unlabelled"] = [e for e in entries if "label" not in e]
    return parts


def _relative(entry: dict, base: str) -> dict:
    out = dict(entry)
    out["image"] = [os.path.relpath(p, base) for p in entry["image"]]
    if "label" in entry:
        out["label"] = os.path.relpath(entry["label"], base)
    return out


def write_datalist(
    data_dir: str,
    output: str,
    seed: int = 0,
    split: SplitLike = DEFAULT_SPLIT,
    grades_csv: Optional[str] = None,
    check: bool = True,
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
        check: read every volume (``True``) or only check that files exist.

    Returns:
        The written JSON document.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        BraTSDataError: every bad case at once.

    Example::

        >>> doc = write_datalist("/data/BraTS2021_Training_Data", "/data/datalist.json")
        >>> from monai.data import load_decathlon_datalist
        >>> files = load_decathlon_datalist("/data/datalist.json", True, "training")
    """
    fractions = _parse_split(split)
    root = os.path.abspath(os.path.expanduser(str(data_dir)))
    parts = build_datalist(root, seed, fractions, grades_csv, check)
    output = os.path.abspath(os.path.expanduser(str(output)))
    base = os.path.dirname(output)
    doc: dict = {
        "name": "BraTS",
        "description": "BraTS cases split by patient, stratified by grade (raagr2_monai.data.brats)",
        "data_dir": root,
        "grades_csv": os.path.abspath(grades_csv) if grades_csv is not None else None,
        "seed": int(seed),
        "split": list(fractions),
        "modality": {str(i): name for i, name in enumerate(("T1ce", "T1", "T2", "FLAIR"))},
        "labels": {"0": "background", "1": "NCR/NET", "2": "ED", "4": "ET"},
        "numTraining": len(parts["training"]),
    }
    for name in SECTIONS:
        doc[name] = [_relative(e, base) for e in parts[name]]
    os.makedirs(base, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", suffix=".tmp", dir=base)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
    return doc


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

        >>> train_files = load_split(None, "training")  # the synthetic set
        >>> sorted(train_files[0])
        ['case', 'grade', 'image', 'label']
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
    from .synthetic import default_dataset_dir, ensure_synthetic

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

        >>> [e["case"] for e in inference_cases("/data/new_cases")]
        ['BraTS2021_00000', 'BraTS2021_00002']
    """
    if datalist:
        return load_split(None, section, datalist)
    root = resolve_dataset_dir(dataset_dir)
    volumes = [
        {"case": _strip_extension(name), "image": os.path.join(root, name)}
        for name in sorted(os.listdir(root))
        if name.endswith(_EXTENSIONS) and os.path.isfile(os.path.join(root, name))
    ]
    has_case_folders = any(os.path.isdir(os.path.join(root, n)) for n in os.listdir(root))
    cases = find_cases(root) if has_case_folders or not volumes else []
    return [{"case": e["case"], "image": e["image"]} for e in cases] + volumes


def _strip_extension(name: str) -> str:
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name
