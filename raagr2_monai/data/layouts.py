"""Where the cases of a BraTS folder are: discovery by file name (no voxel is read here), in every common layout.

- ``brats2021``: BraTS 2018-2021, ``<root>/<case>/<case>_{t1ce,t1,t2,flair,seg}.nii[.gz]``, flat (2021) or grouped
  under ``<root>/{HGG,LGG}/`` (2018-2020, the grade taken from the folder); labels 1 NCR/NET, 2 ED, 4 ET.
- ``brats2023``: BraTS 2023+ (GLI, MEN, MET, PED, SSA), ``<root>/<case>/<case>-{t1c,t1n,t2w,t2f,seg}.nii[.gz]``;
  labels 1 NETC, 2 SNFH, 3 ET.
- ``msd``: the Medical Segmentation Decathlon's Task01_BrainTumour (the data of MONAI's tutorials): a
  ``dataset.json`` naming one 4D file per study (``imagesTr``, ``imagesTs``) and its label (``labelsTr``); the
  channel order and the meaning of the labels are read from its ``modality`` and ``labels``.
- ``folder4d``: a folder of 4D studies ``<root>/<id>.nii[.gz]`` with channels T1ce, T1, T2, FLAIR (the MONAI Label
  datastore form), labels, when there are any, in ``<root>/labels/final/<id>.nii.gz`` or ``<root>/labels/<id>...``.

A datalist entry is ``{"case": id, "grade": "HGG" | "LGG" | None, "image": [t1ce, t1, t2, flair] | 4D file,
"label": seg, "label_convention": name}``, plus ``"channels"`` for a 4D file whose channels are not in the
network's order (the file's channel index of T1ce, T1, T2, FLAIR). Four files are listed in the network's channel
order. ``label`` is absent for a case without one (inference only). A folder holding cases of two layouts is refused:
their labels would mean different things.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from raagr2_monai.constants import CHANNEL_NAMES, GRADES, LABEL_CONVENTIONS, LABEL_SUFFIX

from .validation import BraTSDataError, Problem

__all__ = [
    "EXTENSIONS",
    "GRADES_FILE",
    "FolderLayout",
    "FOLDER_LAYOUTS",
    "LAYOUTS",
    "find_cases",
    "scan_cases",
    "strip_extension",
]

#: NIfTI file extensions, longest first.
EXTENSIONS = (".nii.gz", ".nii")
#: A grade CSV found in a BraTS folder under this name is used without being named.
GRADES_FILE = "grades.csv"
_MSD_FILE = "dataset.json"
# MSD modality names of the network's channels, as Task01_BrainTumour's dataset.json writes them
_MSD_MODALITIES = {"t1gd": 0, "t1w": 1, "t2w": 2, "flair": 3}


@dataclass(frozen=True)
class FolderLayout:
    """A layout of one folder per case: ``<case>/<case><separator><suffix>.nii[.gz]``.

    Attributes:
        name: the layout's name, also the name of its label convention.
        separator: between the case id and the suffix.
        suffixes: the file suffixes of T1ce, T1, T2, FLAIR (the network's channel order).
        pattern: how the files are named, for messages.
    """

    name: str
    separator: str
    suffixes: Tuple[str, ...]
    pattern: str


#: The folder-per-case layouts.
FOLDER_LAYOUTS: Dict[str, FolderLayout] = {
    layout.name: layout
    for layout in (
        FolderLayout("brats2021", "_", ("t1ce", "t1", "t2", "flair"), "<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz"),
        FolderLayout("brats2023", "-", ("t1c", "t1n", "t2w", "t2f"), "<case>/<case>-{t1c,t1n,t2w,t2f,seg}.nii.gz"),
    )
}
#: Every layout found, with the label convention its labels follow.
LAYOUTS: Dict[str, str] = {"brats2021": "brats2021", "brats2023": "brats2023", "msd": "msd", "folder4d": "brats2021"}


def strip_extension(name: str) -> str:
    """A file name without its NIfTI extension (``c1.nii.gz`` -> ``c1``)."""
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _nifti(folder: str, stem: str, case: str) -> Tuple[Optional[str], Optional[Problem]]:
    """The file ``<stem>.nii[.gz]`` in ``folder``, or ``None``; a problem if both extensions are there."""
    found = [os.path.join(folder, f"{stem}{ext}") for ext in EXTENSIONS]
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
        if not os.path.isdir(path) or name == "labels":
            continue
        if name in GRADES:
            found += [(c, os.path.join(path, c), name) for c in sorted(os.listdir(path))
                      if os.path.isdir(os.path.join(path, c))]
        else:
            found.append((name, path, None))
    return found


def _folder_case(case: str, folder: str, layout: FolderLayout) -> Tuple[Optional[dict], List[Problem]]:
    """The entry of one case folder in ``layout``, ``(None, [])`` when no file of that layout is there."""
    files: Dict[str, Optional[str]] = {}
    problems: List[Problem] = []
    for suffix in (*layout.suffixes, LABEL_SUFFIX):
        files[suffix], problem = _nifti(folder, f"{case}{layout.separator}{suffix}", case)
        if problem is not None:
            problems.append(problem)
    if not any(files.values()) and not problems:
        return None, []
    for suffix in layout.suffixes:
        if files[suffix] is None and not any(f"{layout.separator}{suffix}." in p.file for p in problems):
            problems.append(Problem(case, os.path.join(folder, f"{case}{layout.separator}{suffix}.nii.gz"),
                                    f"missing {suffix} modality (no .nii.gz or .nii file)"))
    entry = {"case": case, "image": [files[s] for s in layout.suffixes], "label_convention": layout.name}
    if files[LABEL_SUFFIX] is not None:
        entry["label"] = files[LABEL_SUFFIX]
    return entry, problems


def _msd_channels(doc: dict, path: str) -> List[int]:
    """The file channel of T1ce, T1, T2, FLAIR from an MSD ``dataset.json``'s ``modality``."""
    names = {str(v).strip().lower(): int(k) for k, v in (doc.get("modality") or {}).items()}
    missing = [m for m in _MSD_MODALITIES if m not in names]
    if missing or len(names) != len(_MSD_MODALITIES):
        raise BraTSDataError(
            [Problem("-", path, f"'modality' must name FLAIR, T1w, T1gd and T2w; got {doc.get('modality')}")],
            "unsupported Decathlon dataset",
        )
    order = sorted(_MSD_MODALITIES, key=_MSD_MODALITIES.get)
    return [names[m] for m in order]


def _msd_convention(doc: dict, path: str) -> str:
    """The label convention a ``dataset.json``'s ``labels`` describe (the meaning is read, not assumed)."""
    labels = {int(k): str(v).strip().lower() for k, v in (doc.get("labels") or {}).items()}

    def value_of(*words: str, exclude: str = "\0") -> Optional[int]:
        found = [k for k, v in labels.items() if all(w in v for w in words) and exclude not in v]
        return found[0] if len(found) == 1 else None

    meaning = (value_of("non", "enhancing"), value_of("edema"), value_of("enhancing", exclude="non"))
    for name, convention in LABEL_CONVENTIONS.items():
        if meaning == (convention.ncr, convention.ed, convention.et):
            return name
    raise BraTSDataError(
        [Problem("-", path, f"'labels' {doc.get('labels')} match no known label convention "
                            f"({'; '.join(c.description for c in LABEL_CONVENTIONS.values())})")],
        "unsupported Decathlon dataset",
    )


def _msd_cases(root: str) -> Tuple[List[dict], List[Problem]]:
    """The studies a Medical Segmentation Decathlon ``dataset.json`` lists (``training`` with labels, ``test``
    without)."""
    path = os.path.join(root, _MSD_FILE)
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as err:
        raise BraTSDataError([Problem("-", path, f"unreadable JSON ({err})")], "bad Decathlon dataset") from None
    channels, convention = _msd_channels(doc, path), _msd_convention(doc, path)
    listed = [(item.get("image"), item.get("label")) for item in doc.get("training") or []]
    listed += [(item if isinstance(item, str) else item.get("image"), None) for item in doc.get("test") or []]
    entries, problems = [], []
    for image, label in listed:
        image_path = os.path.normpath(os.path.join(root, str(image)))
        case = strip_extension(os.path.basename(image_path))
        missing = [p for p in (image_path, label and os.path.normpath(os.path.join(root, label))) if p]
        missing = [p for p in missing if not os.path.isfile(p)]
        if missing:
            problems += [Problem(case, p, "listed in dataset.json but does not exist", missing=True) for p in missing]
            continue
        entry = {"case": case, "image": image_path, "channels": channels, "label_convention": convention}
        if label:
            entry["label"] = os.path.normpath(os.path.join(root, label))
        entries.append(entry)
    return entries, problems


def _folder4d_cases(root: str) -> Tuple[List[dict], List[Problem]]:
    """4D studies lying directly in ``root``, with labels from ``labels/final/`` or ``labels/`` when present."""
    entries, problems = [], []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not (name.endswith(EXTENSIONS) and os.path.isfile(path)):
            continue
        case = strip_extension(name)
        entry = {"case": case, "image": path, "label_convention": LAYOUTS["folder4d"]}
        for folder in (os.path.join(root, "labels", "final"), os.path.join(root, "labels")):
            label, problem = _nifti(folder, case, case) if os.path.isdir(folder) else (None, None)
            if problem is not None:
                problems.append(problem)
            if label is not None:
                entry["label"] = label
                break
        entries.append(entry)
    return entries, problems


def scan_cases(
    data_dir: str, grades_csv: Optional[str] = None, label_convention: str = "auto"
) -> Tuple[str, List[dict], List[Problem]]:
    """The folder, its complete cases and the problems found by looking at file names only.

    Args:
        data_dir: the folder, in any of the module's layouts.
        grades_csv: optional case -> grade CSV (default: ``<data_dir>/grades.csv`` if present).
        label_convention: ``"auto"`` (the layout's) or a convention name every entry gets.
    """
    root = os.path.abspath(os.path.expanduser(str(data_dir)))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"BraTS folder {root} does not exist or is not a folder.")
    if label_convention != "auto" and label_convention not in LABEL_CONVENTIONS:
        raise ValueError(f"label_convention must be 'auto' or one of {', '.join(LABEL_CONVENTIONS)}; "
                         f"got {label_convention!r}.")
    if grades_csv is None and os.path.isfile(os.path.join(root, GRADES_FILE)):
        grades_csv = os.path.join(root, GRADES_FILE)
    csv_grades = _read_grades(str(grades_csv)) if grades_csv is not None else {}

    problems: List[Problem] = []
    by_layout: Dict[str, List[dict]] = {}
    if os.path.isfile(os.path.join(root, _MSD_FILE)):
        by_layout["msd"], found = _msd_cases(root)
        problems += found
    seen: Dict[str, str] = {}
    for case, folder, layout_grade in _candidate_folders(root):
        for layout in FOLDER_LAYOUTS.values():
            entry, found = _folder_case(case, folder, layout)
            if entry is None:
                continue
            if case in seen:
                problems.append(Problem(case, folder, f"case id also found in {seen[case]}"))
                continue
            seen[case] = folder
            grade = layout_grade
            if case in csv_grades:
                if layout_grade is not None and csv_grades[case] != layout_grade:
                    found.append(Problem(case, str(grades_csv), f"grade {csv_grades[case]} conflicts with the "
                                                               f"{layout_grade}/ folder the case is in"))
                grade = csv_grades[case]
            problems += found
            if not found:
                by_layout.setdefault(layout.name, []).append({**entry, "grade": grade})
    if "msd" not in by_layout:
        entries4d, found = _folder4d_cases(root)
        problems += found
        if entries4d:
            by_layout["folder4d"] = entries4d
    if len(by_layout) > 1:
        counts = ", ".join(f"{len(v)} in the {k} layout" for k, v in sorted(by_layout.items()))
        problems.append(Problem("-", root, f"mixed dataset: {counts}; their labels follow different conventions, "
                                           "keep one layout per folder"))
    entries = sorted((e for found in by_layout.values() for e in found), key=lambda e: e["case"])
    for entry in entries:
        entry.setdefault("grade", None)
        if label_convention != "auto":
            entry["label_convention"] = label_convention
    if not entries and not problems:
        patterns = "; ".join(layout.pattern for layout in FOLDER_LAYOUTS.values())
        problems.append(Problem("-", root, f"no BraTS cases found: expected {patterns} (directly or under HGG/ and "
                                           f"LGG/), a Decathlon {_MSD_FILE}, or 4D studies with channels "
                                           f"{', '.join(CHANNEL_NAMES)}"))
    return root, entries, problems


