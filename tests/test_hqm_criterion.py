"""QPIC's set criterion and HQM's hard-branch terms on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_convert, generalized_box_iou

from raysweep.tasks.hqm.criterion import (LossWeights, SetCriterion, box_losses, focal_verb_loss, paired_giou,
                                          verb_loss)
from raysweep.tasks.hqm.matcher import HungarianMatcher


def _target(labels, verbs, subs, objs, num_verbs=3):
    v = torch.zeros(len(labels), num_verbs)
    for i, vs in enumerate(verbs):
        v[i, vs] = 1
    return {"obj_labels": torch.tensor(labels, dtype=torch.int64), "verb_labels": v,
            "sub_boxes": torch.tensor(subs, dtype=torch.float32).reshape(-1, 4),
            "obj_boxes": torch.tensor(objs, dtype=torch.float32).reshape(-1, 4)}


class _FixedMatcher(HungarianMatcher):
    def __init__(self, indices):
        super().__init__()
        self.indices = indices

    def forward(self, outputs, targets):
        return self.indices


def test_obj_ce_weights_no_object_by_eos_coef():
    # 2 real classes + no-object; query 0 matched to class 1, query 1 unmatched (target no-object)
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, math.log(2.0)]]])
    out = {"pred_obj_logits": logits, "pred_verb_logits": torch.zeros(1, 2, 3),
           "pred_sub_boxes": torch.full((1, 2, 4), 0.5), "pred_obj_boxes": torch.full((1, 2, 4), 0.5)}
    tgt = [_target([1], [[0]], [[0.5] * 4], [[0.5] * 4])]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    crit = SetCriterion(2, _FixedMatcher(indices), eos_coef=0.1)
    terms = crit.main_terms(out, tgt, indices, torch.tensor(1.0))
    # weighted mean: (1 * log 3 + 0.1 * log 2) / (1 + 0.1)
    assert terms["obj_ce"].item() == pytest.approx((math.log(3) + 0.1 * math.log(2)) / 1.1, rel=1e-6)


def test_focal_verb_loss_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    pos = math.log(0.5) * 0.25  # log p (1-p)^2 on the positive
    neg = math.log(0.25) * 0.75 ** 2  # log(1-p) p^2 on the negative
    assert focal_verb_loss(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(-(pos + neg), rel=1e-6)
    # two positives: divided by num_pos = 2
    both = math.log(0.5) * 0.25 + math.log(0.75) * 0.25 ** 2
    assert focal_verb_loss(logits, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(-both / 2, rel=1e-6)


def test_focal_verb_loss_without_positives_is_the_plain_negative_sum():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    neg = math.log(0.5) * 0.25 + math.log(0.25) * 0.75 ** 2
    assert focal_verb_loss(logits, torch.zeros(1, 2)).item() == pytest.approx(-neg, rel=1e-6)
    assert focal_verb_loss(torch.zeros(0, 3), torch.zeros(0, 3)).item() == 0.0


def test_focal_verb_loss_stays_finite_for_saturated_logits():
    loss = focal_verb_loss(torch.tensor([[-200.0, 200.0]]), torch.tensor([[1.0, 0.0]]))
    # log p = -200 with (1-p)^2 = 1 on the positive, log(1-p) = -200 with p^2 = 1 on the negative
    assert loss.item() == pytest.approx(400.0)


def test_bce_verb_loss_is_the_mean():
    logits, targets = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[1.0, 0.0]])
    assert verb_loss(logits, targets, "bce").item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)


def test_paired_giou_is_the_diagonal_of_torchvision():
    a = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.4, 0.1, 0.3], [0.2, 0.2, 0.1, 0.1]])
    b = torch.tensor([[0.6, 0.5, 0.2, 0.2], [0.3, 0.45, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]])
    expected = generalized_box_iou(box_convert(a, "cxcywh", "xyxy"), box_convert(b, "cxcywh", "xyxy")).diag()
    torch.testing.assert_close(paired_giou(a, b), expected)
    assert paired_giou(a[:1], b[:1]).item() == pytest.approx(1 / 3, abs=1e-6)


def test_box_losses_normalisation():
    src_sub = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]])
    tgt_sub = torch.tensor([[0.6, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]])  # L1 0.1 and 0; GIoU 1/3 and 1
    src_obj = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]])
    tgt_obj = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.3, 0.2, 0.2]])  # L1 0 and 0.1
    n_int = torch.tensor(4.0)  # e.g. pairs averaged over workers: subjects use it, objects the local count
    out = box_losses(src_sub, src_obj, tgt_sub, tgt_obj, n_int)
    assert out["sub_bbox"].item() == pytest.approx(0.1 / 4, abs=1e-6)
    assert out["obj_bbox"].item() == pytest.approx(0.1 / (2 + 1e-4), abs=1e-6)
    assert out["sub_giou"].item() == pytest.approx((1 - 1 / 3) / 4, abs=1e-6)
    # object boxes [0.1,0.1,0.3,0.3] vs [0.1,0.2,0.3,0.4]: IoU 0.02/0.06, hull 0.06 -> GIoU 1/3
    assert out["obj_giou"].item() == pytest.approx((1 - 1 / 3) / (2 + 1e-4), abs=1e-6)


def test_box_losses_without_matches_are_zero():
    z = torch.zeros(0, 4, requires_grad=True)
    out = box_losses(z, z, torch.zeros(0, 4), torch.zeros(0, 4), torch.tensor(1.0))
    assert all(v.item() == 0.0 for v in out.values())


def _outputs(b, q, c, v, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pred_obj_logits": torch.randn(b, q, c + 1, generator=g),
            "pred_verb_logits": torch.randn(b, q, v, generator=g),
            "pred_sub_boxes": torch.rand(b, q, 4, generator=g) * 0.3 + 0.3,
            "pred_obj_boxes": torch.rand(b, q, 4, generator=g) * 0.3 + 0.3}


def test_hard_branch_weights_and_total():
    crit = SetCriterion(2, HungarianMatcher(), LossWeights(1, 1, 2.5, 1), hard_weight=0.8)
    assert crit.weight_of("loss_sub_bbox") == 2.5
    assert crit.weight_of("loss_obj_giou_3") == 1.0
    assert crit.weight_of("loss_gt_obj_bbox_1") == pytest.approx(2.0)
    assert crit.weight_of("loss_occ_verb_ce") == pytest.approx(0.8)
    assert crit.weight_of("loss_occ_obj_ce_0") == pytest.approx(0.8)
    losses = {"loss_obj_ce": torch.tensor(1.0), "loss_gt_sub_bbox": torch.tensor(2.0),
              "obj_cardinality_error": torch.tensor(5.0)}
    assert crit.weighted_total(losses).item() == pytest.approx(1.0 + 2.0 * 2.0)


def test_amm_terms_use_the_main_assignment_and_only_matched_queries():
    out = _outputs(1, 3, 2, 3)
    out["aux_outputs"] = [_outputs(1, 3, 2, 3, seed=1)]
    amm = _outputs(1, 3, 2, 3, seed=2)
    amm["aux_outputs"] = [_outputs(1, 3, 2, 3, seed=3)]
    out["amm"] = amm
    tgt = [_target([1], [[0, 2]], [[0.4, 0.4, 0.2, 0.2]], [[0.5, 0.5, 0.2, 0.2]])]
    crit = SetCriterion(2, HungarianMatcher())
    losses = crit(out, tgt)
    for layer, sfx in ((out, ""), (out["aux_outputs"][0], "_0")):
        (q,), _ = HungarianMatcher()(layer, tgt)[0]
        branch = amm if sfx == "" else amm["aux_outputs"][0]
        expected_ce = torch.nn.functional.cross_entropy(branch["pred_obj_logits"][0, q][None], torch.tensor([1]))
        assert losses[f"loss_occ_obj_ce{sfx}"].item() == pytest.approx(expected_ce.item(), rel=1e-5)
        l1 = (branch["pred_sub_boxes"][0, q] - tgt[0]["sub_boxes"][0]).abs().sum()
        assert losses[f"loss_occ_sub_bbox{sfx}"].item() == pytest.approx(l1.item(), rel=1e-5)
        expected_verb = focal_verb_loss(branch["pred_verb_logits"][0, q][None], tgt[0]["verb_labels"])
        assert losses[f"loss_occ_verb_ce{sfx}"].item() == pytest.approx(expected_verb.item(), rel=1e-5)
    assert not any(k.startswith("loss_gt_") for k in losses)


def test_gbs_terms_are_index_aligned_and_ignore_padding_slots():
    # image 0 has 2 pairs, image 1 none: the GBS branch has 2 slots per image
    out = _outputs(2, 4, 2, 3)
    gbs = _outputs(2, 2, 2, 3, seed=5)
    out["gbs"] = gbs
    tgt = [_target([0, 1], [[0], [1]], [[0.4, 0.4, 0.2, 0.2], [0.5, 0.5, 0.3, 0.3]],
                   [[0.5, 0.5, 0.2, 0.2], [0.6, 0.6, 0.1, 0.1]]),
           _target([], [], [], [])]
    losses = SetCriterion(2, HungarianMatcher())(out, tgt)
    expected_ce = torch.nn.functional.cross_entropy(gbs["pred_obj_logits"][0], torch.tensor([0, 1]))
    assert losses["loss_gt_obj_ce"].item() == pytest.approx(expected_ce.item(), rel=1e-5)
    l1 = (gbs["pred_obj_boxes"][0] - tgt[0]["obj_boxes"]).abs().sum() / (2 + 1e-4)
    assert losses["loss_gt_obj_bbox"].item() == pytest.approx(l1.item(), rel=1e-5)
    l1_sub = (gbs["pred_sub_boxes"][0] - tgt[0]["sub_boxes"]).abs().sum() / 2  # N_int = 2 pairs in the batch
    assert losses["loss_gt_sub_bbox"].item() == pytest.approx(l1_sub.item(), rel=1e-5)


def test_criterion_with_no_pairs_is_finite_and_has_no_box_loss():
    out = _outputs(2, 3, 2, 3)
    out["amm"] = _outputs(2, 3, 2, 3, seed=1)
    tgt = [_target([], [], [], []), _target([], [], [], [])]
    losses = SetCriterion(2, HungarianMatcher())(out, tgt)
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert losses["loss_sub_bbox"].item() == 0.0 and losses["loss_occ_obj_ce"].item() == 0.0
    # every query's target is no-object
    ce = torch.nn.functional.cross_entropy(out["pred_obj_logits"].flatten(0, 1), torch.full((6,), 2))
    assert losses["loss_obj_ce"].item() == pytest.approx(ce.item(), rel=1e-5)


@pytest.mark.parametrize("verb_loss_type", ["focal", "bce"])
def test_all_layers_at_once_equal_each_layer_on_its_own(verb_loss_type):
    # 3 images: 2 pairs, none, and 4 pairs for 3 queries (one pair left unmatched); 4 decoder layers
    out = _outputs(3, 3, 2, 3)
    out["aux_outputs"] = [_outputs(3, 3, 2, 3, seed=s) for s in (1, 2, 3)]
    box = [0.4, 0.4, 0.2, 0.2]
    tgt = [_target([1, 0], [[0], [1, 2]], [box, [0.5, 0.5, 0.3, 0.3]], [[0.5, 0.5, 0.2, 0.2], [0, 0, 0, 0]]),
           _target([], [], [], []),
           _target([0, 1, 1, 0], [[0], [1], [2], [0, 1]], [box] * 4, [[0.6, 0.6, 0.1, 0.1]] * 4)]
    matcher = HungarianMatcher()
    crit = SetCriterion(2, matcher, verb_loss_type=verb_loss_type)
    losses = crit(out, tgt)
    n_int = torch.tensor(6.0)
    layers = [out] + out["aux_outputs"]
    for together, layer in zip(matcher.match_layers(layers, tgt), layers):
        alone = matcher(layer, tgt)
        assert [(q.tolist(), g.tolist()) for q, g in together] == [(q.tolist(), g.tolist()) for q, g in alone]
    for layer, sfx in zip(layers, ["", "_0", "_1", "_2"]):
        alone = crit.main_terms(layer, tgt, matcher(layer, tgt), n_int)
        for term, value in alone.items():
            assert losses[f"loss_{term}{sfx}"].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), term
    # and the single-layer path itself, by hand for one term: the unmatched pair of image 2 adds nothing
    (q, g) = matcher(out, tgt)[2]
    assert len(q) == 3
    l1 = sum((out["pred_sub_boxes"][i, qi] - tgt[i]["sub_boxes"][gi]).abs().sum()
             for i in (0, 2) for qi, gi in zip(*matcher(out, tgt)[i]))
    assert losses["loss_sub_bbox"].item() == pytest.approx(l1.item() / 6, rel=1e-5)
