"""The official V-COCO ground truth (s-gupta/v-coco): `vcoco_test.json`, the COCO instances file and the ids file.

Read into the same `VcocoGroundTruth` as QPIC's layout, as the official `VCOCOeval` builds it:
  * images in the order of the ids file; per image all COCO annotations in file order (crowd included), skipping
    `ignore = 1`; `clean_bbox` = [x, y, x + max(0, w - 1), y + max(0, h - 1)] clipped to [0, W - 1] x [0, H - 1],
    kept if `area` > 0 and x2 > x1 and y2 > y1;
  * a person (category 1) listed in the V-COCO file is annotated: 0/1 per action; any other person is ignored (-1);
  * role objects come from `role_object_id` (role-major, K x N, column 0 = the agent's ann_id; 0 = none).
Unlike QPIC's converted files this keeps annotated persons without any action as negatives and clips to the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from raysweep.data.hicodet import PERSON_COCO_ID
from raysweep.data.qpic_layout import read_json
from raysweep.data.vcoco import (
    ACTIONS,
    MAX_ROLES,
    NUM_ACTIONS,
    GroundTruthBuilder,
    VcocoGroundTruth,
    clean_box,
)
from raysweep.errors import DataError

# Where the official files sit under a folder: the v-coco repository's own layout, or all three side by side.
VCOCO_JSON = ("vcoco_test.json", "vcoco/vcoco_test.json", "data/vcoco/vcoco_test.json")
INSTANCES_JSON = ("instances_vcoco_all_2014.json", "data/instances_vcoco_all_2014.json")
IDS_FILE = ("vcoco_test.ids", "splits/vcoco_test.ids", "data/splits/vcoco_test.ids")


def find_official_files(folder: Path | str) -> tuple[Path, Path, Path] | None:
    """(vcoco_test.json, instances file, ids file) under `folder`, or None if any is missing."""
    folder = Path(folder)
    found = []
    for candidates in (VCOCO_JSON, INSTANCES_JSON, IDS_FILE):
        path = next((folder / c for c in candidates if (folder / c).is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1], found[2]


def read_ids(path: Path) -> list[int]:
    """One image id per line (blank lines skipped)."""
    if not path.is_file():
        raise DataError(f"missing file {str(path)!r}: the split's image ids, one per line")
    ids = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                value = float(line)
            except ValueError:
                raise DataError(f"{str(path)!r}: line {n}: {line.strip()!r} is not an image id") from None
            if value != int(value):
                raise DataError(f"{str(path)!r}: line {n}: {line.strip()!r} is not an integer image id")
            ids.append(int(value))
    if not ids:
        raise DataError(f"{str(path)!r} holds no image ids")
    return ids


def _vcoco_records(data: Any, path: Path) -> list[dict]:
    """Validate the 26 per-action records; role_object_id becomes [N, K] (int64)."""
    src = str(path)
    if not isinstance(data, list) or len(data) != NUM_ACTIONS:
        raise DataError(f"{src!r}: expected a list of {NUM_ACTIONS} per-action records, got "
                        f"{type(data).__name__}{f' of length {len(data)}' if isinstance(data, list) else ''}")
    n = None
    out = []
    for i, (rec, (action, roles)) in enumerate(zip(data, ACTIONS)):
        where = f"{src!r}: record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
        for key in ("action_name", "role_name", "image_id", "ann_id", "label", "role_object_id"):
            if key not in rec:
                raise DataError(f"{where}: missing key {key!r}")
        if rec["action_name"] != action:
            raise DataError(f"{where}: action_name {rec['action_name']!r}; the official order has {action!r} here")
        if list(rec["role_name"]) != ["agent", *roles]:
            raise DataError(f"{where} ({action}): role_name {rec['role_name']!r}; expected {['agent', *roles]!r}")
        try:
            cols = {k: np.asarray(rec[k], dtype=np.int64).reshape(-1) for k in ("image_id", "ann_id", "label",
                                                                                 "role_object_id")}
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where} ({action}): image_id, ann_id, label and role_object_id must be integer lists "
                            f"({exc})") from None
        if n is None:
            n = len(cols["ann_id"])
        k = 1 + len(roles)
        if any(len(cols[c]) != n for c in ("image_id", "ann_id", "label")) or len(cols["role_object_id"]) != k * n:
            raise DataError(f"{where} ({action}): image_id, ann_id and label need {n} entries (as record 0) and "
                            f"role_object_id {k} x {n}; got {len(cols['image_id'])}, {len(cols['ann_id'])}, "
                            f"{len(cols['label'])} and {len(cols['role_object_id'])}")
        if not np.isin(cols["label"], (0, 1)).all():
            raise DataError(f"{where} ({action}): label holds values other than 0 and 1")
        if out and not np.array_equal(cols["ann_id"], out[0]["ann_id"]):
            raise DataError(f"{where} ({action}): ann_id differs from record 0's (every record lists the same persons "
                            f"in the same order)")
        roles_nk = cols["role_object_id"].reshape(k, n).T
        if (roles_nk[:, 0] != cols["ann_id"]).any():
            raise DataError(f"{where} ({action}): role_object_id's agent column differs from ann_id")
        out.append({**cols, "role_object_id": roles_nk})
    return out


def load_official_ground_truth(vcoco_json: Path | str, instances_json: Path | str, ids_file: Path | str
                               ) -> VcocoGroundTruth:
    """The official evaluator's ground truth (module docstring); every problem is a one-line `DataError`."""
    vcoco_json, instances_json, ids_file = Path(vcoco_json), Path(instances_json), Path(ids_file)
    records = _vcoco_records(read_json(vcoco_json, "V-COCO's per-action annotation list"), vcoco_json)
    coco = read_json(instances_json, "the COCO instances file (instances_vcoco_all_2014.json)")
    ids = read_ids(ids_file)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) \
            or not isinstance(coco.get("annotations"), list):
        raise DataError(f"{str(instances_json)!r}: expected a COCO instances object with 'images' and 'annotations'")
    vcoco_images = set(records[0]["image_id"].tolist())
    if vcoco_images != set(ids):
        extra = sorted(vcoco_images - set(ids))[:3] or sorted(set(ids) - vcoco_images)[:3]
        raise DataError(f"{str(ids_file)!r} and {str(vcoco_json)!r} name different images (e.g. {extra}); the ids "
                        f"file must list exactly the annotation's images")
    images = {}
    for i, img in enumerate(coco["images"]):
        try:
            images[int(img["id"])] = (float(img["width"]), float(img["height"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{str(instances_json)!r}: images[{i}] needs id, width and height, got {img!r}") from None
    anns_of: dict[int, list[tuple[int, dict]]] = {}
    for j, ann in enumerate(coco["annotations"]):
        if not isinstance(ann, dict) or not all(k in ann for k in ("id", "image_id", "category_id", "bbox")):
            raise DataError(f"{str(instances_json)!r}: annotations[{j}] needs id, image_id, category_id and bbox")
        anns_of.setdefault(int(ann["image_id"]), []).append((j, ann))

    annotated = {int(a): row for row, a in enumerate(records[0]["ann_id"].tolist())}
    positive = [{int(a): row for row, (a, lab) in enumerate(zip(r["ann_id"].tolist(), r["label"].tolist())) if lab}
                for r in records]
    builder = GroundTruthBuilder()
    for image_id in ids:
        if image_id not in images:
            raise DataError(f"{str(instances_json)!r} has no image {image_id} (listed in {str(ids_file)!r})")
        width, height = images[image_id]
        kept_ids, boxes, is_person = [], [], []
        for j, ann in anns_of.get(image_id, []):
            if ann.get("ignore", 0) == 1:
                continue
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (TypeError, ValueError):
                raise DataError(f"{str(instances_json)!r}: annotations[{j}].bbox = {ann['bbox']!r} must be four "
                                f"numbers [x, y, w, h]") from None
            x1, y1, x2, y2 = clean_box(x, y, w, h, width, height)
            if float(ann.get("area", w * h)) > 0 and x2 > x1 and y2 > y1:
                kept_ids.append(int(ann["id"]))
                boxes.append((x1, y1, x2, y2))
                is_person.append(int(ann["category_id"]) == PERSON_COCO_ID)
        row_of = {a: i for i, a in enumerate(kept_ids)}
        n = len(boxes)
        actions = np.full((n, NUM_ACTIONS), -1, dtype=np.int8)
        role_ids = np.full((n, NUM_ACTIONS, MAX_ROLES), -1, dtype=np.int64)
        for b, ann_id in enumerate(kept_ids):
            if ann_id not in annotated:
                continue
            actions[b] = 0
            for a, rec in enumerate(records):
                row = positive[a].get(ann_id)
                if row is None:
                    continue
                actions[b, a] = 1
                for slot, obj_id in enumerate(rec["role_object_id"][row, 1:].tolist()):
                    if obj_id == 0:
                        continue
                    if obj_id not in row_of:
                        raise DataError(f"{str(vcoco_json)!r}: action {ACTIONS[a][0]!r}, ann_id {ann_id}: role "
                                        f"object {obj_id} is not a kept annotation of image {image_id} in "
                                        f"{str(instances_json)!r}")
                    role_ids[b, a, slot] = row_of[obj_id]
        builder.add_image(image_id, np.asarray(boxes).reshape(-1, 4), np.asarray(is_person, dtype=bool), actions,
                          role_ids)
    return builder.build(f"official {vcoco_json.name} + {instances_json.name} + {ids_file.name}")
