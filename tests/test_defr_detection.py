"""DEFR's two-stage HOI detection: pairing, NMS and caps, prior and scores, the CLS attention mask and the masked
forward, pinned on hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from raysweep.errors import DataError
from raysweep.tasks.defr.detection_format import Detections, load_detections, write_detections
from raysweep.tasks.defr.detection_mask import PairScorer, attention_bias, cls_marks, unmarked_patches
from raysweep.tasks.defr.detection_pairs import (
    HoiClassMap,
    PairingOptions,
    pair_prior,
    pair_scores,
    pair_up,
)

PERSON, CUP, CHAIR = 0, 41, 56  # QPIC object indices


def _box(x: float, y: float, w: float = 10.0, h: float = 10.0) -> list[float]:
    return [x, y, x + w, y + h]


# ---- pairing ----------------------------------------------------------------------------------------------------------
def test_spec_case_1_threshold_nms_order_and_pairs():
    boxes = [_box(0, 0), _box(100, 0), _box(200, 0), _box(0, 100), [0, 100, 10, 108], _box(100, 100)]
    labels = [PERSON, PERSON, PERSON, CUP, CUP, CHAIR]
    scores = [0.9, 0.8, 0.1, 0.7, 0.6, 0.3]  # the 0.6 cup has IoU 0.8 with the 0.7 cup
    pairs = pair_up(np.array(boxes), np.array(labels), np.array(scores))
    assert pairs.scores.tolist() == [0.9, 0.8, 0.7, 0.3]
    assert pairs.labels.tolist() == [PERSON, PERSON, CUP, CHAIR]
    assert pairs.num_humans == 2
    assert list(zip(pairs.human_index.tolist(), pairs.object_index.tolist())) == [
        (0, 1), (0, 2), (0, 3), (1, 0), (1, 2), (1, 3)]


def test_humans_come_first_whatever_the_scores():
    pairs = pair_up(np.array([_box(0, 0), _box(50, 0)]), np.array([CUP, PERSON]), np.array([0.95, 0.5]))
    assert pairs.labels.tolist() == [PERSON, CUP]
    assert list(zip(pairs.human_index, pairs.object_index)) == [(0, 1)]


@pytest.mark.parametrize("labels", [[PERSON], [CUP, CHAIR], []])
def test_spec_case_2_one_human_only_or_objects_only_give_no_pairs(labels):
    boxes = np.array([_box(40 * i, 0) for i in range(len(labels))]).reshape(-1, 4)
    pairs = pair_up(boxes, np.array(labels, dtype=np.int64), np.full(len(labels), 0.9))
    assert pairs.num_pairs == 0


def test_spec_case_2_sixteen_humans_keep_fifteen():
    boxes = np.array([_box(20 * i, 0) for i in range(16)])
    pairs = pair_up(boxes, np.zeros(16, dtype=np.int64), np.full(16, 0.9))
    assert pairs.num_humans == 15 and len(pairs.boxes) == 15
    assert pairs.num_pairs == 15 * 14  # human-human pairs in both directions, never (i, i)


def test_caps_apply_to_objects_separately_and_pair_count_is_nh_times_n_minus_1():
    boxes = np.array([_box(20 * i, 0) for i in range(40)])
    labels = np.array([PERSON] * 20 + [CUP] * 20)
    pairs = pair_up(boxes, labels, np.linspace(0.95, 0.3, 40), PairingOptions(max_human=3, max_object=4))
    assert pairs.num_humans == 3 and len(pairs.boxes) == 7
    assert pairs.num_pairs == 3 * 6
    assert pairs.scores[:3].tolist() == sorted(pairs.scores[:3].tolist(), reverse=True)


def test_nms_is_per_class_and_strictly_greater_than_the_threshold():
    a, b = [0, 0, 10, 10], [0, 0, 10, 5]  # IoU exactly 0.5: kept (suppression needs IoU > 0.5)
    pairs = pair_up(np.array([_box(50, 50), a, b]), np.array([PERSON, CUP, CUP]), np.array([0.9, 0.8, 0.7]))
    assert len(pairs.boxes) == 3
    c = [0, 0, 10, 6]  # IoU 0.6 with a: suppressed when the same class, kept when another class
    same = pair_up(np.array([_box(50, 50), a, c]), np.array([PERSON, CUP, CUP]), np.array([0.9, 0.8, 0.7]))
    other = pair_up(np.array([_box(50, 50), a, c]), np.array([PERSON, CUP, CHAIR]), np.array([0.9, 0.8, 0.7]))
    assert len(same.boxes) == 2 and len(other.boxes) == 3


def test_score_threshold_keeps_scores_equal_to_it():
    pairs = pair_up(np.array([_box(0, 0), _box(50, 0)]), np.array([PERSON, CUP]), np.array([0.2, 0.19999]))
    assert len(pairs.boxes) == 1 and pairs.num_pairs == 0


# ---- prior and scores -------------------------------------------------------------------------------------------------
def _hico_like_map() -> HoiClassMap:
    triplets = {c: (c % 117, PERSON) for c in range(160, 170)}
    triplets.update({c: (c - 295, CUP) for c in range(295, 305)})
    return HoiClassMap.from_triplets(600, triplets)


def test_spec_case_3_prior_of_a_cup_pair():
    prior = pair_prior(0.9, 0.5, CUP, _hico_like_map())
    assert prior.shape == (2, 600)
    assert np.flatnonzero(prior[0]).tolist() == list(range(295, 305))
    assert np.flatnonzero(prior[1]).tolist() == list(range(295, 305))
    assert prior[0, 300] == pytest.approx(0.744525, abs=1e-6)
    assert prior[1, 300] == pytest.approx(0.143587, abs=1e-6)
    assert prior[0, 300] * prior[1, 300] == pytest.approx(0.106904, abs=1e-6)


def test_spec_case_3_human_human_pair_only_reaches_the_person_classes():
    prior = pair_prior(0.9, 0.8, PERSON, _hico_like_map())
    assert np.flatnonzero(prior.prod(axis=0)).tolist() == list(range(160, 170))


def test_spec_case_3_test_and_cache_scores():
    sigma, d_h, d_o = np.array([[0.8]]), np.array([0.9]), np.array([0.5])
    assert pair_scores(sigma, d_h, d_o, "test")[0, 0] == pytest.approx(0.085523, abs=1e-6)
    assert pair_scores(sigma, d_h, d_o, "cache")[0, 0] == pytest.approx(0.0531441, abs=1e-9)
    assert pair_scores(sigma, d_h, d_o, "cache", exponents=(7, 3, 1))[0, 0] == pytest.approx(0.8 * 0.9**7 * 0.125)


# ---- the CLS mask -----------------------------------------------------------------------------------------------------
def test_spec_case_4_mask_geometry_at_672_with_patch_16():
    human, obj = np.array([64.0, 48, 320, 240]), np.array([320.0, 240, 640, 480])
    assert unmarked_patches(human, 640, 480, 42) == (4, 4, 21, 21)
    assert unmarked_patches(obj, 640, 480, 42) == (21, 21, 42, 42)
    marks = cls_marks(human[None], obj[None], 640, 480, 42)
    assert marks.shape == (1, 1764)
    assert int((~marks).sum()) == 289 + 441 == 730
    assert int(marks.sum()) == 1034
    grid = (~marks[0]).reshape(42, 42)
    assert grid[4:21, 4:21].all() and grid[21:, 21:].all() and not grid[:4].any()


@pytest.mark.parametrize("mode, value", [("additive_one", 1.0), ("hard", -math.inf)])
def test_spec_case_4_only_the_cls_row_is_touched(mode, value):
    human, obj = np.array([64.0, 48, 320, 240]), np.array([320.0, 240, 640, 480])
    marks = cls_marks(human[None], obj[None], 640, 480, 42)
    bias = attention_bias(marks, 1, mode)
    assert bias.shape == (1, 1765, 1765)
    assert (bias[0, 1:] == 0).all()  # patch queries are never marked
    assert bias[0, 0, 0] == 0  # CLS -> CLS is never marked
    row = bias[0, 0, 1:]
    assert (row[marks[0]] == value).all() and int((row == value).sum()) == 1034
    assert (row[~marks[0]] == 0).all()


def test_spec_case_5_a_zero_width_box_on_a_grid_line_unmarks_nothing():
    # x1 = x2 = 320 on a 640-wide image is grid line 21 of 42: no column from this box
    x0, _, x1, _ = unmarked_patches(np.array([320.0, 0, 320, 480]), 640, 480, 42)
    assert x1 - x0 == 0
    marks = cls_marks(np.array([[320.0, 0, 320, 480]]), np.array([[320.0, 0, 320, 480]]), 640, 480, 42)
    assert marks.all()


def test_boxes_outside_the_image_are_clipped_to_the_grid():
    assert unmarked_patches(np.array([-30.0, -5, 700, 500]), 640, 480, 42) == (0, 0, 42, 42)


# ---- the masked forward -----------------------------------------------------------------------------------------------
def _tiny_net(depth: int = 2):
    from raysweep.tasks.defr.config import DefrConfig
    from raysweep.tasks.defr.model import build_defr_net

    torch.manual_seed(0)
    cfg = DefrConfig.model_validate({"classifier": {"init": "rand"},
                                     "model": {"width": 32, "heads": 2, "depth": depth, "patch_size": 16}})
    return build_defr_net(cfg, 5, None).eval()


@pytest.mark.parametrize("mode", ["additive_one", "hard"])
@pytest.mark.parametrize("layers", [1, 2])
def test_a_pair_covering_the_whole_image_reproduces_the_recognition_logits(mode, layers):
    net = _tiny_net()
    scorer = PairScorer(net, layers, mode)
    image = torch.randn(1, 3, 64, 64)
    boxes = np.array([[0.0, 0, 64, 64], [0.0, 0, 20, 20]])  # pair 0 covers the image, pair 1 does not
    with torch.no_grad():
        tokens = scorer.image_tokens(image)[0]
        logits = scorer.pair_logits(tokens, cls_marks(boxes, boxes, 64, 64, scorer.grid))
        torch.testing.assert_close(logits[:1], net(image), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(logits[1], logits[0])


def test_hard_mask_equals_dropping_the_outside_patches_in_the_last_block():
    """With one masked block, the CLS output under the hard mask is the block run on CLS + the two boxes' patches
    only: its query sees nothing else."""
    net = _tiny_net()
    scorer = PairScorer(net, 1, "hard")
    body = net.backbone.body
    image = torch.randn(1, 3, 64, 64)
    human, obj = np.array([[0.0, 0, 20, 20]]), np.array([[40.0, 40, 64, 64]])  # grid cells (0..1)^2 and (2..3)^2
    with torch.no_grad():
        tokens = scorer.image_tokens(image)
        marks = cls_marks(human, obj, 64, 64, 4)
        assert (~marks[0]).nonzero().flatten().tolist() == [0, 1, 4, 5, 10, 11, 14, 15]
        masked = scorer.pair_logits(tokens[0], marks)
        keep = torch.tensor([0] + [1 + p for p in (~marks[0]).nonzero().flatten().tolist()])
        cls = body.blocks[-1](tokens[:, keep])
        expected = net.classifier(body.forward_head(body.norm(cls)))
    torch.testing.assert_close(masked, expected, rtol=1e-5, atol=1e-5)


def test_additive_mask_adds_one_to_the_scaled_cls_logits():
    """The as-coded mode: a mark adds exactly +1.0 to the CLS query's scaled attention logit on that patch."""
    net = _tiny_net()
    attn = net.backbone.body.blocks[-1].attn
    x = torch.randn(1, 17, 32)
    marks = torch.zeros(1, 16, dtype=torch.bool)
    marks[0, 3] = True
    bias = attention_bias(marks, 1, "additive_one")
    with torch.no_grad():
        got = attn(x, attn_mask=bias.unsqueeze(1))
        q, k, v = attn.qkv(x).reshape(1, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-2, -1)) * 16 ** -0.5
        logits[:, :, 0, 4] += 1.0  # token 4 = patch 3
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(1, 17, 32)
        expected = attn.proj(out)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, attn(x))


