"""HICO image-level data for DEFR: rebalancing, splits, transforms, Dataset (`anno.pkl` is read by `raysweep.data.hico`).

Plain PyTorch / PIL. Label semantics (HICO `anno.mat`, NaN re-encoded as -2): 1 positive, 0 ambiguous, -1 negative,
-2 object not in the image. Training sees `label == 1` as the 0/1 target; evaluation uses the `known_obj`
(|label| == 1) and `certain` (label != 0) masks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from raysweep.data.hico import load_hico, load_vocabulary  # noqa: F401 - load_vocabulary: imported by the task
from raysweep.errors import ConfigError, DataError, did_you_mean
from raysweep.tasks.defr.config import DataConfig

log = logging.getLogger(__name__)


NORMALISATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


# ---- annotations ----------------------------------------------------------------------------------------------------
# The one HICO reader is raysweep.data.hico; DefrTask imports it under this name (until it imports data.hico itself).
load_hico_annotations = load_hico


# ---- rebalancing and splits -----------------------------------------------------------------------------------------
def rebalance_indices(targets: np.ndarray, min_samples: int) -> np.ndarray:
    """Row indices 0..N-1 followed by DEFR's extra copies of images of rare classes (its `min_samples` rebalancing).

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
    """DEFR's augmentation and normalisation pipelines. Train: flip, bicubic squash-resize, brightness then contrast
    jitter, RandomResizedCrop(scale, ratio), RGB, ToTensor, Normalize. Test (and train with `augment` off): bicubic
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
    """HICO images with DEFR's loader's per-item tuple.

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
