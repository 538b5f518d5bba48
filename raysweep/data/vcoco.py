"""V-COCO annotations in QPIC's converted layout, and the ground truth the official evaluator builds from them.

Layout under `root` (what QPIC's `convert_vcoco_annotations.py` writes and its loader reads):

    annotations/trainval_vcoco.json   one record per training image (5,400 for the real data)
    annotations/test_vcoco.json       one record per test image (4,946); record order is not meaningful
    annotations/corre_vcoco.npy       [29, 80] verb x object validity matrix (QPIC object order)
    images/train2014/, images/val2014/

Record: {"file_name": "COCO_val2014_000000000042.jpg", "annotations": [{"category_id": COCO id, "bbox": [x1, y1,
x2, y2]}], "hoi_annotation": [{"subject_id", "object_id" (-1 = no role object), "category_id": verb 0..28}]}.
The image id is the number in the file name (QPIC parses it the same way). Boxes are COCO's [x, y, x + w, y + h].

The 26 actions, their roles and the 29 verb classes QPIC trains (an action's roles expanded in the official role
order) are listed below; `raysweep.data.vcoco_official` reads the official files (`vcoco_test.json`, the COCO
instances file, the ids file) into the same `VcocoGroundTruth`. Only json and numpy are needed: the task imports
this module too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysweep.data.hicodet import (
    NUM_OBJECTS,
    PERSON_COCO_ID,
    VALID_COCO_IDS,
    coco_id_to_index,
)
from raysweep.data.qpic_layout import QpicLayout, check_hoi_keys, checked_bbox, checked_records, is_int
from raysweep.errors import DataError

# (action, roles after the agent), in the official order of vcoco_*.json.
ACTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hold", ("obj",)), ("stand", ()), ("sit", ("instr",)), ("ride", ("instr",)), ("walk", ()),
    ("look", ("obj",)), ("hit", ("instr", "obj")), ("eat", ("obj", "instr")), ("jump", ("instr",)),
    ("lay", ("instr",)), ("talk_on_phone", ("instr",)), ("carry", ("obj",)), ("throw", ("obj",)),
    ("catch", ("obj",)), ("cut", ("instr", "obj")), ("run", ()), ("work_on_computer", ("instr",)),
    ("ski", ("instr",)), ("surf", ("instr",)), ("skateboard", ("instr",)), ("smile", ()), ("drink", ("instr",)),
    ("kick", ("obj",)), ("point", ("instr",)), ("read", ("obj",)), ("snowboard", ("instr",)),
)  # fmt: skip
ACTION_NAMES: tuple[str, ...] = tuple(a for a, _ in ACTIONS)
NUM_ACTIONS = 26
MAX_ROLES = 2

# QPIC's 29 verb classes: each action with roles contributes `<action>_<role>` per role, agent-only actions their name.
VERBS: tuple[str, ...] = tuple(n for a, roles in ACTIONS for n in ([f"{a}_{r}" for r in roles] if roles else [a]))
NUM_VERBS = 29
# verb index -> (action index, role slot 0/1, or -1 for the agent-only verbs)
VERB_ACTION: tuple[tuple[int, int], ...] = tuple(
    (ai, ri) for ai, (_, roles) in enumerate(ACTIONS) for ri in (range(len(roles)) if roles else [-1]))
# The 25 (action, role) pairs that have a role AP, as (action index, role slot), in verb order.
ROLE_PAIRS: tuple[tuple[int, int], ...] = tuple(p for p in VERB_ACTION if p[1] >= 0)
ROLE_PAIR_NAMES: tuple[str, ...] = tuple(VERBS[v] for v, p in enumerate(VERB_ACTION) if p[1] >= 0)
POINT_INSTR = ROLE_PAIRS.index((ACTION_NAMES.index("point"), 0))
# Verb indices of the 24 role pairs the papers average (point-instr left out): QPIC's `thesis_map_indices`.
THESIS_VERBS: tuple[int, ...] = (0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 27, 28)
MISSING_OBJECT = NUM_OBJECTS  # QPIC's object label for "no role object" (80); its no-object logit is 81

TRAIN_FILE = "annotations/trainval_vcoco.json"
TEST_FILE = "annotations/test_vcoco.json"
CORRECT_MAT_FILE = "annotations/corre_vcoco.npy"
IMAGE_DIRS = {"train": "images/train2014", "test": "images/val2014"}

assert len(VERBS) == NUM_VERBS and len(ACTIONS) == NUM_ACTIONS and len(ROLE_PAIRS) == 25
assert [v for v, p in enumerate(VERB_ACTION) if p[1] >= 0 and v != VERBS.index("point_instr")] == list(THESIS_VERBS)

_COCO_IDS = frozenset(VALID_COCO_IDS)
_DIGITS = re.compile(r"(\d+)$")


def image_id_from_file_name(name: str) -> int:
    """COCO_val2014_000000000042.jpg -> 42 (the trailing number of the stem, as QPIC parses it)."""
    match = _DIGITS.search(Path(name).stem)
    if match is None:
        raise ValueError(f"no image id in file name {name!r} (expected e.g. COCO_val2014_000000000042.jpg)")
    return int(match.group(1))


@dataclass(frozen=True)
class VcocoAnnotations:
    """Both splits as plain records (validated) and the verb x object validity matrix."""

    root: Path
    train: list[dict]
    test: list[dict]
    correct_mat: np.ndarray  # [29, 80] bool: correct_mat[verb, obj_idx] -- the verb may take this object


LAYOUT = QpicLayout("V-COCO", TRAIN_FILE, TEST_FILE, CORRECT_MAT_FILE, IMAGE_DIRS, (NUM_VERBS, NUM_OBJECTS))
resolve_root = LAYOUT.resolve_root
load_correct_mat = LAYOUT.load_correct_mat


def load_vcoco(root: Path | str, *, check_images: bool = False) -> VcocoAnnotations:
    """Read and validate `root` (layout in the module docstring); every problem is a one-line `DataError`."""
    root, correct_mat = LAYOUT.open(root)
    train, test = load_records(root / TRAIN_FILE), load_records(root / TEST_FILE)
    if check_images:
        LAYOUT.check_images(root, train, test)
    return VcocoAnnotations(root=root, train=train, test=test, correct_mat=correct_mat)


def load_test_records(root: Path | str) -> list[dict]:
    """Only `test_vcoco.json`, validated (what evaluation needs)."""
    return load_records(resolve_root(root) / TEST_FILE)


def load_records(path: Path) -> list[dict]:
    """Read one QPIC-layout V-COCO json file and validate every record (see `validate_records`)."""
    records = LAYOUT.read_records(path)
    validate_records(records, path)
    return records


def validate_records(records: Any, source: Path | str) -> None:
    """Raise `DataError` naming the file, record index and field of the first malformed value.

    Checks: a list of dicts with `file_name` (carrying the image id), `annotations`, `hoi_annotation`; boxes are four
    finite numbers with x1 <= x2, y1 <= y2; categories are among the 80 COCO ids; subjects are persons; subject ids
    index the annotations, object ids too or are -1; verbs are 0..28; image ids are unique.
    """
    seen: dict[int, int] = {}
    for i, rec, where in checked_records(records, source):
        try:
            image_id = image_id_from_file_name(rec["file_name"])
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
        if image_id in seen:
            raise DataError(f"{where}: image id {image_id} is also record {seen[image_id]}'s")
        seen[image_id] = i
        boxes = rec["annotations"]
        for j, box in enumerate(boxes):
            b = checked_bbox(box, f"{where}: annotations[{j}]", _COCO_IDS, "V-COCO")
            if b[2] < b[0] or b[3] < b[1]:
                raise DataError(f"{where}: annotations[{j}].bbox = {b!r} needs x1 <= x2 and y1 <= y2 "
                                f"([x, y, x + w, y + h])")
        for j, hoi in enumerate(rec["hoi_annotation"]):
            _validate_hoi(hoi, boxes, f"{where}: hoi_annotation[{j}]")


def _validate_hoi(hoi: Any, boxes: list, where: str) -> None:
    check_hoi_keys(hoi, where)
    subject, obj, verb = hoi["subject_id"], hoi["object_id"], hoi["category_id"]
    valid = f"0..{len(boxes) - 1}" if boxes else "none: the record has no annotations"
    if not is_int(subject) or not 0 <= subject < len(boxes):
        raise DataError(f"{where}.subject_id = {subject!r} is out of range (valid: {valid})")
    if not is_int(obj) or not -1 <= obj < len(boxes):
        raise DataError(f"{where}.object_id = {obj!r} is out of range (valid: -1 for no object, or {valid})")
    if not is_int(verb) or not 0 <= verb < NUM_VERBS:
        raise DataError(f"{where}.category_id (verb) = {verb!r} is outside 0..{NUM_VERBS - 1} (QPIC's 29 V-COCO "
                        f"verb classes)")
    if boxes[subject]["category_id"] != PERSON_COCO_ID:
        raise DataError(f"{where}: the subject box (annotations[{subject}]) has category_id "
                        f"{boxes[subject]['category_id']}; V-COCO agents are persons (COCO id 1)")
    if VERB_ACTION[verb][1] < 0 and obj != -1:
        raise DataError(f"{where}: verb {VERBS[verb]!r} has no role, so object_id must be -1, got {obj}")


# ----------------------------------------------------------------------------------------------------------------
# Ground truth as the official evaluator sees it


@dataclass
class VcocoGroundTruth:
    """Per test image, every kept box's class and the persons' action labels, in flat arrays.

    Boxes are the official `clean_bbox` form: inclusive pixel coordinates [x1, y1, x1 + max(0, w - 1),
    y1 + max(0, h - 1)], clipped to the image when its size is known; boxes with x2 <= x1 or y2 <= y1 are dropped.
    Only persons matter to the evaluator: `actions[p, a]` is 1 / 0, or -1 everywhere for a person the evaluator
    ignores (not V-COCO annotated); `role_boxes[p, a, r]` is the box of the role object, NaN where there is none.
    """

    image_ids: np.ndarray  # [N] int64, in evaluation order
    person_offset: np.ndarray  # [N + 1] int64: persons of image i are rows person_offset[i]:person_offset[i + 1]
    person_boxes: np.ndarray  # [P, 4] float64
    actions: np.ndarray  # [P, 26] int8 in {-1, 0, 1}
    role_boxes: np.ndarray  # [P, 26, 2, 4] float64, NaN = no role object
    source: str  # which ground truth: "qpic-layout ..." or "official ..."

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def npos(self) -> np.ndarray:
        """[26] persons labelled with each action."""
        return (self.actions == 1).sum(axis=0)


def clean_box(x1: float, y1: float, w: float, h: float, width: float | None, height: float | None
              ) -> tuple[float, float, float, float]:
    """The official `clean_bbox` of a COCO xywh box (inclusive corners, clipped to the image when its size is known)."""
    x2, y2 = x1 + max(0.0, w - 1.0), y1 + max(0.0, h - 1.0)
    if width is not None and height is not None:
        x1, x2 = (min(width - 1.0, max(0.0, v)) for v in (x1, x2))
        y1, y2 = (min(height - 1.0, max(0.0, v)) for v in (y1, y2))
    return x1, y1, x2, y2


class GroundTruthBuilder:
    """Accumulates images' persons, labels and role boxes into a `VcocoGroundTruth`."""

    def __init__(self) -> None:
        self.image_ids: list[int] = []
        self.counts: list[int] = []
        self.boxes: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.roles: list[np.ndarray] = []

    def add_image(self, image_id: int, boxes: np.ndarray, is_person: np.ndarray, actions: np.ndarray,
                  role_ids: np.ndarray) -> None:
        """boxes [B, 4] kept boxes; is_person [B]; actions [B, 26]; role_ids [B, 26, 2] index into boxes or -1."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        persons = np.flatnonzero(is_person)
        padded = np.concatenate([boxes, np.full((1, 4), np.nan)])  # row -1 = NaN
        self.image_ids.append(int(image_id))
        self.counts.append(len(persons))
        self.boxes.append(boxes[persons])
        self.actions.append(np.asarray(actions, dtype=np.int8).reshape(-1, NUM_ACTIONS)[persons])
        self.roles.append(padded[np.asarray(role_ids, dtype=np.int64).reshape(-1, NUM_ACTIONS, MAX_ROLES)[persons]])

    def build(self, source: str) -> VcocoGroundTruth:
        def cat(parts: list, shape: tuple, dtype) -> np.ndarray:
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(shape, dtype=dtype)

        return VcocoGroundTruth(
            image_ids=np.asarray(self.image_ids, dtype=np.int64),
            person_offset=np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)]).astype(np.int64),
            person_boxes=cat(self.boxes, (0, 4), np.float64),
            actions=cat(self.actions, (0, NUM_ACTIONS), np.int8),
            role_boxes=cat(self.roles, (0, NUM_ACTIONS, MAX_ROLES, 4), np.float64),
            source=source)


PERSONS_WITHOUT_HOI = ("ignore", "negative")


def ground_truth_from_records(records: list[dict], *, persons_without_hoi: str = "ignore",
                              source: str = "qpic-layout test_vcoco.json") -> VcocoGroundTruth:
    """The official evaluator's ground truth rebuilt from QPIC-layout records, images sorted by id.

    QPIC's files lose two things the official files have: whether a person without any hoi entry was annotated
    (V-COCO labels some persons with no action; they are negatives, while unannotated persons are ignored) and the
    image sizes used for clipping. `persons_without_hoi` picks "ignore" (the common case: most such persons are
    unannotated) or "negative"; boxes are clipped only when a record carries `width` and `height`. A role object
    whose box was dropped counts as missing.
    """
    if persons_without_hoi not in PERSONS_WITHOUT_HOI:
        raise ValueError(f"persons_without_hoi must be one of {PERSONS_WITHOUT_HOI}, got {persons_without_hoi!r}")
    builder = GroundTruthBuilder()
    order = sorted(range(len(records)), key=lambda i: image_id_from_file_name(records[i]["file_name"]))
    for i in order:
        rec = records[i]
        width, height = rec.get("width"), rec.get("height")
        kept, boxes, is_person = {}, [], []
        for j, ann in enumerate(rec["annotations"]):
            x1, y1, x2, y2 = (float(v) for v in ann["bbox"])
            box = clean_box(x1, y1, x2 - x1, y2 - y1, width, height)
            if box[2] > box[0] and box[3] > box[1]:
                kept[j] = len(boxes)
                boxes.append(box)
                is_person.append(int(ann["category_id"]) == PERSON_COCO_ID)
        n = len(boxes)
        actions = np.full((n, NUM_ACTIONS), -1, dtype=np.int8)
        role_ids = np.full((n, NUM_ACTIONS, MAX_ROLES), -1, dtype=np.int64)
        if persons_without_hoi == "negative":
            actions[np.asarray(is_person, dtype=bool)] = 0
        for hoi in rec["hoi_annotation"]:
            s = kept.get(int(hoi["subject_id"]))
            if s is None:
                continue
            if actions[s, 0] < 0:
                actions[s] = 0
            action, slot = VERB_ACTION[int(hoi["category_id"])]
            actions[s, action] = 1
            o = kept.get(int(hoi["object_id"]), -1) if int(hoi["object_id"]) >= 0 else -1
            if slot >= 0 and o >= 0:
                role_ids[s, action, slot] = o
        builder.add_image(image_id_from_file_name(rec["file_name"]), np.asarray(boxes).reshape(-1, 4),
                          np.asarray(is_person, dtype=bool), actions, role_ids)
    suffix = "" if persons_without_hoi == "ignore" else ", persons without hoi = negatives"
    return builder.build(source + suffix)


def object_label(record: dict, object_id: int) -> int:
    """QPIC object label of a hoi's object: 0..79, or 80 (`MISSING_OBJECT`) for object_id -1."""
    if object_id < 0:
        return MISSING_OBJECT
    return coco_id_to_index(record["annotations"][object_id]["category_id"])
