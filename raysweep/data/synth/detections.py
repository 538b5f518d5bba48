"""Two extra views of a synthetic HICO-DET folder, for DEFR's two-stage HOI detection on the embedded default.

- `detections/test2015.json`: offline "detector" output for the test images in raysweep's detection format
  (`raysweep.tasks.defr.detection_format`), derived from the ground truth: every GT box, jittered, missed now and
  then, sometimes with a lower-scoring near-duplicate (which NMS should remove), plus random false positives of
  random classes with low scores;
- `anno.pkl` (+ the existing `images/`): the HICO recognition view of the same images, in DEFR's HICO layout, so
  a DEFR model with `data.root` at this folder is trained on image-level labels of exactly these images. Labels
  follow HICO's semantics like the synthetic HICO: 1 shown, -1 a class of a present object not shown (a few 0),
  -2 the object is absent. Class c is hoi_category_id c + 1, the synthetic vocabulary's order.

Deterministic in (seed, parameters).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from raysweep.data.hicodet import TEST_FILE, TRAIN_FILE, coco_id_to_index
from raysweep.data.synth.vocabulary import COCO_CATEGORY_ID, HOI_CLASSES, PERSON_COCO_ID, hoi_list

DETECTIONS_FILE = "detections/test2015.json"
_STREAM = 23  # separates these random streams from the images' and the plans'
_FP_OBJECTS = [PERSON_COCO_ID, *COCO_CATEGORY_ID.values()]


def detection_params(cfg: Any) -> dict:
    """The generation parameters of a SynthDetectionsConfig (part of the dataset's identity)."""
    return {"box_noise": float(cfg.box_noise), "miss_rate": float(cfg.miss_rate),
            "duplicates": float(cfg.duplicates), "false_positives": float(cfg.false_positives)}


def _jitter(box: np.ndarray, noise: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """A continuous box with each edge moved by N(0, noise · box side), clipped to the image, at least 1 px wide."""
    w, h = box[2] - box[0], box[3] - box[1]
    out = box + rng.normal(0.0, noise, 4) * np.array([w, h, w, h])
    out = np.clip(out, 0.0, float(size))
    out[2] = max(out[2], min(out[0] + 1.0, size))
    out[3] = max(out[3], min(out[1] + 1.0, size))
    out[0], out[1] = min(out[0], out[2] - 1.0), min(out[1], out[3] - 1.0)
    return out


def image_detections(record: dict, image_size: int, cfg: Any, rng: np.random.Generator) -> dict[str, list]:
    """One test record's detections: {boxes (continuous), labels (QPIC indices), scores}."""
    boxes, labels, scores = [], [], []
    for ann in record["annotations"]:
        x1, y1, x2, y2 = ann["bbox"]
        gt = np.array([x1, y1, x2 + 1.0, y2 + 1.0])  # 0-based inclusive pixels -> continuous
        label = coco_id_to_index(ann["category_id"])
        if rng.random() < cfg.miss_rate:
            continue
        score = float(rng.uniform(0.5, 1.0))
        boxes.append(_jitter(gt, cfg.box_noise, image_size, rng))
        labels.append(label)
        scores.append(score)
        if rng.random() < cfg.duplicates:
            boxes.append(_jitter(gt, cfg.box_noise, image_size, rng))
            labels.append(label)
            scores.append(score * float(rng.uniform(0.3, 0.9)))
    for _ in range(int(rng.poisson(cfg.false_positives))):
        w, h = rng.uniform(0.1, 0.5, 2) * image_size
        x, y = rng.uniform(0, image_size - w), rng.uniform(0, image_size - h)
        boxes.append(np.array([x, y, x + w, y + h]))
        labels.append(coco_id_to_index(int(rng.choice(_FP_OBJECTS))))
        scores.append(float(rng.uniform(0.05, 0.6)))
    return {"boxes": np.round(np.array(boxes).reshape(-1, 4), 2).tolist(), "labels": labels,
            "scores": np.round(np.array(scores), 4).tolist()}


def _shown_classes(record: dict) -> list[int]:
    return sorted({int(h["hoi_category_id"]) - 1 for h in record["hoi_annotation"]})


def write_detection_views(root: Path, image_size: int, seed: int, cfg: Any) -> None:
    """Add `detections/test2015.json` and `anno.pkl` to a synthetic HICO-DET folder (its annotations written)."""
    from raysweep.data.synth.hico import image_labels

    root = Path(root)
    train = json.loads((root / TRAIN_FILE).read_text())
    test = json.loads((root / TEST_FILE).read_text())
    rng = np.random.default_rng([seed, _STREAM, 0])
    images = {rec["file_name"]: image_detections(rec, image_size, cfg, rng) for rec in test}
    (root / DETECTIONS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / DETECTIONS_FILE).write_text(json.dumps({"format": "raysweep-detections", "labels": "qpic",
                                                     "images": images}, separators=(",", ":")))
    label_rng = np.random.default_rng([seed, _STREAM, 1])
    anno = {"hoi_list": hoi_list()}
    for split, records in (("train", train), ("test", test)):
        anno[f"files_{split}"] = np.array([rec["file_name"] for rec in records])
        anno[f"anno_{split}"] = image_labels([_shown_classes(rec) for rec in records], HOI_CLASSES, label_rng)
    with open(root / "anno.pkl", "wb") as f:
        pickle.dump(anno, f, protocol=4)


def synthetic_detection_set_path(cache_dir: Path, synth: Any, detections: Any) -> Path:
    """Where `ensure_synthetic_detection_set` keeps a set (sizes from `synth`, a SynthHicoConfig; the detection
    parameters as a short digest)."""
    import hashlib

    from raysweep.data.synth.hicodet import GENERATOR_VERSION

    digest = hashlib.sha1(json.dumps(detection_params(detections), sort_keys=True).encode()).hexdigest()[:8]
    name = f"n{synth.num_train}-{synth.num_test}_s{synth.image_size}_seed{synth.seed}_v{GENERATOR_VERSION}_{digest}"
    return Path(cache_dir) / "synth_hicodet_defr" / name


def ensure_synthetic_detection_set(cache_dir: Path, synth: Any, detections: Any, *, progress: bool = False) -> Path:
    """The embedded default of DEFR detection: a synthetic HICO-DET (every class, HICO-like scenes) of `synth`'s
    sizes with its detection views, generated under `cache_dir` on first use."""
    from raysweep.data.synth.hicodet import HICO_LIKE, generate_hicodet

    path = synthetic_detection_set_path(cache_dir, synth, detections)
    return generate_hicodet(path, synth.seed, synth.num_train, synth.num_test, synth.image_size, scene=HICO_LIKE,
                            progress=progress, detections=detections)
