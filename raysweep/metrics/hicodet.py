"""HICO-DET mAP under two protocols, vectorised: QPIC's Python evaluator and the official HO-RCNN Matlab one.

Both protocols share the class unit (the (verb, object) classes present in the test ground truth; the subject is
always a person), the IoU >= 0.5 pair test on min(IoU_subject, IoU_object), greedy matching *without fallback*
(a detection takes the first GT pair with the highest min-IoU among those >= 0.5; if that pair is already taken,
the detection is a false positive) and 11-point AP. They differ in what counts as a detection and in small numeric
conventions; docs/hicodet_protocols.md has the full list and worked examples.

protocol "qpic" (exact to QPIC's `hico_eval.py`, quirks included):
  * per image, the k x 117 (query, verb) candidates with score verb_scores[q, v] * corre[v, label(obj q)], stably
    sorted by score, are cut to the top 100; invalid verb-object candidates stay in with score 0;
  * a detection whose (subject label, object label, verb) is not a test-GT class is discarded;
  * boxes in float32; IoU is class-aware with the +1 pixel convention and a strict overlap test;
  * images without any GT box add nothing (QPIC means to count their detections as false positives, but a
    list-vs-tuple slip skips them); images with boxes but no HOI do add false positives;
  * per class, detections are ranked by numpy's default (unstable) argsort of -score in the order QPIC appends
    them (image order, then score order inside the image); thresholds are np.arange(0, 1.1, 0.1), i.e.
    0.30000000000000004, 0.6000000000000001 and 0.7000000000000001;
  * rare = a training count of 1..9 for the triplet; a class with no training instance is in neither list.
  * Known-Object (our extension; QPIC has none): the same top-100 detections and matches, keeping for class
    (verb, o) only the detections in test images where object o takes part in some annotated HOI.

protocol "official" (HO-RCNN `eval_one.m` + `VOCevaldet_bboxpair.m`):
  * detections per class are the expansion of every query (subject labelled person) into all verbs that form a
    class with its object label (the correct matrix; invalid combinations are not submittable), score
    verb_scores[q, v]; no cap per image, every test image counts (GT-less images give false positives);
  * per class, detections are stably sorted by score in submission order (image, query, verb);
  * boxes in float64; +1 on detection coordinates against the 1-based GT (0-based GT + 1), +1 pixel IoU;
  * thresholds are Matlab's 0:0.1:1 (0.30000000000000004 but 0.6 and 0.7 exact);
  * rare = fewer than 10 training instances (0 included);
  * Known-Object: only detections in images where the class's object is annotated (image-level labels derived from
    test_hico.json).
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from raysweep.data.hicodet import (
    NUM_OBJECTS,
    NUM_VERBS,
    PERSON_INDEX,
    RARE_THRESHOLD,
    HicoDetAnnotations,
    coco_id_to_index,
    index_to_coco_id,
    known_objects,
    triplet_counts,
)
from raysweep.errors import ConfigError, DataError, did_you_mean

logger = logging.getLogger(__name__)

PROTOCOLS = ("qpic", "official")
QPIC_MAX_DETECTIONS = 100
IOU_THRESHOLD = 0.5
# QPIC: np.arange accumulates rounding, giving 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001.
QPIC_RECALL_THRESHOLDS = np.arange(0.0, 1.1, 0.1)
# Matlab's colon builds 0:0.1:1 from both ends (a + k*d for the first half, b - k*d for the second, (a+b)/2 in the
# middle), giving 0.30000000000000004 but exact 0.6 and 0.7.
OFFICIAL_RECALL_THRESHOLDS = np.array([0.0 + k * 0.1 for k in range(5)] + [0.5] + [1.0 - k * 0.1 for k in range(4, -1, -1)])
PREDICTION_KEYS = ("boxes", "labels", "verb_scores", "sub_ids", "obj_ids")
_CHUNK_IMAGES = 256  # images per vectorised block: bounds memory at ~12 MB of scores per block
_CHUNK_PAIRS = 1 << 21  # detections per matching block


# ----------------------------------------------------------------------------------------------------------------
# Predictions: loading and validation


def load_predictions(path: Path | str, allow_pickle: bool = False) -> Any:
    """Read a prediction list from `.json`, or from `.pkl`/`.pickle` only when `allow_pickle` (unpickling runs code)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"prediction file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if suffix in (".pkl", ".pickle"):
        if not allow_pickle:
            raise DataError(f"{str(path)!r} is a pickle, and loading a pickle can execute arbitrary code: pass "
                            f"--allow-pickle for a file you trust, or save the predictions as .json")
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise DataError(f"cannot unpickle {str(path)!r}: {type(exc).__name__}: {exc}") from None
    raise DataError(f"{str(path)!r}: unsupported prediction file type {suffix!r} (use .json, or .pkl with "
                    f"--allow-pickle)")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def validate_predictions(preds: Any, n_images: int, source: str = "predictions") -> list[dict[str, np.ndarray]]:
    """Check QPIC post-processor outputs aligned with test_hico.json; return them as numpy arrays.

    Per image: boxes [2k, 4] xyxy pixels (any number of boxes works), labels [2k] object indices 0..79 (QPIC
    order), verb_scores [k, 117], sub_ids [k] and obj_ids [k] indexing boxes. Floating arrays keep their dtype.
    Raises `DataError` naming the image index and key for wrong shapes, non-finite values or bad indices.
    """
    if not isinstance(preds, (list, tuple)):
        raise DataError(f"{source}: expected a list of per-image prediction dicts, got {type(preds).__name__}")
    if len(preds) != n_images:
        raise DataError(f"{source}: {len(preds)} predictions for {n_images} test images; the list must align with "
                        f"test_hico.json (one dict per record, same order)")
    out = []
    for i, pred in enumerate(preds):
        where = f"{source}: image {i}"
        if not isinstance(pred, Mapping):
            raise DataError(f"{where}: expected a dict with keys {list(PREDICTION_KEYS)}, got {type(pred).__name__}")
        missing = [k for k in PREDICTION_KEYS if k not in pred]
        if missing:
            raise DataError(f"{where}: missing key(s) {missing} (need {list(PREDICTION_KEYS)})")
        arrays = {}
        for key in PREDICTION_KEYS:
            try:
                arrays[key] = _to_numpy(pred[key])
            except (ValueError, TypeError) as exc:
                raise DataError(f"{where}: {key!r} is not a rectangular numeric array ({exc})") from None
        boxes = _float_array(arrays["boxes"], (None, 4), f"{where}: 'boxes'", "[n_boxes, 4] xyxy")
        scores = _float_array(arrays["verb_scores"], (None, NUM_VERBS), f"{where}: 'verb_scores'", "[k, 117]")
        n_boxes, k = len(boxes), len(scores)
        labels = _index_array(arrays["labels"], n_boxes, NUM_OBJECTS, f"{where}: 'labels'", "object indices 0..79")
        sub_ids = _index_array(arrays["sub_ids"], k, n_boxes, f"{where}: 'sub_ids'", "indices into boxes")
        obj_ids = _index_array(arrays["obj_ids"], k, n_boxes, f"{where}: 'obj_ids'", "indices into boxes")
        out.append({"boxes": boxes, "labels": labels, "verb_scores": scores, "sub_ids": sub_ids, "obj_ids": obj_ids})
    return out


