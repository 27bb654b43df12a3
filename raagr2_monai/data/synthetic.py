"""Synthetic BraTS-like cases, for demos and tests without the real data.

Each case is a skull-stripped, deformed ellipsoidal brain with CSF (ventricles, interhemispheric fissure, sulcal rim),
a noise-folded grey-matter ribbon, deep grey nuclei and white matter, mixed by partial volume. A tumour of varying
size, shape and position carries nested BraTS labels: edema (2) around a core (1) whose thin, patchy rim enhances (4)
in HGG cases; LGG cases (every third case) have no enhancing tumour. Contrasts follow the clinical signs:

- T1: WM > GM > CSF; tumour hypointense. T1ce: as T1, enhancing rim bright, necrosis dark.
- T2: CSF brightest, GM > WM; edema and necrosis bright. FLAIR: CSF dark, edema brightest.

Every modality gets its own smooth multiplicative bias field and Rician noise; the background outside the brain is
exactly 0 and every brain voxel is at least 1. Files follow the BraTS 2021 layout with a 1 mm identity affine, int16
voxels, and a ``grades.csv`` (``case,grade``). A case depends only on ``(seed, index, shape)``: nibabel writes gzip
with a fixed mtime, so the same arguments give the same bytes.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.fft

from raagr2_monai.constants import CHANNELS, LABEL_SUFFIX
from raagr2_monai.utils import parse_sequence

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SHAPE",
    "DEFAULT_CASES",
    "ENV_VAR",
    "case_id",
    "case_grade",
    "make_case",
    "generate",
    "default_dataset_dir",
    "ensure_synthetic",
]

#: Default volume shape (X, Y, Z); axial slices are X by Y.
DEFAULT_SHAPE: Tuple[int, int, int] = (96, 96, 64)
#: Default number of cases of the built-in set.
DEFAULT_CASES = 24
#: Environment variable that overrides :func:`default_dataset_dir`.
ENV_VAR = "RAAGR2_SYNTHETIC_DIR"
#: Bump when the generator's output changes, so that cached sets are regenerated.
GENERATOR_VERSION = 1

_MIN_SIZE = 16
_INFO_FILE = "synthetic.json"
_SCALE = 500.0  # intensity units per 1.0 of tissue signal, stored as int16

# Tissue signal per modality (before per-case jitter), in the order of _TISSUES.
_TISSUES = ("csf", "gm", "wm", "ed", "ncr", "et", "net")
_SIGNAL = {
    #         csf   gm    wm    ed    ncr   et    net (LGG non-enhancing core)
    "t1": (0.30, 0.72, 1.00, 0.58, 0.42, 0.78, 0.52),
    "t1ce": (0.32, 0.74, 1.00, 0.64, 0.36, 1.35, 0.54),
    "t2": (1.60, 0.95, 0.68, 1.40, 1.50, 1.05, 1.35),
    "flair": (0.22, 0.90, 0.72, 1.45, 0.75, 1.15, 1.25),
}

Shape = Union[Sequence[int], str]


def case_id(index: int) -> str:
    """The id of synthetic case ``index`` (BraTS 2021 style)."""
    return f"SynthBraTS_{index:05d}"


def case_grade(index: int) -> str:
    """Every third case (index 2, 5, ...) is LGG (no enhancing tumour); the others are HGG."""
    return "LGG" if index % 3 == 2 else "HGG"


def _parse_shape(shape: Shape) -> Tuple[int, int, int]:
    try:
        dims = tuple(parse_sequence(shape, "shape", int))
    except ValueError:
        raise ValueError(f"shape must be three integers X,Y,Z; got {shape!r}.") from None
    if len(dims) != 3 or min(dims) < _MIN_SIZE:
        raise ValueError(f"shape must be three integers, each >= {_MIN_SIZE}; got {shape!r}.")
    return dims  # type: ignore[return-value]


class _Field:
    """Gaussian smoothing by FFT on one grid (periodic; the brain stays clear of the borders)."""

    def __init__(self, shape: Tuple[int, int, int]) -> None:
        self.shape = shape
        kx = np.fft.fftfreq(shape[0])[:, None, None]
        ky = np.fft.fftfreq(shape[1])[None, :, None]
        kz = np.fft.rfftfreq(shape[2])[None, None, :]
        self._k2 = kx**2 + ky**2 + kz**2

    def blur(self, a: np.ndarray, sigma: float) -> np.ndarray:
        g = np.exp(-2.0 * np.pi**2 * sigma**2 * self._k2)
        # scipy's FFT on every core: the same float64 result as numpy's, two to three times sooner on BraTS-size grids
        return scipy.fft.irfftn(scipy.fft.rfftn(a, workers=-1) * g, s=self.shape, workers=-1)

    def noise(self, rng: np.random.Generator, sigma: float) -> np.ndarray:
        """Smooth noise with unit standard deviation and correlation length about ``sigma`` voxels."""
        n = self.blur(rng.standard_normal(self.shape), sigma)
        return n / (n.std() + 1e-12)


def _erode(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Binary erosion with the 6-neighbourhood; voxels beyond the borders count as outside."""
    out = mask.copy()
    for _ in range(iterations):
        inner = out.copy()
        for axis in range(3):
            for shift in (1, -1):
                moved = np.roll(out, shift, axis=axis)
                edge = [slice(None)] * 3
                edge[axis] = slice(0, 1) if shift == 1 else slice(-1, None)
                moved[tuple(edge)] = False
                inner &= moved
        out = inner
    return out


