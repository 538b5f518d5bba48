"""HICO image-level data for DEFR: `anno.pkl` loading and validation, rebalancing, splits, transforms, Dataset.

Plain PyTorch / PIL. Label semantics (HICO `anno.mat`, NaN re-encoded as -2): 1 positive, 0 ambiguous, -1 negative,
-2 object not in the image. Training sees `label == 1` as the 0/1 target; evaluation uses the `known_obj`
(|label| == 1) and `certain` (label != 0) masks.
"""

from __future__ import annotations

import csv
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from raysweep.errors import ConfigError, DataError, did_you_mean
from raysweep.tasks.defr.config import DataConfig

log = logging.getLogger(__name__)

LABEL_VALUES = (1, 0, -1, -2)
_REQUIRED_KEYS = ("files_train", "files_test", "anno_train", "anno_test")

NORMALISATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


# ---- annotations ----------------------------------------------------------------------------------------------------
@dataclass
class HicoAnnotations:
    """A HICO-layout dataset's labels, image-major (`labels_*[n, c]`, int8 in {1, 0, -1, -2})."""

    files_train: np.ndarray  # [N_train] str
    files_test: np.ndarray  # [N_test] str
    labels_train: np.ndarray  # [N_train, C] int8
    labels_test: np.ndarray  # [N_test, C] int8
    class_names: list[tuple[str, str]] | None  # (verb, object) per class, from hoi_list when it is readable

    @property
    def num_classes(self) -> int:
        return self.labels_train.shape[1]


def _as_str(value: Any) -> str | None:
    """A string from the shapes Matlab-converted records take (str, bytes, 1-element arrays); else None."""
    while isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (str, np.str_)) and str(value).strip():
        return str(value).strip()
    return None


_VERB_KEYS = ("verb", "vname", "verb_name", "action")
_OBJECT_KEYS = ("object", "nname", "obj", "object_name", "noun")


def _field(entry: Any, keys: Sequence[str]) -> str | None:
    if isinstance(entry, dict):
        for k in keys:
            if k in entry:
                return _as_str(entry[k])
    names = getattr(getattr(entry, "dtype", None), "names", None)  # numpy structured record (scipy.io.loadmat)
    if names:
        for k in keys:
            if k in names:
                return _as_str(entry[k])
    return None


def parse_hoi_list(hoi_list: Any, num_classes: int) -> list[tuple[str, str]] | None:
    """(verb, object) per class from `hoi_list` in any of the forms seen in the wild; None if it cannot be read.

    Accepted entries: dicts / structured records with verb+object keys ('verb'/'object', HICO's 'vname'/'nname',
    anno.json's 'obj'), or (verb, object) pairs. The list must have one entry per class.
    """
    if hoi_list is None:
        return None
    if isinstance(hoi_list, np.ndarray):
        hoi_list = list(hoi_list.reshape(-1))
    if not isinstance(hoi_list, (list, tuple)) or len(hoi_list) != num_classes:
        log.warning("hoi_list has %s entries for %d classes; ignoring it", _len_or_type(hoi_list), num_classes)
        return None
    names: list[tuple[str, str]] = []
    for entry in hoi_list:
        verb, obj = _field(entry, _VERB_KEYS), _field(entry, _OBJECT_KEYS)
        if verb is None and isinstance(entry, (list, tuple, np.ndarray)) and len(entry) == 2:
            verb, obj = _as_str(entry[0]), _as_str(entry[1])
        if verb is None or obj is None:
            log.warning("hoi_list entry %r has no readable verb/object; ignoring hoi_list", entry)
            return None
        names.append((verb, obj))
    return names


def _len_or_type(x: Any) -> str:
    try:
        return str(len(x))
    except TypeError:
        return type(x).__name__


