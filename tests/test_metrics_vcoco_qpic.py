"""QPIC's internal V-COCO evaluator (`--protocol qpic`): pairs without an object, the recall-point artefact,
and a loop reference in QPIC's structure on random data."""

from __future__ import annotations

import numpy as np
import pytest

from raysweep.data.vcoco import THESIS_VERBS, VERBS
from raysweep.metrics.vcoco_qpic import _eleven_point, evaluate_vcoco_qpic

V = {name: i for i, name in enumerate(VERBS)}
PERSON, BALL, DOG = [10, 10, 60, 110], [70, 40, 90, 60], [100, 80, 150, 110]


def record(hois, boxes=((1, PERSON), (37, BALL))) -> dict:
    return {"file_name": "COCO_val2014_000000000001.jpg",
            "annotations": [{"category_id": c, "bbox": list(b)} for c, b in boxes],
            "hoi_annotation": [{"subject_id": s, "object_id": o, "category_id": v} for s, o, v in hois]}


def prediction(queries) -> dict:
    """queries: (subject box, object box, object label, {verb: score})."""
    boxes, labels, scores = [], [], []
    for sub, obj, label, verbs in queries:
        boxes += [sub, obj]
        labels += [0, label]
        row = np.zeros(29, dtype=np.float32)
        for v, s in verbs.items():
            row[V[v]] = s
        scores.append(row)
    q = len(queries)
    return {"boxes": np.array(boxes, dtype=np.float32), "labels": np.array(labels), "verb_scores": np.array(scores),
            "sub_ids": np.arange(0, 2 * q, 2), "obj_ids": np.arange(1, 2 * q, 2)}


ONES = np.ones((29, 80))
BALL_LABEL = 32  # COCO 37 (sports ball)


def test_object_less_gt_is_matched_whatever_the_predicted_object():
    rec = record([(0, -1, V["stand"])])
    pred = prediction([(PERSON, DOG, 16, {"stand": 0.9})])  # a dog box, label dog: ignored
    assert evaluate_vcoco_qpic([rec], [pred], ONES)["ap"][V["stand"]] == pytest.approx(1.0)


def test_gt_with_an_object_is_never_matched_by_a_missing_object_prediction():
    rec = record([(0, 1, V["kick_obj"])])
    missing = prediction([(PERSON, BALL, 80, {"kick_obj": 0.9})])
    assert evaluate_vcoco_qpic([rec], [missing], ONES)["ap"][V["kick_obj"]] == 0.0
    right = prediction([(PERSON, BALL, BALL_LABEL, {"kick_obj": 0.9})])
    assert evaluate_vcoco_qpic([rec], [right], ONES)["ap"][V["kick_obj"]] == pytest.approx(1.0)


def test_exact_recall_0_6_misses_the_0_6_threshold():
    rec = np.array([0.2, 0.4, 0.6, 0.6])
    prec = np.array([1.0, 1.0, 1.0, 0.75])
    assert _eleven_point(rec, prec) == pytest.approx(6 / 11)  # 0.6000000000000001 > 0.6


def test_duplicate_gt_entries_count_once_and_there_is_no_fallback():
    rec = record([(0, 1, V["hold_obj"]), (0, 1, V["hold_obj"])])  # the same hoi twice (QPIC does not deduplicate)
    pred = prediction([(PERSON, BALL, BALL_LABEL, {"hold_obj": 0.9}), (PERSON, BALL, BALL_LABEL, {"hold_obj": 0.8})])
    ap = evaluate_vcoco_qpic([rec], [pred], ONES)["ap"][V["hold_obj"]]
    # [TP, FP] against 2 GT: recall 0.5 at precision 1 -> thresholds 0..0.5 -> 6/11
    assert ap == pytest.approx(6 / 11)


def test_map_all_over_verbs_with_gt_and_thesis_over_24_with_zeros():
    rec = record([(0, -1, V["stand"]), (0, 1, V["hold_obj"])])
    pred = prediction([(PERSON, BALL, BALL_LABEL, {"stand": 0.9, "hold_obj": 0.8})])
    result = evaluate_vcoco_qpic([rec], [pred], ONES)
    assert result["map_all"] == pytest.approx(1.0)
    assert result["map_thesis"] == pytest.approx(1 / 24)  # hold_obj 1, the other 23 thesis verbs 0
    assert V["stand"] not in THESIS_VERBS


def test_images_without_gt_boxes_make_every_candidate_a_false_positive():
    rec = record([(0, -1, V["stand"])])
    empty = record([], boxes=())
    pred = prediction([(PERSON, BALL, BALL_LABEL, {"stand": 0.5})])
    loud = prediction([(PERSON, BALL, BALL_LABEL, {"stand": 0.9})])
    ap = evaluate_vcoco_qpic([empty, rec], [loud, pred], ONES)["ap"][V["stand"]]
    assert ap == pytest.approx(6 / 11 * 0.5 + 5 / 11 * 0.5)  # [FP, TP]: precision 0.5 from recall 0 to 1


