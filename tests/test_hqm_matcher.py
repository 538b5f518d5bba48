"""QPIC's Hungarian matcher: cost terms on a hand-computed case, assignment, images without pairs."""

from __future__ import annotations

import math

import pytest
import torch

from raysweep.tasks.hqm.matcher import HungarianMatcher


def _target(labels, verbs, subs, objs, num_verbs=2):
    v = torch.zeros(len(labels), num_verbs)
    for i, vs in enumerate(verbs):
        v[i, vs] = 1
    return {"obj_labels": torch.tensor(labels, dtype=torch.int64), "verb_labels": v,
            "sub_boxes": torch.tensor(subs, dtype=torch.float32).reshape(-1, 4),
            "obj_boxes": torch.tensor(objs, dtype=torch.float32).reshape(-1, 4)}


def _outputs(obj_logits, verb_logits, subs, objs):
    return {"pred_obj_logits": torch.tensor(obj_logits), "pred_verb_logits": torch.tensor(verb_logits),
            "pred_sub_boxes": torch.tensor(subs), "pred_obj_boxes": torch.tensor(objs)}


def test_cost_terms_hand_computed():
    # one query, one GT pair, 2 object classes + no-object, 2 verbs
    out = _outputs([[[math.log(2.0), 0.0, 0.0]]],  # softmax -> (0.5, 0.25, 0.25)
                   [[[0.0, 0.0]]],  # sigmoid -> (0.5, 0.5)
                   [[[0.5, 0.5, 0.2, 0.2]]], [[[0.6, 0.5, 0.2, 0.2]]])
    tgt = [_target([0], [[0]], [[0.5, 0.5, 0.2, 0.2]], [[0.5, 0.5, 0.2, 0.2]])]
    c_obj = -0.5
    c_verb = -0.5 * (0.5 / (1 + 1e-4) + 0.5 / (1 + 1e-4))  # mean p on positives, mean (1-p) on negatives
    c_l1 = max(0.0, 0.1)  # subject exact, object shifted by 0.1 in cx
    # object boxes [0.5,0.4,0.7,0.6] vs [0.4,0.4,0.6,0.6]: IoU 0.02/0.06, hull area 0.06 = union -> GIoU 1/3
    c_giou = max(-1.0, -1 / 3)
    for w in [(1, 1, 2.5, 1), (2, 0.5, 5, 3)]:
        cost = HungarianMatcher(*w).cost_matrix(out, tgt)
        expected = w[0] * c_obj + w[1] * c_verb + w[2] * c_l1 + w[3] * c_giou
        assert cost.shape == (1, 1)
        assert cost.item() == pytest.approx(expected, abs=1e-5)


def test_missing_object_box_uses_subject_terms():
    # V-COCO style GT without object box: object L1 ignored, object GIoU term = subject's added to the object one
    out = _outputs([[[0.0, 0.0, 0.0]]], [[[0.0, 0.0]]], [[[0.5, 0.5, 0.2, 0.2]]], [[[0.6, 0.5, 0.2, 0.2]]])
    tgt = [_target([0], [[0]], [[0.6, 0.5, 0.2, 0.2]], [[0.0, 0.0, 0.0, 0.0]])]
    cost = HungarianMatcher(0, 0, 1, 0).cost_matrix(out, tgt)
    assert cost.item() == pytest.approx(0.1, abs=1e-6)  # max(sub L1 0.1, obj L1 masked to 0)


def test_assignment_is_optimal_not_greedy():
    # L1-only cost: query 0 is closest to both GTs, but the optimum sends it to GT 1
    q = [[0.50, 0.5, 0.2, 0.2], [0.45, 0.5, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]]
    g = [[0.46, 0.5, 0.2, 0.2], [0.60, 0.5, 0.2, 0.2]]
    out = _outputs([[[0.0] * 3] * 3], [[[0.0] * 2] * 3], [q], [q])
    tgt = [_target([0, 1], [[0], [1]], g, g)]
    (rows, cols), = HungarianMatcher(0, 0, 1, 0)(out, tgt)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}
    assert rows.dtype == cols.dtype == torch.int64


def test_each_image_matched_within_itself_including_images_without_pairs():
    b, q = 3, 3
    out = _outputs(torch.zeros(b, q, 3).tolist(), torch.zeros(b, q, 2).tolist(),
                   torch.full((b, q, 4), 0.5).tolist(), torch.full((b, q, 4), 0.5).tolist())
    targets = [_target([0, 1], [[0], [1]], [[0.5] * 4] * 2, [[0.5] * 4] * 2), _target([], [], [], []),
               _target([1], [[1]], [[0.5] * 4], [[0.5] * 4])]
    matcher = HungarianMatcher()
    # cost over all (query, GT) of the batch: image i's queries must only see image i's GT columns
    cost = torch.full((b * q, 3), 100.0)
    cost[0:3, 0:2] = torch.tensor([[5.0, 1.0], [2.0, 9.0], [3.0, 3.0]])
    cost[6:9, 2] = torch.tensor([4.0, 0.5, 2.0])
    cost[3:6, :] = -100.0  # image 1 has no pairs: its queries' costs must not matter
    matcher.cost_matrix = lambda outputs, targets: cost
    indices = matcher(out, targets)
    assert [(r.tolist(), c.tolist()) for r, c in indices] == [([0, 1], [1, 0]), ([], []), ([1], [0])]


def test_no_pairs_in_the_whole_batch():
    out = _outputs(torch.zeros(2, 4, 3).tolist(), torch.zeros(2, 4, 2).tolist(),
                   torch.full((2, 4, 4), 0.5).tolist(), torch.full((2, 4, 4), 0.5).tolist())
    indices = HungarianMatcher()(out, [_target([], [], [], []), _target([], [], [], [])])
    assert [(len(r), len(c)) for r, c in indices] == [(0, 0), (0, 0)]