def _float_array(arr: np.ndarray, shape: tuple, where: str, expected: str) -> np.ndarray:
    if arr.size == 0 and arr.ndim <= 2:
        arr = arr.reshape(0, shape[1])
    if arr.ndim != 2 or arr.shape[1] != shape[1]:
        raise DataError(f"{where} has shape {tuple(arr.shape)}; expected {expected}")
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{where} has dtype {arr.dtype}; expected numbers")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(f"{where} holds a non-finite value ({arr[tuple(bad)]} at {tuple(int(b) for b in bad)})")
    return arr


def _index_array(arr: np.ndarray, length: int, upper: int, where: str, expected: str) -> np.ndarray:
    if arr.size == 0:
        arr = arr.reshape(0)
    if arr.ndim != 1 or len(arr) != length:
        raise DataError(f"{where} has shape {tuple(arr.shape)}; expected ({length},) ({expected})")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise DataError(f"{where} holds non-integer values; expected {expected}")
    elif arr.dtype.kind not in "iu":
        raise DataError(f"{where} has dtype {arr.dtype}; expected integers ({expected})")
    arr = arr.astype(np.int64)
    if len(arr) and (arr.min() < 0 or arr.max() >= upper):
        bad = int(arr[(arr < 0) | (arr >= upper)][0])
        raise DataError(f"{where} holds {bad}, outside 0..{upper - 1} ({expected})")
    return arr


