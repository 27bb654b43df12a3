"""A memory-lean data path: preprocessed studies cached compactly on disk instead of in RAM.

``CacheDataset(cache_rate=1.0)`` keeps every preprocessed study in memory as float32: a 240 x 240 x 155 BraTS study
is about 200 MB (image 4 channels, label 3 region channels), 100-200 GB for BraTS 2021. Here a study is cached
once, on disk, as float16 image and one uint8 label map (:class:`CompactStudyd`, about a third of the bytes), and
expanded back to float32 image and TC / WT / ET regions after loading (:class:`ExpandStudyd`); the training chain
crops its slices on the compact study and expands only those. :class:`StudyCacheDataset` holds no study in memory:
only the items being used live in RAM, whatever the number of studies.

Example::

    from raagr2_monai.data.chains import train_transforms
    dataset = StudyCacheDataset(entries, train_transforms((96, 96), compact=True), cache_dir="/scratch/cache")
    fill_cache(dataset, num_workers=4, name="train")  # preprocess the studies not on disk yet
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import time
import uuid
import warnings
from copy import deepcopy
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, Callable, Hashable, List, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor, PersistentDataset
from monai.transforms import Compose, MapTransform, RandomizableTrait, Transform, reset_ops_id
from monai.utils import TraceKeys, convert_to_tensor
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import Dataset as TorchDataset

from .transforms import CASE_KEY, CONVENTION_KEY, IMAGE_KEY, LABEL_KEY, ConvertToBraTSRegionsd

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray

__all__ = [
    "CACHE_FORMAT",
    "CACHE_ENV_VAR",
    "default_cache_dir",
    "CompactStudyd",
    "ExpandStudyd",
    "cache_split",
    "study_key",
    "StudyCacheDataset",
    "CacheSummary",
    "fill_cache",
    "cache_entry_mb",
]

#: Version of the cached entries' content; part of every key, so bumping it makes every entry be rebuilt.
CACHE_FORMAT = 1

#: Where every bundle caches its studies when set, instead of ``<bundle_root>/cache``: a fast scratch disk shared by
#: several bundles, or a test's own folder.
CACHE_ENV_VAR = "RAAGR2_CACHE_DIR"

logger = logging.getLogger(__name__)


def default_cache_dir(bundle_root: str) -> str:
    """The bundles' default ``cache_dir``: ``$RAAGR2_CACHE_DIR`` if set, else ``<bundle_root>/cache``.

    Example::

        >>> default_cache_dir("/bundles/baseline") if "RAAGR2_CACHE_DIR" not in os.environ else "/bundles/baseline/cache"
        '/bundles/baseline/cache'
    """
    return os.environ.get(CACHE_ENV_VAR) or os.path.join(str(bundle_root), "cache")

_FLOAT16_MAX = float(torch.finfo(torch.float16).max)
# the types a preprocessed study's metadata holds besides tensors: nibabel's header fields and MONAI's transform
# records (numpy arrays, TraceKeys); allowed while loading an entry, which torch.load(weights_only=True) refuses
# otherwise. None of them runs code, and object arrays, whose items could be anything, stay refused.
_SAFE_GLOBALS = [np.ndarray, np.dtype, _multiarray._reconstruct, _multiarray.scalar, TraceKeys] + [
    type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGSU"  # numbers, bool, bytes, text: no object arrays
]
# how deep the key describes a transform's settings (transform -> its array transform -> that one's helpers)
_KEY_DEPTH = 4


def _study_name(d: Mapping[Hashable, Any], case_key: str, image: Any) -> str:
    """The case id, else the image's file name, for error messages."""
    if case_key in d:
        return str(d[case_key])
    name = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
    return os.path.basename(str(name)) if name else "<unnamed study>"


