"""Where the cases of a BraTS folder are: discovery by file name (no voxel is read here).

A BraTS case is a folder ``<case>/`` holding ``<case>_{t1,t1ce,t2,flair,seg}.nii[.gz]``. Two layouts are found:
the flat one of BraTS 2021 (``<root>/<case>/``) and the grouped one of BraTS 2018-2020 (``<root>/{HGG,LGG}/<case>/``,
the grade taken from the folder). A case without ``seg`` is valid for inference only.

A datalist entry is ``{"case": id, "grade": "HGG" | "LGG" | None, "image": [t1ce, t1, t2, flair], "label": seg}``:
the images are listed in the network's channel order (T1ce, T1, T2, FLAIR) and ``label`` is absent for a case without
``seg``.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, List, Optional, Tuple

from raagr2_monai.constants import CHANNELS, GRADES, LABEL_SUFFIX

from .validation import BraTSDataError, Problem

__all__ = ["EXTENSIONS", "GRADES_FILE", "find_cases", "scan_cases", "strip_extension"]

#: NIfTI file extensions, longest first.
EXTENSIONS = (".nii.gz", ".nii")
#: A grade CSV found in a BraTS folder under this name is used without being named.
GRADES_FILE = "grades.csv"


def _case_file(folder: str, case: str, suffix: str) -> Tuple[Optional[str], Optional[Problem]]:
    """The file ``<case>_<suffix>.nii[.gz]`` in ``folder``, or ``None``; a problem if both extensions are there."""
    found = [os.path.join(folder, f"{case}_{suffix}{ext}") for ext in EXTENSIONS]
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


def scan_cases(data_dir: str, grades_csv: Optional[str]) -> Tuple[str, List[dict], List[Problem]]:
    """The folder, its complete cases and the problems found by looking at file names only."""
    root = os.path.abspath(os.path.expanduser(str(data_dir)))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"BraTS folder {root} does not exist or is not a folder.")
    if grades_csv is None and os.path.isfile(os.path.join(root, GRADES_FILE)):
        grades_csv = os.path.join(root, GRADES_FILE)
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
    Only file names are looked at here (:mod:`raagr2_monai.data.validation` checks the contents).

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

        entries = find_cases("/data/BraTS2021_Training_Data")
        entries[0]["image"][0]  # T1ce first
        # '/data/BraTS2021_Training_Data/BraTS2021_00000/BraTS2021_00000_t1ce.nii.gz'
    """
    root, entries, problems = scan_cases(data_dir, grades_csv)
    if problems:
        raise BraTSDataError(problems, f"bad BraTS data in {root}")
    return entries


def strip_extension(name: str) -> str:
    """A file name without its NIfTI extension (``c1.nii.gz`` -> ``c1``)."""
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name
