"""The hqm task on V-COCO (docs/hqm.md): training targets with missing objects, and the model's per-image
output turned into the official per-detection structure that `raysweep.metrics.vcoco` scores.

Sizes as QPIC trains V-COCO: 29 verb classes, 81 object classes (80 COCO + "missing", label 80) plus no-object, so
the object head has 82 logits. A hoi without object (object_id -1) gives label 80 and an all-zero object box, which
the matcher and the criterion leave out of the object box terms.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from raysweep.data.hicodet import coco_id_to_index
from raysweep.data.vcoco import (
    ACTIONS,
    MISSING_OBJECT,
    NUM_ACTIONS,
    NUM_VERBS,
    ROLE_PAIRS,
    VERB_ACTION,
    image_id_from_file_name,
)
from raysweep.metrics.vcoco_predictions import VcocoDetections
from raysweep.tasks.hqm.data import HicoDetTrainSet

log = logging.getLogger(__name__)

NUM_OBJECT_CLASSES = MISSING_OBJECT + 1  # 80 COCO classes + "missing"; the model adds the no-object logit


def build_vcoco_pair_targets(record: Mapping, boxes_cxcywh: torch.Tensor, box_ids: torch.Tensor,
                             num_verbs: int = NUM_VERBS) -> dict[str, torch.Tensor]:
    """QPIC's V-COCO training targets: hoi entries grouped by (subject_id, object_id) in first-appearance order,
    object_id -1 included (label 80, zero box), so all object-less verbs of a person share one target.

    boxes_cxcywh [N, 4] and box_ids [N]: the boxes that survived the transforms; entries whose subject or (existing)
    object box was removed are dropped.
    """
    row_of = {int(b): i for i, b in enumerate(box_ids.tolist())}
    pairs: dict[tuple[int, int], int] = {}
    verbs: list[torch.Tensor] = []
    for hoi in record["hoi_annotation"]:
        s, o = int(hoi["subject_id"]), int(hoi["object_id"])
        if s not in row_of or (o >= 0 and o not in row_of):
            continue
        g = pairs.setdefault((s, o), len(pairs))
        if g == len(verbs):
            verbs.append(torch.zeros(num_verbs))
        verbs[g][int(hoi["category_id"])] = 1.0
    anns = record["annotations"]
    zero = boxes_cxcywh.new_zeros(4)
    return {
        "obj_labels": torch.tensor([coco_id_to_index(anns[o]["category_id"]) if o >= 0 else MISSING_OBJECT
                                    for _, o in pairs], dtype=torch.int64),
        "verb_labels": torch.stack(verbs) if verbs else torch.zeros((0, num_verbs)),
        "sub_boxes": boxes_cxcywh[[row_of[s] for s, _ in pairs]].reshape(-1, 4),
        "obj_boxes": torch.stack([boxes_cxcywh[row_of[o]] if o >= 0 else zero for _, o in pairs]).reshape(-1, 4)
        if pairs else boxes_cxcywh.new_zeros((0, 4)),
    }


class VcocoTrainSet(HicoDetTrainSet):
    """QPIC-layout V-COCO training records; items as `HicoDetTrainSet`'s, targets with missing objects
    (`build_vcoco_pair_targets`). No record is dropped: `load_vcoco` checked every index (-1 = no object)."""

    def pair_targets(self, record: Mapping, boxes_cxcywh: torch.Tensor, box_ids: torch.Tensor) -> dict:
        return build_vcoco_pair_targets(record, boxes_cxcywh, box_ids, self.num_verbs)


def extended_correct_mat(correct_mat: np.ndarray) -> np.ndarray:
    """[29, 80] -> [29, 81] float: a ones column for the missing object, which never masks a verb."""
    return np.concatenate([correct_mat.astype(np.float64), np.ones((correct_mat.shape[0], 1))], axis=1)


# verb columns of each action's roles, and the actions whose agent score is the max of two role scores
_ROLE_VERBS = [[v for v, (a, r) in enumerate(VERB_ACTION) if a == ai and r >= 0] for ai in range(NUM_ACTIONS)]
_AGENT_ONLY = [next(v for v, (a, r) in enumerate(VERB_ACTION) if a == ai) if not roles else -1
               for ai, (_, roles) in enumerate(ACTIONS)]


def to_official_detections(image_id: int, prediction: Mapping[str, np.ndarray], correct_ext: np.ndarray
                           ) -> VcocoDetections:
    """One image's `postprocess_hoi` output -> one official detection per query (QPIC's
    `generate_vcoco_official.py`):

    score[q, v] = verb_scores[q, v] (sigmoid x object score) x M[v, obj_label[q]]; the object box is NaN when the
    label is 80 (missing); agent-only verbs give `<action>_agent`; every other verb gives its role entry, and the
    action's agent score is the role score (the max over both roles for cut, hit and eat).
    """
    boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(prediction["labels"]).astype(np.int64)
    sub = np.asarray(prediction["sub_ids"]).astype(np.int64)
    obj = np.asarray(prediction["obj_ids"]).astype(np.int64)
    obj_label = labels[obj]
    verb_scores = np.asarray(prediction["verb_scores"], dtype=np.float64).reshape(len(sub), correct_ext.shape[0])
    scores = verb_scores * correct_ext[:, obj_label].T  # [Q, 29]
    q = len(sub)
    out = VcocoDetections.empty(q)
    out.image_ids[:] = image_id
    out.person_boxes[:] = boxes[sub]
    obj_boxes = np.where((obj_label == MISSING_OBJECT)[:, None], np.nan, boxes[obj])
    for a in range(NUM_ACTIONS):
        if _AGENT_ONLY[a] >= 0:
            out.agent_scores[a] = scores[:, _AGENT_ONLY[a]]
            continue
        for v in _ROLE_VERBS[a]:
            r = VERB_ACTION[v][1]
            k = ROLE_PAIRS.index((a, r))
            out.role_boxes[k] = obj_boxes
            out.role_scores[k] = scores[:, v]
        out.agent_scores[a] = scores[:, _ROLE_VERBS[a]].max(axis=1)
    return out


def detections_for_records(records: Sequence[Mapping], predictions: Sequence[Mapping], correct_mat: np.ndarray
                           ) -> VcocoDetections:
    """All test images' detections, in record order."""
    ext = extended_correct_mat(correct_mat)
    return VcocoDetections.concatenate([to_official_detections(image_id_from_file_name(r["file_name"]), p, ext)
                                        for r, p in zip(records, predictions)])
