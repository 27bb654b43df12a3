"""The clients' data: a BraTS folder's studies split by patient across federated clients (IID, by grade, or IID with a
simulated scanner intensity shift per client), checked, and written as one datalist per client.

Every client gets a ``training`` and a ``validation`` section (MONAI's ``MonaiAlgo`` validates before each round, so
a client without validation studies could not run), written with absolute paths so the client reads it from any
working directory (the simulator moves its processes into its workspace).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from raagr2_monai.data.layouts import scan_cases
from raagr2_monai.data.validation import case_problems
from raagr2_monai.utils import atomic_write_json

__all__ = ["SPLITS", "ClientData", "client_names", "split_studies", "scanner_shift", "check_client_studies",
           "write_client_datalists"]

#: How studies are dealt to clients: ``iid`` (shuffled, grades mixed evenly), ``grade`` (non-IID: clients hold
#: contiguous runs of studies sorted by grade, so grades are skewed across clients), ``scanner`` (IID studies, but each
#: client's images get its own intensity scale and offset, a simulated scanner shift).
SPLITS = ("iid", "grade", "scanner")

#: Studies a client needs at least: one to train on and one to validate on.
MIN_STUDIES_PER_CLIENT = 2


@dataclass(frozen=True)
class ClientData:
    """One client's share of the data.

    Attributes:
        name: the NVFlare site name (``site-1``, ...).
        training: its training studies (datalist entries, absolute paths).
        validation: its validation studies.
        scale: intensity factor applied to its images (1.0: none).
        offset: intensity offset applied to its images (0.0: none).
    """

    name: str
    training: Tuple[dict, ...]
    validation: Tuple[dict, ...]
    scale: float = 1.0
    offset: float = 0.0


def client_names(clients: int) -> List[str]:
    """NVFlare's simulator names: ``site-1`` ... ``site-<clients>``.

    Example::

        >>> client_names(2)
        ['site-1', 'site-2']
    """
    return [f"site-{i + 1}" for i in range(int(clients))]


def scanner_shift(client: int, seed: int = 0) -> Tuple[float, float]:
    """The simulated scanner's intensity scale and offset of client ``client`` (0-based), drawn reproducibly.

    The first client keeps the reference scanner (1.0, 0.0), so the shift is relative to it.

    Example::

        >>> scanner_shift(0)
        (1.0, 0.0)
        >>> 0.7 <= scanner_shift(1)[0] <= 1.3
        True
    """
    if client == 0:
        return 1.0, 0.0
    rng = np.random.default_rng([int(seed), int(client)])
    return round(float(rng.uniform(0.7, 1.3)), 4), round(float(rng.uniform(-0.3, 0.3)), 4)


def _deal(entries: Sequence[dict], clients: int, mode: str, seed: int) -> List[List[dict]]:
    """Studies per client; each patient lands in exactly one client."""
    rng = np.random.default_rng(seed)
    ordered = sorted(entries, key=lambda e: e["case"])
    if mode == "grade":
        # sort by grade (ties shuffled) and cut into contiguous runs: each client sees mostly one grade
        keys = rng.permutation(len(ordered))
        ordered = [e for _, e in sorted(zip(keys, ordered), key=lambda p: (str(p[1].get("grade")), p[0]))]
        sizes = [len(ordered) // clients + (1 if i < len(ordered) % clients else 0) for i in range(clients)]
        parts, start = [], 0
        for size in sizes:
            parts.append(ordered[start:start + size])
            start += size
        return parts
    # IID: shuffle each grade and deal round robin, so every client gets the grades in the set's proportions
    parts = [[] for _ in range(clients)]
    turn = 0
    by_grade: Dict[str, List[dict]] = {}
    for entry in ordered:
        by_grade.setdefault(str(entry.get("grade")), []).append(entry)
    for grade in sorted(by_grade):
        members = by_grade[grade]
        for i in rng.permutation(len(members)):
            parts[turn % clients].append(members[i])
            turn += 1
    return parts


def split_studies(
    entries: Sequence[dict], clients: int, mode: str = "iid", seed: int = 0, validation_fraction: float = 0.25
) -> List[ClientData]:
    """Split labelled studies by patient across ``clients`` clients, then each client's share into training and
    validation.

    Args:
        entries: datalist entries (``case``, ``image``, ``label``, optional ``grade``).
        clients: number of clients, at least 1.
        mode: one of :data:`SPLITS`.
        seed: seed of the shuffles (and of the scanner shifts).
        validation_fraction: share of each client's studies kept for validation (at least one).

    Returns:
        One :class:`ClientData` per client, named ``site-1`` ...

    Raises:
        ValueError: an unknown mode, fewer than one client, or fewer than :data:`MIN_STUDIES_PER_CLIENT` studies
            for some client.

    Example::

        >>> parts = split_studies([{"case": f"c{i}", "grade": "HGG"} for i in range(9)], clients=2)
        >>> [(p.name, len(p.training), len(p.validation)) for p in parts]
        [('site-1', 4, 1), ('site-2', 3, 1)]
    """
    if mode not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {mode!r}.")
    clients = int(clients)
    if clients < 1:
        raise ValueError(f"clients must be at least 1; got {clients}.")
    needed = clients * MIN_STUDIES_PER_CLIENT
    if len(entries) < needed:
        raise ValueError(f"{len(entries)} labelled studies cannot be split across {clients} clients: each client needs "
                         f"at least {MIN_STUDIES_PER_CLIENT} (one to train, one to validate), {needed} in all.")
    result = []
    for index, (name, part) in enumerate(zip(client_names(clients), _deal(entries, clients, mode, seed))):
        n_val = min(len(part) - 1, max(1, int(round(len(part) * validation_fraction))))
        scale, offset = scanner_shift(index, seed) if mode == "scanner" else (1.0, 0.0)
        part = sorted(part, key=lambda e: e["case"])
        result.append(ClientData(name, tuple(part[n_val:]), tuple(part[:n_val]), scale, offset))
    return result


def check_client_studies(client: str, entries: Sequence[Mapping], source: str, read_voxels: bool = True) -> None:
    """Refuse a client's studies at the first bad one, in one line naming the client and the file.

    Args:
        client: the client's name.
        entries: its datalist entries.
        source: where they came from (a datalist file or a folder), for the message when no file is named.
        read_voxels: read every volume (NaN, label values, shapes) rather than the headers only.

    Raises:
        ValueError: ``client <name>: <file>: <problem>``.
    """
    for entry in entries:
        problems = case_problems(entry, read_voxels=read_voxels)
        if problems:
            first = problems[0]
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise ValueError(f"client {client}: {first.file or source}: case {first.case}: {first.problem}{more}")


def load_folder_studies(data_dir: str) -> Tuple[str, List[dict]]:
    """The labelled studies of a BraTS folder, refusing a file-name problem (missing modality, ...) in one line.

    Returns:
        The folder (absolute) and its labelled entries.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: a problem found by looking at the file names (``<file>: case <case>: <problem>``).
    """
    root, entries, problems = scan_cases(data_dir)
    if problems:
        first = problems[0]
        raise ValueError(f"{first.file}: case {first.case}: {first.problem}")
    return root, [e for e in entries if "label" in e]


def write_client_datalists(parts: Sequence[ClientData], folder: str, data_dir: Optional[str] = None) -> Dict[str, str]:
    """Write ``<folder>/<client>.json`` per client, atomically (MONAI datalist with ``training`` and ``validation``).

    Returns:
        Client name -> datalist path (absolute).
    """
    paths = {}
    for part in parts:
        path = os.path.abspath(os.path.join(folder, f"{part.name}.json"))
        atomic_write_json(path, {
            "name": f"BraTS federated client {part.name}",
            "data_dir": data_dir,
            "scanner_shift": {"scale": part.scale, "offset": part.offset},
            "training": list(part.training),
            "validation": list(part.validation),
            "testing": [],
        })
        paths[part.name] = path
    return paths
