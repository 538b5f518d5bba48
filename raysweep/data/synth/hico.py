"""The embedded synthetic HICO: a small image-level HOI dataset in HICO's on-disk layout, generated from a seed.

Layout (what DEFR's loader reads from a real HICO folder):

    <out>/anno.pkl                                   hoi_list, files_train/test, anno_train [C, N_train], anno_test
    <out>/images/train2015/HICO_train2015_%08d.jpg   (1-based numbers, like the release)
    <out>/images/test2015/HICO_test2015_%08d.jpg
    <out>/.complete                                  JSON of the generation parameters, written last

Labels use HICO's semantics: for every object drawn in an image its classes are 1 (shown) or -1 (not shown), a
few -1 turned into 0 (ambiguous); classes of objects not in the image are -2. The training split is long-tailed so
Few@1/5/10 classes exist; the test split has a near-equal number of positives per class.

Generation is deterministic (same parameters -> byte-identical files) and atomic: everything is written into a
temporary sibling folder that is renamed onto `out` at the end, so concurrent callers either win the rename or
find the winner's complete folder.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from raysweep.data.synth.plan import plan_split
from raysweep.data.synth.render import render_scene
from raysweep.data.synth.vocabulary import HOI_CLASSES, hoi_list
from raysweep.data.synth.publish import MARKER, check_sizes, per_image, publish, save_jpeg  # noqa: F401 - MARKER: API

if TYPE_CHECKING:
    from raysweep.tasks.defr.config import SynthHicoConfig

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump whenever the bytes produced for the same parameters change
AMBIGUOUS_FRACTION = 0.03  # of the -1 labels of present objects, turned into 0
_SPLITS = (("train", "train2015", 0), ("test", "test2015", 1))


def _params(seed: int, num_train: int, num_test: int, image_size: int) -> dict:
    return {
        "generator": "synth_hico",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "num_train": int(num_train),
        "num_test": int(num_test),
        "image_size": int(image_size),
        "num_classes": len(HOI_CLASSES),
    }


def image_labels(images: list[list[int]], classes: list[tuple[str, str]], rng: np.random.Generator) -> np.ndarray:
    """HICO label matrix [C, N] (float64, class-major) for the classes shown in each image."""
    objects = sorted({o for _, o in classes})
    class_obj = np.array([objects.index(o) for _, o in classes])
    labels = np.full((len(classes), len(images)), -2.0)
    for n, shown in enumerate(images):
        present = np.isin(class_obj, class_obj[shown])
        labels[present, n] = -1.0
        labels[shown, n] = 1.0
    negative = labels == -1.0
    labels[negative & (rng.random(labels.shape) < AMBIGUOUS_FRACTION)] = 0.0
    return labels


def _write_split(
    folder: Path, prefix: str, images: list[list[int]], seed: int, split_id: int, image_size: int, progress: bool
) -> np.ndarray:
    folder.mkdir(parents=True)
    names = [f"{prefix}_{i + 1:08d}.jpg" for i in range(len(images))]
    for i, (name, shown) in enumerate(per_image(zip(names, images), len(images), f"synthetic HICO {folder.name}",
                                                progress)):
        # One generator per image: an image's pixels depend only on (seed, split, index) and its classes.
        rng = np.random.default_rng([seed, split_id, 1, i])
        scene = render_scene([HOI_CLASSES[c] for c in shown], image_size, rng)
        save_jpeg(scene.image, folder / name)
    return np.array(names)


def _generate_into(tmp: Path, seed: int, num_train: int, num_test: int, image_size: int, progress: bool) -> None:
    anno: dict = {"hoi_list": hoi_list()}
    for split, subdir, split_id in _SPLITS:
        n = num_train if split == "train" else num_test
        plan_rng = np.random.default_rng([seed, split_id, 0])
        images = plan_split(n, len(HOI_CLASSES), long_tail=(split == "train"), rng=plan_rng)
        folder = tmp / "images" / subdir
        anno[f"files_{split}"] = _write_split(folder, f"HICO_{subdir}", images, seed, split_id, image_size, progress)
        anno[f"anno_{split}"] = image_labels(images, HOI_CLASSES, plan_rng)
    with open(tmp / "anno.pkl", "wb") as f:
        pickle.dump(anno, f, protocol=4)


def generate_hico(
    out: Path,
    seed: int,
    num_train: int,
    num_test: int,
    image_size: int,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write the synthetic HICO to `out` and return it; a complete folder with the same parameters is reused.

    Raises DataError if `out` exists but is incomplete or was made with other parameters (unless `overwrite`).
    """
    out = Path(out)
    check_sizes("synthetic HICO", seed, num_train, num_test, image_size, min_test=1, min_image_size=16)
    params = _params(seed, num_train, num_test, image_size)
    what = f"synthetic HICO ({num_train} train + {num_test} test images, {image_size}px, seed {seed})"
    return publish(out, params, lambda tmp: _generate_into(tmp, seed, num_train, num_test, image_size, progress),
                   what, overwrite=overwrite)


def synthetic_hico_path(cache_dir: Path, num_train: int, num_test: int, image_size: int, seed: int) -> Path:
    """Where `ensure_synthetic_hico` keeps a dataset with these parameters."""
    name = f"n{num_train}-{num_test}_s{image_size}_seed{seed}_v{GENERATOR_VERSION}"
    return Path(cache_dir) / "synth_hico" / name


def ensure_synthetic_hico(cache_dir: Path, cfg: SynthHicoConfig, *, progress: bool = False) -> Path:
    """The synthetic HICO for `cfg` (a SynthHicoConfig) under `cache_dir`, generated on first use."""
    path = synthetic_hico_path(cache_dir, cfg.num_train, cfg.num_test, cfg.image_size, cfg.seed)
    return generate_hico(path, cfg.seed, cfg.num_train, cfg.num_test, cfg.image_size, progress=progress)
