"""QPIC's internal V-COCO evaluator (`datasets/vcoco_eval.py`), the second named protocol of
`raysweep eval vcoco --protocol qpic`. It is neither Scenario 1 nor Scenario 2 and not what the papers publish;
QPIC and HQM print it after every epoch (HQM keeps its best checkpoint by it).

What it does, reproduced here with the per-image work vectorised:
  * per image, the Q x 29 (query, verb) candidates scored verb_scores[q, v] * M[v, label(object q)] (M =
    corre_vcoco with a ones column for the missing label 80) are stably sorted by score and cut to the top 100;
  * boxes are compared class-aware (a missing-object label never matches a GT box) with the +1-pixel IoU and a strict
    overlap test (no overlap when max(x1) >= min(x2) or max(y1) >= min(y2)), a match being IoU >= 0.5, in float32;
  * a candidate matches a GT hoi of its verb whose subject box matches; for a GT hoi with an object, the object box
    must match too (overlap = min of the two IoUs), for a GT hoi without object (-1) the predicted object is ignored
    (overlap = subject IoU). The GT hoi with the largest overlap (first on ties) is taken; it is a TP if no earlier
    candidate took it (identical GT hoi entries count as one), else a FP: no fallback;
  * every candidate of an image without GT boxes is a FP;
  * AP per verb with GT: 11-point over np.arange(0, 1.1, 0.1) (thresholds 0.30000000000000004, 0.6000000000000001,
    0.7000000000000001), ranking by a stable sort of the scores (QPIC's default quicksort differs only on ties);
  * mAP_all: the mean over verbs with GT; mAP_thesis: the mean over QPIC's 24 `thesis_map_indices`, a verb without
    GT counting 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raysweep.data.hicodet import coco_id_to_index
from raysweep.data.vcoco import MISSING_OBJECT, NUM_VERBS, THESIS_VERBS
from raysweep.errors import DataError

MAX_HOIS = 100
THRESHOLDS = np.arange(0.0, 1.1, 0.1)
PREDICTION_KEYS = ("boxes", "labels", "verb_scores", "sub_ids", "obj_ids")


def _iou_matrix(gt: np.ndarray, gt_labels: np.ndarray, pred: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """[G, P] class-aware +1-pixel IoU with QPIC's strict overlap test, float32."""
    one = np.float32(1)
    g, p = gt[:, None, :], pred[None, :, :]
    sum_area = (g[..., 2] - g[..., 0] + one) * (g[..., 3] - g[..., 1] + one) \
        + (p[..., 2] - p[..., 0] + one) * (p[..., 3] - p[..., 1] + one)
    top, bottom = np.maximum(g[..., 1], p[..., 1]), np.minimum(g[..., 3], p[..., 3])
    left, right = np.maximum(g[..., 0], p[..., 0]), np.minimum(g[..., 2], p[..., 2])
    inter = (bottom - top + one) * (right - left + one)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (sum_area - inter)
    overlap = (top < bottom) & (left < right) & (gt_labels[:, None] == pred_labels[None, :])
    return np.where(overlap, iou, np.float32(0)).astype(np.float32)


def _eleven_point(rec: np.ndarray, prec: np.ndarray) -> float:
    ap = 0.0
    for t in THRESHOLDS:
        above = rec >= t
        ap += (float(np.max(prec[above])) if above.any() else 0.0) / 11.0
    return ap


