"""V-COCO agent / role AP pinned on hand-computable cases (voc_ap, the two role scenarios, the ignore rule,
duplicates, label-0 persons, the means), and cross-checked against the loop reference of
benchmarks/bench_vcoco_eval.py on random data."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from raysweep.data.vcoco import (
    ACTION_NAMES,
    NUM_ACTIONS,
    ROLE_PAIR_NAMES,
    ROLE_PAIRS,
    GroundTruthBuilder,
    ground_truth_from_records,
)
from raysweep.errors import ConfigError, DataError
from raysweep.metrics.vcoco import evaluate_vcoco, summary_means, voc_ap
from raysweep.metrics.vcoco_predictions import (
    AGENT_KEYS,
    ROLE_KEYS,
    detections_from_dicts,
)

REPO = Path(__file__).resolve().parents[1]
NAN4 = [math.nan] * 4
A = {name: i for i, name in enumerate(ACTION_NAMES)}
R = {name: i for i, name in enumerate(ROLE_PAIR_NAMES)}


def detection(image_id: int, person_box, **entries) -> dict:
    """An official-structure dict: every key NaN except `entries` (agent keys as floats, role keys as 5-lists)."""
    d = {"image_id": image_id, "person_box": list(person_box)}
    d.update({k: math.nan for k in AGENT_KEYS})
    d.update({k: [math.nan] * 5 for k, _, _ in ROLE_KEYS})
    d.update(entries)
    return d


def gt_image(builder: GroundTruthBuilder, image_id: int, boxes, persons: int, labels: dict, roles: dict | None = None):
    """labels: {person: [action names]} (persons missing from it are ignored); roles: {(person, role name): box row}."""
    n = len(boxes)
    actions = np.full((n, NUM_ACTIONS), -1, dtype=np.int8)
    for p, names in labels.items():
        actions[p] = 0
        for name in names:
            actions[p, A[name]] = 1
    role_ids = np.full((n, NUM_ACTIONS, 2), -1, dtype=np.int64)
    for (p, name), row in (roles or {}).items():
        a, r = ROLE_PAIRS[R[name]]
        role_ids[p, a, r] = row
    builder.add_image(image_id, np.asarray(boxes, dtype=float), np.arange(n) < persons, actions, role_ids)


def evaluate(builder: GroundTruthBuilder, dets: list[dict], **kw):
    return evaluate_vcoco(builder.build("test"), detections_from_dicts(dets), **kw)


PERSON = [10, 10, 109, 209]  # inclusive pixel corners
SANDWICH = [120, 50, 159, 89]
FORK = [200, 50, 219, 99]


# ---- voc_ap (item 12) ----------------------------------------------------------------------------------------------
def test_voc_ap_all_point_on_tp_fp_tp():
    rec = np.array([0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 2 / 3])
    assert voc_ap(rec, prec) == pytest.approx(0.8333333, abs=1e-6)


def test_ranked_tp_fp_tp_gives_0_8333_through_the_evaluator():
    b = GroundTruthBuilder()
    gt_image(b, 1, [PERSON, [300, 10, 399, 209]], 2, {0: ["walk"], 1: ["walk"]})
    dets = [detection(1, PERSON, walk_agent=0.9), detection(1, PERSON, walk_agent=0.8),
            detection(1, [300, 10, 399, 209], walk_agent=0.7)]
    res = evaluate(b, dets)
    assert res.agent_ap[A["walk"]] == pytest.approx(0.8333333, abs=1e-6)


# ---- missing-object rules (items 13, 14) ---------------------------------------------------------------------------
def eat_sandwich_gt() -> GroundTruthBuilder:
    b = GroundTruthBuilder()
    gt_image(b, 7, [PERSON, SANDWICH, FORK], 1, {0: ["eat"]}, {(0, "eat_obj"): 1})
    return b


def test_eat_obj_with_the_right_box_is_a_tp_in_both_scenarios():
    res = evaluate(eat_sandwich_gt(), [detection(7, PERSON, eat_agent=0.9, eat_obj=[*SANDWICH, 0.9])])
    assert res.role_ap[1][R["eat_obj"]] == 1.0 and res.role_ap[2][R["eat_obj"]] == 1.0


def test_instrument_predicted_where_the_gt_has_none_is_fp_in_s1_and_tp_in_s2():
    res = evaluate(eat_sandwich_gt(), [detection(7, PERSON, eat_agent=0.8, eat_instr=[*FORK, 0.8])])
    assert res.role_ap[1][R["eat_instr"]] == 0.0
    assert res.role_ap[2][R["eat_instr"]] == 1.0


@pytest.mark.parametrize("box", [NAN4, [0, 0, 0, 0]])
def test_no_instrument_predicted_as_nan_or_zero_box_is_tp_in_both(box):
    res = evaluate(eat_sandwich_gt(), [detection(7, PERSON, eat_agent=0.8, eat_instr=[*box, 0.8])])
    assert res.role_ap[1][R["eat_instr"]] == 1.0 and res.role_ap[2][R["eat_instr"]] == 1.0


def test_nan_role_box_against_an_existing_gt_object_is_fp_in_both():
    res = evaluate(eat_sandwich_gt(), [detection(7, PERSON, eat_agent=0.9, eat_obj=[*NAN4, 0.9])])
    assert res.role_ap[1][R["eat_obj"]] == 0.0 and res.role_ap[2][R["eat_obj"]] == 0.0


def test_object_class_is_never_checked_only_the_box():
    b = GroundTruthBuilder()
    gt_image(b, 7, [PERSON, SANDWICH], 1, {0: ["eat"]}, {(0, "eat_obj"): 1})
    shifted = [121, 50, 160, 89]  # IoU 39/41 with the sandwich: any "class" would do
    res = evaluate(b, [detection(7, PERSON, eat_obj=[*shifted, 0.5])])
    assert res.role_ap[1][R["eat_obj"]] == 1.0


# ---- the ignore rule (item 15) -------------------------------------------------------------------------------------
def test_detection_whose_argmax_person_is_unannotated_is_skipped():
    b = GroundTruthBuilder()
    far = [500, 400, 560, 470]  # IoU 0 with both persons: argmax = person 0
    gt_image(b, 3, [PERSON, [300, 10, 399, 209]], 2, {1: ["walk"]})  # person 0 unannotated (ignored)
    dets = [detection(3, far, walk_agent=0.9), detection(3, [300, 10, 399, 209], walk_agent=0.5)]
    assert evaluate(b, dets).agent_ap[A["walk"]] == 1.0  # the skipped detection neither helps nor hurts


def test_same_detection_is_a_false_positive_when_the_annotated_person_comes_first():
    b = GroundTruthBuilder()
    far = [500, 400, 560, 470]
    gt_image(b, 3, [[300, 10, 399, 209], PERSON], 2, {0: ["walk"]})  # swapped: argmax = person 0, annotated
    dets = [detection(3, far, walk_agent=0.9), detection(3, [300, 10, 399, 209], walk_agent=0.5)]
    assert evaluate(b, dets).agent_ap[A["walk"]] == pytest.approx(0.5)  # [FP, TP]: precision 0.5 at recall 1


# ---- duplicates and wrong actions (items 16, 17) -------------------------------------------------------------------
def test_duplicate_on_one_person_is_one_tp_and_one_fp_per_action():
    b = GroundTruthBuilder()
    gt_image(b, 4, [PERSON, [300, 10, 399, 209]], 2, {0: ["walk", "smile"], 1: ["walk"]})
    dets = [detection(4, PERSON, walk_agent=0.9, smile_agent=0.3), detection(4, PERSON, walk_agent=0.8)]
    res = evaluate(b, dets)
    assert res.agent_ap[A["walk"]] == pytest.approx(0.5)  # TP, FP; npos 2
    assert res.agent_ap[A["smile"]] == 1.0  # covered is per action: the walk matches do not cover smile


def test_two_equal_scores_on_one_person_rank_the_false_positive_first():
    # The official per-image loop takes the later detection first (argsort()[::-1]): it becomes the TP; the final
    # argsort()[::-1] over all scores then puts the earlier one (the FP) first: AP 0.5, not 1.
    b = GroundTruthBuilder()
    gt_image(b, 4, [PERSON], 1, {0: ["walk"]})
    dets = [detection(4, PERSON, walk_agent=0.5), detection(4, PERSON, walk_agent=0.5)]
    assert evaluate(b, dets).agent_ap[A["walk"]] == pytest.approx(0.5)


def test_right_person_wrong_action_is_fp_and_counts_in_the_ranking():
    b = GroundTruthBuilder()
    p1 = [300, 10, 399, 209]
    gt_image(b, 5, [PERSON, p1], 2, {0: ["stand"], 1: ["walk"]})
    iou_06 = [10, 10, 109, 129]  # +1 IoU = 120 * 100 / (200 * 100) = 0.6 with PERSON
    dets = [detection(5, iou_06, walk_agent=0.9), detection(5, p1, walk_agent=0.5)]
    assert evaluate(b, dets).agent_ap[A["walk"]] == pytest.approx(0.5)


def test_person_iou_exactly_half_is_a_match():
    b = GroundTruthBuilder()
    gt_image(b, 5, [PERSON], 1, {0: ["walk"]})
    half = [10, 10, 109, 109]  # 100 x 100 of 100 x 200
    assert evaluate(b, [detection(5, half, walk_agent=0.9)]).agent_ap[A["walk"]] == 1.0


# ---- means (item 18) -----------------------------------------------------------------------------------------------
def test_published_role_mean_leaves_point_out():
    role = np.full(25, 0.6, dtype=np.float32)
    role[R["point_instr"]] = 0.0
    means = summary_means(np.ones(26, dtype=np.float32), {1: role, 2: role})
    assert means["role_ap_s1_with_point"] == pytest.approx(0.576, abs=1e-6)
    assert means["role_ap_s1"] == pytest.approx(0.6, abs=1e-6)


def test_agent_mean_is_nansum_over_26():
    agent = np.full(26, np.nan, dtype=np.float32)
    agent[:13] = 1.0
    means = summary_means(agent, {1: np.zeros(25, np.float32), 2: np.zeros(25, np.float32)})
    assert means["agent_ap"] == pytest.approx(0.5) and means["agent_ap_nanmean"] == 1.0


# ---- edge rules where the official code crashes --------------------------------------------------------------------
def test_action_without_positives_is_nan_and_without_detections_is_zero():
    b = GroundTruthBuilder()
    gt_image(b, 1, [PERSON], 1, {0: ["walk", "run"]})
    res = evaluate(b, [detection(1, PERSON, walk_agent=0.9)])
    assert res.agent_ap[A["walk"]] == 1.0
    assert res.agent_ap[A["run"]] == 0.0  # positives, no detection
    assert math.isnan(res.agent_ap[A["smile"]])  # no positive


def test_detections_of_images_outside_the_ground_truth_are_ignored_and_personless_images_give_fps():
    b = GroundTruthBuilder()
    gt_image(b, 1, [PERSON], 1, {0: ["walk"]})
    gt_image(b, 2, [SANDWICH], 0, {})
    dets = [detection(1, PERSON, walk_agent=0.5), detection(99, PERSON, walk_agent=0.9),
            detection(2, PERSON, walk_agent=0.7)]
    res = evaluate(b, dets)
    assert res.num_detections == 2
    assert res.agent_ap[A["walk"]] == pytest.approx(0.5)  # [FP (image 2), TP]


def test_ground_truth_without_any_person_gives_nan_aps_not_an_error():
    b = GroundTruthBuilder()
    gt_image(b, 2, [SANDWICH], 0, {})
    res = evaluate(b, [detection(2, PERSON, walk_agent=0.7, eat_obj=[*SANDWICH, 0.5])])
    assert np.isnan(res.agent_ap).all() and np.isnan(res.role_ap[1]).all() and res.num_detections == 1


def test_unknown_numerics_is_refused():
    with pytest.raises(ConfigError, match="float32"):
        evaluate(eat_sandwich_gt(), [], numerics="double")


def test_float32_recall_differs_from_float64_only_in_the_last_bits():
    b = GroundTruthBuilder()
    gt_image(b, 1, [PERSON, [300, 10, 399, 209], [500, 10, 599, 209]], 3, {0: ["walk"], 1: ["walk"], 2: ["walk"]})
    dets = [detection(1, PERSON, walk_agent=0.9), detection(1, [300, 10, 399, 209], walk_agent=0.4)]
    r32, r64 = evaluate(b, dets), evaluate(b, dets, numerics="float64")
    assert r64.agent_ap[A["walk"]] == 2 / 3  # recall 1/3 and 2/3 at precision 1, exactly
    assert r32.agent_ap[A["walk"]] == np.float32(np.float32(1 / 3) + (np.float32(2 / 3) - np.float32(1 / 3)))


# ---- predictions file validation -----------------------------------------------------------------------------------
def test_missing_key_names_the_detection_and_key():
    d = detection(1, PERSON)
    del d["eat_instr"]
    with pytest.raises(DataError, match=r"detection 1: missing key 'eat_instr'"):
        detections_from_dicts([detection(1, PERSON), d], "preds.json")


def test_malformed_role_entry_names_the_detection():
    d = detection(1, PERSON, eat_obj=[1, 2, 3])
    with pytest.raises(DataError, match=r"detection 0: 'eat_obj' = \[1, 2, 3\] must be a list of 5 numbers"):
        detections_from_dicts([d], "preds.json")


def test_null_scores_read_as_nan():
    d = detection(1, PERSON, walk_agent=None)
    assert math.isnan(detections_from_dicts([d]).agent_scores[A["walk"], 0])


# ---- GT from QPIC's layout -----------------------------------------------------------------------------------------
def test_qpic_records_become_official_gt_boxes_and_labels():
    rec = {"file_name": "COCO_val2014_000000000042.jpg",
           "annotations": [{"category_id": 1, "bbox": [10, 10, 110, 210]}, {"category_id": 1, "bbox": [0, 0, 5, 5]},
                           {"category_id": 54, "bbox": [120, 50, 160, 90]}],
           "hoi_annotation": [{"subject_id": 0, "object_id": 2, "category_id": 8},
                              {"subject_id": 0, "object_id": -1, "category_id": 9},
                              {"subject_id": 0, "object_id": -1, "category_id": 1}]}
    gt = ground_truth_from_records([rec])
    assert gt.image_ids.tolist() == [42]
    assert gt.person_boxes.tolist() == [PERSON, [0, 0, 4, 4]]  # x + w - 1
    assert gt.actions[0, A["eat"]] == 1 and gt.actions[0, A["stand"]] == 1 and gt.actions[0, A["walk"]] == 0
    assert (gt.actions[1] == -1).all()  # no hoi entry: ignored by default
    assert gt.role_boxes[0, A["eat"], 0].tolist() == SANDWICH and np.isnan(gt.role_boxes[0, A["eat"], 1]).all()
    negative = ground_truth_from_records([rec], persons_without_hoi="negative")
    assert (negative.actions[1] == 0).all() and "negatives" in negative.source


# ---- vectorised == loop --------------------------------------------------------------------------------------------
def _bench():
    spec = importlib.util.spec_from_file_location("bench_vcoco_eval", REPO / "benchmarks" / "bench_vcoco_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_equals_the_official_structured_loop(seed):
    bench = _bench()
    gt, dets = bench.make_benchmark_data(n_images=60, dets_per_image=8, seed=seed)
    # ties in score and an image without persons exercise the order rules
    dets.agent_scores[:, ::7] = np.round(dets.agent_scores[:, ::7], 1)
    dets.role_scores[:, ::5] = np.round(dets.role_scores[:, ::5], 1)
    agent_ap, role_ap = bench.reference_vcoco(gt, dets)
    res = evaluate_vcoco(gt, dets)
    np.testing.assert_array_equal(res.agent_ap, agent_ap)
    for s in (1, 2):
        np.testing.assert_array_equal(res.role_ap[s], role_ap[s])
    assert res.agent_ap.dtype == np.float32
    r64 = evaluate_vcoco(gt, dets, numerics="float64")
    np.testing.assert_allclose(r64.agent_ap, res.agent_ap, rtol=1e-5, atol=1e-6)
    assert 0.0 < res.means["role_ap_s1"] < 1.0
    assert res.means["role_ap_s1"] <= res.means["role_ap_s2"]
