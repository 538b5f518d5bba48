"""Hungarian matching of HOI queries to ground-truth (subject, object) pairs (QPIC's matcher)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou

Indices = list[tuple[torch.Tensor, torch.Tensor]]  # per image: (query indices, GT pair indices), int64
COST_KEYS = ("pred_obj_logits", "pred_verb_logits", "pred_sub_boxes", "pred_obj_boxes")


def cxcywh_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise GIoU of cxcywh boxes: [N, 4] x [M, 4] -> [N, M]."""
    return generalized_box_iou(box_convert(a, "cxcywh", "xyxy"), box_convert(b, "cxcywh", "xyxy"))


class HungarianMatcher(nn.Module):
    """One-to-one assignment minimising w_obj*C_obj + w_verb*C_verb + w_L1*C_L1 + w_GIoU*C_GIoU per image.

    The box terms take the worse of subject and object (max), so a query must fit both boxes of a pair.
    """

    def __init__(self, cost_obj_class: float = 1.0, cost_verb_class: float = 1.0, cost_bbox: float = 2.5,
                 cost_giou: float = 1.0):
        super().__init__()
        self.cost_obj_class = cost_obj_class
        self.cost_verb_class = cost_verb_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou

    @torch.no_grad()
    def cost_matrix(self, outputs: Mapping[str, torch.Tensor],
                    targets: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """-> [B*Q, total GT pairs] cost, queries of all images against the pairs of all images."""
        out_obj_prob = outputs["pred_obj_logits"].flatten(0, 1).softmax(-1)  # [BQ, C+1]
        out_verb_prob = outputs["pred_verb_logits"].flatten(0, 1).sigmoid()  # [BQ, V]
        out_sub = outputs["pred_sub_boxes"].flatten(0, 1)
        out_obj = outputs["pred_obj_boxes"].flatten(0, 1)
        tgt_obj_labels = torch.cat([t["obj_labels"] for t in targets])
        tgt_verbs = torch.cat([t["verb_labels"] for t in targets]).to(out_verb_prob.dtype)  # [G, V]
        tgt_sub = torch.cat([t["sub_boxes"] for t in targets])
        tgt_obj = torch.cat([t["obj_boxes"] for t in targets])

        cost_obj = -out_obj_prob[:, tgt_obj_labels]
        pos = out_verb_prob @ tgt_verbs.T / (tgt_verbs.sum(1) + 1e-4)
        neg = (1 - out_verb_prob) @ (1 - tgt_verbs).T / ((1 - tgt_verbs).sum(1) + 1e-4)
        cost_verb = -(pos + neg) / 2

        has_obj = (tgt_obj != 0).any(1)  # V-COCO pairs without an object box; always true on HICO-DET
        cost_sub_l1 = torch.cdist(out_sub, tgt_sub, p=1)
        cost_obj_l1 = torch.cdist(out_obj, tgt_obj, p=1) * has_obj[None]
        cost_l1 = torch.maximum(cost_sub_l1, cost_obj_l1)
        cost_sub_giou = -cxcywh_giou(out_sub, tgt_sub)
        cost_obj_giou = -cxcywh_giou(out_obj, tgt_obj) + cost_sub_giou * (~has_obj)[None]
        cost_giou = torch.maximum(cost_sub_giou, cost_obj_giou)
        return (self.cost_obj_class * cost_obj + self.cost_verb_class * cost_verb
                + self.cost_bbox * cost_l1 + self.cost_giou * cost_giou)

    @torch.no_grad()
    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]) -> Indices:
        """outputs: pred_obj_logits [B, Q, C+1], pred_verb_logits [B, Q, V], pred_{sub,obj}_boxes [B, Q, 4] cxcywh-n;
        targets[i]: obj_labels [n_i], verb_labels [n_i, V] multi-hot, {sub,obj}_boxes [n_i, 4] cxcywh-n."""
        return self.match_layers([outputs], targets)[0]

    @torch.no_grad()
    def match_layers(self, layers: Sequence[Mapping[str, torch.Tensor]],
                     targets: Sequence[Mapping[str, torch.Tensor]]) -> list[Indices]:
        """`forward` for every decoder layer: the layers' costs in one computation and one device→host copy."""
        b, q = layers[0]["pred_obj_logits"].shape[:2]
        sizes = [int(t["obj_labels"].shape[0]) for t in targets]
        empty = torch.empty(0, dtype=torch.int64)
        if sum(sizes) == 0:
            return [[(empty, empty) for _ in range(b)] for _ in layers]
        stacked = {key: torch.cat([out[key] for out in layers]) for key in COST_KEYS}  # layers as more images
        costs = self.cost_matrix(stacked, targets).view(len(layers), b, q, -1).float().cpu()
        result = []
        for cost in costs:
            indices = []
            for i, block in enumerate(cost.split(sizes, -1)):
                rows, cols = linear_sum_assignment(block[i].numpy())
                indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
            result.append(indices)
        return result
