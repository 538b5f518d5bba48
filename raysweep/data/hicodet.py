"""HICO-DET annotations in the layout the QPIC family reads (PPDM's json files plus `corre_hico.npy`).

Layout under `root`:

    annotations/trainval_hico.json   one record per training image
    annotations/test_hico.json       one record per test image (the evaluation order)
    annotations/corre_hico.npy       [117, 80] verb x object validity matrix (QPIC object order)
    images/train2015/, images/test2015/

Record: {"file_name", "annotations": [{"bbox": [x1, y1, x2, y2], "category_id": COCO id}],
"hoi_annotation": [{"subject_id", "object_id", "category_id": verb id 1..117, "hoi_category_id": 1..600}]}.
Boxes are 0-based pixels (the official 1-based Matlab boxes minus one), used with the +1 pixel area convention,
so x2 == x1 is a valid one-pixel-wide box.

Image sizes are not part of QPIC's records. Records that carry `width` / `height` are checked against them;
otherwise boxes are checked against the image headers only when `check_images=True` (PIL, imported lazily).
Only json and numpy are needed otherwise: the training task imports this module too.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from raysweep.data.qpic_layout import (
    QpicLayout,
    check_hoi_keys,
    checked_bbox,
    checked_records,
    is_int,
    is_number,
)
from raysweep.errors import DataError

logger = logging.getLogger(__name__)

# The 80 COCO category ids HICO-DET uses, in QPIC/DETR order; an object's QPIC index is its position here.
VALID_COCO_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip
NUM_OBJECTS = 80
NUM_VERBS = 117
NUM_HOI_IDS = 600
PERSON_COCO_ID = 1
PERSON_INDEX = 0
RARE_THRESHOLD = 10  # a class with fewer training instances than this is "rare" (both protocols)

TRAIN_FILE = "annotations/trainval_hico.json"
TEST_FILE = "annotations/test_hico.json"
CORRECT_MAT_FILE = "annotations/corre_hico.npy"
IMAGE_DIRS = {"train": "images/train2015", "test": "images/test2015"}

_COCO_TO_INDEX = {coco_id: index for index, coco_id in enumerate(VALID_COCO_IDS)}


def coco_id_to_index(coco_id: int) -> int:
    """COCO category id (1..90, 80 of them used) -> QPIC object index 0..79."""
    try:
        return _COCO_TO_INDEX[int(coco_id)]
    except KeyError:
        raise ValueError(f"COCO category id {coco_id!r} is not one of the 80 ids HICO-DET uses") from None


def index_to_coco_id(index: int) -> int:
    """QPIC object index 0..79 -> COCO category id."""
    if not 0 <= int(index) < NUM_OBJECTS:
        raise ValueError(f"object index {index!r} is outside 0..79")
    return VALID_COCO_IDS[int(index)]


@dataclass(frozen=True)
class HicoDetAnnotations:
    """Both splits as plain records (validated) and the verb x object validity matrix."""

    root: Path
    train: list[dict]
    test: list[dict]
    correct_mat: np.ndarray  # [117, 80] bool: correct_mat[verb_idx, obj_idx] is a HOI class

    @property
    def num_classes(self) -> int:
        return int(self.correct_mat.sum())


LAYOUT = QpicLayout("HICO-DET", TRAIN_FILE, TEST_FILE, CORRECT_MAT_FILE, IMAGE_DIRS, (NUM_VERBS, NUM_OBJECTS))
resolve_root = LAYOUT.resolve_root
load_correct_mat = LAYOUT.load_correct_mat


def load_hicodet(root: Path | str, *, check_images: bool = False) -> HicoDetAnnotations:
    """Read and validate `root` (layout in the module docstring); every problem is a one-line `DataError`.

    root: the dataset root, or its `annotations/` folder.
    check_images: also require every record's image file and check boxes against its size (reads image headers).
    """
    root, correct_mat = LAYOUT.open(root)
    train = load_records(root / TRAIN_FILE, correct_mat)
    test = load_records(root / TEST_FILE, correct_mat)
    _check_hoi_ids_consistent([(root / TRAIN_FILE, train), (root / TEST_FILE, test)])
    if check_images:
        LAYOUT.check_images(root, train, test)
    return HicoDetAnnotations(root=root, train=train, test=test, correct_mat=correct_mat)


def load_records(path: Path, correct_mat: np.ndarray | None = None) -> list[dict]:
    """Read one QPIC-layout json file and validate every record (see `validate_records`)."""
    records = LAYOUT.read_records(path)
    validate_records(records, path, correct_mat)
    return records


def validate_records(records: Any, source: Path | str, correct_mat: np.ndarray | None = None) -> None:
    """Raise `DataError` naming the file, record index and field of the first malformed value.

    Checks: the top level is a list of dicts with `file_name`, `annotations`, `hoi_annotation`; boxes are four
    finite numbers with 0 <= x1 <= x2 and 0 <= y1 <= y2 (and x2 <= width, y2 <= height when the record carries its
    size); object categories are among the 80 valid COCO ids; subjects are persons; subject/object ids index the
    record's annotations; verb ids are 1..117; hoi ids (optional, QPIC ignores them) are 1..600; and, given
    `correct_mat`, every (verb, object) pair is a valid class.
    """
    for _, rec, where in checked_records(records, source):
        boxes, hois = rec["annotations"], rec["hoi_annotation"]
        width, height = rec.get("width"), rec.get("height")
        for key, size in (("width", width), ("height", height)):
            if size is not None and (not is_number(size) or not size > 0):
                raise DataError(f"{where}: {key} = {size!r} must be a positive number")
        for j, box in enumerate(boxes):
            _validate_box(box, f"{where}: annotations[{j}]", width, height)
        for j, hoi in enumerate(hois):
            _validate_hoi(hoi, boxes, f"{where}: hoi_annotation[{j}]", correct_mat)


def _validate_box(box: Any, where: str, width: float | None, height: float | None) -> None:
    b = checked_bbox(box, where, _COCO_TO_INDEX, "HICO-DET")
    x1, y1, x2, y2 = b
    if x1 < 0 or y1 < 0 or x2 < x1 or y2 < y1:
        raise DataError(f"{where}.bbox = {b!r} needs 0 <= x1 <= x2 and 0 <= y1 <= y2 (0-based xyxy pixels)")
    if (width is not None and x2 > width) or (height is not None and y2 > height):
        size = " x ".join(f"{key} {value}" for key, value in (("width", width), ("height", height)) if value)
        raise DataError(f"{where}.bbox = {b!r} lies outside the image ({size} in the record)")


def _validate_hoi(hoi: Any, boxes: list, where: str, correct_mat: np.ndarray | None) -> None:
    check_hoi_keys(hoi, where)
    for key in ("subject_id", "object_id"):
        value = hoi[key]
        if not is_int(value) or not 0 <= value < len(boxes):
            valid = f"0..{len(boxes) - 1}" if boxes else "none: the record has no annotations"
            raise DataError(f"{where}.{key} = {value!r} is out of range (valid: {valid})")
    verb = hoi["category_id"]
    if not is_int(verb) or not 1 <= verb <= NUM_VERBS:
        raise DataError(f"{where}.category_id (verb id) = {verb!r} is outside 1..{NUM_VERBS}")
    hoi_id = hoi.get("hoi_category_id")
    if hoi_id is not None and (not is_int(hoi_id) or not 1 <= hoi_id <= NUM_HOI_IDS):
        raise DataError(f"{where}.hoi_category_id = {hoi_id!r} is outside 1..{NUM_HOI_IDS}")
    subject_cat = boxes[hoi["subject_id"]]["category_id"]
    if subject_cat != PERSON_COCO_ID:
        raise DataError(f"{where}: the subject box (annotations[{hoi['subject_id']}]) has category_id "
                        f"{subject_cat}; HICO-DET subjects are persons (COCO id 1)")
    if correct_mat is not None:
        obj = _COCO_TO_INDEX[int(boxes[hoi["object_id"]]["category_id"])]
        if not correct_mat[verb - 1, obj]:
            raise DataError(f"{where}: (verb id {verb}, object COCO id {VALID_COCO_IDS[obj]}) is not a valid HOI "
                            f"class in corre_hico.npy")


def _check_hoi_ids_consistent(splits: Sequence[tuple[Path, list[dict]]]) -> None:
    """Each (verb, object) class must carry one hoi_category_id, and each hoi_category_id one class."""
    by_class: dict[tuple[int, int], tuple[int, str]] = {}
    by_id: dict[int, tuple[tuple[int, int], str]] = {}
    for path, records in splits:
        for i, rec in enumerate(records):
            for j, hoi in enumerate(rec["hoi_annotation"]):
                hoi_id = hoi.get("hoi_category_id")
                if hoi_id is None:
                    continue
                cls = (int(hoi["category_id"]), int(rec["annotations"][hoi["object_id"]]["category_id"]))
                where = f"{str(path)!r}: record {i} ({rec['file_name']}): hoi_annotation[{j}]"
                seen = by_class.setdefault(cls, (int(hoi_id), where))
                if seen[0] != hoi_id:
                    raise DataError(f"{where}: (verb id {cls[0]}, object COCO id {cls[1]}) has hoi_category_id "
                                    f"{hoi_id}, but {seen[1]} gives it {seen[0]}")
                seen_cls = by_id.setdefault(int(hoi_id), (cls, where))
                if seen_cls[0] != cls:
                    raise DataError(f"{where}: hoi_category_id {hoi_id} names (verb id {cls[0]}, object COCO id "
                                    f"{cls[1]}), but {seen_cls[1]} uses it for (verb id {seen_cls[0][0]}, "
                                    f"object COCO id {seen_cls[0][1]})")


def hoi_triplet(record: dict, hoi: dict) -> tuple[int, int, int]:
    """(subject object-index, object object-index, verb index 0..116): QPIC's class key for one hoi entry."""
    boxes = record["annotations"]
    return (
        _COCO_TO_INDEX[int(boxes[hoi["subject_id"]]["category_id"])],
        _COCO_TO_INDEX[int(boxes[hoi["object_id"]]["category_id"])],
        int(hoi["category_id"]) - 1,
    )


