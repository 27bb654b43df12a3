"""How a region metric is scored when a side is empty or the two sides do not overlap: the named conventions.

Two conventions are defined; every metric function takes ``convention="brats"`` (the default) or ``"thesis"``, and
:attr:`Convention.description` states the choice and its reference in a CSV header, summary or report.

``"brats"``, the official BraTS evaluation as implemented by ``brats-evaluation`` 0.0.10 (the BraTS package on the
Python package index, built on ``panoptica`` 2.1.7), read from its code:

- HD95 is the 95th percentile of the distances of both directions pooled (``np.percentile(np.hstack((d1, d2)), 95)``
  in ``panoptica/metrics/_surface_distances.py::_hd95_from_pair``), between medpy-style borders (the mask XOR its
  erosion by a connectivity-1 structure, ``_surface_distance_pair``).
- One side empty, or both non-empty with no voxel in common: Dice 0 and HD95 infinite (the
  ``MetricZeroTPEdgeCaseHandling`` of ``brats_evaluation/configs/config_gli.yaml``, applied when the overlap is empty
  in ``panoptica/panoptica_result.py``); the challenge's CSV replaces the infinite HD95 by 373
  (``brats_evaluation/metrics_parser.py``: ``global_hd95 = 373 # diameter of the cube in SRI space``), the diagonal
  sqrt(240^2 + 240^2 + 155^2) = 373.13 mm of the BraTS volume rounded down. :data:`BRATS_HD95_PENALTY` holds it.
- Both sides empty: Dice and HD95 are NaN (``no_instances_result: NAN``) and drop out of the means.
- Its global HD95 is computed at unit spacing whatever the voxel size (``_calc_global_bin_metric`` passes no
  spacing); here distances always use the voxel spacing, in mm. BraTS data is 1 mm isotropic, where the two agree.

``"thesis"``, the convention of this project's former metrics and of the thesis comparison:

- HD95 is the larger of the two directed 95th percentiles, as MONAI's
  ``compute_hausdorff_distance(percentile=95)`` computes it (same borders).
- Both sides empty: Dice 1, HD95 0.
- One side empty: Dice 0, HD95 the diagonal of the scored volume in physical units,
  ``sqrt(sum((n_i * spacing_i) ** 2))`` (373.13 mm for 240 x 240 x 155 at 1 mm, less for a crop).
- Both non-empty without overlap: Dice 0, HD95 the geometric distance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BRATS_HD95_PENALTY", "CONVENTIONS", "Convention", "get_convention"]

#: HD95 (mm) of a miss in the official BraTS evaluation: brats-evaluation 0.0.10 writes 373 for an infinite HD95
#: (``brats_evaluation/metrics_parser.py``). The BraTS 2023 lesion-wise code used 374 (``rachitsaluja/
#: BraTS-2023-Metrics``, ``metrics.py``); pass ``max_hd95=374.0`` to reproduce it.
BRATS_HD95_PENALTY: float = 373.0


@dataclass(frozen=True)
class Convention:
    """A named scoring convention for Dice and HD95 (see the module docstring).

    Attributes:
        name: the key in :data:`CONVENTIONS`.
        description: one line naming the rules and the reference, for CSV headers, summaries and reports.
        pooled_hd95: True: the 95th percentile of both directions' distances pooled; False: the larger of the two
            directed 95th percentiles.
        both_empty_dice: Dice when prediction and label are both empty.
        both_empty_hd95: HD95 when prediction and label are both empty.
        miss_hd95: HD95 of a miss (one side empty, or no overlap when ``no_overlap_is_miss``) in mm; None = the
            diagonal of the volume in physical units.
        no_overlap_is_miss: score two non-empty, non-overlapping masks as a miss rather than by their distance.
    """

    name: str
    description: str
    pooled_hd95: bool
    both_empty_dice: float
    both_empty_hd95: float
    miss_hd95: float | None
    no_overlap_is_miss: bool

    def miss_value(self, spatial_shape: Sequence[int], spacing: Sequence[float] | None) -> float:
        """HD95 given to a miss on a volume of ``spatial_shape`` voxels of size ``spacing``.

        Args:
            spatial_shape: the volume's size in voxels.
            spacing: voxel size per spatial dimension (mm); None = 1.

        Returns:
            :attr:`miss_hd95`, or the volume's diagonal in physical units when that is None.

        Example:
            >>> CONVENTIONS["thesis"].miss_value((240, 240, 155), None)  # doctest: +ELLIPSIS
            373.128...
            >>> CONVENTIONS["brats"].miss_value((96, 96, 96), (1.0, 1.0, 2.0))
            373.0
        """
        if self.miss_hd95 is not None:
            return float(self.miss_hd95)
        steps = spacing if spacing is not None else [1.0] * len(spatial_shape)
        return math.sqrt(sum((n * s) ** 2 for n, s in zip(spatial_shape, steps)))


#: The conventions by name.
CONVENTIONS: dict[str, Convention] = {
    "brats": Convention(
        name="brats",
        description=(
            "brats: official BraTS evaluation (brats-evaluation 0.0.10 / panoptica 2.1.7): HD95 = 95th percentile of "
            f"both directions' surface distances pooled, in mm; one side empty or no overlap: Dice 0, HD95 "
            f"{BRATS_HD95_PENALTY:g}; both empty: NaN, left out of means"
        ),
        pooled_hd95=True,
        both_empty_dice=math.nan,
        both_empty_hd95=math.nan,
        miss_hd95=BRATS_HD95_PENALTY,
        no_overlap_is_miss=True,
    ),
    "thesis": Convention(
        name="thesis",
        description=(
            "thesis: former raagr2_monai convention (MONAI compute_hausdorff_distance): HD95 = larger directed 95th "
            "percentile, in mm; both empty: Dice 1, HD95 0; one side empty: Dice 0, HD95 the volume diagonal; "
            "no overlap: Dice 0, geometric HD95"
        ),
        pooled_hd95=False,
        both_empty_dice=1.0,
        both_empty_hd95=0.0,
        miss_hd95=None,
        no_overlap_is_miss=False,
    ),
}


def get_convention(convention: str | Convention) -> Convention:
    """The :class:`Convention` of that name (a :class:`Convention` passes through).

    Args:
        convention: ``"brats"``, ``"thesis"`` or a :class:`Convention`.

    Returns:
        the :class:`Convention`.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Example:
        >>> get_convention("brats").both_empty_dice
        nan
    """
    if isinstance(convention, Convention):
        return convention
    if convention not in CONVENTIONS:
        raise ValueError(f"Unknown metric convention {convention!r}; choose one of {sorted(CONVENTIONS)}.")
    return CONVENTIONS[convention]
