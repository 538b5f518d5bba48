"""HICO-DET datasets over QPIC-layout records (targets built as QPIC's `HICODetection` does) and the batch collate.

Training items: (image [3, H, W] normalised, target) with target
    obj_labels [G] int64 (QPIC object index), verb_labels [G, V] float multi-hot,
    sub_boxes / obj_boxes [G, 4] cxcywh normalised by the augmented image size,
    size [2] (h, w) of the augmented image, orig_size [2] (h, w) of the file;
one row per unique (subject, object) box pair in first-appearance order. An image whose pairs were all cropped
away yields G = 0 (it still teaches "no object" and "no verb").
Test items: (image, {orig_size, size, index}); ground truth stays in the records for the evaluator.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from raysweep.data.hicodet import NUM_VERBS, coco_id_to_index
from raysweep.errors import DataError

from .padded import PaddedBatch

log = logging.getLogger(__name__)


def hoi_indices_valid(record: Mapping) -> bool:
    """QPIC drops a training image when a hoi entry points past its box list."""
    n = len(record["annotations"])
    return all(h["subject_id"] < n and h["object_id"] < n for h in record["hoi_annotation"])


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image {str(path)!r}: {e}") from None


def build_pair_targets(record: Mapping, boxes_cxcywh: torch.Tensor, box_ids: torch.Tensor,
                       num_verbs: int = NUM_VERBS) -> dict[str, torch.Tensor]:
    """Group the record's hoi entries by (subject_id, object_id) over the boxes that survived the transforms.

    boxes_cxcywh [N, 4] and box_ids [N] (index of each surviving box in the record) -> obj_labels, verb_labels,
    sub_boxes, obj_boxes (see the module docstring). Entries whose subject or object box was removed are dropped.
    """
    row_of = {int(b): i for i, b in enumerate(box_ids.tolist())}
    pairs: dict[tuple[int, int], int] = {}
    verbs: list[torch.Tensor] = []
    for hoi in record["hoi_annotation"]:
        s, o = int(hoi["subject_id"]), int(hoi["object_id"])
        if s not in row_of or o not in row_of:
            continue
        g = pairs.setdefault((s, o), len(pairs))
        if g == len(verbs):
            verbs.append(torch.zeros(num_verbs))
        verbs[g][int(hoi["category_id"]) - 1] = 1.0
    subs = [row_of[s] for s, _ in pairs]
    objs = [row_of[o] for _, o in pairs]
    anns = record["annotations"]
    return {
        "obj_labels": torch.tensor([coco_id_to_index(anns[o]["category_id"]) for _, o in pairs], dtype=torch.int64),
        "verb_labels": torch.stack(verbs) if verbs else torch.zeros((0, num_verbs)),
        "sub_boxes": boxes_cxcywh[subs].reshape(-1, 4),
        "obj_boxes": boxes_cxcywh[objs].reshape(-1, 4),
    }


class HicoDetTrainSet(Dataset):
    """QPIC-layout HICO-DET training records (records whose hoi entries point past their boxes are dropped)."""

    def __init__(self, records: Sequence[Mapping], image_dir: Path | str, transforms: Callable,
                 max_boxes: int = 100, num_verbs: int = NUM_VERBS):
        self.records = [r for r in records if hoi_indices_valid(r)]
        if len(self.records) < len(records):
            log.info("dropped %d training records whose hoi entries reference missing boxes",
                     len(records) - len(self.records))
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.max_boxes = max_boxes
        self.num_verbs = num_verbs

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int):
        rec = self.records[idx]
        image = _open_rgb(self.image_dir / rec["file_name"])
        w, h = image.size
        anns = rec["annotations"][: self.max_boxes]  # QPIC: at most num_queries boxes per image
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 0::2].clamp_(0, w)
        boxes[:, 1::2].clamp_(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target = {"boxes": boxes[keep], "box_ids": torch.arange(len(anns))[keep]}
        image, target = self.transforms(image, target)
        out = self.pair_targets(rec, target["boxes"], target["box_ids"])
        out["size"] = target["size"]
        out["orig_size"] = torch.tensor([h, w])
        return image, out


    def pair_targets(self, record: Mapping, boxes_cxcywh: torch.Tensor, box_ids: torch.Tensor) -> dict:
        """The dataset's training targets over the boxes that survived the transforms."""
        return build_pair_targets(record, boxes_cxcywh, box_ids, self.num_verbs)


class HicoDetTestSet(Dataset):
    """Every record, in order (no filtering); the item's `index` keys the evaluator's predictions."""

    def __init__(self, records: Sequence[Mapping], image_dir: Path | str, transforms: Callable):
        self.records = list(records)
        self.image_dir = Path(image_dir)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int):
        image = _open_rgb(self.image_dir / self.records[idx]["file_name"])
        w, h = image.size
        no_boxes = {"boxes": torch.zeros((0, 4)), "box_ids": torch.zeros(0, dtype=torch.int64)}
        image, target = self.transforms(image, no_boxes)
        return image, {"orig_size": torch.tensor([h, w]), "size": target["size"], "index": idx}


def collate(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[PaddedBatch, list[dict]]:
    """-> (images padded bottom-right to the batch max with mask, list of targets)."""
    images, targets = zip(*batch)
    return PaddedBatch.from_images(images), list(targets)


def targets_to(targets: Sequence[Mapping], device: torch.device) -> list[dict]:
    return [{k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
            for t in targets]
