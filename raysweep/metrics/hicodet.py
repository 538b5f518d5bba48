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

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from raysweep import progress
from raysweep.data.hicodet import (
    NUM_OBJECTS,
    NUM_VERBS,
    PERSON_INDEX,
    RARE_THRESHOLD,
    HicoDetAnnotations,
    coco_id_to_index,
    index_to_coco_id,
    triplet_counts,
)
from raysweep.errors import ConfigError, did_you_mean
from raysweep.metrics.hicodet_predictions import (
    PREDICTION_KEYS,
    FlatPredictions,
    flatten_predictions,
    load_predictions,
    validate_predictions,
)

__all__ = ["PROTOCOLS", "PREDICTION_KEYS", "evaluate_hicodet", "load_predictions", "validate_predictions"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("qpic", "official")
QPIC_MAX_DETECTIONS = 100
IOU_THRESHOLD = 0.5
# QPIC: np.arange accumulates rounding, giving 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001.
QPIC_RECALL_THRESHOLDS = np.arange(0.0, 1.1, 0.1)
# Matlab's colon builds 0:0.1:1 from both ends (a + k*d for the first half, b - k*d for the second half, (a+b)/2
# in the middle): 0.30000000000000004 as in numpy, but 0.6 and 0.7 exact.
OFFICIAL_RECALL_THRESHOLDS = np.array([k * 0.1 for k in range(5)] + [0.5] + [1.0 - k * 0.1 for k in range(4, -1, -1)])
_CHUNK_IMAGES = 256  # images per vectorised block (about 12 MB of float32 scores at 100 queries)
_MAX_PAIR_TABLE = 1 << 26  # (image, class) presence table entries before falling back to binary search
_LOW32 = np.uint64(0xFFFFFFFF)


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
    known: np.ndarray  # [n_images, 80] object o takes part in an annotated HOI of image i (Known-Object filter)
    pair_table: np.ndarray | None  # [n_images * C] bool: some GT pair has this key (None when too large)

    @property
    def num_classes(self) -> int:
        return len(self.verbs)


def _ground_truth(annotations: HicoDetAnnotations) -> _GroundTruth:
    test = annotations.test
    class_index: dict[tuple[int, int], int] = {}
    hoi_ids: list = []
    images, classes, sub_boxes, obj_boxes = [], [], [], []
    known = np.zeros((len(test), NUM_OBJECTS), dtype=bool)
    for i, rec in enumerate(test):
        boxes = rec["annotations"]
        for hoi in rec["hoi_annotation"]:
            obj = coco_id_to_index(boxes[hoi["object_id"]]["category_id"])
            c = class_index.setdefault((int(hoi["category_id"]) - 1, obj), len(class_index))
            if c == len(hoi_ids):
                hoi_ids.append(hoi.get("hoi_category_id"))
            known[i, obj] = True
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
    pair_table = None
    if len(test) * max(n_classes, 1) <= _MAX_PAIR_TABLE:
        pair_table = np.zeros(len(test) * max(n_classes, 1), dtype=bool)
        pair_table[key] = True
    counts = triplet_counts(annotations.train)
    return _GroundTruth(
        verbs=verbs,
        objects=objects,
        hoi_ids=hoi_ids,
        lut=lut,
        n_test=np.bincount(classes_arr, minlength=n_classes),
        n_train=np.array([counts.get((PERSON_INDEX, o, v), 0) for v, o in class_index], dtype=np.int64),
        key=key[order],
        sub_boxes=np.asarray(sub_boxes, dtype=np.float64).reshape(-1, 4)[order],
        obj_boxes=np.asarray(obj_boxes, dtype=np.float64).reshape(-1, 4)[order],
        has_boxes=np.array([len(rec["annotations"]) > 0 for rec in test], dtype=bool),
        known=known,
        pair_table=pair_table,
    )


# ----------------------------------------------------------------------------------------------------------------
# IoU conventions (elementwise over aligned rows)


def _iou_qpic(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """QPIC's IoU in float32, same operation order: +1 areas, strict overlap test, else 0. [P, 4] x [P, 4] -> [P]."""
    one = np.float32(1)
    sum_area = (gt[:, 2] - gt[:, 0] + one) * (gt[:, 3] - gt[:, 1] + one) \
        + (pred[:, 2] - pred[:, 0] + one) * (pred[:, 3] - pred[:, 1] + one)
    y_lo = np.maximum(gt[:, 1], pred[:, 1])
    y_hi = np.minimum(gt[:, 3], pred[:, 3])
    x_lo = np.maximum(gt[:, 0], pred[:, 0])
    x_hi = np.minimum(gt[:, 2], pred[:, 2])
    inter = (y_hi - y_lo + one) * (x_hi - x_lo + one)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iou = inter / (sum_area - inter)
    return np.where((y_lo < y_hi) & (x_lo < x_hi), iou, np.float32(0)).astype(np.float64)


def _iou_official(gt: np.ndarray, det: np.ndarray) -> np.ndarray:
    """VOC-devkit IoU in float64 on 1-based boxes (both shifted +1 here); 0 where width or height <= 0."""
    gt = gt + 1.0
    det = det + 1.0
    iw = np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0]) + 1.0
    ih = np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1]) + 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ua = ((det[:, 2] - det[:, 0] + 1.0) * (det[:, 3] - det[:, 1] + 1.0)
              + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0) - iw * ih)
        ov = iw * ih / ua
    return np.where((iw > 0) & (ih > 0), ov, 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Blocks of images and the per-object verb lists


@dataclass
class _VerbTable:
    """Per object, the verbs forming a class with it, padded: verbs [80, w] ascending, present [80, w]."""

    verbs: np.ndarray
    present: np.ndarray


def _verb_table(valid: np.ndarray) -> _VerbTable:
    per_object = [np.flatnonzero(valid[:, o]) for o in range(NUM_OBJECTS)]
    width = max(1, max(len(v) for v in per_object))
    verbs = np.zeros((NUM_OBJECTS, width), dtype=np.int64)
    present = np.zeros((NUM_OBJECTS, width), dtype=bool)
    for o, v in enumerate(per_object):
        verbs[o, :len(v)] = v
        present[o, :len(v)] = True
    return _VerbTable(verbs, present)


def _image_blocks(flat: FlatPredictions) -> Iterator[tuple[np.ndarray, int]]:
    """(image indices, k): consecutive images with the same number of queries, in image order."""
    n_queries = np.diff(flat.query_offset)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(n_queries)) + 1, [len(n_queries)]])
    for a, b in zip(starts[:-1], starts[1:]):
        for s in range(a, b, _CHUNK_IMAGES):
            yield np.arange(s, min(s + _CHUNK_IMAGES, b)), int(n_queries[a])


