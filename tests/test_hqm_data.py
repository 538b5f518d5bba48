"""HICO-DET training targets and the joint image/box transforms."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from raysweep.tasks.hqm.data import HicoDetTestSet, HicoDetTrainSet, build_pair_targets, collate, hoi_indices_valid
from raysweep.tasks.hqm.transforms import (Compose, Normalize, RandomResize, crop, hflip, resized_hw, eval_transforms,
                                           train_transforms)

RECORD = {
    "file_name": "a.png",
    "annotations": [
        {"bbox": [10, 20, 50, 80], "category_id": 1},  # person
        {"bbox": [60, 30, 90, 70], "category_id": 4},  # motorcycle -> QPIC index 3
        {"bbox": [0, 0, 30, 30], "category_id": 1},  # person
        {"bbox": [5, 5, 5, 40], "category_id": 2},  # zero width: dropped in training
    ],
    "hoi_annotation": [
        {"subject_id": 0, "object_id": 1, "category_id": 73},
        {"subject_id": 2, "object_id": 1, "category_id": 77},
        {"subject_id": 0, "object_id": 1, "category_id": 58},  # same pair: OR'd into the first row
        {"subject_id": 2, "object_id": 3, "category_id": 1},  # object box dropped: entry dropped
    ],
}


def _target(boxes):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "box_ids": torch.arange(len(boxes))}


def test_pairs_grouped_in_first_appearance_order_with_multi_hot_verbs():
    boxes = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2], [0.3, 0.3, 0.3, 0.3]])
    t = build_pair_targets(RECORD, boxes, torch.tensor([0, 1, 2]))
    assert t["obj_labels"].tolist() == [3, 3]
    assert t["verb_labels"].shape == (2, 117)
    assert t["verb_labels"][0].nonzero().flatten().tolist() == [57, 72]
    assert t["verb_labels"][1].nonzero().flatten().tolist() == [76]
    torch.testing.assert_close(t["sub_boxes"], boxes[[0, 2]])
    torch.testing.assert_close(t["obj_boxes"], boxes[[1, 1]])


def test_pairs_whose_boxes_were_cropped_away_disappear():
    t = build_pair_targets(RECORD, torch.rand(2, 4), torch.tensor([0, 2]))  # box 1 (the object) is gone
    assert t["obj_labels"].shape == (0,) and t["verb_labels"].shape == (0, 117) and t["sub_boxes"].shape == (0, 4)


def test_records_pointing_past_their_boxes_are_dropped_from_training(tmp_path):
    bad = {**RECORD, "hoi_annotation": [{"subject_id": 0, "object_id": 7, "category_id": 1}]}
    assert hoi_indices_valid(RECORD) and not hoi_indices_valid(bad)
    assert len(HicoDetTrainSet([RECORD, bad], tmp_path, None)) == 1


def test_train_item_clamps_drops_degenerate_boxes_and_caps_box_count(tmp_path):
    Image.new("RGB", (80, 100), (120, 30, 30)).save(tmp_path / "a.png")  # narrower than box 1's x2 = 90
    ds = HicoDetTrainSet([RECORD], tmp_path, Compose([Normalize()]))
    image, t = ds[0]
    assert image.shape == (3, 100, 80)
    assert t["size"].tolist() == [100, 80] and t["orig_size"].tolist() == [100, 80]
    # object box clamped to x2 = 80: xyxy [60, 30, 80, 70] -> cxcywh-n
    torch.testing.assert_close(t["obj_boxes"][0], torch.tensor([70 / 80, 50 / 100, 20 / 80, 40 / 100]))
    assert t["obj_labels"].tolist() == [3, 3]  # the pair with the zero-width box is gone
    capped = HicoDetTrainSet([RECORD], tmp_path, Compose([Normalize()]), max_boxes=2)[0][1]
    assert capped["obj_labels"].tolist() == [3]  # box 2 (second subject) is beyond the first 2 annotations


def test_hflip_and_crop_and_resize_boxes():
    img = Image.new("RGB", (100, 50))
    _, t = hflip(img, _target([[10, 5, 30, 20]]))
    assert t["boxes"].tolist() == [[70, 5, 90, 20]]
    _, t = crop(img, _target([[10, 5, 30, 20], [60, 10, 90, 40], [0, 0, 5, 5]]), top=8, left=20, height=30, width=50)
    assert t["boxes"].tolist() == [[0, 0, 10, 12], [40, 2, 50, 30]] and t["box_ids"].tolist() == [0, 1]
    img2, t = RandomResize([25])(img, _target([[10, 5, 30, 20]]))
    assert img2.size == (50, 25) and t["boxes"].tolist() == [[5, 2.5, 15, 10]]


def test_resized_size_caps_the_long_side():
    # 800 * 2 > 1333: short side round(666.5) = 666 (round half to even), long side int(666 * 2) = 1332
    assert resized_hw(1000, 500, 800, 1333) == (666, 1332)
    assert resized_hw(640, 480, 800, 1333) == (800, 1066)
    assert resized_hw(480, 640, 480, 1333) == (640, 480)  # already the requested size


def test_train_transforms_output_normalised_boxes():
    random.seed(0)
    torch.manual_seed(0)
    tf = train_transforms((48, 56, 64), 100, (40, 48), 32, 48)
    img = Image.new("RGB", (120, 90), (40, 200, 90))
    for _ in range(20):
        image, t = tf(img, _target([[10, 10, 60, 80], [50, 20, 110, 60]]))
        h, w = image.shape[-2:]
        assert t["size"].tolist() == [h, w] and min(h, w) <= 64 and max(h, w) <= 100
        b = t["boxes"]
        assert ((b[:, :2] >= 0) & (b[:, :2] <= 1)).all() and (b[:, 2:] > 0).all()


def test_test_set_and_collate(tmp_path):
    Image.new("RGB", (60, 40)).save(tmp_path / "a.png")
    Image.new("RGB", (30, 50)).save(tmp_path / "b.png")
    ds = HicoDetTestSet([RECORD, {**RECORD, "file_name": "b.png"}], tmp_path, eval_transforms(40, 100))
    batch, metas = collate([ds[0], ds[1]])
    assert [m["index"] for m in metas] == [0, 1]
    assert metas[1]["orig_size"].tolist() == [50, 30] and metas[0]["size"].tolist() == [40, 60]
    assert batch.tensors.shape == (2, 3, 66, 60) and batch.mask[1, :, 40:].all()  # b -> 40 x 66


def test_missing_image_is_a_data_error(tmp_path):
    from raysweep.errors import DataError

    with pytest.raises(DataError, match="a.png"):
        HicoDetTestSet([RECORD], tmp_path, eval_transforms(40, 100))[0]