def _ellipsoid(grid: Sequence[np.ndarray], centre: Sequence[float], axes: Sequence[float]) -> np.ndarray:
    """Normalised ellipsoidal radius: < 1 inside."""
    return np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes)))


def _soft(x: np.ndarray, width: float) -> np.ndarray:
    """A smooth step from 1 (x << 0) to 0 (x >> 0) over about ``width``."""
    return 1.0 / (1.0 + np.exp(np.clip(x / width, -50, 50)))


def _tumour(
    rng: np.random.Generator, field: _Field, grid: Sequence[np.ndarray], centre: np.ndarray, axes: np.ndarray,
    brain: np.ndarray, grade: str,
) -> np.ndarray:
    """The label map (0/1/2/4) of one tumour, nested: ET and NCR inside TC, TC inside WT with edema around it."""
    for _ in range(100):
        offset = rng.uniform([0.15, -0.55, -0.45], [0.55, 0.55, 0.35])
        offset[0] *= rng.choice([-1.0, 1.0])
        if np.linalg.norm(offset) < 0.7:
            break
    t_centre = centre + offset * axes
    size = rng.uniform(0.16, 0.36)
    wt_axes = np.maximum(size * axes * rng.uniform(0.8, 1.2, 3), 3.0)
    # tanh bounds the lobulation, so that the tumour stays one lump rather than scattered islands.
    wt_r = _ellipsoid(grid, t_centre, wt_axes) * (1.0 + 0.25 * np.tanh(field.noise(rng, 0.5 * wt_axes.mean())))
    wt = (wt_r < 1.0) & _erode(brain, 2)

    core = rng.uniform(0.5, 0.8)
    tc_centre = t_centre + rng.uniform(-0.15, 0.15, 3) * wt_axes
    tc_axes = np.maximum(core * wt_axes * rng.uniform(0.85, 1.15, 3), 1.6)
    tc_r = _ellipsoid(grid, tc_centre, tc_axes) * (1.0 + 0.2 * np.tanh(field.noise(rng, 0.5 * tc_axes.mean())))
    inner = _erode(wt, 1)  # the core never touches normal tissue: edema surrounds it
    tc = (tc_r < 1.0) & inner
    if not tc.any() and inner.any():
        tc = inner & (wt_r <= np.median(wt_r[inner]))

    seg = np.zeros(field.shape, np.uint8)
    seg[wt] = 2
    seg[tc] = 1
    if grade == "HGG" and tc.any():
        rim = tc & ~_erode(tc, 1 if rng.random() < 0.7 else 2)
        patchy = rim & (field.noise(rng, 1.5) > rng.uniform(-0.9, 0.1))
        seg[patchy if patchy.any() else rim] = 4
    return seg


