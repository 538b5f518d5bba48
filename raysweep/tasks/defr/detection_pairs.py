"""DEFR detection, step 1: offline detections -> (human, object) pairs, their prior, and their final scores.

Follows the reference's `PairGenerator` in eval mode and its prior / rescoring (`eval/cache.py`):

1. keep detections with score >= `score_thresh` (humans and objects alike);
2. class-wise NMS (`torchvision.ops.batched_nms`: suppressed when IoU > `nms_thresh` with a higher-scoring box of
   the same label; continuous IoU);
3. by score, descending: the first `max_human` humans and the first `max_object` non-humans, humans first;
4. no pairs when there is no human or only one box; else every (i, j) with i a human, j any other box, row-major.
   Humans are objects too, so human-human pairs appear in both directions.

The prior of a pair is [2, C]: s_h = d_h^p on row 0 and s_o = d_o^p on row 1, at the classes of the object's
label only (the only place the object class restricts the C classes); 0 elsewhere.

Boxes are continuous xyxy (pixel i spans [i, i+1]) in the original image frame; labels are QPIC object indices
(0..79 in COCO order, person = 0), the same space raysweep's HICO-DET predictions use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
from torchvision.ops import batched_nms

PERSON = 0  # QPIC object index of "person"
INFERENCE_PRIOR_POWER = 2.8  # the reference's p at test time (1.0 in its unused training mode)
CACHE_EXPONENTS = (6.0, 3.0, 1.0)  # eval/cache.py's (h_p, o_p, i_p)

Rescoring = Literal["test", "cache"]


@dataclass(frozen=True)
class PairingOptions:
    """The reference's `PairGenerator` defaults (hoi_detection/configs/defaults.yaml)."""

    score_thresh: float = 0.2
    nms_thresh: float = 0.5
    max_human: int = 15
    max_object: int = 15


@dataclass
class ImagePairs:
    """The kept detections of one image (humans first) and its pairs.

    boxes [n, 4] continuous xyxy, labels [n] int64, scores [n] float; human_index [P] and object_index [P] index
    them (P = n_h · (n − 1), or 0)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    num_humans: int
    human_index: np.ndarray
    object_index: np.ndarray

    @property
    def num_pairs(self) -> int:
        return len(self.human_index)


def kept_detections(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                    options: PairingOptions = PairingOptions()) -> tuple[np.ndarray, int]:
    """Indices of the detections that survive steps 1-3, humans first (each group by score), and the human count."""
    boxes_t = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    scores_t = torch.as_tensor(np.asarray(scores, dtype=np.float64).reshape(-1))
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))
    keep = torch.nonzero(scores_t >= options.score_thresh).flatten()
    if len(keep) == 0:
        return np.zeros(0, dtype=np.int64), 0
    survivors = keep[batched_nms(boxes_t[keep], scores_t[keep], labels_t[keep], options.nms_thresh)]
    # batched_nms returns survivors by decreasing score; a stable sort keeps that order and makes ties deterministic
    order = torch.sort(scores_t[survivors], descending=True, stable=True).indices
    survivors = survivors[order].numpy()
    is_human = labels_t.numpy()[survivors] == PERSON
    humans = survivors[is_human][: options.max_human]
    objects = survivors[~is_human][: options.max_object]
    return np.concatenate([humans, objects]).astype(np.int64), len(humans)


def pair_up(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
            options: PairingOptions = PairingOptions()) -> ImagePairs:
    """Steps 1-4 for one image's detections (boxes [M, 4], labels [M], scores [M])."""
    index, n_h = kept_detections(boxes, labels, scores, options)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[index]
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)[index]
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)[index]
    n = len(index)
    if n_h == 0 or n <= 1:
        empty = np.zeros(0, dtype=np.int64)
        return ImagePairs(boxes, labels, scores, n_h, empty, empty)
    h, o = np.meshgrid(np.arange(n_h), np.arange(n), indexing="ij")
    distinct = h != o
    return ImagePairs(boxes, labels, scores, n_h, h[distinct].astype(np.int64), o[distinct].astype(np.int64))


# ---- classes, prior and scores ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HoiClassMap:
    """Model class c <-> (HICO-DET verb index 0..116, QPIC object index 0..79); classes not in the map score nothing.

    Model class c is HICO-DET's `hoi_category_id` c + 1 (true for HICO's 600 classes and for the synthetic sets)."""

    num_classes: int
    verbs: np.ndarray  # [C] int64, -1 when unknown
    objects: np.ndarray  # [C] int64, -1 when unknown

    def classes_of(self, obj: int) -> np.ndarray:
        """The model classes whose object is `obj` (the reference's `object_to_interaction`), ascending."""
        return np.flatnonzero(self.objects == int(obj))

    @classmethod
    def from_triplets(cls, num_classes: int, triplets: Mapping[int, tuple[int, int]]) -> "HoiClassMap":
        """triplets: model class -> (verb index, object index)."""
        verbs = np.full(num_classes, -1, dtype=np.int64)
        objects = np.full(num_classes, -1, dtype=np.int64)
        for c, (verb, obj) in triplets.items():
            verbs[c], objects[c] = verb, obj
        return cls(num_classes, verbs, objects)


def pair_prior(score_h: float, score_o: float, object_label: int, class_map: HoiClassMap,
               power: float = INFERENCE_PRIOR_POWER) -> np.ndarray:
    """[2, C] float64: row 0 = score_h^power and row 1 = score_o^power at the object's classes, 0 elsewhere."""
    prior = np.zeros((2, class_map.num_classes))
    classes = class_map.classes_of(object_label)
    prior[0, classes] = float(score_h) ** power
    prior[1, classes] = float(score_o) ** power
    return prior


def pair_scores(probabilities: np.ndarray, score_h: np.ndarray, score_o: np.ndarray, rescoring: Rescoring = "cache",
                power: float = INFERENCE_PRIOR_POWER,
                exponents: Sequence[float] = CACHE_EXPONENTS) -> np.ndarray:
    """Final scores [P, K] from sigmoid probabilities [P, K] and the raw detection scores [P] of each pair.

    "test": test.py's σ · (d_h · d_o)^power. "cache": eval/cache.py's rescoring σ^i_p · d_h^h_p · d_o^o_p with
    exponents (h_p, o_p, i_p), (6, 3, 1) in the script; it is what the reference's official numbers went through.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    d_h = np.asarray(score_h, dtype=np.float64)[:, None]
    d_o = np.asarray(score_o, dtype=np.float64)[:, None]
    if rescoring == "test":
        return probabilities * d_h**power * d_o**power
    if rescoring == "cache":
        h_p, o_p, i_p = (float(e) for e in exponents)
        return probabilities**i_p * d_h**h_p * d_o**o_p
    raise ValueError(f"unknown rescoring {rescoring!r}; use 'test' or 'cache'")