def _labels(anno: dict, key: str, n_files: int, path: Path) -> np.ndarray:
    """The class-major float matrix under `key` as image-major int8, NaN -> -2, values checked."""
    try:
        raw = np.asarray(anno[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: '{key}' is not a numeric matrix ({e})") from None
    if raw.ndim != 2:
        raise DataError(f"{path}: '{key}' must be a [classes, images] matrix, got shape {raw.shape}")
    if raw.shape[1] != n_files:
        raise DataError(
            f"{path}: '{key}' has shape {raw.shape} (classes x images) but there are {n_files} file names; "
            f"the second dimension must match"
        )
    raw = np.where(np.isnan(raw), -2.0, raw)
    bad = ~np.isin(raw, LABEL_VALUES)
    if bad.any():
        values = np.unique(raw[bad])[:5].tolist()
        raise DataError(f"{path}: '{key}' holds values {values}; labels must be 1, 0, -1, -2 or NaN")
    return np.ascontiguousarray(raw.T.astype(np.int8))


def _files(anno: dict, key: str, path: Path) -> np.ndarray:
    files = anno[key]
    try:
        files = np.asarray([_as_str(f) or "" for f in np.asarray(files, dtype=object).reshape(-1)], dtype=str)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: '{key}' is not a list of file names ({e})") from None
    if len(files) and (files == "").any():
        raise DataError(f"{path}: '{key}' has {int((files == '').sum())} empty or non-string file names")
    return files


def load_hico_annotations(root: Path) -> HicoAnnotations:
    """Read and validate `<root>/anno.pkl` (DEFR's HICO layout). Raises DataError naming the file and key."""
    path = Path(root) / "anno.pkl"
    if not path.is_file():
        raise DataError(f"{path} not found; data.root must be a folder holding anno.pkl and images/")
    try:
        with open(path, "rb") as f:
            try:
                anno = pickle.load(f)
            except UnicodeDecodeError:  # a Python 2 pickle
                f.seek(0)
                anno = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError) as e:
        raise DataError(f"{path} is not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(anno, dict):
        raise DataError(f"{path} must hold a dict with keys {list(_REQUIRED_KEYS)}, got {type(anno).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in anno]
    if missing:
        raise DataError(f"{path} lacks key(s) {missing}; found {sorted(map(str, anno))}")
    files_train, files_test = _files(anno, "files_train", path), _files(anno, "files_test", path)
    labels_train = _labels(anno, "anno_train", len(files_train), path)
    labels_test = _labels(anno, "anno_test", len(files_test), path)
    if labels_train.shape[1] != labels_test.shape[1]:
        raise DataError(
            f"{path}: 'anno_train' has {labels_train.shape[1]} classes but 'anno_test' has {labels_test.shape[1]}"
        )
    class_names = parse_hoi_list(anno.get("hoi_list"), labels_train.shape[1])
    return HicoAnnotations(files_train, files_test, labels_train, labels_test, class_names)


def load_vocabulary(path: str | Path, num_classes: int | None = None) -> list[tuple[str, str]]:
    """(verb, object) per class from a JSON list ([verb, object] pairs or {"verb", "object"} dicts) or a TSV with a
    header naming 'verb' and 'object' columns. With `num_classes`, the length must match."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"vocabulary file {path} not found")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: must be a JSON list of [verb, object] pairs or {{'verb', 'object'}} dicts")
        names = []
        for i, entry in enumerate(data):
            if isinstance(entry, dict):
                verb, obj = _field(entry, _VERB_KEYS), _field(entry, _OBJECT_KEYS)
            elif isinstance(entry, (list, tuple)) and len(entry) == 2:
                verb, obj = _as_str(entry[0]), _as_str(entry[1])
            else:
                verb = obj = None
            if verb is None or obj is None:
                raise DataError(f"{path}: entry {i} ({entry!r}) is not a [verb, object] pair or a verb/object dict")
            names.append((verb, obj))
    elif path.suffix.lower() in (".tsv", ".txt", ".tab"):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        header = list(rows[0].keys()) if rows else []
        if "verb" not in header or "object" not in header:
            raise DataError(f"{path}: the TSV header must name 'verb' and 'object' columns, got {header}")
        names = []
        for i, row in enumerate(rows):
            verb, obj = (row.get("verb") or "").strip(), (row.get("object") or "").strip()
            if not verb or not obj:
                raise DataError(f"{path}: row {i + 2} has an empty verb or object")
            names.append((verb, obj))
    else:
        raise DataError(f"vocabulary file {path}: unknown format {path.suffix!r}; use .json or .tsv")
    if num_classes is not None and len(names) != num_classes:
        raise DataError(f"{path}: {len(names)} classes, but the dataset has {num_classes}")
    return names


# ---- rebalancing and splits -----------------------------------------------------------------------------------------
def rebalance_indices(targets: np.ndarray, min_samples: int) -> np.ndarray:
    """Row indices 0..N-1 followed by DEFR's extra copies of images of rare classes (spec A.4).

    rep[c] = min(ceil(min_samples / pos[c]) - 1, min_samples); image i gets m_i = max over its positive classes of
    rep[c] extra copies, appended after all originals, but only when m_i > 1 (so classes with 20..39 positives at
    min_samples 40 are not duplicated). `targets` [N, C] is 0/1 (label == 1).
    """
    targets = np.asarray(targets) > 0
    n = targets.shape[0]
    base = np.arange(n, dtype=np.int64)
    if min_samples <= 1 or n == 0:
        return base
    pos = targets.sum(axis=0)
    rep = np.full(pos.shape, min_samples, dtype=np.int64)  # pos == 0: the cap (no image is positive for it anyway)
    has = pos > 0
    rep[has] = np.minimum(np.ceil(min_samples / pos[has]).astype(np.int64) - 1, min_samples)
    m = (targets * rep[None, :]).max(axis=1) if targets.shape[1] else np.zeros(n, dtype=np.int64)
    extra = m > 1
    return np.concatenate([base, np.repeat(base[extra], m[extra])])


# ---- transforms -----------------------------------------------------------------------------------------------------
class ToRGB:
    """Convert a PIL image to RGB (a class, not a lambda, so loader workers can pickle it)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def build_transforms(
    image_size: int, train: bool, normalisation: Literal["clip", "half", "imagenet"], cfg: DataConfig
) -> Callable[[Image.Image], torch.Tensor]:
    """DEFR's pipelines (spec A.5). Train: flip, bicubic squash-resize, brightness then contrast jitter,
    RandomResizedCrop(scale, ratio), RGB, ToTensor, Normalize. Test (and train with `augment` off): bicubic
    squash-resize, RGB, ToTensor, Normalize. Output [3, image_size, image_size] float32."""
    if normalisation not in NORMALISATION:
        raise ConfigError(
            f"data.normalisation: {normalisation!r} is not one of {sorted(NORMALISATION)}"
            f"{did_you_mean(normalisation, NORMALISATION)} ('auto' must be resolved by the backbone first)"
        )
    mean, std = NORMALISATION[normalisation]
    size = (image_size, image_size)
    tail = [ToRGB(), T.ToTensor(), T.Normalize(mean, std)]
    if not (train and cfg.augment):
        return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), *tail])
    return T.Compose(
        [
            T.RandomHorizontalFlip(p=0.5),
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.ColorJitter(brightness=cfg.aug_bright),
            T.ColorJitter(contrast=cfg.aug_contra),
            T.RandomResizedCrop(image_size, scale=tuple(cfg.aug_crop_scale), ratio=tuple(cfg.aug_crop_ratio)),
            *tail,
        ]
    )