def make_case(index: int, seed: int = 0, shape: Shape = DEFAULT_SHAPE) -> Tuple[Dict[str, np.ndarray], np.ndarray, str]:
    """Synthesise one case in memory.

    Args:
        index: case index (also decides the grade, see :func:`case_grade`).
        seed: the set's seed; the case's generator is seeded with ``(seed, index)``.
        shape: volume shape ``(X, Y, Z)``, each at least 16.

    Returns:
        ``(images, seg, grade)``: images maps ``t1ce``, ``t1``, ``t2``, ``flair`` to int16 arrays, seg is a uint8
        label map with values in {0, 1, 2, 4}, grade is ``HGG`` or ``LGG``.

    Example::

        >>> images, seg, grade = make_case(2, shape=(32, 32, 16))
        >>> grade, 4 in seg
        ('LGG', False)
    """
    dims = _parse_shape(shape)
    rng = np.random.default_rng([int(seed), int(index)])
    grade = case_grade(index)
    field = _Field(dims)
    grid = np.ogrid[: dims[0], : dims[1], : dims[2]]
    grid = [g.astype(np.float64) for g in grid]
    size = np.array(dims, float)

    # Brain: a deformed ellipsoid, longer front to back (Y).
    centre = size / 2.0 - 0.5 + rng.uniform(-0.02, 0.02, 3) * size
    axes = size * np.array([0.40, 0.45, 0.41]) * rng.uniform(0.93, 1.0, 3)
    rho = _ellipsoid(grid, centre, axes) * (1.0 + 0.05 * field.noise(rng, size.min() / 5.0))
    brain = rho < 1.0
    depth = (1.0 - rho) * axes.min()  # roughly voxels from the surface

    # CSF: sulcal rim, interhemispheric fissure, two lateral ventricles.
    sulci = field.noise(rng, 1.2)
    csf = _soft(depth - 1.2 - 0.8 * sulci, 0.5)
    upper = _soft(-(grid[2] - centre[2] + 0.1 * axes[2]), 0.1 * axes[2])
    csf = np.maximum(csf, _soft(np.abs(grid[0] - centre[0]) - 0.6, 0.3) * upper)
    vent_noise = field.noise(rng, 2.0)
    for side in (-1.0, 1.0):
        v_centre = centre + np.array([side * 0.10, 0.04, 0.10]) * axes
        v_axes = np.array([0.07, 0.32, 0.13]) * axes * rng.uniform(0.8, 1.2, 3)
        v = _ellipsoid(grid, v_centre, np.maximum(v_axes, 1.0)) * (1.0 + 0.15 * vent_noise)
        csf = np.maximum(csf, _soft(v - 1.0, 0.08))

    # Grey matter: a folded cortical ribbon over white matter, plus two deep nuclei.
    ribbon = 0.09 * axes.min() * (1.0 + 0.35 * field.noise(rng, 2.0))
    wm = 1.0 - _soft(depth - ribbon - 1.5 - 1.2 * sulci, 0.6)
    for side in (-1.0, 1.0):
        n_centre = centre + np.array([side * 0.24, -0.05, -0.05]) * axes
        nuclei = _ellipsoid(grid, n_centre, np.maximum(0.12 * axes, 1.0))
        wm = wm * (1.0 - _soft(nuclei - 1.0, 0.1))
    tissue = {"csf": csf, "wm": (1.0 - csf) * wm, "gm": (1.0 - csf) * (1.0 - wm)}

    seg = _tumour(rng, field, grid, centre, axes, brain, grade)
    masks = {"ed": seg == 2, "ncr": (seg == 1) & (grade == "HGG"), "net": (seg == 1) & (grade == "LGG"), "et": seg == 4}
    # Partial volume: the tumour's classes blend into each other and into normal tissue over about a voxel.
    frac = {k: np.clip(field.blur(m.astype(np.float64), 0.7), 0.0, 1.0) for k, m in masks.items()}
    tumour = np.clip(sum(frac.values()), 0.0, 1.0)
    texture = 1.0 + 0.03 * field.noise(rng, 1.0)
    lesion_texture = 1.0 + 0.10 * field.noise(rng, 1.5)
    noise_level = rng.uniform(0.035, 0.07)

    images: Dict[str, np.ndarray] = {}
    for name in CHANNELS:
        signal = dict(zip(_TISSUES, np.array(_SIGNAL[name]) * rng.uniform(0.95, 1.05, len(_TISSUES))))
        if name == "t1ce":
            signal["et"] = signal["wm"] * rng.uniform(1.25, 1.6)  # weak to clear enhancement
        normal = sum(tissue[k] * signal[k] for k in ("csf", "gm", "wm")) * texture
        lesion = sum(frac[k] * signal[k] for k in frac) * lesion_texture
        clean = (1.0 - tumour) * normal + lesion
        clean = clean * np.exp(0.08 * field.noise(rng, size.min() / 2.0))
        sigma = noise_level * float(np.mean(clean[brain]))
        noisy = np.hypot(clean + sigma * rng.standard_normal(dims), sigma * rng.standard_normal(dims))
        vol = np.where(brain, np.clip(np.rint(noisy * _SCALE), 1, np.iinfo(np.int16).max), 0)
        images[name] = vol.astype(np.int16)
    return images, seg, grade


def _save(array: np.ndarray, path: str) -> None:
    import nibabel as nib

    affine = np.eye(4)
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def _info(cases: int, seed: int, shape: Tuple[int, int, int]) -> dict:
    return {"generator": "raagr2_monai.data.synthetic", "version": GENERATOR_VERSION, "cases": int(cases),
            "seed": int(seed), "shape": list(shape)}