def find_cases(data_dir: str, grades_csv: Optional[str] = None, label_convention: str = "auto") -> List[dict]:
    """Find the cases of a folder in any of the module's layouts.

    A sub-folder is a case when it holds at least one file of a folder layout; other folders are ignored. Only file
    names are looked at here (:mod:`raagr2_monai.data.validation` checks the contents).

    Args:
        data_dir: the folder.
        grades_csv: optional CSV mapping case -> grade (columns ``case,grade``, or BraTS 2020's ``name_mapping.csv``).
            When ``None``, ``<data_dir>/grades.csv`` is used if it exists. Grades from the folder layout and the CSV
            must agree.
        label_convention: ``"auto"`` (each layout's own) or a convention name for every case.

    Returns:
        One datalist entry per case, sorted by case id, with absolute paths.

    Raises:
        FileNotFoundError: ``data_dir`` (or ``grades_csv``) does not exist.
        BraTSDataError: no case found; or, all at once, cases missing an image modality, a file present with both
            extensions, a case id found twice, a grade conflict, an invalid grade in the CSV, a Decathlon
            ``dataset.json`` listing missing files, or cases of two layouts in one folder.

    Example::

        entries = find_cases("/data/BraTS2021_Training_Data")
        entries[0]["image"][0]  # T1ce first: '.../BraTS2021_00000/BraTS2021_00000_t1ce.nii.gz'
    """
    root, entries, problems = scan_cases(data_dir, grades_csv, label_convention)
    if problems:
        raise BraTSDataError(problems, f"bad BraTS data in {root}")
    return entries