# ---- dataset --------------------------------------------------------------------------------------------------------
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class HicoDataset(Dataset):
    """HICO images with DEFR's per-item tuple (spec A.6).

    Item `i` is `(image [3, H, W], targets float32 [C] (label == 1), known_obj bool [C], certain bool [C], i)`;
    `i` is the position in this dataset (0..len-1), which keys evaluation outputs. `indices` selects and repeats
    rows of `files`/`labels` (a split, or `rebalance_indices`' copies).

    Unreadable images (missing, zero bytes, truncated, not an image) do not stop training: the item gets a black
    image instead and the file is recorded in `bad_files`. Substituting keeps every index present, which
    evaluation needs (all indices must come back), and keeps batches the same size. Once more than
    `max_bad_fraction` of the dataset's distinct files have proved unreadable, DataError is raised with the file
    names. The count is per process (each loader worker counts what it loads), so with W workers a bad fraction
    up to W times the limit can pass before one worker raises; `scan_image_files` checks files up front.
    """

    def __init__(
        self,
        image_dir: Path,
        files: np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
        max_bad_fraction: float = 0.01,
    ):
        if len(files) != len(labels):
            raise DataError(f"{image_dir}: {len(files)} file names but {len(labels)} label rows")
        self.image_dir = Path(image_dir)
        self.files = np.asarray(files)
        labels = np.asarray(labels)
        self.targets = (labels == 1).astype(np.float32)
        self.known_obj = np.abs(labels) == 1
        self.certain = labels != 0
        self.indices = np.arange(len(files), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        self.transform = transform if transform is not None else T.ToTensor()
        self.max_bad_fraction = max_bad_fraction
        self.num_distinct = len(np.unique(self.indices))
        self.bad_files: dict[int, str] = {}  # row -> why it could not be read
        self.num_loaded = 0

    def __len__(self) -> int:
        return len(self.indices)

    def _open(self, row: int) -> Image.Image:
        path = self.image_dir / str(self.files[row])
        try:
            with Image.open(path) as img:
                img.load()
                return img.copy() if img.mode in ("RGB", "L") else img.convert("RGB")
        except _UNREADABLE as e:
            return self._substitute(row, path, e)

    def _substitute(self, row: int, path: Path, error: Exception) -> Image.Image:
        if row not in self.bad_files:
            self.bad_files[row] = f"{type(error).__name__}: {error}"
            log.warning("unreadable image %s (%s); using a black image instead", path, self.bad_files[row])
        limit = self.max_bad_fraction * self.num_distinct
        if len(self.bad_files) > limit:
            names = [str(self.files[r]) for r in list(self.bad_files)[:5]]
            raise DataError(
                f"{self.image_dir}: {len(self.bad_files)} of {self.num_distinct} images are unreadable "
                f"(e.g. {', '.join(names)}), more than data.max_bad_images = {self.max_bad_fraction} allows"
            )
        return Image.new("RGB", (64, 64))  # black; the transform resizes it like any other image

    def __getitem__(self, i: int):
        row = int(self.indices[i])
        img = self._open(row)
        self.num_loaded += 1
        return (
            self.transform(img),
            torch.from_numpy(self.targets[row].copy()),
            torch.from_numpy(self.known_obj[row].copy()),
            torch.from_numpy(self.certain[row].copy()),
            i,
        )


def scan_image_files(image_dir: Path, files: Sequence[str]) -> list[str]:
    """File names that are missing or empty (a cheap stat per file, no decoding)."""
    image_dir = Path(image_dir)
    bad = []
    for name in files:
        try:
            if (image_dir / str(name)).stat().st_size == 0:
                bad.append(str(name))
        except OSError:
            bad.append(str(name))
    return bad
