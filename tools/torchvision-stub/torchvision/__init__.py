"""Import-only stand-in for torchvision in raagr2_monai's MONAI Label environment (see ../pyproject.toml).

It provides ``torchvision.utils`` so that ``monailabel.transform.post`` imports; it has no ops, models, datasets or
transforms, so MONAI's ``optional_import("torchvision.models")`` and the like report torchvision as missing.
"""

__version__ = "0.28.0+cpustub"