class _ScoreStacker:
    """Stacks the verb scores of a block of images into one reused buffer (fresh 12 MB arrays per block cost
    page faults that can outweigh the copy)."""

    def __init__(self, flat: FlatPredictions, dtype) -> None:
        self.flat, self.dtype, self.buffer = flat, dtype, None

    def __call__(self, images: np.ndarray, k: int) -> np.ndarray:
        shape = (_CHUNK_IMAGES, k, NUM_VERBS)
        if self.buffer is None or self.buffer.shape != shape:
            self.buffer = np.empty(shape, dtype=self.dtype)
        out = self.buffer[: len(images)]
        for row, i in enumerate(images):
            out[row] = self.flat.scores[i]
        return out


def _block_labels(flat: FlatPredictions, images: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global query index [n, k], and the object and subject labels of each query [n, k]."""
    qidx = flat.query_offset[images][:, None] + np.arange(k)
    return qidx, flat.labels[flat.obj_box[qidx]], flat.labels[flat.sub_box[qidx]]


# ----------------------------------------------------------------------------------------------------------------
# QPIC's top-100 per image


def _top_k_stable(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of each row's k largest values, in the order of a stable descending sort. [n, m] -> [n, min(k, m)]."""
    n, m = scores.shape
    if m <= k:
        return np.argsort(-scores, axis=1, kind="stable")
    kth = np.partition(scores, m - k, axis=1)[:, m - k][:, None]  # each row's k-th largest value
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


def _valid_positions(obj_label: np.ndarray, table: _VerbTable) -> np.ndarray:
    """Flat positions into a [n, k, 117] score block of each query's valid verbs. obj_label [n, k] -> [n * k, w].

    Padding slots repeat a real position; mask them with table.present. int32 when it fits (faster gathers).
    """
    n, k = obj_label.shape
    dtype = np.int32 if n * k * NUM_VERBS < 2**31 else np.int64
    base = (np.arange(n * k, dtype=dtype) * NUM_VERBS)[:, None]
    return base + table.verbs[obj_label.reshape(-1)].astype(dtype)


def _top_candidates_qpic(scores: np.ndarray, obj_label: np.ndarray, table: _VerbTable,
                         correct_t: np.ndarray) -> np.ndarray:
    """QPIC's kept candidates per image as columns q * 117 + v, best first. scores [n, k, 117] float32 -> [n, K].

    Masked candidates score 0. When a row has at least K valid candidates with a positive score, the top K are
    among them: those are packed into sortable 64-bit keys (row, descending score bits, column) and sorted once.
    Other rows take the general path over all k * 117 masked scores.
    """
    n, k, _ = scores.shape
    m = k * NUM_VERBS
    top = min(QPIC_MAX_DETECTIONS, m)
    position = _valid_positions(obj_label, table)  # [n * k, w]
    values = np.take(scores.reshape(-1), position)
    positive = table.present[obj_label.reshape(-1)] & (values > 0)
    col_bits = max(1, (m - 1).bit_length())
    row_bits = max(1, (n - 1).bit_length())
    fast = positive.reshape(n, -1).sum(axis=1) >= top
    if row_bits + 32 + col_bits > 64:
        fast[:] = False
    cols = np.empty((n, top), dtype=np.int64)
    if fast.any():
        if not fast.all():
            positive &= np.repeat(fast, k)[:, None]
        chosen = np.flatnonzero(positive)
        where = position.reshape(-1)[chosen].astype(np.int64)
        bits = values.reshape(-1)[chosen].view(np.uint32)  # positive floats sort like their bit patterns
        row = where // m
        key = ((row.astype(np.uint64) << np.uint64(32 + col_bits))
               | ((~bits).astype(np.uint64) << np.uint64(col_bits)) | (where - row * m).astype(np.uint64))
        key.sort()
        rows_f = np.flatnonzero(fast)
        starts = np.searchsorted(key >> np.uint64(32 + col_bits), rows_f.astype(np.uint64))
        kept = key[(starts[:, None] + np.arange(top)).ravel()]
        cols[rows_f] = (kept & np.uint64((1 << col_bits) - 1)).astype(np.int64).reshape(-1, top)
    if not fast.all():
        slow = np.flatnonzero(~fast)
        masked = np.where(correct_t[obj_label[slow]], scores[slow], np.float32(0)).reshape(len(slow), m)
        cols[slow] = _top_k_stable(masked, top)
    return cols


# ----------------------------------------------------------------------------------------------------------------
# Matching


def _claims(image: np.ndarray, query: np.ndarray, cls: np.ndarray, flat: FlatPredictions, gt: _GroundTruth,
            protocol: str) -> np.ndarray:
    """[D] index (into gt's sorted arrays) of the GT pair each detection claims, -1 if none reaches 0.5.

    Candidates are the GT pairs of the same image and class with min(IoU_sub, IoU_obj) >= 0.5; the first one (in
    annotation order) with the largest min-IoU is claimed. Whether it was already taken is decided by the caller
    (`_first_claims`): without fallback, the claim does not depend on earlier matches.
    """
    best = np.full(len(image), -1, dtype=np.int64)
    n_classes = max(gt.num_classes, 1)
    key = image * n_classes + cls
    if gt.pair_table is not None:
        with_gt = np.flatnonzero(gt.pair_table[key])
        key = key[with_gt]
        lo = np.searchsorted(gt.key, key, side="left")
        count = np.searchsorted(gt.key, key, side="right") - lo
    else:
        lo = np.searchsorted(gt.key, key, side="left")
        count = np.searchsorted(gt.key, key, side="right") - lo
        with_gt = np.flatnonzero(count)
        lo, count = lo[with_gt], count[with_gt]
    if not with_gt.size:
        return best
    pair_det = np.repeat(with_gt, count)
    pair_gt = np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(count.sum())
    iou = _iou_qpic if protocol == "qpic" else _iou_official
    dtype = np.float32 if protocol == "qpic" else np.float64
    q = query[pair_det]
    overlap = np.minimum(
        iou(gt.sub_boxes[pair_gt].astype(dtype), flat.boxes[flat.sub_box[q]].astype(dtype)),
        iou(gt.obj_boxes[pair_gt].astype(dtype), flat.boxes[flat.obj_box[q]].astype(dtype)),
    )
    ok = overlap >= IOU_THRESHOLD
    pair_det, pair_gt, overlap = pair_det[ok], pair_gt[ok], overlap[ok]
    order = np.lexsort((-overlap, pair_det))  # stable: equal overlaps keep annotation order
    dets, first = np.unique(pair_det[order], return_index=True)
    best[dets] = pair_gt[order][first]
    return best


def _first_claims(best: np.ndarray) -> np.ndarray:
    """[D] bool: the detection is the first (in array order) to claim its GT pair, i.e. a true positive."""
    tp = np.zeros(len(best), dtype=bool)
    claimed = np.flatnonzero(best >= 0)
    _, first = np.unique(best[claimed], return_index=True)
    tp[claimed[first]] = True
    return tp


# ----------------------------------------------------------------------------------------------------------------
# Average precision


def _eleven_point(tp: np.ndarray, rank: np.ndarray, n_gt: int, thresholds: np.ndarray) -> float:
    """11-point AP from cumulative TP counts at ranks (0-based): rec = tp / n_gt, prec = tp / (rank + 1).

    p(t) = max precision over ranks with recall >= t (0 if none); AP = sum over t of p(t) / 11, in threshold order.
    """
    rec = tp / n_gt
    prec = tp / (rank + 1)
    best_after = np.maximum.accumulate(prec[::-1])[::-1]  # recall never decreases, so rec >= t is a suffix
    ap = 0.0
    for idx in np.searchsorted(rec, thresholds, side="left"):
        ap = ap + (best_after[idx] if idx < len(rec) else 0) / 11.0
    return float(ap)


def _qpic_class_aps(cls: np.ndarray, tp: np.ndarray, score: np.ndarray, gt: _GroundTruth
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP and max recall, ranking each class's detections (in QPIC's append order) as QPIC does."""
    by_class = np.argsort(cls, kind="stable")
    bounds = np.searchsorted(cls[by_class], np.arange(gt.num_classes + 1))
    aps, recalls = np.zeros(gt.num_classes), np.zeros(gt.num_classes)
    for c in range(gt.num_classes):
        rows = by_class[bounds[c]:bounds[c + 1]]
        if not len(rows):
            continue
        flags = tp[rows][np.argsort(-score[rows])]  # numpy's default (unstable) sort, as QPIC ranks
        tps = np.cumsum(flags, dtype=np.int64)
        aps[c] = _eleven_point(tps, np.arange(len(flags)), int(gt.n_test[c]), QPIC_RECALL_THRESHOLDS)
        recalls[c] = tps[-1] / int(gt.n_test[c])
    return aps, recalls


def _aps_from_tp_ranks(tp_cls: np.ndarray, tp_rank: np.ndarray, gt: _GroundTruth
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class 11-point AP (official thresholds) from the ranks of the true positives alone.

    A false positive has the recall of the last true positive above it and a lower precision, so the maximum
    precision at any recall level is reached at a true positive: the ranks of the TPs determine the AP exactly.
    """
    order = np.lexsort((tp_rank, tp_cls))
    tp_cls, tp_rank = tp_cls[order], tp_rank[order]
    bounds = np.searchsorted(tp_cls, np.arange(gt.num_classes + 1))
    aps, recalls = np.zeros(gt.num_classes), np.zeros(gt.num_classes)
    for c in range(gt.num_classes):
        ranks = tp_rank[bounds[c]:bounds[c + 1]]
        if not len(ranks):
            continue
        tps = np.arange(1, len(ranks) + 1, dtype=np.int64)
        aps[c] = _eleven_point(tps, ranks, int(gt.n_test[c]), OFFICIAL_RECALL_THRESHOLDS)
        recalls[c] = tps[-1] / int(gt.n_test[c])
    return aps, recalls


def _class_score_keys(cls: np.ndarray, score: np.ndarray, dense: bool = False) -> np.ndarray | None:
    """uint64 keys (class << 32) | s, with s ascending as the score descends and equal for equal scores.

    s is the float32 bit pattern made sortable when every score is exactly a float32 (QPIC's outputs are), which
    is comparable across calls; otherwise None, unless `dense`, which ranks the given scores among themselves.
    """
    cls = cls.astype(np.uint64) << np.uint64(32)
    if not dense:
        as32 = score.astype(np.float32)
        if not (as32 == score).all():
            return None
        bits = (as32 + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into 0.0: they compare equal
        ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
        return cls | (~ascending).astype(np.uint64)
    unique, inverse = np.unique(score, return_inverse=True)
    return cls | (len(unique) - 1 - inverse.ravel()).astype(np.uint64)


def _ranks_in_class(key: np.ndarray, tp_pos: np.ndarray) -> np.ndarray:
    """0-based rank of each TP within its class under a stable descending sort by score.

    key: [D] (class << 32) | descending score key, in submission order; tp_pos: positions of the TPs in `key`.
    Rank = detections of the class with a higher score, plus those with an equal score submitted earlier.
    """
    ordered = np.sort(key)
    tk = key[tp_pos]
    left = np.searchsorted(ordered, tk, side="left")
    rank = left - np.searchsorted(ordered, tk & ~_LOW32, side="left")
    tied = np.flatnonzero(np.searchsorted(ordered, tk, side="right") - left > 1)
    if 0 < tied.size <= 32:  # a few ties: count equal keys submitted earlier directly
        for t in tied:
            rank[t] += np.count_nonzero(key[: tp_pos[t]] == tk[t])
    elif tied.size:
        tie_keys = np.unique(tk[tied])
        slot = np.minimum(np.searchsorted(tie_keys, key), len(tie_keys) - 1)
        members = np.flatnonzero(tie_keys[slot] == key)  # ascending = submission order
        by_key = np.argsort(key[members], kind="stable")
        sorted_keys = key[members][by_key]
        place = np.empty(len(members), dtype=np.int64)
        place[by_key] = np.arange(len(members))
        own = place[np.searchsorted(members, tp_pos[tied])]
        rank[tied] += own - np.searchsorted(sorted_keys, tk[tied], side="left")
    return rank


# ----------------------------------------------------------------------------------------------------------------
# The two protocols


@dataclass
class _ProtocolResult:
    aps: np.ndarray
    recalls: np.ndarray
    aps_ko: np.ndarray
    recalls_ko: np.ndarray
    n_detections: int
    n_detections_ko: int


def _evaluate_qpic(flat: FlatPredictions, gt: _GroundTruth, correct_mat: np.ndarray) -> _ProtocolResult:
    table = _verb_table(correct_mat)
    correct_t = correct_mat.T
    stack = _ScoreStacker(flat, np.float32)  # QPIC's outputs are float32
    parts = []
    for images, k in progress.bar(_image_blocks(flat), desc="HICO-DET evaluation (qpic)", unit="block"):
        if k == 0:
            continue
        qidx, obj_label, sub_label = _block_labels(flat, images, k)
        scores = stack(images, k)
        cols = _top_candidates_qpic(scores, obj_label, table, correct_t)
        q, verb = np.divmod(cols, NUM_VERBS)
        rows = np.arange(len(images))[:, None]
        cls = gt.lut[verb, obj_label[rows, q]]
        cls[sub_label[rows, q] != PERSON_INDEX] = -1  # not a GT triplet: the subject label must be person
        parts.append((np.broadcast_to(images[:, None], cols.shape).ravel(), qidx[rows, q].ravel(), cls.ravel(),
                      scores[rows, q, verb].ravel()))
    image, query, cls, score = (np.concatenate([p[j] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
                                for j in range(4))
    # Discarded by QPIC: triplets outside the test GT, and (list-vs-tuple slip) everything in images without GT boxes.
    keep = (cls >= 0) & gt.has_boxes[image]
    image, query, cls, score = image[keep], query[keep], cls[keep], score[keep].astype(np.float32)
    tp = _first_claims(_claims(image, query, cls, flat, gt, "qpic"))  # array order is QPIC's per-image order
    known = gt.known[image, gt.objects[cls]]
    aps, recalls = _qpic_class_aps(cls, tp, score, gt)
    aps_ko, recalls_ko = _qpic_class_aps(cls[known], tp[known], score[known], gt)
    return _ProtocolResult(aps, recalls, aps_ko, recalls_ko, len(cls), int(known.sum()))


def _evaluate_official(flat: FlatPredictions, gt: _GroundTruth) -> _ProtocolResult:
    table = _verb_table(gt.lut >= 0)
    stack = _ScoreStacker(flat, np.float64)
    cls_parts, score_parts, key_parts, known_parts, claim_pos, claim_gt = [], [], [], [], [], []
    offset = 0
    for images, k in progress.bar(_image_blocks(flat), desc="HICO-DET evaluation (official)", unit="block"):
        if k == 0:
            continue
        qidx, obj_label, sub_label = _block_labels(flat, images, k)
        position = _valid_positions(obj_label, table)  # [n * k, w]
        submitted = table.present[obj_label.reshape(-1)] & (sub_label.reshape(-1) == PERSON_INDEX)[:, None]
        # Ascending flat positions: detections come out in (image, query, verb) submission order.
        where = position.reshape(-1)[np.flatnonzero(submitted)].astype(np.int64)
        score = np.take(stack(images, k).reshape(-1), where)
        row_query, verb = np.divmod(where, NUM_VERBS)  # row_query = row * k + q
        cls = gt.lut[verb, obj_label.reshape(-1)[row_query]]
        image = images[row_query // k]
        query = qidx.reshape(-1)[row_query]
        best = _claims(image, query, cls, flat, gt, "official")
        claimed = np.flatnonzero(best >= 0)
        cls_parts.append(cls)
        score_parts.append(score)
        key_parts.append(_class_score_keys(cls, score))
        known_parts.append(gt.known[image, gt.objects[cls]])
        claim_pos.append(claimed + offset)
        claim_gt.append(best[claimed])
        offset += len(cls)
    score = np.concatenate(score_parts) if score_parts else np.zeros(0)
    key = np.concatenate(key_parts) if key_parts and all(p is not None for p in key_parts) else None
    known = np.concatenate(known_parts) if known_parts else np.zeros(0, dtype=bool)
    claim_pos = np.concatenate(claim_pos) if claim_pos else np.zeros(0, dtype=np.int64)
    claim_gt = np.concatenate(claim_gt) if claim_gt else np.zeros(0, dtype=np.int64)
    if key is None:  # scores finer than float32 (or no detections): rank them all together
        key = _class_score_keys(np.concatenate(cls_parts) if cls_parts else np.zeros(0, dtype=np.int64), score,
                                dense=True)
    claim_cls = (key[claim_pos] >> np.uint64(32)).astype(np.int64)
    # True positives: the first claim of each GT pair in its class's ranking (stable by score, submission order).
    order = np.lexsort((claim_pos, -score[claim_pos], claim_cls))
    tp_pos = np.sort(claim_pos[order][_first_claims(claim_gt[order])])
    tp_cls = (key[tp_pos] >> np.uint64(32)).astype(np.int64)
    aps, recalls = _aps_from_tp_ranks(tp_cls, _ranks_in_class(key, tp_pos), gt)
    tp_known = known[tp_pos]
    kept = np.flatnonzero(known)
    aps_ko, recalls_ko = _aps_from_tp_ranks(tp_cls[tp_known],
                                            _ranks_in_class(key[kept], np.searchsorted(kept, tp_pos[tp_known])), gt)
    return _ProtocolResult(aps, recalls, aps_ko, recalls_ko, len(key), int(known.sum()))


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def _summary(aps: np.ndarray, recalls: np.ndarray, rare: np.ndarray, non_rare: np.ndarray) -> dict:
    def mean(values: np.ndarray) -> float | None:
        return float(np.mean(values)) if len(values) else None

    return {"full": mean(aps), "rare": mean(aps[rare]), "non_rare": mean(aps[non_rare]),
            "mean_max_recall": mean(recalls)}


def evaluate_hicodet(annotations: HicoDetAnnotations, predictions: Any, protocol: str = "qpic",
                     source: str = "predictions") -> dict:
    """mAP (fractions in [0, 1]) for Default and Known-Object under `protocol` ("qpic" or "official").

    predictions: aligned with annotations.test, one QPIC post-processor dict per image (see validate_predictions);
    source names them in error messages. Returns {"protocol", "default": {full, rare, non_rare, mean_max_recall},
    "known_object": {...}, "known_object_is_extension", "class_counts": {full, rare, non_rare, neither},
    "num_detections": {default, known_object}, "num_images", "per_class": [{verb_id, object_coco_id,
    object_index, hoi_id, n_test, n_train, rare, ap_default, ap_known_object}]}; a mean over no class is None.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is unknown; choose one of {list(PROTOCOLS)}"
                          f"{did_you_mean(protocol, PROTOCOLS)}")
    flat = flatten_predictions(predictions, len(annotations.test), source)
    gt = _ground_truth(annotations)
    if protocol == "qpic":
        result = _evaluate_qpic(flat, gt, annotations.correct_mat)
        rare = (gt.n_train > 0) & (gt.n_train < RARE_THRESHOLD)
        non_rare = gt.n_train >= RARE_THRESHOLD
    else:
        result = _evaluate_official(flat, gt)
        rare = gt.n_train < RARE_THRESHOLD
        non_rare = ~rare
    neither = ~(rare | non_rare)
    if neither.any():
        logger.warning("%d test classes have no training instance: QPIC counts them in Full only", int(neither.sum()))
    per_class = [
        {"verb_id": int(gt.verbs[c]) + 1, "object_coco_id": index_to_coco_id(int(gt.objects[c])),
         "object_index": int(gt.objects[c]), "hoi_id": gt.hoi_ids[c], "n_test": int(gt.n_test[c]),
         "n_train": int(gt.n_train[c]), "rare": None if neither[c] else bool(rare[c]),
         "ap_default": float(result.aps[c]), "ap_known_object": float(result.aps_ko[c])}
        for c in range(gt.num_classes)
    ]
    return {
        "protocol": protocol,
        "default": _summary(result.aps, result.recalls, rare, non_rare),
        "known_object": _summary(result.aps_ko, result.recalls_ko, rare, non_rare),
        "known_object_is_extension": protocol == "qpic",
        "class_counts": {"full": gt.num_classes, "rare": int(rare.sum()), "non_rare": int(non_rare.sum()),
                         "neither": int(neither.sum())},
        "num_detections": {"default": result.n_detections, "known_object": result.n_detections_ko},
        "num_images": len(annotations.test),
        "per_class": per_class,
    }