def test_mask_layers_must_fit_the_backbone():
    from raysweep.errors import ConfigError

    with pytest.raises(ConfigError, match="mask_layers 3"):
        PairScorer(_tiny_net(depth=2), 3)


# ---- the detection file -----------------------------------------------------------------------------------------------
def test_detection_file_round_trip_and_hico_label_space(tmp_path):
    det = Detections(np.array([[1.0, 2, 30, 40], [5, 5, 9, 9]]), np.array([PERSON, CUP]), np.array([0.9, 0.4]))
    path = tmp_path / "det.json"
    write_detections(path, {"a.jpg": det}, labels="hico")
    assert json.loads(path.read_text())["images"]["a.jpg"]["labels"] == [49, 26]  # person, cup in HICO's order
    loaded = load_detections(path, ["a.jpg", "b.jpg"])
    assert loaded["a.jpg"].labels.tolist() == [PERSON, CUP]
    assert loaded["a.jpg"].boxes.tolist() == det.boxes.tolist()
    assert len(loaded["b.jpg"].scores) == 0


def test_reference_folder_layout_uses_hico_labels(tmp_path):
    (tmp_path / "HICO_test2015_00000001.json").write_text(
        json.dumps({"boxes": [[0, 0, 5, 5]], "labels": [49], "scores": [1.0]}))
    loaded = load_detections(tmp_path, ["HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg"])
    assert loaded["HICO_test2015_00000001.jpg"].labels.tolist() == [PERSON]
    assert len(loaded["HICO_test2015_00000002.jpg"].boxes) == 0


