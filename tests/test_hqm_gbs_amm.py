"""HQM's hard-positive machinery: GBS box shifting, AMM masks, the attention that applies them,
and the alternation of the branches in training."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import raysweep.tasks.hqm.gbs as gbs
from raysweep.tasks.hqm.alternation import hard_branch
from raysweep.tasks.hqm.amm import amm_hard_mask, num_hidden
from raysweep.tasks.hqm.attention import MultiheadAttention
from raysweep.tasks.hqm.gbs import (ShiftParams, batch_accepts, paired_iou, shift_boxes, shifted_queries,
                                    spatial_vector)

# ---- GBS ---------------------------------------------------------------------------------------------------


def _random_boxes(n: int, g: torch.Generator, size=(200.0, 150.0)):
    w, h = size
    x1 = torch.rand(n, generator=g) * w * 0.6
    y1 = torch.rand(n, generator=g) * h * 0.6
    bw = 10 + torch.rand(n, generator=g) * w * 0.35
    bh = 10 + torch.rand(n, generator=g) * h * 0.35
    return torch.stack([x1, y1, x1 + bw, y1 + bh], 1), torch.tensor([[w, h]]).expand(n, 2)


def test_accepted_boxes_lie_strictly_inside_the_band_and_the_rest_stay_exact():
    params = ShiftParams()
    accepted = 0
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        boxes, wh = _random_boxes(4, g)
        shifted, attempt = shift_boxes(boxes, wh, params, g)
        if attempt == 0:
            assert torch.equal(shifted, boxes)
            continue
        accepted += 1
        assert 1 <= attempt <= params.attempts
        moved = (shifted != boxes).any(1)
        iou = paired_iou(boxes, shifted)
        assert ((iou[moved] > 0.4) & (iou[moved] < 0.6)).all()
        assert torch.equal(shifted[~moved], boxes[~moved])
        assert batch_accepts(int(moved.sum()), 4, 0.7)  # at least 3 of 4 moved
        assert (shifted[:, 0::2] >= 0).all() and (shifted[:, 0::2] <= 199).all()  # clipped to [0, W-1]
        assert (shifted[:, 1::2] >= 0).all() and (shifted[:, 1::2] <= 149).all()
    assert accepted >= 40  # with 4 boxes almost every batch finds an attempt


def test_batch_acceptance_ratio_boundary():
    assert batch_accepts(7, 10, 0.7)  # 7/10 == 0.7 passes (7 >= 0.7 * 10 would not: 7.000000000000001)
    assert not batch_accepts(6, 10, 0.7)
    assert batch_accepts(3, 4, 0.7) and not batch_accepts(2, 4, 0.7)


def _fixed_steps(in_band: int, calls: list):
    # k = (0, 7, 0): same size, shifted by 0.28 w -> IoU 36/64 = 0.5625 (in band); k = 0: IoU 1 (out of band)
    def draw(attempts, n, params, generator, device):
        calls.append((attempts, n))
        k = torch.zeros(attempts, n, 3, dtype=torch.int64)
        k[:, :in_band, 1] = 7
        return k
    return draw


def test_shift_keeps_the_first_attempt_that_reaches_the_ratio(monkeypatch):
    calls: list = []
    monkeypatch.setattr(gbs, "draw_grid_steps", _fixed_steps(7, calls))
    boxes = torch.tensor([[10.0, 10.0, 60.0, 60.0]]).repeat(10, 1)
    shifted, attempt = shift_boxes(boxes, torch.tensor([[200.0, 200.0]]).expand(10, 2))
    assert attempt == 1 and calls == [(40, 10)]
    torch.testing.assert_close(shifted[:7], torch.tensor([[24.0, 10.0, 74.0, 60.0]]).repeat(7, 1))
    assert torch.equal(shifted[7:], boxes[7:])
    torch.testing.assert_close(paired_iou(boxes[:1], shifted[:1]), torch.tensor([0.5625]))


def test_shift_takes_the_first_accepted_attempt_not_a_later_better_one(monkeypatch):
    def draw(attempts, n, params, generator, device):
        k = torch.zeros(attempts, n, 3, dtype=torch.int64)
        for a, in_band in enumerate([6, 5, 7, 10]):  # attempts 1, 2 fail; 3 passes (7/10); 4 would move all
            k[a, :in_band, 1] = 7
            k[a, in_band:, 2] = 1  # out of band (IoU 0.92): these boxes must come back unshifted
        return k
    monkeypatch.setattr(gbs, "draw_grid_steps", draw)
    boxes = torch.tensor([[10.0, 10.0, 60.0, 60.0]]).repeat(10, 1)
    shifted, attempt = shift_boxes(boxes, torch.tensor([[200.0, 200.0]]).expand(10, 2), ShiftParams(attempts=4))
    assert attempt == 3
    torch.testing.assert_close(shifted[:7], torch.tensor([[24.0, 10.0, 74.0, 60.0]]).repeat(7, 1))
    assert torch.equal(shifted[7:], boxes[7:])


def test_shift_is_all_or_nothing_after_the_last_attempt(monkeypatch):
    calls: list = []
    monkeypatch.setattr(gbs, "draw_grid_steps", _fixed_steps(6, calls))  # 6 of 10 in band: never enough
    boxes = torch.tensor([[10.0, 10.0, 60.0, 60.0]]).repeat(10, 1)
    shifted, attempt = shift_boxes(boxes, torch.tensor([[200.0, 200.0]]).expand(10, 2), ShiftParams(attempts=40))
    assert attempt == 0 and calls == [(40, 10)]
    assert torch.equal(shifted, boxes)


def test_spatial_vector_hand_computed():
    sub = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    obj = torch.tensor([[0.3, 0.6, 0.1, 0.2]])
    expected = torch.tensor([[0.5, 0.5, 0.2, 0.4, 0.3, 0.6, 0.1, 0.2, 0.2, -0.1, 0.08, 0.02]])
    torch.testing.assert_close(spatial_vector(sub, obj), expected)


def test_shifted_queries_padding_and_images_without_pairs():
    never = ShiftParams(band_low=0.99, band_high=0.999, accept_ratio=1.0, attempts=2)
    subs = [torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.4, 0.4, 0.2, 0.2]]), torch.zeros(0, 4),
            torch.tensor([[0.5, 0.5, 0.5, 0.5]])]
    objs = [torch.tensor([[0.3, 0.6, 0.1, 0.2], [0.6, 0.6, 0.2, 0.2]]), torch.zeros(0, 4),
            torch.tensor([[0.2, 0.2, 0.2, 0.2]])]
    q = shifted_queries(subs, objs, torch.tensor([[100, 200], [50, 50], [80, 60]]), never)
    assert q.counts == [2, 0, 1] and q.spatial.shape == (3, 2, 12)
    assert q.key_padding_mask.tolist() == [[False, False], [False, False], [False, True]]  # empty image: unmasked
    torch.testing.assert_close(q.spatial[0, 0], spatial_vector(subs[0][:1], objs[0][:1])[0], atol=1e-6, rtol=0)
    assert q.spatial[1].abs().sum() == 0 and q.spatial[2, 1].abs().sum() == 0
    assert shifted_queries([torch.zeros(0, 4)], [torch.zeros(0, 4)], torch.tensor([[10, 10]])) is None


# ---- AMM ---------------------------------------------------------------------------------------------------


def test_amm_hides_floor_fraction_of_the_top_k_with_shared_rank_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 30, generator=g)
    mask = amm_hard_mask(logits, topk=20, fraction=0.4, generator=g)
    assert mask.shape == logits.shape and mask.dtype == torch.bool
    assert (mask.sum(-1) == 8).all()
    order = logits.argsort(-1, descending=True)
    ranks_hidden = torch.gather(mask, -1, order)  # [..., rank] True where that rank's key is hidden
    assert not ranks_hidden[..., 20:].any()  # only among the top 20
    assert (ranks_hidden == ranks_hidden[0, 0]).all()  # the same rank positions in every (head, query) row


def test_amm_clamps_k_to_the_number_of_keys():
    mask = amm_hard_mask(torch.randn(2, 3, 10), topk=100, fraction=0.4)
    assert (mask.sum(-1) == 4).all()
    assert num_hidden(100, 0.4) == 40 and num_hidden(100, 0.29) == 29 and num_hidden(16, 0.4) == 6


def test_amm_redraws_the_subset_per_call():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 1, 100)
    masks = [amm_hard_mask(logits, 100, 0.4, generator=g) for _ in range(3)]
    assert not torch.equal(masks[0], masks[1]) or not torch.equal(masks[1], masks[2])


# ---- attention ----------------------------------------------------------------------------------------------


def _pair(e=16, h=4):
    torch.manual_seed(0)
    ours, ref = MultiheadAttention(e, h), nn.MultiheadAttention(e, h)
    ours.load_state_dict(ref.state_dict())
    return ours.eval(), ref.eval()


def test_attention_has_torch_names_and_matches_its_math():
    ours, ref = _pair()
    assert list(ours.state_dict()) == list(ref.state_dict())
    q, kv = torch.randn(5, 2, 16), torch.randn(7, 2, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    expected = ref(q, kv, kv, key_padding_mask=pad)[0]
    fast, none = ours(q, kv, kv, key_padding_mask=pad)
    slow, logits = ours(q, kv, kv, key_padding_mask=pad, need_logits=True)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(slow, expected, atol=1e-5, rtol=1e-5)
    assert none is None and logits.shape == (8, 5, 7) and not logits.requires_grad
    assert torch.isneginf(logits[4:, :, 5:]).all() and torch.isfinite(logits[:4]).all()  # image 1's heads padded


def test_hard_mask_equals_padding_those_keys_and_never_hides_a_whole_row():
    ours, _ = _pair()
    q, kv = torch.randn(3, 2, 16), torch.randn(6, 2, 16)
    hide = torch.zeros(2, 6, dtype=torch.bool)
    hide[0, [1, 4]] = True
    hard = hide.repeat_interleave(4, 0)[:, None, :].expand(8, 3, 6)
    torch.testing.assert_close(ours(q, kv, kv, hard_mask=hard)[0], ours(q, kv, kv, key_padding_mask=hide)[0])
    everything = torch.ones(8, 3, 6, dtype=torch.bool)
    torch.testing.assert_close(ours(q, kv, kv, hard_mask=everything)[0], ours(q, kv, kv)[0])


# ---- alternation --------------------------------------------------------------------------------------------


def test_ajl_alternates_and_every_epoch_starts_with_gbs():
    epoch = [hard_branch(True, True, "ajl", it) for it in range(5)]
    assert epoch == ["gbs", "amm", "gbs", "amm", "gbs"]
    assert hard_branch(True, True, "ajl", 0) == "gbs"  # iteration counts restart each epoch


def test_single_branch_and_baseline():
    assert [hard_branch(True, False, "ajl", it) for it in range(3)] == ["gbs"] * 3
    assert [hard_branch(False, True, "random", it) for it in range(3)] == ["amm"] * 3
    assert hard_branch(False, False, "ajl", 0) is None


def test_random_alternation_uses_both_about_evenly():
    rng = random.Random(0)
    picks = [hard_branch(True, True, "random", it, rng) for it in range(400)]
    assert 160 < picks.count("gbs") < 240 and picks.count("gbs") + picks.count("amm") == 400
    with pytest.raises(ValueError):
        hard_branch(True, True, "sometimes", 0)