class CompactStudyd(MapTransform):
    """Dictionary transform: a preprocessed study made compact for caching: image -> float16, label -> one uint8
    label map (its raw labels, in the case's own convention).

    The image is checked first: every value must be finite and within float16's range (+-65504), so that the cast
    loses nothing but precision (a relative 2^-11, under 5e-4, on z-scored intensities). The label must be one
    channel of integers 0..255, which uint8 holds exactly. A MetaTensor keeps its metadata and transform records.

    Args:
        image_key: key of the (C, *spatial) image.
        label_key: key of the (1, *spatial) raw label map, or ``None`` for images alone.
        case_key: key of the case id that errors name (else the image's file name).

    Raises:
        ValueError: non-finite or out-of-range image values, or a label that is not one channel of 0..255 integers,
            naming the case.

    Example::

        >>> out = CompactStudyd()({"image": torch.zeros(4, 2, 2, 1), "label": torch.tensor([[[[0.0], [4.0]]]])})
        >>> out["image"].dtype, out["label"].dtype
        (torch.float16, torch.uint8)
    """

    def __init__(self, image_key: str = IMAGE_KEY, label_key: str | None = LABEL_KEY, case_key: str = CASE_KEY) -> None:
        super().__init__([image_key] if label_key is None else [image_key, label_key])
        self.image_key = image_key
        self.label_key = label_key
        self.case_key = case_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        study = _study_name(d, self.case_key, image)
        # the checks read the voxels alone: a MetaTensor's bookkeeping on every operation would only slow them
        values = convert_to_tensor(image, track_meta=False)
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            raise ValueError(f"{study}: image has {int((~finite).sum())} NaN or infinite values; cannot cache it.")
        low, high = torch.aminmax(values) if values.numel() else (torch.zeros(()), torch.zeros(()))
        peak = max(-float(low), float(high))
        if peak > _FLOAT16_MAX:
            raise ValueError(
                f"{study}: image values up to {peak:g} exceed float16's range (+-{_FLOAT16_MAX:g}); cannot cache it "
                "compactly."
            )
        d[self.image_key] = image.to(torch.float16)
        if self.label_key is not None:
            label = d[self.label_key]
            if label.ndim < 2 or label.shape[0] != 1:
                raise ValueError(f"{study}: expected a (1, *spatial) label map, got shape {tuple(label.shape)}.")
            labels = convert_to_tensor(label, track_meta=False)
            if labels.numel() and (
                float(labels.min()) < 0 or float(labels.max()) > 255 or not bool((labels == labels.round()).all())
            ):
                raise ValueError(f"{study}: label values are not integers 0..255; cannot store them as uint8.")
            d[self.label_key] = label.to(torch.uint8)
        return d