def _image(record: Mapping, pred: Mapping[str, np.ndarray], correct_ext: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(verb, score, tp) of the image's top-100 candidates, in QPIC's order."""
    boxes = np.asarray(pred["boxes"], dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(pred["labels"]).astype(np.int64)
    sub, obj = np.asarray(pred["sub_ids"]).astype(np.int64), np.asarray(pred["obj_ids"]).astype(np.int64)
    scores = np.asarray(pred["verb_scores"], dtype=np.float32).reshape(len(sub), NUM_VERBS)
    scores = (scores * correct_ext[:, labels[obj]].T).astype(np.float32).ravel()  # (query, verb) order
    order = np.argsort(-scores, kind="stable")[:MAX_HOIS]
    query, verb, score = order // NUM_VERBS, order % NUM_VERBS, scores[order]
    tp = np.zeros(len(order), dtype=np.int64)
    anns = record["annotations"]
    if not anns or not len(order):
        return verb, score, tp
    gt_boxes = np.array([a["bbox"] for a in anns], dtype=np.float32)
    gt_labels = np.array([coco_id_to_index(a["category_id"]) for a in anns])
    hois = np.array([(h["subject_id"], h["object_id"], h["category_id"]) for h in record["hoi_annotation"]],
                    dtype=np.int64).reshape(-1, 3)
    if not len(hois):
        return verb, score, tp
    iou = _iou_matrix(gt_boxes, gt_labels, boxes, labels)  # [G, P]
    ok = iou >= np.float32(0.5)
    ps, po = sub[query], obj[query]  # [K] predicted box indices
    hs, ho, hv = hois[:, 0], hois[:, 1], hois[:, 2]
    sub_ok = ok[hs][:, ps].T  # [K, H]
    sub_iou = iou[hs][:, ps].T
    obj_ok = ok[np.maximum(ho, 0)][:, po].T
    obj_iou = iou[np.maximum(ho, 0)][:, po].T
    no_obj = (ho < 0)[None, :]
    cand = sub_ok & (verb[:, None] == hv[None, :]) & (no_obj | obj_ok)
    overlap = np.where(no_obj, sub_iou, np.minimum(sub_iou, obj_iou))
    overlap = np.where(cand, overlap, np.float32(-1))
    matched = cand.any(axis=1)
    best = overlap.argmax(axis=1)  # first maximum, as the strict > scan
    # identical GT hoi entries are one (QPIC finds the taken one with list.index)
    _, canonical = np.unique(hois, axis=0, return_inverse=True)
    first_of = {}
    for h, c in enumerate(canonical.ravel().tolist()):
        first_of.setdefault(c, h)
    key = np.array([first_of[c] for c in canonical.ravel().tolist()])[best]
    hit = np.flatnonzero(matched)
    if len(hit):
        _, first = np.unique(key[hit], return_index=True)
        tp[hit[first]] = 1
    return verb, score, tp


def validate_qpic_predictions(preds: Any, n_images: int, source: str) -> list[dict[str, np.ndarray]]:
    """QPIC post-processor outputs aligned with test_vcoco.json: per image boxes [2k, 4], labels [2k] in 0..80,
    verb_scores [k, 29], sub_ids / obj_ids [k] into the boxes."""
    if not isinstance(preds, (list, tuple)) or len(preds) != n_images:
        got = f"{len(preds)} entries" if isinstance(preds, (list, tuple)) else type(preds).__name__
        raise DataError(f"{source}: expected a list of {n_images} per-image prediction dicts aligned with "
                        f"test_vcoco.json, got {got}")
    out = []
    for i, pred in enumerate(preds):
        where = f"{source}: image {i}"
        if not isinstance(pred, Mapping) or any(k not in pred for k in PREDICTION_KEYS):
            raise DataError(f"{where}: expected a dict with keys {list(PREDICTION_KEYS)}")
        try:
            arrays = {k: np.asarray(pred[k], dtype=np.float64) for k in PREDICTION_KEYS}
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: values must be numeric arrays ({exc})") from None
        n_boxes, k = arrays["boxes"].size // 4, arrays["verb_scores"].size // NUM_VERBS
        if arrays["boxes"].size != 4 * n_boxes or arrays["labels"].size != n_boxes or \
                arrays["verb_scores"].size != NUM_VERBS * k or arrays["sub_ids"].size != k or \
                arrays["obj_ids"].size != k:
            raise DataError(f"{where}: shapes do not fit: boxes [n, 4], labels [n], verb_scores [k, {NUM_VERBS}], "
                            f"sub_ids [k], obj_ids [k]")
        for key, high in (("labels", MISSING_OBJECT), ("sub_ids", n_boxes - 1), ("obj_ids", n_boxes - 1)):
            v = arrays[key]
            if ((v < 0) | (v > high) | (v != np.round(v))).any():
                raise DataError(f"{where}: {key!r} holds values outside 0..{high}")
        if not (np.isfinite(arrays["boxes"]).all() and np.isfinite(arrays["verb_scores"]).all()):
            raise DataError(f"{where}: boxes and verb_scores must be finite")
        out.append(arrays)
    return out


def evaluate_vcoco_qpic(records: Sequence[Mapping], predictions: Sequence[Mapping[str, np.ndarray]],
                        correct_mat: np.ndarray) -> dict[str, Any]:
    """QPIC's "mAP all" / "mAP thesis" and per-verb APs (NaN for verbs without GT); fractions."""
    correct_ext = np.concatenate([np.asarray(correct_mat, dtype=np.float64), np.ones((NUM_VERBS, 1))], axis=1)
    n_gt = np.zeros(NUM_VERBS, dtype=np.int64)
    verbs, scores, tps = [], [], []
    for record, pred in zip(records, predictions):
        for h in record["hoi_annotation"]:
            n_gt[int(h["category_id"])] += 1
        v, s, t = _image(record, pred, correct_ext)
        verbs.append(v), scores.append(s), tps.append(t)
    verb, score, tp = (np.concatenate(x) if x else np.zeros(0) for x in (verbs, scores, tps))
    ap = np.full(NUM_VERBS, np.nan)
    for v in np.flatnonzero(n_gt):
        rows = np.flatnonzero(verb == v)
        if not len(rows):
            ap[v] = 0.0
            continue
        order = np.argsort(-score[rows], kind="stable")
        t = np.cumsum(tp[rows][order])
        f = np.cumsum(1 - tp[rows][order])
        ap[v] = _eleven_point(t / n_gt[v], t / (t + f))
    thesis = np.nan_to_num(ap[list(THESIS_VERBS)], nan=0.0)
    return {"map_all": float(np.nanmean(ap)) if n_gt.any() else float("nan"), "map_thesis": float(thesis.mean()),
            "ap": ap, "n_gt": n_gt}
