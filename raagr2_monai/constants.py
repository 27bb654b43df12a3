"""Names and values that the whole package shares: modalities, label values, regions and subregions (SPEC §2).

Defined once here; every other module imports them, so a table, a transform and a metric cannot disagree.
"""

from __future__ import annotations

from typing import Tuple

__all__ = [
    "CHANNELS",
    "CHANNEL_NAMES",
    "LABEL_SUFFIX",
    "LABEL_VALUES",
    "LABEL_NAMES",
    "REGIONS",
    "SUBREGIONS",
    "SCORED_REGIONS",
    "GRADES",
    "SECTIONS",
]

#: Modality file suffixes in the network's input channel order (as MONAI's BraTS bundle: T1ce, T1, T2, FLAIR).
CHANNELS: Tuple[str, ...] = ("t1ce", "t1", "t2", "flair")
#: The same modalities as people write them.
CHANNEL_NAMES: Tuple[str, ...] = ("T1ce", "T1", "T2", "FLAIR")
#: Suffix of a case's label file.
LABEL_SUFFIX = "seg"
#: Raw BraTS 2018-2021 label values: background, NCR/NET, edema, enhancing tumour.
LABEL_VALUES: Tuple[int, ...] = (0, 1, 2, 4)
#: What each raw label value means.
LABEL_NAMES = {0: "background", 1: "NCR/NET", 2: "ED", 4: "ET"}
#: The network's output channels, nested regions: tumour core {1, 4}, whole tumour {1, 2, 4}, enhancing tumour {4}.
REGIONS: Tuple[str, ...] = ("TC", "WT", "ET")
#: The disjoint subregions derived from them for reporting: NCR = TC - ET, ED = WT - TC, ET.
SUBREGIONS: Tuple[str, ...] = ("NCR", "ED", "ET")
#: Every region scored by the metrics, each once: the three regions, then the subregions not already among them.
SCORED_REGIONS: Tuple[str, ...] = REGIONS + tuple(s for s in SUBREGIONS if s not in REGIONS)
#: Grades, as the BraTS 2018-2020 folders name them.
GRADES: Tuple[str, ...] = ("HGG", "LGG")
#: The sections of a datalist.
SECTIONS: Tuple[str, ...] = ("training", "validation", "testing", "unlabelled")
