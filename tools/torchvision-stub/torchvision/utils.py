"""``make_grid`` and ``save_image`` names for ``from torchvision.utils import ...``; calling them raises."""

from typing import Any, NoReturn

__all__ = ["make_grid", "save_image"]


def _unavailable(name: str) -> NoReturn:
    raise RuntimeError(
        f"torchvision.utils.{name} is unavailable: this environment has an import-only stand-in for torchvision "
        "(PyPI's torchvision is a CUDA build that does not load with the CPU build of torch)."
    )


def make_grid(*args: Any, **kwargs: Any) -> NoReturn:
    """Raise ``RuntimeError``: torchvision's image grid is not available here."""
    _unavailable("make_grid")


def save_image(*args: Any, **kwargs: Any) -> NoReturn:
    """Raise ``RuntimeError``: torchvision's image writer is not available here."""
    _unavailable("save_image")