# ----------------------------------------------------------------------------------------------------------------
# Ground truth


@dataclass
class _GroundTruth:
    """Test GT in flat arrays. GT pairs are sorted by (image, class), keeping annotation order inside a group."""

    verbs: np.ndarray  # [C] verb index of each evaluated class (first-appearance order in test_hico.json)
    objects: np.ndarray  # [C] QPIC object index of each class
    hoi_ids: list  # [C] hoi_category_id when the records carry it, else None
    lut: np.ndarray  # [117, 80] class index or -1
    n_test: np.ndarray  # [C] GT pairs per class (duplicates included)
    n_train: np.ndarray  # [C] training hoi entries per class
    key: np.ndarray  # [G] image * C + class, sorted
    sub_boxes: np.ndarray  # [G, 4] 0-based xyxy, float64
    obj_boxes: np.ndarray  # [G, 4]
    has_boxes: np.ndarray  # [n_images] the record has at least one box
    known: np.ndarray  # [n_images, 80] Known-Object image filter

    @property
    def num_classes(self) -> int:
        return len(self.verbs)


def _ground_truth(annotations: HicoDetAnnotations) -> _GroundTruth:
    class_index: dict[tuple[int, int], int] = {}
    hoi_ids: list = []
    images, classes, sub_boxes, obj_boxes = [], [], [], []
    for i, rec in enumerate(annotations.test):
        boxes = rec["annotations"]
        for hoi in rec["hoi_annotation"]:
            cls = (int(hoi["category_id"]) - 1, coco_id_to_index(boxes[hoi["object_id"]]["category_id"]))
            c = class_index.setdefault(cls, len(class_index))
            if c == len(hoi_ids):
                hoi_ids.append(hoi.get("hoi_category_id"))
            images.append(i)
            classes.append(c)
            sub_boxes.append(boxes[hoi["subject_id"]]["bbox"])
            obj_boxes.append(boxes[hoi["object_id"]]["bbox"])
    n_classes = len(class_index)
    verbs = np.array([v for v, _ in class_index], dtype=np.int64)
    objects = np.array([o for _, o in class_index], dtype=np.int64)
    lut = np.full((NUM_VERBS, NUM_OBJECTS), -1, dtype=np.int64)
    lut[verbs, objects] = np.arange(n_classes)
    classes_arr = np.asarray(classes, dtype=np.int64)
    key = np.asarray(images, dtype=np.int64) * max(n_classes, 1) + classes_arr
    order = np.argsort(key, kind="stable")
    counts = triplet_counts(annotations.train)
    n_train = np.array([counts.get((PERSON_INDEX, o, v), 0) for v, o in class_index], dtype=np.int64)
    return _GroundTruth(
        verbs=verbs,
        objects=objects,
        hoi_ids=hoi_ids,
        lut=lut,
        n_test=np.bincount(classes_arr, minlength=n_classes),
        n_train=n_train,
        key=key[order],
        sub_boxes=np.asarray(sub_boxes, dtype=np.float64).reshape(-1, 4)[order],
        obj_boxes=np.asarray(obj_boxes, dtype=np.float64).reshape(-1, 4)[order],
        has_boxes=np.array([len(rec["annotations"]) > 0 for rec in annotations.test], dtype=bool),
        known=known_objects(annotations.test),
    )


# ----------------------------------------------------------------------------------------------------------------
# IoU conventions (elementwise over aligned rows)