@pytest.mark.parametrize("entry, message", [
    ({"boxes": [[0, 0, 5]], "labels": [0], "scores": [1.0]}, "shape"),
    ({"boxes": [[0, 0, 5, 5]], "labels": [80], "scores": [1.0]}, "labels must be integers 0..79"),
    ({"boxes": [[0, 0, 5, 5]], "labels": [0], "scores": [1.5]}, r"scores must be in \[0, 1\]"),
    ({"boxes": [[6, 0, 5, 5]], "labels": [0], "scores": [0.5]}, "x2 < x1"),
    ({"boxes": [[0, 0, 5, 5]], "labels": [0, 1], "scores": [0.5]}, "one per box"),
    ({"boxes": [[0, 0, 5, 5]], "scores": [0.5]}, "missing key"),
])
def test_bad_detection_entries_name_file_image_and_key(tmp_path, entry, message):
    path = tmp_path / "det.json"
    path.write_text(json.dumps({"format": "raysweep-detections", "labels": "qpic", "images": {"x.jpg": entry}}))
    with pytest.raises(DataError, match=message) as info:
        load_detections(path, ["x.jpg"])
    assert "det.json" in str(info.value) and "x.jpg" in str(info.value)


def test_bad_detection_files(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_detections(tmp_path / "missing.json", [])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_detections(tmp_path / "bad.json", [])
    (tmp_path / "space.json").write_text(json.dumps({"labels": "coco", "images": {}}))
    with pytest.raises(DataError, match="'labels' is 'coco'"):
        load_detections(tmp_path / "space.json", [])


def _tiny_clip_net():
    """A CLIP-style ViT (open_clip's VisionTransformer, as the paper's CLIP ViT-B/16) at 64 px with 16 px patches."""
    from open_clip.transformer import VisionTransformer

    from raysweep.tasks.defr.backbones import Backbone, _ClipViTImageTower
    from raysweep.tasks.defr.classifier import HoiClassifier
    from raysweep.tasks.defr.model import DefrNet

    torch.manual_seed(0)
    visual = VisionTransformer(image_size=64, patch_size=16, width=32, layers=2, heads=2, mlp_ratio=2.0, output_dim=16)
    visual.proj = None
    backbone = Backbone(_ClipViTImageTower(visual), width=32, family="clip", name="open_clip:tiny")
    classifier = HoiClassifier("cosine", torch.randn(5, 32), log_scale=4.61, log_scale_trainable=False,
                               log_scale_max=4.61)
    return DefrNet(backbone, classifier).eval()


@pytest.mark.parametrize("mode", ["additive_one", "hard"])
def test_clip_vit_whole_image_pair_reproduces_recognition(mode):
    net = _tiny_clip_net()
    scorer = PairScorer(net, 1, mode)
    assert scorer.kind == "clip" and scorer.grid == 4
    image = torch.randn(1, 3, 64, 64)
    boxes = np.array([[0.0, 0, 64, 64], [0.0, 0, 20, 20]])  # pair 0 covers the image, pair 1 does not
    with torch.no_grad():
        logits = scorer.pair_logits(scorer.image_tokens(image)[0], cls_marks(boxes, boxes, 64, 64, 4))
        torch.testing.assert_close(logits[:1], net(image), rtol=1e-5, atol=1e-5)  # masks do not leak across pairs
        assert not torch.allclose(logits[1], logits[0])


def test_clip_vit_hard_mask_equals_dropping_the_outside_patches():
    net = _tiny_clip_net()
    scorer = PairScorer(net, 1, "hard")
    visual = net.backbone.body.visual
    image = torch.randn(1, 3, 64, 64)
    marks = cls_marks(np.array([[0.0, 0, 20, 20]]), np.array([[40.0, 40, 64, 64]]), 64, 64, 4)
    with torch.no_grad():
        tokens = scorer.image_tokens(image)
        keep = torch.tensor([0] + [1 + p for p in (~marks[0]).nonzero().flatten().tolist()])
        block_out = scorer._clip_blocks(tokens[:, keep], scorer.masked_blocks, None)
        expected = net.classifier(visual._pool(block_out)[0])
        torch.testing.assert_close(scorer.pair_logits(tokens[0], marks), expected, rtol=1e-5, atol=1e-5)


def test_pairs_beyond_the_mask_budget_are_chunked_with_the_same_result(monkeypatch):
    import raysweep.tasks.defr.detection_mask as detection_mask

    net = _tiny_net()
    scorer = PairScorer(net, 1, "hard")
    boxes = np.array([[0.0, 0, 16 * (i % 4 + 1), 64] for i in range(7)])
    with torch.no_grad():
        tokens = scorer.image_tokens(torch.randn(1, 3, 64, 64))[0]
        marks = cls_marks(boxes, boxes, 64, 64, 4)
        whole = scorer.pair_logits(tokens, marks)
        monkeypatch.setattr(detection_mask, "MASK_BUDGET", 2 * 17 * 17)  # two pairs per chunk
        torch.testing.assert_close(scorer.pair_logits(tokens, marks), whole, rtol=1e-6, atol=1e-6)
