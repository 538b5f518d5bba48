"""HICO-DET evaluator: both protocols pinned on hand-computed cases, and a randomised cross-check against the
loop-style references in benchmarks/bench_hicodet_eval.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from raysweep.data.hicodet import HicoDetAnnotations, index_to_coco_id
from raysweep.errors import ConfigError, DataError
from raysweep.metrics.hicodet import (
    OFFICIAL_RECALL_THRESHOLDS,
    QPIC_RECALL_THRESHOLDS,
    _iou_official,
    _iou_qpic,
    evaluate_hicodet,
)

REPO = Path(__file__).resolve().parents[1]

# QPIC object indices and 0-based verb indices used below (any valid ids would do).
BICYCLE, CAR, HORSE = 1, 2, 17
RIDE, HOLD, EAT = 76, 36, 25
SUB = [0, 0, 99, 99]  # a person box
OBJ = [100, 0, 199, 99]  # an object box next to it
FAR_SUB, FAR_OBJ = [300, 300, 399, 399], [400, 300, 499, 399]


def eleven(precisions: list[float]) -> float:
    """sum of p / 11 in threshold order, as both evaluators add them."""
    ap = 0.0
    for p in precisions:
        ap = ap + p / 11.0
    return ap


def record(pairs: list[tuple[list, list, int, int]], name: str = "x.jpg", boxes_only: bool = False) -> dict:
    """A test record from (subject box, object box, object index, verb index) pairs, two boxes per pair."""
    annotations, hois = [], []
    for sub, obj, obj_idx, verb in pairs:
        annotations += [{"bbox": sub, "category_id": 1}, {"bbox": obj, "category_id": index_to_coco_id(obj_idx)}]
        if not boxes_only:
            hois.append({"subject_id": len(annotations) - 2, "object_id": len(annotations) - 1,
                         "category_id": verb + 1})
    return {"file_name": name, "annotations": annotations, "hoi_annotation": hois}


def dataset(test: list[dict], classes: list[tuple[int, int]], train_counts: dict | None = None) -> HicoDetAnnotations:
    """In-memory annotations; correct matrix = `classes` ((verb, object) pairs); training counts default to 20."""
    correct = np.zeros((117, 80), dtype=bool)
    for verb, obj in classes:
        correct[verb, obj] = True
    train = []
    for verb, obj in classes:
        n = (train_counts or {}).get((verb, obj), 20)
        if n:
            rec = record([(SUB, OBJ, obj, verb)] * 1)
            rec["hoi_annotation"] = rec["hoi_annotation"] * n
            train.append(rec)
    return HicoDetAnnotations(root=Path("."), train=train, test=test, correct_mat=correct)


def prediction(queries: list[tuple[list, list, int, dict]]) -> dict:
    """QPIC post-processor output from (subject box, object box, object label, {verb: score}) queries."""
    k = len(queries)
    scores = np.zeros((k, 117))
    for q, (_, _, _, verb_scores) in enumerate(queries):
        for verb, score in verb_scores.items():
            scores[q, verb] = score
    return {
        "boxes": [list(q[0]) for q in queries] + [list(q[1]) for q in queries],
        "labels": [0] * k + [q[2] for q in queries],
        "verb_scores": scores.tolist(),
        "sub_ids": list(range(k)),
        "obj_ids": list(range(k, 2 * k)),
    }


def ap_of(result: dict, setting: str = "default") -> list[float]:
    return [c[f"ap_{setting}"] for c in result["per_class"]]


BOTH = pytest.mark.parametrize("protocol", ["qpic", "official"])


# ------------------------------------------------------------------------------------------------------------


def test_thresholds_differ_exactly_where_the_protocols_do():
    assert QPIC_RECALL_THRESHOLDS[6] == 0.6000000000000001 and QPIC_RECALL_THRESHOLDS[7] == 0.7000000000000001
    assert OFFICIAL_RECALL_THRESHOLDS[6] == 0.6 and OFFICIAL_RECALL_THRESHOLDS[7] == 0.7
    assert QPIC_RECALL_THRESHOLDS[3] == OFFICIAL_RECALL_THRESHOLDS[3] == 0.30000000000000004
    assert len(OFFICIAL_RECALL_THRESHOLDS) == 11 and OFFICIAL_RECALL_THRESHOLDS[-1] == 1.0


@BOTH
def test_no_predictions_give_zero_ap(protocol):
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    result = evaluate_hicodet(ann, [prediction([])], protocol)
    assert result["default"] == {"full": 0.0, "rare": None, "non_rare": 0.0, "mean_max_recall": 0.0}
    assert result["known_object"]["full"] == 0.0
    assert result["num_detections"]["default"] == 0


@BOTH
def test_perfect_detection_gives_ap_one(protocol):
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    result = evaluate_hicodet(ann, [prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.9})])], protocol)
    assert result["default"]["full"] == eleven([1.0] * 11)
    assert result["default"]["mean_max_recall"] == 1.0


@BOTH
def test_duplicate_detection_claims_the_same_gt_and_is_a_false_positive_without_fallback(protocol):
    # Two GT pairs of one class; the second subject overlaps the first (IoU 9000/11000 = 0.82 >= 0.5).
    sub2 = [10, 0, 109, 99]
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE), (sub2, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    # Both detections sit exactly on pair 1: the second also claims pair 1 (best overlap) and is a FP even
    # though pair 2 is unmatched and above 0.5. Ranks: TP, FP -> recall 0.5 at most.
    preds = [prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.9}), (SUB, OBJ, BICYCLE, {RIDE: 0.8})])]
    result = evaluate_hicodet(ann, preds, protocol)
    assert result["default"]["full"] == eleven([1.0] * 6 + [0.0] * 5)
    assert result["default"]["mean_max_recall"] == 0.5


@BOTH
def test_wrong_object_class_is_a_false_positive_of_its_own_class_and_known_object_removes_it(protocol):
    test = [record([(SUB, OBJ, BICYCLE, RIDE)], "a.jpg"), record([(SUB, OBJ, CAR, RIDE)], "b.jpg")]
    ann = dataset(test, [(RIDE, BICYCLE), (RIDE, CAR)])
    preds = [prediction([(SUB, OBJ, CAR, {RIDE: 0.9})]),  # right boxes, object said to be a car: no bicycle TP
             prediction([(SUB, OBJ, CAR, {RIDE: 0.5})])]
    result = evaluate_hicodet(ann, preds, protocol)
    # ride-bicycle: no detection -> 0; ride-car: FP (0.9) then TP (0.5): precision 0.5 at every recall level.
    assert ap_of(result) == [0.0, eleven([0.5] * 11)]
    # Known-Object: image a.jpg has no car in its HOIs, so the FP is dropped.
    assert ap_of(result, "known_object") == [0.0, eleven([1.0] * 11)]
    assert result["num_detections"] == {"default": 2, "known_object": 1}


@BOTH
def test_correct_matrix_masks_invalid_verbs_before_the_cut(protocol):
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    # One query: every verb at 0.5 except ride (the only valid verb for a bicycle) at 0.1. Unmasked, ride would
    # be the 117th of 117 candidates and miss QPIC's top 100; masked, it is the only candidate with a score.
    scores = {v: 0.5 for v in range(117)}
    scores[RIDE] = 0.1
    result = evaluate_hicodet(ann, [prediction([(SUB, OBJ, BICYCLE, scores)])], protocol)
    assert result["default"]["full"] == eleven([1.0] * 11)
    assert result["num_detections"]["default"] == 1  # only ride-bicycle is a submittable / GT class


@BOTH
@pytest.mark.parametrize("tp_first, expected", [(True, [1.0] * 11), (False, [0.5] * 11)])
def test_score_ties_keep_submission_order(protocol, tp_first, expected):
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    hit = (SUB, OBJ, BICYCLE, {RIDE: 0.7})
    miss = (FAR_SUB, FAR_OBJ, BICYCLE, {RIDE: 0.7})
    queries = [hit, miss] if tp_first else [miss, hit]
    result = evaluate_hicodet(ann, [prediction(queries)], protocol)
    assert result["default"]["full"] == eleven(expected)


@BOTH
def test_score_ties_across_images_keep_image_order(protocol):
    test = [record([(SUB, OBJ, BICYCLE, RIDE)], "a.jpg"), record([(SUB, OBJ, BICYCLE, RIDE)], "b.jpg")]
    ann = dataset(test, [(RIDE, BICYCLE)])
    preds = [prediction([(FAR_SUB, FAR_OBJ, BICYCLE, {RIDE: 0.7})]), prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.7})])]
    result = evaluate_hicodet(ann, preds, protocol)
    # FP (image a) ranks before the TP (image b): recall 0.5 with precision 0.5.
    assert result["default"]["full"] == eleven([0.5] * 6 + [0.0] * 5)


def _recall_three_fifths() -> tuple[HicoDetAnnotations, list[dict]]:
    """5 GT pairs (one per image); ranked TP, TP, FP, TP and nothing else: recall 0.6 with precision 0.75."""
    test = [record([(SUB, OBJ, BICYCLE, RIDE)], f"{i}.jpg") for i in range(5)]
    ann = dataset(test, [(RIDE, BICYCLE)])
    preds = [prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.9})]), prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.8})]),
             prediction([(FAR_SUB, FAR_OBJ, BICYCLE, {RIDE: 0.7})]), prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.6})]),
             prediction([])]
    return ann, preds


def test_recall_exactly_three_fifths_fails_qpic_threshold_0_6000000000000001():
    ann, preds = _recall_three_fifths()
    result = evaluate_hicodet(ann, preds, "qpic")
    assert result["default"]["full"] == eleven([1.0] * 5 + [0.75] + [0.0] * 5)
    assert result["default"]["full"] == pytest.approx(5.75 / 11)


def test_recall_exactly_three_fifths_passes_official_threshold_0_6():
    ann, preds = _recall_three_fifths()
    result = evaluate_hicodet(ann, preds, "official")
    assert result["default"]["full"] == eleven([1.0] * 5 + [0.75, 0.75] + [0.0] * 4)
    assert result["default"]["full"] == pytest.approx(6.5 / 11)
    assert result["default"]["mean_max_recall"] == 0.6


def _image_without_annotation(boxes_only: bool) -> tuple[HicoDetAnnotations, list[dict]]:
    empty = record([(SUB, OBJ, BICYCLE, RIDE)], "empty.jpg", boxes_only=True) if boxes_only else \
        {"file_name": "empty.jpg", "annotations": [], "hoi_annotation": []}
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)], "a.jpg"), empty], [(RIDE, BICYCLE)])
    preds = [prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.5})]), prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.95})])]
    return ann, preds


def test_image_without_annotation_adds_false_positives_only_under_official():
    ann, preds = _image_without_annotation(boxes_only=False)
    qpic = evaluate_hicodet(ann, preds, "qpic")
    official = evaluate_hicodet(ann, preds, "official")
    assert qpic["default"]["full"] == eleven([1.0] * 11)  # QPIC's list-vs-tuple slip: the 0.95 FP is skipped
    assert official["default"]["full"] == eleven([0.5] * 11)  # FP at 0.95, then the TP
    assert qpic["num_detections"]["default"] == 1 and official["num_detections"]["default"] == 2
    # Known-Object: the GT-less image has no known object, so official KO drops the FP too.
    assert official["known_object"]["full"] == eleven([1.0] * 11)


def test_image_with_boxes_but_no_hoi_adds_false_positives_under_qpic_too():
    ann, preds = _image_without_annotation(boxes_only=True)
    assert evaluate_hicodet(ann, preds, "qpic")["default"]["full"] == eleven([0.5] * 11)
    assert evaluate_hicodet(ann, preds, "official")["default"]["full"] == eleven([0.5] * 11)


def test_top_100_cut_drops_a_late_true_positive_only_under_qpic():
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    misses = [(FAR_SUB, FAR_OBJ, BICYCLE, {RIDE: 0.9 - 0.001 * i}) for i in range(100)]
    preds = [prediction(misses + [(SUB, OBJ, BICYCLE, {RIDE: 0.1})])]
    qpic = evaluate_hicodet(ann, preds, "qpic")
    official = evaluate_hicodet(ann, preds, "official")
    assert qpic["num_detections"]["default"] == 100 and qpic["default"]["full"] == 0.0
    assert official["num_detections"]["default"] == 101
    assert official["default"]["full"] == eleven([1 / 101] * 11)  # the TP at rank 101: precision 1/101


def test_top_100_counts_several_verbs_of_one_query_separately():
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE), (HOLD, BICYCLE)])
    # 50 queries x 2 valid verbs fill the 100 slots before the TP query's ride.
    misses = [(FAR_SUB, FAR_OBJ, BICYCLE, {RIDE: 0.9, HOLD: 0.8}) for _ in range(50)]
    preds = [prediction(misses + [(SUB, OBJ, BICYCLE, {RIDE: 0.5})])]
    assert evaluate_hicodet(ann, preds, "qpic")["default"]["full"] == 0.0
    assert evaluate_hicodet(ann, preds, "official")["default"]["full"] == eleven([1 / 51] * 11)


def test_box_touching_counts_one_pixel_only_in_the_official_iou():
    gt = np.array([[100.0, 0, 199, 99]])
    pred = np.array([[0.0, 0, 100, 99]])  # pred x2 == GT x1
    assert _iou_qpic(gt.astype(np.float32), pred.astype(np.float32))[0] == 0.0  # strict test: no overlap
    assert _iou_official(gt, pred)[0] == 100 / (10100 + 10000 - 100)  # width min - max + 1 = 1 pixel


@pytest.mark.parametrize("protocol, expected", [("qpic", 0.0), ("official", eleven([1.0] * 11))])
def test_one_pixel_wide_box_matches_only_under_official(protocol, expected):
    thin = [150, 0, 150, 99]  # x1 == x2: one pixel wide under the +1 convention
    ann = dataset([record([(SUB, thin, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    result = evaluate_hicodet(ann, [prediction([(SUB, thin, BICYCLE, {RIDE: 0.9})])], protocol)
    assert result["default"]["full"] == expected


def test_iou_uses_plus_one_areas():
    gt = np.array([[0.0, 0, 9, 9]])  # 10 x 10 pixels
    pred = np.array([[5.0, 0, 14, 9]])  # overlap 5 x 10
    assert _iou_qpic(gt.astype(np.float32), pred.astype(np.float32))[0] == np.float32(50) / np.float32(150)
    assert _iou_official(gt, pred)[0] == 50 / 150


@BOTH
def test_known_object_keeps_detections_where_the_object_is_annotated(protocol):
    # "ride horse" detections in an image whose HOIs involve only a bicycle: FP in Default, removed in KO.
    test = [record([(SUB, OBJ, BICYCLE, RIDE)], "a.jpg"), record([(SUB, OBJ, HORSE, RIDE)], "b.jpg")]
    ann = dataset(test, [(RIDE, BICYCLE), (RIDE, HORSE)])
    preds = [prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.4}), (FAR_SUB, FAR_OBJ, HORSE, {RIDE: 0.9})]),
             prediction([(SUB, OBJ, HORSE, {RIDE: 0.3})])]
    result = evaluate_hicodet(ann, preds, protocol)
    assert ap_of(result) == [eleven([1.0] * 11), eleven([0.5] * 11)]
    assert ap_of(result, "known_object") == [eleven([1.0] * 11), eleven([1.0] * 11)]


def test_rare_split_and_classes_without_training_instances():
    test = [record([(SUB, OBJ, BICYCLE, RIDE), (SUB, OBJ, CAR, RIDE), (SUB, OBJ, HORSE, RIDE)])]
    ann = dataset(test, [(RIDE, BICYCLE), (RIDE, CAR), (RIDE, HORSE)],
                  train_counts={(RIDE, BICYCLE): 9, (RIDE, CAR): 10, (RIDE, HORSE): 0})
    preds = [prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.9})])]
    qpic = evaluate_hicodet(ann, preds, "qpic")
    official = evaluate_hicodet(ann, preds, "official")
    assert qpic["class_counts"] == {"full": 3, "rare": 1, "non_rare": 1, "neither": 1}
    assert [c["rare"] for c in qpic["per_class"]] == [True, False, None]
    assert official["class_counts"] == {"full": 3, "rare": 2, "non_rare": 1, "neither": 0}
    one = eleven([1.0] * 11)
    assert qpic["default"] == {"full": one / 3, "rare": one, "non_rare": 0.0, "mean_max_recall": 1 / 3}
    assert official["default"]["rare"] == one / 2


def test_unknown_protocol_is_a_config_error():
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    with pytest.raises(ConfigError, match="did you mean 'official'"):
        evaluate_hicodet(ann, [prediction([])], "oficial")


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.update(verb_scores=[[0.1] * 116]), r"'verb_scores' has shape \(1, 116\)"),
    (lambda p: p["verb_scores"][0].__setitem__(3, float("nan")), "non-finite"),
    (lambda p: p.update(labels=[0, 80]), "outside 0..79"),
    (lambda p: p.update(obj_ids=[2]), "not an index into the image's 2 boxes"),
    (lambda p: p.pop("sub_ids"), "missing key"),
])
def test_bad_predictions_are_data_errors(mutate, message):
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    pred = prediction([(SUB, OBJ, BICYCLE, {RIDE: 0.9})])
    mutate(pred)
    with pytest.raises(DataError, match=message):
        evaluate_hicodet(ann, [pred], "qpic")


def test_prediction_list_must_align_with_the_test_records():
    ann = dataset([record([(SUB, OBJ, BICYCLE, RIDE)]), record([(SUB, OBJ, BICYCLE, RIDE)])], [(RIDE, BICYCLE)])
    with pytest.raises(DataError, match="1 predictions for 2 test images"):
        evaluate_hicodet(ann, [prediction([])], "official")


# ------------------------------------------------------------------------------------------------------------
# Randomised cross-check against the loop-style references (small scale)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_hicodet_eval", REPO / "benchmarks" / "bench_hicodet_eval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_hicodet_eval", module)
    spec.loader.exec_module(module)
    return module


def _quantised(preds: list[dict], step: float, dtype) -> list[dict]:
    out = []
    for p in preds:
        p = dict(p)
        p["verb_scores"] = (np.round(np.asarray(p["verb_scores"], dtype=np.float64) / step) * step).astype(dtype)
        out.append(p)
    return out


@pytest.mark.parametrize("seed, n_queries, variant", [
    (0, 100, "float32"),  # the fast top-100 path
    (1, 4, "float32"),  # fewer than 100 positive candidates: the general top-k path
    (2, 100, "ties"),  # scores on a 0.05 grid: many ties at the cut and in the rankings
    (5, 4, "ties"),  # ties at the cut on the general top-k path
    (3, 30, "float64"),  # scores finer than float32: the official ranking's dense-rank path
    (4, 100, "mixed_k"),  # images with different query counts
    (6, 100, "sparse"),  # fast and general top-k rows in one block (most scores zero in every other image)
])
def test_vectorised_matches_loop_reference(seed, n_queries, variant):
    bench = _bench()
    ann, preds = bench.make_benchmark_data(seed, n_images=24, n_pairs=1200, n_empty=3, n_queries=n_queries)
    if variant == "ties":
        preds = _quantised(preds, 0.05, np.float32)
    elif variant == "float64":
        rng = np.random.default_rng(seed)
        preds = [dict(p, verb_scores=np.asarray(p["verb_scores"], np.float64) + rng.uniform(0, 1e-9, (n_queries, 117)))
                 for p in preds]
    elif variant == "sparse":
        for i, p in enumerate(preds):
            if i % 2:
                p["verb_scores"] = p["verb_scores"].copy()
                p["verb_scores"][5:] = 0
    elif variant == "mixed_k":
        preds = [dict(p, verb_scores=p["verb_scores"][: 40 + i % 3 * 30], sub_ids=p["sub_ids"][: 40 + i % 3 * 30],
                      obj_ids=p["obj_ids"][: 40 + i % 3 * 30]) for i, p in enumerate(preds)]
    for protocol, reference in (("qpic", bench.reference_qpic), ("official", bench.reference_official)):
        ours = bench.ours_as_reference_layout(evaluate_hicodet(ann, preds, protocol))
        assert ours == reference(ann, preds), protocol
        assert ours["default"]["full"] > 0  # the data do produce true positives