class ExpandStudyd(MapTransform):
    """Dictionary transform: a compact study (:class:`CompactStudyd`) back to what the network trains on: image ->
    float32, label map -> float32 TC / WT / ET regions, exactly as ``ConvertToBraTSRegionsd`` (which it applies) gives
    them, in the case's label convention (``d["label_convention"]``) or the one given.

    Args:
        image_key: key of the image.
        label_key: key of the (1, *spatial) label map, or ``None`` for images alone.
        convention: the labels' convention for every case; ``None`` = each case's own.
        convention_key: where a case names its convention.

    Example::

        >>> out = ExpandStudyd()({"image": torch.zeros(4, 1, 1, dtype=torch.float16),
        ...                       "label": torch.tensor([[[4]]], dtype=torch.uint8)})
        >>> out["image"].dtype, out["label"][:, 0, 0].tolist()
        (torch.float32, [1.0, 1.0, 1.0])
    """

    def __init__(
        self,
        image_key: str = IMAGE_KEY,
        label_key: str | None = LABEL_KEY,
        convention: str | None = None,
        convention_key: str = CONVENTION_KEY,
    ) -> None:
        super().__init__([image_key] if label_key is None else [image_key, label_key])
        self.image_key = image_key
        self.regions = (
            None if label_key is None else ConvertToBraTSRegionsd(label_key, convention, convention_key)
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d[self.image_key] = d[self.image_key].to(torch.float32)
        return d if self.regions is None else self.regions(d)


def cache_split(transform: Compose) -> int:
    """How many leading transforms of ``transform`` :class:`StudyCacheDataset` caches: up to and including
    :class:`CompactStudyd`; without one, up to the first random transform (``PersistentDataset``'s rule).

    Only the transforms ``transform`` holds directly are looked at (as ``Compose.get_index_of_first`` does).

    Raises:
        ValueError: a random transform comes before ``CompactStudyd`` (its result cannot be cached).

    Example::

        >>> cache_split(Compose([CompactStudyd(), ExpandStudyd()]))
        1
    """
    transforms = list(transform.transforms)
    first_random = next(
        (i for i, t in enumerate(transforms) if isinstance(t, RandomizableTrait) or not isinstance(t, Transform)),
        len(transforms),
    )
    compact = next((i for i, t in enumerate(transforms) if isinstance(t, CompactStudyd)), None)
    if compact is None:
        return first_random
    if first_random < compact:
        raise ValueError(
            f"{type(transforms[first_random]).__name__} (transform {first_random}) is random and comes before "
            f"CompactStudyd (transform {compact}): what is cached must be deterministic."
        )
    return compact + 1


def _describe(value: Any, depth: int = 0) -> Any:
    """A JSON-able description of a transform's settings that is the same in every process: public attributes,
    recursively; functions, classes and dtypes by name; objects beyond ``_KEY_DEPTH`` by class alone."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, (list, tuple)):
        return [_describe(v, depth) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _describe(v, depth) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return np.asarray(value).tolist()
    if isinstance(value, (type, torch.dtype, np.dtype)) or inspect.isroutine(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', str(value))}"
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    if depth >= _KEY_DEPTH or not hasattr(value, "__dict__"):
        return name
    return {"class": name, **{k: _describe(v, depth + 1) for k, v in sorted(vars(value).items()) if k[0] != "_"}}


def _file_stats(value: Any) -> List[List[Any]]:
    """``[path, size, mtime_ns]`` of every existing file an entry names (paths, lists of paths, nested dicts)."""
    if isinstance(value, str):
        if os.path.isfile(value):
            stat = os.stat(value)
            return [[os.path.abspath(value), stat.st_size, stat.st_mtime_ns]]
        return []
    if isinstance(value, Mapping):
        return [s for k in sorted(value, key=str) for s in _file_stats(value[k])]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _file_stats(v)]
    return []


def study_key(entry: Mapping[Hashable, Any], transforms: Sequence[Callable]) -> str:
    """The cache key of one datalist entry preprocessed by ``transforms``: a SHA-256 over the entry, the size and
    modification time of each file it names (a changed file gives a new key, so the study is preprocessed again),
    the transforms' classes and settings (``roi_size`` among them) and :data:`CACHE_FORMAT`.

    Example::

        >>> study_key({"case": "c"}, []) == study_key({"case": "c"}, []) != study_key({"case": "d"}, [])
        True
    """
    return _key(entry, [_describe(t) for t in transforms])


def _key(entry: Mapping[Hashable, Any], described: List[Any]) -> str:
    content = {"format": CACHE_FORMAT, "entry": _describe(entry), "files": _file_stats(entry), "transforms": described}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


class StudyCacheDataset(PersistentDataset):
    """A ``PersistentDataset`` that caches each study compactly on disk, up to and including :class:`CompactStudyd`
    (:func:`cache_split`), and holds none in memory.

    Differences from ``PersistentDataset``, which decides alone where caching stops (at the first random transform)
    and keys entries by the entry alone:

    - caching stops after ``CompactStudyd``: the deterministic ``ExpandStudyd`` after it runs on every access, so the
      disk holds the compact study; without ``CompactStudyd`` it stops at the first random transform;
    - the key (:func:`study_key`) covers the files' sizes and mtimes, the cached transforms' settings and
      :data:`CACHE_FORMAT`: a changed file or setting gives a new entry (the old one stays until the folder is
      cleared);
    - an entry is written to a temporary name in ``cache_dir`` and renamed into place, atomic on one file system:
      several processes may share ``cache_dir`` (``PersistentDataset`` writes into the system's temporary folder and
      moves the file, a copy when that is another file system, which a reader could find half-written);
    - entries are read with ``torch.load(weights_only=True)``, MetaTensors with their metadata (``track_meta``) and
      transform records, whose ids are reset so that ``Invertd`` accepts them in any process.

    Args:
        data: the datalist entries.
        transform: the whole chain (a ``Compose`` or a sequence of transforms): the cached part and what follows.
        cache_dir: the folder of the entries (created if needed), shared by every dataset and process that uses it.
        track_meta: keep MetaTensors and their metadata in the entries (plain tensors when ``False``).
        weights_only: ``torch.load``'s setting for reading entries.

    Raises:
        ValueError: no ``cache_dir``, or a random transform before ``CompactStudyd`` (:func:`cache_split`).

    Example::

        dataset = StudyCacheDataset(entries, val_transforms((96, 96), compact=True), "/scratch/cache")
        dataset[0]["label"].shape  # (3, H, W, Z) float32, read from disk after the first time
    """

    def __init__(
        self,
        data: Sequence,
        transform: Sequence[Callable] | Callable,
        cache_dir: Path | str,
        track_meta: bool = True,
        weights_only: bool = True,
    ) -> None:
        if cache_dir is None:
            raise ValueError("StudyCacheDataset needs a cache_dir: it keeps no study in memory.")
        transform = transform if isinstance(transform, Compose) else Compose(transform)
        super().__init__(data, transform, cache_dir=cache_dir, track_meta=track_meta, weights_only=weights_only)
        self.split = cache_split(transform)
        # the cached transforms are deterministic and fixed: describe them once, not at every access
        self._described = [_describe(t) for t in transform.transforms[: self.split]]

    def set_data(self, data: Sequence) -> None:
        """Use other studies; unlike ``PersistentDataset``, the entries on disk stay (other processes may share
        them, and a key changes with its study's content anyway)."""
        self.data = data

    def cache_path(self, index: int) -> Path:
        """Where the entry of study ``index`` is (or will be) on disk."""
        return self._path(self.data[index])

    def _path(self, entry: Any) -> Path:
        return self.cache_dir / f"{_key(entry, self._described)}.pt"

    def cached(self, index: int) -> Any:
        """Study ``index`` as cached (the chain up to the split), read from disk, or built and stored if missing."""
        return self._cachecheck(self.data[index])

    def _pre_transform(self, item_transformed: Any) -> Any:
        item = self.transform(item_transformed, end=self.split, threading=True)
        return reset_ops_id(item) if self.reset_ops_id else item

    def _post_transform(self, item_transformed: Any) -> Any:
        if self.split >= len(self.transform.transforms):
            return item_transformed
        return self.transform(item_transformed, start=self.split)

    def _cachecheck(self, item_transformed: Any) -> Any:
        path = self._path(item_transformed)
        if path.is_file():
            try:
                with torch.serialization.safe_globals(_SAFE_GLOBALS):
                    return torch.load(path, weights_only=self.weights_only)
            except (RuntimeError, UnpicklingError, EOFError) as err:
                warnings.warn(f"Unreadable cache entry {path} ({type(err).__name__}: {err}); building it again.")
        # preprocessing a copy leaves the datalist entry as it was, for the next key
        item = self._pre_transform(deepcopy(item_transformed))
        tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            torch.save(convert_to_tensor(item, convert_numeric=False, track_meta=self.track_meta), tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return item


@dataclass(frozen=True)
class CacheSummary:
    """What :func:`fill_cache` did: studies in the dataset, entries built, wall-clock seconds, mean MB (10^6 bytes)
    per study on disk."""

    studies: int
    built: int
    seconds: float
    mb_per_study: float


class _Builder(TorchDataset):
    """The missing entries of a :class:`StudyCacheDataset`, built one per item; returns nothing heavy to the loader."""

    def __init__(self, dataset: StudyCacheDataset, indices: List[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> int:
        self.dataset.cached(self.indices[i])
        return self.indices[i]


def cache_entry_mb(dataset: StudyCacheDataset) -> float:
    """Mean size on disk, in MB (10^6 bytes), of the entries of ``dataset``'s studies that are cached; 0.0 if none.

    Example::

        fill_cache(dataset)
        cache_entry_mb(dataset)  # e.g. 67.2 for a 240 x 240 x 155 study
    """
    sizes = [p.stat().st_size for p in map(dataset.cache_path, range(len(dataset))) if p.is_file()]
    return sum(sizes) / len(sizes) / 1e6 if sizes else 0.0


def fill_cache(dataset: StudyCacheDataset, num_workers: int = 0, name: str = "") -> CacheSummary:
    """Build every missing cache entry of ``dataset`` now, rather than during the first epoch, and log one line.

    With ``num_workers`` the studies are preprocessed in that many spawned processes by torch's own ``DataLoader``,
    with a generator of its own: MONAI's ``DataLoader`` would reseed the dataset's random transforms (``set_rnd``) and
    torch's default one would draw from the global generator, either changing what a seeded run samples afterwards.

    Args:
        dataset: the dataset whose studies to cache.
        num_workers: processes preprocessing studies in parallel; 0 = this process.
        name: what the log line calls the dataset (``train``, ``validation``).

    Returns:
        A :class:`CacheSummary`.

    Raises:
        TypeError: ``dataset`` is not a :class:`StudyCacheDataset`.

    Example::

        fill_cache(StudyCacheDataset(entries, chain, "/scratch/cache"), num_workers=4, name="train")
        # INFO train cache: 1251 studies (1251 built) in 812.4 s, 67.2 MB per study, /scratch/cache
    """
    if not isinstance(dataset, StudyCacheDataset):
        raise TypeError(f"fill_cache needs a StudyCacheDataset, got {type(dataset).__name__}.")
    start = time.perf_counter()
    missing = [i for i in range(len(dataset)) if not dataset.cache_path(i).is_file()]
    builder = _Builder(dataset, missing)
    if num_workers > 0 and missing:
        # spawned, not forked: the caller may hold threads (MLflow, a test runner's, torch's) that a fork would copy
        # in the middle of their work
        loader = TorchDataLoader(
            builder, batch_size=None, num_workers=num_workers, generator=torch.Generator().manual_seed(0),
            multiprocessing_context="spawn",
        )
        for _ in loader:
            pass
    else:
        for i in range(len(builder)):
            builder[i]
    summary = CacheSummary(len(dataset), len(missing), time.perf_counter() - start, cache_entry_mb(dataset))
    logger.info(
        "%s cache: %d studies (%d built) in %.1f s, %.1f MB per study, %s",
        name or "study", summary.studies, summary.built, summary.seconds, summary.mb_per_study, dataset.cache_dir,
    )
    return summary
