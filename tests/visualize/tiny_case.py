"""A tiny BraTS-like case for the picture tests: a brain with a nested tumour and an off-centre marker, in RAS
voxel order, with its LPS copy, written as four 3D files or one 4D file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from raagr2_monai.constants import CHANNELS

SHAPE = (24, 20, 10)


def anatomy() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Modalities (int16) and seg (uint8) in RAS voxel order (x to the patient's right, y anterior, z superior).

    The brain fills x 2..21, y 2..17, z 1..8; the tumour lies on the patient's left (low x) and posterior (low y):
    edema x 4..9, y 4..9, z 3..6; NCR x 5..8, y 5..8, z 4..5; ET x 6..7, y 6..7, z 4. A bright marker sits in the
    right anterior corner of the brain (x 19..20, y 15..16) on every slice.
    """
    seg = np.zeros(SHAPE, np.uint8)
    seg[4:10, 4:10, 3:7] = 2
    seg[5:9, 5:9, 4:6] = 1
    seg[6:8, 6:8, 4] = 4
    brain = np.zeros(SHAPE, bool)
    brain[2:22, 2:18, 1:9] = True
    images = {}
    for k, name in enumerate(CHANNELS):
        volume = np.where(brain, 100 + 10 * k, 0).astype(np.int16)
        volume[19:21, 15:17, 1:9] = 400
        volume[seg == (2 if name == "flair" else 4)] = 300
        images[name] = volume
    return images, seg


def lps(volume: np.ndarray) -> np.ndarray:
    """The same anatomy stored in LPS voxel order."""
    return np.ascontiguousarray(volume[::-1, ::-1])


def lps_affine(shape=SHAPE) -> np.ndarray:
    """The affine of :func:`lps` copies: voxel i lies at x = shape[0] - 1 - i, as voxel i of the RAS file at x = i."""
    return np.array([[-1.0, 0, 0, shape[0] - 1], [0, -1.0, 0, shape[1] - 1], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])


def save(array: np.ndarray, path: Path, affine: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def write_case(folder: Path, case: str, images: dict[str, np.ndarray], seg: np.ndarray, affine: np.ndarray,
               four_d: bool = False) -> dict:
    """The case's files under ``folder/case/``, and its datalist entry."""
    root = folder / case
    root.mkdir(parents=True, exist_ok=True)
    if four_d:
        image = save(np.stack([images[n] for n in CHANNELS], axis=-1), root / f"{case}.nii.gz", affine)
    else:
        image = [save(images[n], root / f"{case}_{n}.nii.gz", affine) for n in CHANNELS]
    return {"case": case, "image": image, "label": save(seg, root / f"{case}_seg.nii.gz", affine)}
