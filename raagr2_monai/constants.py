"""Names and values that the whole package shares: modalities, label values, regions and subregions.

Defined once here; every other module imports them, so a table, a transform and a metric cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

__all__ = [
    "CHANNELS",
    "CHANNEL_NAMES",
    "LABEL_SUFFIX",
    "LabelConvention",
    "LABEL_CONVENTIONS",
    "DEFAULT_CONVENTION",
    "LABEL_VALUES",
    "LABEL_NAMES",
    "REGIONS",
    "SUBREGIONS",
    "SCORED_REGIONS",
    "GRADES",
    "SECTIONS",
    "MONTE_CARLO_SAMPLE",
]

#: Modality file suffixes in the network's input channel order (as MONAI's BraTS bundle: T1ce, T1, T2, FLAIR).
CHANNELS: Tuple[str, ...] = ("t1ce", "t1", "t2", "flair")
#: The same modalities as people write them.
CHANNEL_NAMES: Tuple[str, ...] = ("T1ce", "T1", "T2", "FLAIR")
#: Suffix of a case's label file.
LABEL_SUFFIX = "seg"


@dataclass(frozen=True)
class LabelConvention:
    """The raw label value of each tumour subregion in one family of BraTS data; 0 is the background in all.

    The regions follow: TC = {ncr, et}, WT = {ncr, ed, et}, ET = {et}.

    Attributes:
        name: the convention's key in :data:`LABEL_CONVENTIONS`.
        description: the data it belongs to.
        ncr: necrotic (and non-enhancing) tumour core.
        ed: edema (surrounding non-enhancing FLAIR hyperintensity).
        et: enhancing tumour.
    """

    name: str
    description: str
    ncr: int
    ed: int
    et: int

    @property
    def values(self) -> Tuple[int, ...]:
        """Every valid value, background first."""
        return (0, *sorted((self.ncr, self.ed, self.et)))

    @property
    def names(self) -> Dict[int, str]:
        """Value -> subregion name."""
        return {0: "background", self.ncr: "NCR", self.ed: "ED", self.et: "ET"}


#: The label conventions of the BraTS data people have.
LABEL_CONVENTIONS: Dict[str, LabelConvention] = {
    c.name: c
    for c in (
        LabelConvention("brats2021", "BraTS 2018-2021: 1 NCR/NET, 2 ED, 4 ET", ncr=1, ed=2, et=4),
        LabelConvention("brats2023", "BraTS 2023+ (GLI, MEN, MET, PED, SSA): 1 NETC, 2 SNFH, 3 ET", ncr=1, ed=2, et=3),
        LabelConvention(
            "msd", "Medical Segmentation Decathlon Task01_BrainTumour: 1 edema, 2 non-enhancing tumour, 3 enhancing "
            "tumour", ncr=2, ed=1, et=3,
        ),
    )
}
#: The convention of the bundles' metadata, the synthetic set and the thesis.
DEFAULT_CONVENTION = "brats2021"
#: Raw label values of the default convention: background, NCR/NET, edema, enhancing tumour.
LABEL_VALUES: Tuple[int, ...] = LABEL_CONVENTIONS[DEFAULT_CONVENTION].values
#: What each raw label value of the default convention means.
LABEL_NAMES: Dict[int, str] = LABEL_CONVENTIONS[DEFAULT_CONVENTION].names
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

#: The metadata key of a prediction that is one Monte-Carlo dropout sample of a network in training mode (MONAI
#: Label's epistemic scoring): the write-back keeps it as probabilities instead of a label map.
MONTE_CARLO_SAMPLE = "monte_carlo_sample"
