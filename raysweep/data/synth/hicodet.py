"""The embedded synthetic HICO-DET: a small HOI detection dataset in the layout the QPIC family reads.

Layout (what `raysweep.data.hicodet.load_hicodet` and QPIC's loader read from a real HICO-DET folder):

    <out>/annotations/trainval_hico.json   records {file_name, img_id, annotations, hoi_annotation}
    <out>/annotations/test_hico.json
    <out>/annotations/corre_hico.npy       [117, 80] 0/1: our vocabulary's classes in HICO-DET's id spaces
    <out>/images/train2015/HICO_train2015_%08d.jpg, <out>/images/test2015/HICO_test2015_%08d.jpg
    <out>/.complete                        JSON of the generation parameters, written last

Content: images of 1..3 people, each interacting with one object (drawn by `synth.render`, which returns the
boxes), so person and object detection and the verb are learnable. The classes are our own vocabulary
(`synth.vocabulary`: 8 objects, 10 verbs, 34 classes) mapped onto COCO category ids and HICO's 117 verb ids;
`hoi_category_id` numbers those 34 classes 1..34 in vocabulary order (not HICO's 600). The training split is
long-tailed (`synth.plan`), so Rare (< 10 training instances) and Non-rare classes both exist; the test split is
near-balanced, and about 3 % of its images (at least one) show no interaction and carry no annotation, like the
GT-less images of the real test set.

A `Scene` (`synth.scene`) picks the variant: `HICO_LIKE` (every class, 1..3 pairs per image, objects at their
drawn size; what `generate_hicodet` writes by default, and DEFR's detection views) or `EMBEDDED` (the embedded
default of the `hqm` task and of `raysweep data synth hicodet`: the six larger objects' 26 classes, mostly one pair
per image, objects drawn 1.8x larger), which a tiny DETR trained from scratch on one CPU core can learn within a
few minutes; on `HICO_LIKE` it stays at mAP 0.
`hoi_category_id`s and `corre_hico.npy` always use the full 34-class numbering; a subset only leaves classes out.

Boxes are 0-based integer pixels, inclusive on both ends as in PPDM's files (a drawn extent [x0, x1) covers pixels
floor(x0) .. ceil(x1) - 1). Records carry no width/height, exactly as QPIC's do: `load_hicodet(check_images=True)`
checks the boxes against the image headers.

Generation is deterministic (same parameters -> byte-identical files) and atomic: everything is written into a
temporary sibling folder renamed onto `out` at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from raysweep.data.hicodet import (
    CORRECT_MAT_FILE,
    IMAGE_DIRS,
    NUM_OBJECTS,
    NUM_VERBS,
    TEST_FILE,
    TRAIN_FILE,
    coco_id_to_index,
)
from raysweep.data.synth.plan import plan_split
from raysweep.data.synth.render import render_scene
from raysweep.data.synth.scene import EMBEDDED, HICO_LIKE, Scene  # noqa: F401 - part of this module's API
from raysweep.data.synth.vocabulary import COCO_CATEGORY_ID, HICO_VERB_ID, HOI_CLASSES, PERSON_COCO_ID
from raysweep.data.synth.publish import MARKER, check_sizes, per_image, publish, save_jpeg, write_records  # noqa: F401


GENERATOR_VERSION = 2  # bump whenever the bytes produced for the same parameters change (2: scene options)
EMPTY_TEST_FRACTION = 0.03  # test images without any interaction (real HICO-DET: 112 of 9,658)
_SPLITS = (("train", 0), ("test", 1))
_STREAM = 17  # separates this generator's random streams from the synthetic HICO's


def correct_matrix(classes: Sequence[tuple[str, str]] = HOI_CLASSES) -> np.ndarray:
    """[117, 80] float64 0/1: the (verb, object) classes as (HICO verb index, QPIC object index)."""
    mat = np.zeros((NUM_VERBS, NUM_OBJECTS))
    for verb, obj in classes:
        mat[HICO_VERB_ID[verb] - 1, coco_id_to_index(COCO_CATEGORY_ID[obj])] = 1.0
    if int(mat.sum()) != len(classes):
        raise AssertionError("two vocabulary classes map onto the same HICO-DET (verb, object) pair")
    return mat


def pixel_box(box: tuple[float, float, float, float], image_size: int) -> list[int]:
    """A drawn extent [x0, x1) x [y0, y1) -> inclusive 0-based pixel box inside the image."""
    x0, y0, x1, y1 = box
    last = image_size - 1
    left, top = min(max(math.floor(x0), 0), last), min(max(math.floor(y0), 0), last)
    right, bottom = min(max(math.ceil(x1) - 1, left), last), min(max(math.ceil(y1) - 1, top), last)
    return [left, top, right, bottom]


def _background(image_size: int, rng: np.random.Generator) -> Image.Image:
    """A scene without people or objects: a smooth random colour field with pixel noise."""
    base = rng.uniform(105, 200, 3)
    grid = int(rng.integers(3, 7))
    low = np.clip(base + rng.normal(0, 24, (grid, grid, 3)), 0, 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(low, "RGB").resize((image_size, image_size), Image.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-7, 8, img.shape, dtype=np.int16)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _record(name: str, img_id: int, pairs: list, image_size: int) -> dict:
    """QPIC-layout record: two boxes per drawn pair (person, object), one hoi entry per pair."""
    annotations, hois = [], []
    for pair in pairs:
        annotations.append({"bbox": pixel_box(pair.person_box, image_size), "category_id": PERSON_COCO_ID})
        annotations.append({"bbox": pixel_box(pair.object_box, image_size),
                            "category_id": COCO_CATEGORY_ID[pair.object]})
        hois.append({"subject_id": len(annotations) - 2, "object_id": len(annotations) - 1,
                     "category_id": HICO_VERB_ID[pair.verb],
                     "hoi_category_id": HOI_CLASSES.index((pair.verb, pair.object)) + 1})
    return {"file_name": name, "img_id": img_id, "annotations": annotations, "hoi_annotation": hois}


def _write_split(root: Path, split: str, split_id: int, seed: int, n: int, image_size: int, scene: Scene,
                 progress: bool) -> None:
    classes = scene.classes
    plan_rng = np.random.default_rng([seed, _STREAM, split_id, 0])
    plan = plan_split(n, len(classes), long_tail=(split == "train"), rng=plan_rng,
                      pairs_per_image_p=scene.pairs_per_image)
    if split == "test":
        n_empty = max(1, round(EMPTY_TEST_FRACTION * n))
        for i in sorted(plan_rng.choice(n, size=n_empty, replace=False).tolist()):
            plan[i] = []
    folder = root / IMAGE_DIRS[split]
    folder.mkdir(parents=True)
    prefix = "HICO_" + folder.name
    records = []
    for i, shown in per_image(enumerate(plan), n, f"synthetic HICO-DET {folder.name}", progress):
        name = f"{prefix}_{i + 1:08d}.jpg"
        rng = np.random.default_rng([seed, _STREAM, split_id, 1, i])  # an image depends on (seed, split, index)
        if shown:
            drawn = render_scene([classes[c] for c in shown], image_size, rng, object_scale=scene.object_scale)
            image, pairs = drawn.image, drawn.pairs
        else:
            image, pairs = _background(image_size, rng), []
        save_jpeg(image, folder / name)
        records.append(_record(name, i + 1, pairs, image_size))
    write_records(root / (TRAIN_FILE if split == "train" else TEST_FILE), records)


def _params(seed: int, num_train: int, num_test: int, image_size: int, scene: Scene) -> dict:
    return {"generator": "synth_hicodet", "generator_version": GENERATOR_VERSION, "seed": int(seed),
            "num_train": int(num_train), "num_test": int(num_test), "image_size": int(image_size),
            "num_classes": len(scene.classes), **scene.as_dict()}


def generate_hicodet(out: Path, seed: int, num_train: int, num_test: int, image_size: int, *,
                     scene: Scene = HICO_LIKE, overwrite: bool = False, progress: bool = False,
                     detections: Any = None) -> Path:
    """Write the synthetic HICO-DET to `out` and return it; a complete folder with the same parameters is reused.

    `detections` (a SynthDetectionsConfig) also writes DEFR's detection views (`synth.detections`): offline
    detections of the test images and the HICO recognition view `anno.pkl`.

    Raises ConfigError for bad sizes, DataError if `out` exists but is incomplete or was made with other
    parameters (unless `overwrite`). Written atomically (`publish`): a failure leaves nothing behind.
    """
    check_sizes("synthetic HICO-DET", seed, num_train, num_test, image_size)

    def write(folder: Path) -> None:
        (folder / "annotations").mkdir(parents=True)
        np.save(folder / CORRECT_MAT_FILE, correct_matrix(scene.classes))
        for split, split_id in _SPLITS:
            n = num_train if split == "train" else num_test
            _write_split(folder, split, split_id, int(seed), int(n), int(image_size), scene, progress)
        if detections is not None:
            from raysweep.data.synth.detections import write_detection_views

            write_detection_views(folder, int(image_size), int(seed), detections)

    what = (f"synthetic HICO-DET ({num_train} train + {num_test} test images, {image_size}px, seed {seed}, "
            f"{len(scene.classes)} classes)")
    params = _params(seed, num_train, num_test, image_size, scene)
    if detections is not None:
        from raysweep.data.synth.detections import detection_params

        params["detections"] = detection_params(detections)
        what += " with DEFR detection views"
    return publish(Path(out), params, write, what, overwrite=overwrite)


def synthetic_hicodet_path(cache_dir: Path, num_train: int, num_test: int, image_size: int, seed: int,
                           scene: Scene = EMBEDDED) -> Path:
    """Where `ensure_synthetic_hicodet` keeps a dataset with these parameters (the scene as a short digest)."""
    digest = hashlib.sha1(json.dumps(scene.as_dict(), sort_keys=True).encode()).hexdigest()[:8]
    name = f"n{num_train}-{num_test}_s{image_size}_seed{seed}_v{GENERATOR_VERSION}_{digest}"
    return Path(cache_dir) / "synth_hicodet" / name


def scene_of(cfg: Any) -> Scene:
    """The Scene of a config with `objects`, `pairs_per_image`, `object_scale` (e.g. SynthHicoDetConfig)."""
    return Scene(objects=tuple(cfg.objects), pairs_per_image=tuple(float(x) for x in cfg.pairs_per_image),
                 object_scale=float(cfg.object_scale))


def ensure_synthetic_hicodet(cache_dir: Path, cfg: Any, *, progress: bool = False) -> Path:
    """The synthetic HICO-DET for `cfg` (num_train, num_test, image_size, seed and the scene fields; e.g.
    SynthHicoDetConfig) under `cache_dir`, generated on first use."""
    scene = scene_of(cfg)
    path = synthetic_hicodet_path(cache_dir, cfg.num_train, cfg.num_test, cfg.image_size, cfg.seed, scene)
    return generate_hicodet(path, cfg.seed, cfg.num_train, cfg.num_test, cfg.image_size, scene=scene,
                            progress=progress)