# ---- loop reference in QPIC's structure --------------------------------------------------------------------------
def _reference(records, preds, correct):
    """A loop in QPIC's structure: dict boxes, per-candidate scan of the GT hois, list.index for taken GT."""
    ext = np.concatenate([correct, np.ones((29, 1))], axis=1)
    tp, fp, sc, n_gt = {}, {}, {}, np.zeros(29, int)

    def iou(a, b):
        if a[1] != b[1]:
            return 0
        r1, r2 = a[0], b[0]
        s = (r1[2] - r1[0] + 1) * (r1[3] - r1[1] + 1) + (r2[2] - r2[0] + 1) * (r2[3] - r2[1] + 1)
        top, bottom, left, right = max(r1[1], r2[1]), min(r1[3], r2[3]), max(r1[0], r2[0]), min(r1[2], r2[2])
        if top >= bottom or left >= right:
            return 0
        inter = (bottom - top + 1) * (right - left + 1)
        return inter / (s - inter)

    from raysweep.data.hicodet import coco_id_to_index

    for rec, p in zip(records, preds):
        gts = [(np.float32(a["bbox"]), coco_id_to_index(a["category_id"])) for a in rec["annotations"]]
        gt_hois = [(h["subject_id"], h["object_id"], h["category_id"]) for h in rec["hoi_annotation"]]
        for h in gt_hois:
            n_gt[h[2]] += 1
        boxes = [(np.float32(b), int(lab)) for b, lab in zip(p["boxes"], p["labels"])]
        cands = []
        for q, (s, o) in enumerate(zip(p["sub_ids"], p["obj_ids"])):
            for v in range(29):
                cands.append((float(np.float32(p["verb_scores"][q, v] * ext[v, boxes[o][1]])), int(s), int(o), v))
        cands = sorted(cands, key=lambda c: c[0], reverse=True)[:100]
        taken = [False] * len(gt_hois)
        for score, s, o, v in cands:
            best, best_ov = None, 0
            if gts:
                for h in gt_hois:
                    ov_s = iou(gts[h[0]], boxes[s])
                    if h[2] != v or ov_s < 0.5:
                        continue
                    ov = ov_s if h[1] < 0 else min(ov_s, iou(gts[h[1]], boxes[o]))
                    if h[1] >= 0 and iou(gts[h[1]], boxes[o]) < 0.5:
                        continue
                    if ov > best_ov:
                        best, best_ov = h, ov
            hit = best is not None and not taken[gt_hois.index(best)]
            if hit:
                taken[gt_hois.index(best)] = True
            tp.setdefault(v, []).append(int(hit)), fp.setdefault(v, []).append(int(not hit))
            sc.setdefault(v, []).append(score)
    ap = np.full(29, np.nan)
    for v in np.flatnonzero(n_gt):
        if v not in sc:
            ap[v] = 0.0
            continue
        order = np.argsort(-np.array(sc[v]), kind="stable")
        t, f = np.cumsum(np.array(tp[v])[order]), np.cumsum(np.array(fp[v])[order])
        ap[v] = _eleven_point(t / n_gt[v], t / (t + f))
    return ap


def test_vectorised_equals_a_loop_in_qpics_structure():
    rng = np.random.default_rng(0)
    records, preds = [], []
    correct = (rng.random((29, 80)) < 0.5).astype(float)
    for i in range(25):
        n_p, n_o = int(rng.integers(1, 3)), int(rng.integers(0, 3))
        xy = rng.uniform(0, 100, (n_p + n_o, 2))
        boxes = np.round(np.concatenate([xy, xy + rng.uniform(10, 60, (n_p + n_o, 2))], 1))
        cats = [1] * n_p + [int(c) for c in rng.choice([37, 18, 2], n_o)]
        hois = [(int(rng.integers(n_p)), int(rng.integers(-1, n_p + n_o)), int(rng.integers(29)))
                for _ in range(int(rng.integers(0, 5)))]
        records.append(record(hois, boxes=list(zip(cats, boxes.tolist()))))
        q = 12
        src = rng.integers(0, n_p + n_o, 2 * q)
        pb = boxes[src] + rng.normal(0, 4, (2 * q, 4))
        labels = np.array([0 if k % 2 == 0 else int(rng.choice([32, 16, 1, 80])) for k in range(2 * q)])
        scores = np.round(rng.random((q, 29)), 2).astype(np.float32)  # ties in score
        preds.append({"boxes": pb.astype(np.float32), "labels": labels, "verb_scores": scores,
                      "sub_ids": np.arange(0, 2 * q, 2), "obj_ids": np.arange(1, 2 * q, 2)})
    fast = evaluate_vcoco_qpic(records, preds, correct)["ap"]
    np.testing.assert_allclose(fast, _reference(records, preds, correct), rtol=0, atol=1e-12)
    assert np.nanmax(fast) > 0