def triplet_counts(train_records: Iterable[dict]) -> Counter:
    """Training instances per (0, obj idx, verb idx) triplet, counting every hoi entry (QPIC's rare definition)."""
    counts: Counter = Counter()
    for rec in train_records:
        for hoi in rec["hoi_annotation"]:
            counts[hoi_triplet(rec, hoi)] += 1
    return counts


def image_level_labels(test_records: Sequence[dict]) -> list[set[tuple[int, int]]]:
    """Per test image, the positive HOI classes as (verb idx, obj idx): HICO-DET's image-level labels.

    Derived from the hoi entries, standing in for the official `anno.mat` positives (value 1) that the
    Known-Object setting reads.
    """
    labels = []
    for rec in test_records:
        boxes = rec["annotations"]
        labels.append({(int(h["category_id"]) - 1, _COCO_TO_INDEX[int(boxes[h["object_id"]]["category_id"])])
                       for h in rec["hoi_annotation"]})
    return labels


def known_objects(test_records: Sequence[dict]) -> np.ndarray:
    """[n_images, 80] bool: object o is "known" in image i iff some HOI class of o is positive there (KO filter)."""
    known = np.zeros((len(test_records), NUM_OBJECTS), dtype=bool)
    for i, classes in enumerate(image_level_labels(test_records)):
        for _, obj in classes:
            known[i, obj] = True
    return known
