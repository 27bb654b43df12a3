"""The report's tables as files: Tables 1-3 and the lesion-wise scores as CSV and JSON (one flat record per model,
with its sources; Table 1 with the spread of each score, the paired difference to the baseline and the rows identical
on every subject), and the thesis's published tables as JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from raagr2_monai.utils import atomic_write_text

from .rows import LESIONWISE_TABLE_COLUMNS, TABLE1_COLUMNS, TABLE2_COLUMNS, TABLE3_COLUMNS
from .statistics import PAIRED_KEYS, SPREAD_KEYS
from .thesis import THESIS_NOTES, THESIS_TABLE1, THESIS_TABLE2, THESIS_TABLE3, THESIS_TABLE4

__all__ = ["table_records", "write_tables"]


def _paired(quality: Mapping[str, Any]) -> Dict[str, Any]:
    """The paired comparison with the baseline as flat fields: the interval as two numbers, which a CSV keeps apart."""
    low, high = quality["paired_dice_ci"] or (None, None)
    out = {"paired_n": quality["paired_n"], "paired_dice_diff": quality["paired_dice_diff"],
           "paired_dice_ci_low": low, "paired_dice_ci_high": high}
    out.update({key: quality[key] for key in PAIRED_KEYS if key.startswith("paired_dice_diff_")})
    out["paired_unmatched"] = quality["paired_unmatched"]
    return out


def _flat(
    row: Mapping[str, Any], section: str, columns: Sequence[Tuple[str, str]], backends: Sequence[str] = ()
) -> Dict[str, Any]:
    out: Dict[str, Any] = {"model": row["model"], "label": row["label"]}
    out.update({key: row[section].get(key) for key, _ in columns})
    if section == "quality":
        out["subjects"] = row["quality"]["subjects"]
        out.update({f"{key}_{stat}": row["quality"][f"{key}_{stat}"]
                    for key in SPREAD_KEYS for stat in ("ci95", "std")})
        out["identical_to"] = list(row["identical_to"])
        out.update(_paired(row["quality"]))
    if section == "cost":
        out["latency_b1_p25_ms"] = row["cost"]["latency_b1_p25_ms"]
        out["latency_b1_p75_ms"] = row["cost"]["latency_b1_p75_ms"]
        for backend in backends:
            for stat in ("", "_p25", "_p75"):
                figures = row["cost"][f"latency_b1_backends{stat}_ms"] or {}
                out[f"latency_b1{stat}_ms_{backend}"] = figures.get(backend)
    out.update({f"source_{k}": v for k, v in row["sources"].items()})
    return out


def table_records(rows: Sequence[Mapping[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """The three tables and the lesion-wise scores as lists of flat records (one per model, with the sources), as
    written to CSV and JSON.

    Table 1 adds ``subjects``, ``<key>_ci95`` and ``<key>_std`` of every key
    (:data:`~raagr2_monai.report.statistics.SPREAD_KEYS`), ``identical_to`` (the models that score the same on every
    subject) and the paired comparison with the baseline (``paired_n``, ``paired_dice_diff``, ``paired_dice_ci_low``,
    ``paired_dice_ci_high``, ``paired_dice_diff_<region>``, ``paired_unmatched``: ``None`` for the baseline; see
    :func:`~raagr2_monai.report.statistics.paired_difference`); Table 2 adds the batch-1 p25 and p75 and, per
    inference backend any row has, ``latency_b1_ms_<backend>``, ``latency_b1_p25_ms_<backend>`` and
    ``latency_b1_p75_ms_<backend>``.
    """
    backends = sorted({b for r in rows for b in (r["cost"]["latency_b1_backends_ms"] or {})})
    return {
        "table1_quality": [_flat(r, "quality", TABLE1_COLUMNS) for r in rows],
        "table2_cost": [_flat(r, "cost", TABLE2_COLUMNS, backends) for r in rows],
        "table3_reductions": [_flat(r, "reduction", TABLE3_COLUMNS) for r in rows if r["model"] != "baseline"],
        "lesionwise_quality": [_flat(r, "lesionwise", LESIONWISE_TABLE_COLUMNS) for r in rows],
    }


def _csv_text(records: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    # a list (Table 1's identical_to) becomes one cell, its items separated by spaces
    writer.writerows({k: ("" if v is None else " ".join(v) if isinstance(v, list) else v) for k, v in r.items()}
                     for r in records)
    return buffer.getvalue()


def write_tables(rows: Sequence[Mapping[str, Any]], folder: Path) -> Dict[str, Path]:
    """Write each table as CSV and JSON, and the thesis's published tables as JSON, into ``folder``.

    Returns:
        File stem -> JSON path.
    """
    written = {}
    for name, records in table_records(rows).items():
        atomic_write_text(str(folder / f"{name}.csv"), _csv_text(records))
        atomic_write_text(str(folder / f"{name}.json"), json.dumps(records, indent=2))
        written[name] = folder / f"{name}.json"
    thesis = {
        "source": "the thesis's Tables 1-4, as published (not produced by this code); see notes",
        "notes": list(THESIS_NOTES),
        "table1": THESIS_TABLE1,
        "table2": THESIS_TABLE2,
        "table3": THESIS_TABLE3,
        "table4": THESIS_TABLE4,
    }
    atomic_write_text(str(folder / "thesis_tables.json"), json.dumps(thesis, indent=2))
    written["thesis_tables"] = folder / "thesis_tables.json"
    return written