def generate(
    out_dir: str, cases: int = DEFAULT_CASES, seed: int = 0, shape: Shape = DEFAULT_SHAPE, overwrite: bool = False
) -> List[str]:
    """Write a synthetic BraTS-like set in the BraTS 2021 layout, plus ``grades.csv`` and ``synthetic.json``.

    The set is written into a temporary sibling folder and renamed into place at the end, so an interrupted run
    leaves no half-written set.

    Args:
        out_dir: the folder to create.
        cases: number of cases (ids ``SynthBraTS_00000``, ...).
        seed: seed of the set.
        shape: volume shape ``(X, Y, Z)`` (a sequence or ``"X,Y,Z"``), each at least 16.
        overwrite: replace an existing ``out_dir``.

    Returns:
        The case ids.

    Raises:
        ValueError: ``cases < 1`` or a bad shape.
        FileExistsError: ``out_dir`` exists, is not empty and ``overwrite`` is ``False``.

    Example::

        generate("/tmp/synth", cases=4, shape=(32, 32, 16))
        # ['SynthBraTS_00000', 'SynthBraTS_00001', 'SynthBraTS_00002', 'SynthBraTS_00003']
    """
    dims = _parse_shape(shape)
    if int(cases) < 1:
        raise ValueError(f"cases must be at least 1; got {cases}.")
    out = os.path.abspath(os.path.expanduser(str(out_dir)))
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(
            f"{out} exists and is not empty; pass overwrite=True (raagr2 synth --overwrite) to replace it."
        )
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        ids, grades = [], []
        for index in range(int(cases)):
            case = case_id(index)
            images, seg, grade = make_case(index, seed, dims)
            folder = os.path.join(tmp, case)
            os.makedirs(folder)
            for name, vol in images.items():
                _save(vol, os.path.join(folder, f"{case}_{name}.nii.gz"))
            _save(seg, os.path.join(folder, f"{case}_{LABEL_SUFFIX}.nii.gz"))
            ids.append(case)
            grades.append(grade)
        with open(os.path.join(tmp, "grades.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "grade"])
            writer.writerows(zip(ids, grades))
        with open(os.path.join(tmp, _INFO_FILE), "w") as f:
            json.dump(_info(int(cases), seed, dims), f, indent=2)
        old = None
        if os.path.exists(out):
            if os.listdir(out) and not overwrite:
                raise FileExistsError(f"{out} was created by someone else while generating.")
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rename(out, os.path.join(old, "set"))
        try:
            os.rename(tmp, out)
        except OSError:
            if old is not None:
                os.rename(os.path.join(old, "set"), out)
            raise FileExistsError(f"{out} was created by someone else while generating.") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ids


def default_dataset_dir() -> str:
    """The built-in synthetic set's folder: ``$RAAGR2_SYNTHETIC_DIR`` if set, else ``~/.cache/raagr2_monai/synthetic``.

    Example::

        default_dataset_dir()
        # '/home/me/.cache/raagr2_monai/synthetic'
    """
    env = os.environ.get(ENV_VAR)
    path = env if env else os.path.join("~", ".cache", "raagr2_monai", "synthetic")
    return os.path.abspath(os.path.expanduser(path))


def ensure_synthetic(
    dataset_dir: Optional[str] = None, cases: int = DEFAULT_CASES, seed: int = 0, shape: Shape = DEFAULT_SHAPE
) -> str:
    """Generate a synthetic set unless the same one (cases, seed, shape, generator version) is already there.

    Safe to call from several processes at once: each generates into its own temporary folder and the first rename
    wins.

    Args:
        dataset_dir: the folder (default :func:`default_dataset_dir`).
        cases: number of cases.
        seed: seed of the set.
        shape: volume shape.

    Returns:
        The folder (absolute).

    Raises:
        FileExistsError: the folder exists but is not a synthetic set written by :func:`generate`.

    Example::

        path = ensure_synthetic()  # ~/.cache/raagr2_monai/synthetic, generated on first use
    """
    path = os.path.abspath(os.path.expanduser(str(dataset_dir))) if dataset_dir else default_dataset_dir()
    wanted = _info(cases, seed, _parse_shape(shape))
    info_file = os.path.join(path, _INFO_FILE)

    def current() -> Optional[dict]:
        try:
            with open(info_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    found = current()
    if found == wanted:
        return path
    if os.path.isdir(path) and os.listdir(path) and found is None:
        raise FileExistsError(f"{path} exists but holds no {_INFO_FILE}: not a synthetic set, not replacing it.")
    # a first run would otherwise pause for minutes without a word
    logger.info("Generating the built-in synthetic set (%d cases of %s, seed %d) into %s, once; later runs reuse it",
                   cases, "x".join(str(s) for s in _parse_shape(shape)), seed, path)
    try:
        generate(path, cases, seed, shape, overwrite=found is not None)
    except FileExistsError:
        if current() != wanted:
            raise
    return path