def _iou_qpic(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """QPIC's IoU in float32, same operation order: +1 areas, strict overlap test, else 0. [P, 4] x [P, 4] -> [P]."""
    one = np.float32(1)
    area_gt = (gt[:, 2] - gt[:, 0] + one) * (gt[:, 3] - gt[:, 1] + one)
    area_pred = (pred[:, 2] - pred[:, 0] + one) * (pred[:, 3] - pred[:, 1] + one)
    sum_area = area_gt + area_pred
    y_lo = np.maximum(gt[:, 1], pred[:, 1])
    y_hi = np.minimum(gt[:, 3], pred[:, 3])
    x_lo = np.maximum(gt[:, 0], pred[:, 0])
    x_hi = np.minimum(gt[:, 2], pred[:, 2])
    overlap = (y_lo < y_hi) & (x_lo < x_hi)
    inter = (y_hi - y_lo + one) * (x_hi - x_lo + one)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iou = inter / (sum_area - inter)
    return np.where(overlap, iou, np.float32(0)).astype(np.float64)


def _iou_official(gt: np.ndarray, det: np.ndarray) -> np.ndarray:
    """VOC-devkit IoU in float64 on 1-based boxes (both shifted +1 here); 0 where width or height <= 0."""
    gt = gt + 1.0
    det = det + 1.0
    iw = np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0]) + 1.0
    ih = np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1]) + 1.0
    positive = (iw > 0) & (ih > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ua = ((det[:, 2] - det[:, 0] + 1.0) * (det[:, 3] - det[:, 1] + 1.0)
              + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0) - iw * ih)
        ov = iw * ih / ua
    return np.where(positive, ov, 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Predictions -> detections


@dataclass
class _FlatPredictions:
    """All images' boxes and queries concatenated; scores stay per image (stacked block-wise later)."""

    boxes: np.ndarray  # [B, 4] float64
    labels: np.ndarray  # [B]
    sub_box: np.ndarray  # [Q] global box index of each query's subject
    obj_box: np.ndarray  # [Q]
    query_offset: np.ndarray  # [n_images + 1]
    scores: list  # n_images x [k_i, 117]


def _flatten(preds: list[dict[str, np.ndarray]]) -> _FlatPredictions:
    n_boxes = np.array([len(p["boxes"]) for p in preds], dtype=np.int64)
    n_queries = np.array([len(p["verb_scores"]) for p in preds], dtype=np.int64)
    box_offset = np.concatenate([[0], np.cumsum(n_boxes)])
    query_offset = np.concatenate([[0], np.cumsum(n_queries)])
    shift = np.repeat(box_offset[:-1], n_queries)

    def cat(key: str, dtype, shape: tuple) -> np.ndarray:
        return np.concatenate([p[key] for p in preds]).astype(dtype) if preds else np.zeros(shape, dtype)

    return _FlatPredictions(
        boxes=cat("boxes", np.float64, (0, 4)),
        labels=cat("labels", np.int64, (0,)),
        sub_box=cat("sub_ids", np.int64, (0,)) + shift,
        obj_box=cat("obj_ids", np.int64, (0,)) + shift,
        query_offset=query_offset,
        scores=[p["verb_scores"] for p in preds],
    )


def _image_blocks(flat: _FlatPredictions):
    """Yield (image indices, k) blocks of images with the same number of queries, in image order per k."""
    n_queries = np.diff(flat.query_offset)
    for k in np.unique(n_queries):
        images = np.flatnonzero(n_queries == k)
        for start in range(0, len(images), _CHUNK_IMAGES):
            yield images[start:start + _CHUNK_IMAGES], int(k)


def _top_k_stable(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest values, ordered as a stable descending sort would. [n, m] -> [n, k]."""
    n, m = scores.shape
    if m <= k:
        return np.argsort(-scores, axis=1, kind="stable")
    kth = np.partition(scores, m - k, axis=1)[:, m - k][:, None]  # the k-th largest value of each row
    above = scores > kth
    tie = scores == kth
    n_above = above.sum(axis=1)
    selected = above | tie
    crowded = np.flatnonzero(n_above + tie.sum(axis=1) > k)  # ties at the cut: keep the earliest columns
    if crowded.size:
        rank = np.cumsum(tie[crowded], axis=1)
        selected[crowded] = above[crowded] | (tie[crowded] & (rank <= (k - n_above[crowded])[:, None]))
    cols = np.nonzero(selected)[1].reshape(n, k)  # row-major, so columns ascend within each row
    values = np.take_along_axis(scores, cols, axis=1)
    return np.take_along_axis(cols, np.argsort(-values, axis=1, kind="stable"), axis=1)


@dataclass
class _Detections:
    """One row per detection, in the order the protocol processes them (see the builders)."""

    image: np.ndarray  # [D]
    query: np.ndarray  # [D] global query index
    cls: np.ndarray  # [D] evaluated class index
    score: np.ndarray  # [D] float32 (qpic) or float64 (official)


def _detections_qpic(flat: _FlatPredictions, gt: _GroundTruth, correct_mat: np.ndarray) -> _Detections:
    """Top-100 masked (query, verb) candidates per image, in image order then score order (QPIC's append order)."""
    parts = []
    valid_t = correct_mat.T  # [80, 117]
    for images, k in _image_blocks(flat):
        if k == 0:
            continue
        qidx = flat.query_offset[images][:, None] + np.arange(k)  # [n, k] global query index
        obj_label = flat.labels[flat.obj_box[qidx]]
        sub_label = flat.labels[flat.sub_box[qidx]]
        scores = np.stack([flat.scores[i] for i in images]).astype(np.float32, copy=False)
        scores = np.where(valid_t[obj_label], scores, np.float32(0)).reshape(len(images), k * NUM_VERBS)
        cols = _top_k_stable(scores, QPIC_MAX_DETECTIONS)  # [n, <=100]
        q, verb = np.divmod(cols, NUM_VERBS)
        rows = np.arange(len(images))[:, None]
        cls = gt.lut[verb, obj_label[rows, q]]
        cls[sub_label[rows, q] != PERSON_INDEX] = -1  # the triplet's subject label must be person to be a GT class
        parts.append((np.broadcast_to(images[:, None], cols.shape).ravel(), qidx[rows, q].ravel(), cls.ravel(),
                      np.take_along_axis(scores, cols, axis=1).ravel()))
    det = _concat_detections(parts, np.float32)
    if len(det.image) and (np.diff(det.image) < 0).any():  # several query counts: restore image order
        order = np.argsort(det.image, kind="stable")
        det = _Detections(det.image[order], det.query[order], det.cls[order], det.score[order])
    # Discarded by QPIC: triplets outside the test GT, and (list-vs-tuple slip) everything in images without GT boxes.
    keep = (det.cls >= 0) & gt.has_boxes[det.image]
    return _Detections(det.image[keep], det.query[keep], det.cls[keep], det.score[keep])


def _detections_official(flat: _FlatPredictions, gt: _GroundTruth) -> _Detections:
    """Every (query, verb) that forms an evaluated class, in submission order (image, query, verb)."""
    parts = []
    submittable_t = (gt.lut >= 0).T  # [80, 117]
    for images, k in _image_blocks(flat):
        if k == 0:
            continue
        qidx = flat.query_offset[images][:, None] + np.arange(k)
        obj_label = flat.labels[flat.obj_box[qidx]]
        sub_label = flat.labels[flat.sub_box[qidx]]
        mask = submittable_t[obj_label] & (sub_label == PERSON_INDEX)[:, :, None]  # [n, k, 117]
        row, q, verb = np.nonzero(mask)
        scores = np.stack([flat.scores[i] for i in images])
        parts.append((images[row], qidx[row, q], gt.lut[verb, obj_label[row, q]],
                      scores[row, q, verb].astype(np.float64)))
    det = _concat_detections(parts, np.float64)
    if len(det.image) and (np.diff(det.image) < 0).any():
        order = np.argsort(det.image, kind="stable")
        det = _Detections(det.image[order], det.query[order], det.cls[order], det.score[order])
    return det


def _concat_detections(parts: list, score_dtype) -> _Detections:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return _Detections(empty, empty, empty, np.zeros(0, dtype=score_dtype))
    return _Detections(*(np.concatenate([p[j] for p in parts]) for j in range(3)),
                       np.concatenate([p[3] for p in parts]).astype(score_dtype, copy=False))


# ----------------------------------------------------------------------------------------------------------------
# Matching


def _best_gt(det: _Detections, flat: _FlatPredictions, gt: _GroundTruth, protocol: str) -> np.ndarray:
    """[D] index (into gt's sorted arrays) of the GT pair each detection would claim, -1 if none reaches 0.5.

    Candidates are the GT pairs of the same image and class with min(IoU_sub, IoU_obj) >= 0.5; the first one (in
    annotation order) with the largest min-IoU wins. Whether it is already taken is decided afterwards.
    """
    best = np.full(len(det.image), -1, dtype=np.int64)
    n_classes = max(gt.num_classes, 1)
    iou = _iou_qpic if protocol == "qpic" else _iou_official
    box_dtype = np.float32 if protocol == "qpic" else np.float64
    gt_sub = gt.sub_boxes.astype(box_dtype)
    gt_obj = gt.obj_boxes.astype(box_dtype)
    for start in range(0, len(det.image), _CHUNK_PAIRS):
        stop = min(start + _CHUNK_PAIRS, len(det.image))
        key = det.image[start:stop] * n_classes + det.cls[start:stop]
        lo = np.searchsorted(gt.key, key, side="left")
        count = np.searchsorted(gt.key, key, side="right") - lo
        has = np.flatnonzero(count)
        if not has.size:
            continue
        count = count[has]
        pair_det = np.repeat(has, count)
        pair_gt = np.repeat(lo[has] - (np.cumsum(count) - count), count) + np.arange(count.sum())
        query = det.query[start:stop][pair_det]
        sub = flat.boxes[flat.sub_box[query]].astype(box_dtype)
        obj = flat.boxes[flat.obj_box[query]].astype(box_dtype)
        overlap = np.minimum(iou(gt_sub[pair_gt], sub), iou(gt_obj[pair_gt], obj))
        ok = overlap >= IOU_THRESHOLD
        pair_det, pair_gt, overlap = pair_det[ok], pair_gt[ok], overlap[ok]
        order = np.lexsort((-overlap, pair_det))  # stable: equal overlaps keep annotation order
        dets, first = np.unique(pair_det[order], return_index=True)
        best[start + dets] = pair_gt[order][first]
    return best


def _first_claims(best: np.ndarray) -> np.ndarray:
    """[D] bool: the detection is the first (in array order) to claim its GT pair -> true positive."""
    tp = np.zeros(len(best), dtype=bool)
    claimed = np.flatnonzero(best >= 0)
    _, first = np.unique(best[claimed], return_index=True)
    tp[claimed[first]] = True
    return tp


# ----------------------------------------------------------------------------------------------------------------
# Average precision


def _voc_ap(tp_ranked: np.ndarray, n_gt: int, thresholds: np.ndarray) -> tuple[float, float]:
    """11-point AP and final recall of one class, given its detections' TP flags in rank order.

    p(t) = max precision over ranks with recall >= t (0 if none); AP = sum_t p(t) / 11, added in threshold order.
    """
    if len(tp_ranked) == 0:
        return 0.0, 0.0
    tp = np.cumsum(tp_ranked, dtype=np.int64)
    fp = np.cumsum(~tp_ranked, dtype=np.int64)
    rec = tp / n_gt
    prec = tp / (fp + tp)
    best_after = np.maximum.accumulate(prec[::-1])[::-1]  # max precision from each rank on (recall is monotone)
    first = np.searchsorted(rec, thresholds, side="left")  # first rank with rec >= t
    ap = 0.0
    for idx in first:
        ap = ap + (best_after[idx] if idx < len(rec) else 0) / 11.0
    return float(ap), float(rec[-1])


def _class_aps(cls: np.ndarray, tp: np.ndarray, score: np.ndarray, gt: _GroundTruth, protocol: str,
               keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP and max recall. qpic: arrays in QPIC's append order; official: already in ranked order."""
    if keep is not None:
        cls, tp, score = cls[keep], tp[keep], score[keep]
    thresholds = QPIC_RECALL_THRESHOLDS if protocol == "qpic" else OFFICIAL_RECALL_THRESHOLDS
    by_class = np.argsort(cls, kind="stable")
    bounds = np.searchsorted(cls[by_class], np.arange(gt.num_classes + 1))
    aps = np.zeros(gt.num_classes)
    recalls = np.zeros(gt.num_classes)
    for c in range(gt.num_classes):
        rows = by_class[bounds[c]:bounds[c + 1]]
        flags = tp[rows]
        if protocol == "qpic":
            flags = flags[np.argsort(-score[rows])]  # numpy's default (unstable) sort, as QPIC ranks
        aps[c], recalls[c] = _voc_ap(flags, int(gt.n_test[c]), thresholds)
    return aps, recalls


def _summary(aps: np.ndarray, recalls: np.ndarray, rare: np.ndarray, non_rare: np.ndarray) -> dict:
    def mean(values: np.ndarray) -> float | None:
        return float(np.mean(values)) if len(values) else None

    return {"full": mean(aps), "rare": mean(aps[rare]), "non_rare": mean(aps[non_rare]),
            "mean_max_recall": mean(recalls)}


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def evaluate_hicodet(annotations: HicoDetAnnotations, predictions: Sequence[Mapping], protocol: str = "qpic",
                     source: str = "predictions") -> dict:
    """mAP (fractions in [0, 1]) for Default and Known-Object under `protocol` ("qpic" or "official").

    predictions: aligned with annotations.test, one QPIC post-processor dict per image (see validate_predictions).
    Returns {"protocol", "default": {full, rare, non_rare, mean_max_recall}, "known_object": {...},
    "known_object_is_extension", "class_counts": {full, rare, non_rare, neither}, "num_detections",
    "per_class": [{verb_id, object_coco_id, object_index, hoi_id, n_test, n_train, rare, ap_default,
    ap_known_object}]}. Groups with no class give None. See the module docstring for the two protocols.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is unknown; choose one of {list(PROTOCOLS)}"
                          f"{did_you_mean(protocol, PROTOCOLS)}")
    preds = validate_predictions(predictions, len(annotations.test), source)
    gt = _ground_truth(annotations)
    flat = _flatten(preds)
    if protocol == "qpic":
        det = _detections_qpic(flat, gt, annotations.correct_mat)
        tp = _first_claims(_best_gt(det, flat, gt, protocol))  # array order = QPIC's per-image score order
        cls, score, image = det.cls, det.score, det.image
        rare = (gt.n_train > 0) & (gt.n_train < RARE_THRESHOLD)
        non_rare = gt.n_train >= RARE_THRESHOLD
        neither = gt.n_train == 0
        if neither.any():
            logger.warning("%d test classes have no training instance: counted in Full only (QPIC's rule)",
                           int(neither.sum()))
    else:
        det = _detections_official(flat, gt)
        ranked = np.lexsort((-det.score, det.cls))  # per class, stable by score in submission order
        best = _best_gt(det, flat, gt, protocol)[ranked]
        tp = _first_claims(best)
        cls, score, image = det.cls[ranked], det.score[ranked], det.image[ranked]
        rare = gt.n_train < RARE_THRESHOLD
        non_rare = ~rare
        neither = np.zeros_like(rare)
    known = gt.known[image, gt.objects[cls]] if len(cls) else np.zeros(0, dtype=bool)
    aps, recalls = _class_aps(cls, tp, score, gt, protocol, keep=None)
    aps_ko, recalls_ko = _class_aps(cls, tp, score, gt, protocol, keep=known)
    per_class = [
        {"verb_id": int(gt.verbs[c]) + 1, "object_coco_id": index_to_coco_id(int(gt.objects[c])),
         "object_index": int(gt.objects[c]), "hoi_id": gt.hoi_ids[c], "n_test": int(gt.n_test[c]),
         "n_train": int(gt.n_train[c]), "rare": bool(rare[c]) if not neither[c] else None,
         "ap_default": float(aps[c]), "ap_known_object": float(aps_ko[c])}
        for c in range(gt.num_classes)
    ]
    return {
        "protocol": protocol,
        "default": _summary(aps, recalls, rare, non_rare),
        "known_object": _summary(aps_ko, recalls_ko, rare, non_rare),
        "known_object_is_extension": protocol == "qpic",
        "class_counts": {"full": gt.num_classes, "rare": int(rare.sum()), "non_rare": int(non_rare.sum()),
                         "neither": int(neither.sum())},
        "num_detections": {"default": int(len(cls)), "known_object": int(known.sum())},
        "num_images": len(annotations.test),
        "per_class": per_class,
    }
