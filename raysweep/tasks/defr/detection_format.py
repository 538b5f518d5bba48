"""Offline detections for DEFR's two-stage HOI detection: the file format, reading and validation.

One JSON file per split (raysweep's format; docs/defr_detection.md):

    {"format": "raysweep-detections",
     "labels": "qpic",                      # or "hico"
     "images": {"HICO_test2015_00000001.jpg": {"boxes":  [[x1, y1, x2, y2], ...],
                                               "labels": [49, 26, ...],
                                               "scores": [0.93, 0.71, ...]},
                ...}}

- `boxes`: continuous xyxy in the original image frame (pixel i spans [i, i+1]; a 0-based inclusive pixel box
  (x1, y1, x2, y2) is (x1, y1, x2 + 1, y2 + 1) here), as the reference's detection files have them;
- `labels`: object indices in the space `labels` names: "qpic" = 0..79 in COCO order, person 0 (raysweep's
  HICO-DET predictions use it); "hico" = HICO's alphabetical 0..79, person 49 (the reference's and SCG's files);
- `scores`: detector confidences in [0, 1].

An image missing from `images` has no detections. A folder is read as the reference's layout: one
`<image stem>.json` per image holding the same three keys with "hico" labels (e.g. SCG's `test2015_finetuned_drg/`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np

from raysweep.errors import DataError

FORMAT_NAME = "raysweep-detections"
LabelSpace = Literal["qpic", "hico"]
LABEL_SPACES = ("qpic", "hico")

# The 80 COCO object names in COCO (= QPIC) order, spelled as HICO spells them. HICO's object list is the same
# names sorted alphabetically (airplane 0, cup 26, person 49, zebra 79).
COCO_OBJECT_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic_light",
    "fire_hydrant", "stop_sign", "parking_meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports_ball", "kite", "baseball_bat", "baseball_glove", "skateboard", "surfboard",
    "tennis_racket", "bottle", "wine_glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot_dog", "pizza", "donut", "cake", "chair", "couch",
    "potted_plant", "bed", "dining_table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell_phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy_bear",
    "hair_drier", "toothbrush",
)  # fmt: skip
HICO_OBJECT_NAMES: tuple[str, ...] = tuple(sorted(COCO_OBJECT_NAMES))
HICO_TO_QPIC = np.array([COCO_OBJECT_NAMES.index(name) for name in HICO_OBJECT_NAMES], dtype=np.int64)
QPIC_TO_HICO = np.argsort(HICO_TO_QPIC)


@dataclass
class Detections:
    """One image's detections: boxes [M, 4] continuous xyxy, labels [M] QPIC object indices, scores [M]."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0))


def parse_image(entry: Any, labels: LabelSpace, where: str) -> Detections:
    """Validate one image's {"boxes", "labels", "scores"}; labels are converted to QPIC indices."""
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object with keys boxes, labels, scores, got {type(entry).__name__}")
    missing = [k for k in ("boxes", "labels", "scores") if k not in entry]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing} (need boxes, labels, scores)")
    try:
        boxes = np.asarray(entry["boxes"], dtype=np.float64)
        label = np.asarray(entry["labels"], dtype=np.float64)
        scores = np.asarray(entry["scores"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: boxes, labels and scores must be numeric arrays ({exc})") from None
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{where}: 'boxes' has shape {tuple(boxes.shape)}; expected [M, 4] xyxy")
    for key, arr in (("labels", label), ("scores", scores)):
        if arr.ndim != 1 or len(arr) != len(boxes):
            raise DataError(f"{where}: {key!r} has shape {tuple(arr.shape)}; expected ({len(boxes)},), one per box")
    if not np.isfinite(boxes).all():
        raise DataError(f"{where}: 'boxes' holds a non-finite value")
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if len(bad):
        raise DataError(f"{where}: box {int(bad[0])} {boxes[bad[0]].tolist()} has x2 < x1 or y2 < y1")
    bad = np.flatnonzero(~np.isfinite(scores) | (scores < 0) | (scores > 1))
    if len(bad):
        raise DataError(f"{where}: score {int(bad[0])} is {scores[bad[0]]}; scores must be in [0, 1]")
    bad = np.flatnonzero(~np.isfinite(label) | (label != np.round(label)) | (label < 0) | (label > 79))
    if len(bad):
        raise DataError(f"{where}: label {int(bad[0])} is {label[bad[0]]}; labels must be integers 0..79 "
                        f"({labels!r} object indices)")
    label = label.astype(np.int64)
    if labels == "hico":
        label = HICO_TO_QPIC[label]
    return Detections(boxes, label, scores)


def load_detections(path: str | Path, file_names: Iterable[str]) -> dict[str, Detections]:
    """Detections for `file_names` from a raysweep detection file or a reference-layout folder; images the source
    does not mention get none. Raises DataError naming the file, image and key."""
    path = Path(path)
    names = list(file_names)
    if path.is_dir():
        out = {}
        for name in names:
            file = path / (Path(name).stem + ".json")
            out[name] = parse_image(_read_json(file), "hico", str(file)) if file.is_file() else Detections.empty()
        return out
    if not path.is_file():
        raise DataError(f"detections {str(path)!r}: no such file or folder; give a raysweep detection JSON file or a "
                        f"folder of per-image <stem>.json files")
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise DataError(f"{path}: expected an object {{\"format\": \"{FORMAT_NAME}\", \"labels\": \"qpic\"|\"hico\", "
                        f"\"images\": {{file name: {{boxes, labels, scores}}}}}}")
    labels = data.get("labels", "qpic")
    if labels not in LABEL_SPACES:
        raise DataError(f"{path}: 'labels' is {labels!r}; use one of {', '.join(LABEL_SPACES)}")
    images = data["images"]
    return {name: parse_image(images[name], labels, f"{path}: image {name!r}") if name in images
            else Detections.empty() for name in names}


def write_detections(path: str | Path, detections: dict[str, Detections], labels: LabelSpace = "qpic") -> None:
    """Write raysweep's detection format (labels given as QPIC indices are written in the `labels` space)."""
    images = {}
    for name, det in detections.items():
        lab = np.asarray(det.labels, dtype=np.int64)
        if labels == "hico":
            lab = QPIC_TO_HICO[lab]
        images[name] = {"boxes": np.round(np.asarray(det.boxes, dtype=np.float64), 3).tolist(),
                        "labels": lab.tolist(), "scores": np.round(np.asarray(det.scores, dtype=np.float64), 5).tolist()}
    Path(path).write_text(json.dumps({"format": FORMAT_NAME, "labels": labels, "images": images},
                                     separators=(",", ":")))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
