"""The study's record of its settings and finished steps, ``state.json``: what lets a rerun skip what is done."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Union

from raagr2_monai.utils import atomic_write_text

__all__ = ["STATE_FILE", "STATE_FORMAT", "StudyState"]

PathLike = Union[str, os.PathLike]

#: The state's file name in the study folder.
STATE_FILE = "state.json"
#: The version of the state's layout.
STATE_FORMAT = 1


class StudyState:
    """The study's record of finished steps (``state.json``), written atomically after every step.

    Args:
        path: the state file.
        settings: the study's settings; an existing state with other settings is refused.

    Raises:
        ValueError: when the file holds a study with other settings.
    """

    def __init__(self, path: PathLike, settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(dict(settings)))
        self.data: Dict[str, Any] = {"format": STATE_FORMAT, "settings": self.settings, "steps": {}}
        if self.path.is_file():
            try:
                found = json.loads(self.path.read_text())
            except ValueError as err:
                raise ValueError(f"{self.path} is not valid JSON ({err}); rerun with --fresh.") from err
            if found.get("settings") != self.settings:
                diff = sorted(
                    k for k in set(self.settings) | set(found.get("settings", {}))
                    if found.get("settings", {}).get(k) != self.settings.get(k)
                )
                raise ValueError(
                    f"{self.path} records a study with other settings (differences: {', '.join(diff)}); rerun with "
                    "--fresh to start over, or choose another --output."
                )
            self.data = found

    def done(self, step: str) -> bool:
        """Whether ``step`` has finished."""
        return step in self.data["steps"]

    def get(self, step: str) -> Dict[str, Any]:
        """The outputs recorded for a finished step."""
        return self.data["steps"][step]

    def record(self, step: str, outputs: Mapping[str, Any]) -> None:
        """Record a finished step and its outputs, and write the file."""
        self.data["steps"][step] = json.loads(json.dumps(dict(outputs)))
        self.save()

    def set(self, key: str, value: Any) -> None:
        """Store a value outside the steps (e.g. MLflow run ids) and write the file."""
        self.data[key] = json.loads(json.dumps(value))
        self.save()

    def save(self) -> None:
        """Write the state atomically."""
        atomic_write_text(str(self.path), json.dumps(self.data, indent=2))
