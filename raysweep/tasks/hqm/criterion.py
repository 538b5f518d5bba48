"""QPIC's set criterion (spec §E.6) plus HQM's hard-positive branch terms (spec §F.6).

Per decoder layer (the final one and, with aux loss, each earlier one: suffix `_0`..`_{L-2}`):
  main  (`loss_*`):     Hungarian-matched; obj CE over all queries (eos weight on no-object), verb loss over all
                        queries, L1 and GIoU on matched pairs.
  GBS   (`loss_gt_*`):  shifted-GT queries supervised index-aligned by their own GT pair (no matching).
  AMM   (`loss_occ_*`): masked copy of the learnable queries, supervised with the main branch's assignment of
                        the same layer; obj CE and verb loss on the matched queries only.
Hard-branch weights are `hard_weight` x the main weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert

from .matcher import HungarianMatcher, Indices

TERMS = ("obj_ce", "verb_ce", "sub_bbox", "obj_bbox", "sub_giou", "obj_giou")
BRANCH_PREFIX = {"main": "loss_", "gbs": "loss_gt_", "amm": "loss_occ_"}


@dataclass(frozen=True)
class LossWeights:
    obj_ce: float = 1.0
    verb_ce: float = 1.0
    bbox: float = 2.5  # both sub_bbox and obj_bbox
    giou: float = 1.0  # both sub_giou and obj_giou

    def of(self, term: str) -> float:
        return {"obj_ce": self.obj_ce, "verb_ce": self.verb_ce, "sub_bbox": self.bbox, "obj_bbox": self.bbox,
                "sub_giou": self.giou, "obj_giou": self.giou}[term]


def paired_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of a[i] with b[i]; a, b [N, 4] cxcywh -> [N] (the diagonal of torchvision's pairwise matrix)."""
    a = box_convert(a, "cxcywh", "xyxy")
    b = box_convert(b, "cxcywh", "xyxy")
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(1)
    union = area_a + area_b - inter
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1)
    return inter / union - (hull - union) / hull


def focal_verb_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """QPIC's focal-style verb loss (no alpha, gamma 2) on any shape; targets in {0, 1}.

    pos = sum_{t=1} log(p)(1-p)^2, neg = sum_{t=0} log(1-p) p^2; -(pos+neg)/num_pos, or -neg when num_pos = 0.
    log p and log(1-p) come from logsigmoid, which equals log(sigmoid) but stays finite for large |logits|.
    """
    p = logits.sigmoid()
    pos_mask = targets.eq(1)
    pos = (F.logsigmoid(logits) * (1 - p) ** 2)[pos_mask].sum()
    neg = (F.logsigmoid(-logits) * p ** 2)[targets.lt(1)].sum()
    num_pos = pos_mask.sum()
    if num_pos == 0:
        return -neg
    return -(pos + neg) / num_pos


def verb_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "focal":
        return focal_verb_loss(logits, targets)
    if logits.numel() == 0:
        return logits.sum()
    return F.binary_cross_entropy_with_logits(logits, targets)


def box_losses(src_sub: torch.Tensor, src_obj: torch.Tensor, tgt_sub: torch.Tensor, tgt_obj: torch.Tensor,
               num_interactions: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 and 1-GIoU sums over matched pairs ([M, 4] cxcywh-n each). Subject terms are divided by N_int (all
    pairs of the batch, averaged over workers); object terms by the local count of existing object boxes."""
    exist = (tgt_obj != 0).any(1).to(src_sub.dtype)
    denom_obj = exist.sum() + 1e-4
    out = {
        "sub_bbox": F.l1_loss(src_sub, tgt_sub, reduction="none").sum() / num_interactions,
        "obj_bbox": (F.l1_loss(src_obj, tgt_obj, reduction="none") * exist[:, None]).sum() / denom_obj,
    }
    if src_sub.shape[0] == 0:
        zero = src_sub.sum() + src_obj.sum()
        return {**out, "sub_giou": zero, "obj_giou": zero}
    out["sub_giou"] = (1 - paired_giou(src_sub, tgt_sub)).sum() / num_interactions
    out["obj_giou"] = ((1 - paired_giou(src_obj, tgt_obj)) * exist).sum() / denom_obj
    return out


def _gather(outputs: Mapping[str, torch.Tensor], indices: Indices, key: str) -> torch.Tensor:
    return torch.cat([outputs[key][i, q] for i, (q, _) in enumerate(indices)])


def _gather_targets(targets: Sequence[Mapping[str, torch.Tensor]], indices: Indices, key: str) -> torch.Tensor:
    return torch.cat([t[key][g.to(t[key].device)] for t, (_, g) in zip(targets, indices)])


def count_interactions(targets: Sequence[Mapping[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
    """N_int: GT pairs in the batch, averaged over workers when torch.distributed runs, at least 1."""
    n = torch.tensor(float(sum(int(t["obj_labels"].shape[0]) for t in targets)), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return n.clamp(min=1)


class SetCriterion(nn.Module):
    def __init__(self, num_obj_classes: int, matcher: HungarianMatcher, weights: LossWeights = LossWeights(),
                 eos_coef: float = 0.1, verb_loss_type: Literal["focal", "bce"] = "focal", hard_weight: float = 0.8):
        super().__init__()
        self.num_obj_classes = num_obj_classes
        self.matcher = matcher
        self.weights = weights
        self.verb_loss_type = verb_loss_type
        self.hard_weight = hard_weight
        empty_weight = torch.ones(num_obj_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def weight_of(self, key: str) -> float:
        """Weight of a loss key such as `loss_verb_ce_3` or `loss_gt_sub_bbox`."""
        for branch in ("gbs", "amm", "main"):
            prefix = BRANCH_PREFIX[branch]
            if key.startswith(prefix):
                rest = key[len(prefix):]
                term = next(t for t in TERMS if rest == t or rest.startswith(t + "_"))
                scale = 1.0 if branch == "main" else self.hard_weight
                return scale * self.weights.of(term)
        raise KeyError(key)

    def weighted_total(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weight_of(k) * v for k, v in losses.items() if k.startswith("loss_"))

    # ---- one layer of one branch ------------------------------------------------------------------------------
    def main_terms(self, out: Mapping[str, torch.Tensor], targets, indices: Indices, n_int) -> dict[str, torch.Tensor]:
        logits = out["pred_obj_logits"]
        target_classes = torch.full(logits.shape[:2], self.num_obj_classes, dtype=torch.int64, device=logits.device)
        verb_targets = torch.zeros_like(out["pred_verb_logits"])
        for i, (q, g) in enumerate(indices):
            target_classes[i, q] = targets[i]["obj_labels"][g]
            verb_targets[i, q] = targets[i]["verb_labels"][g].to(verb_targets.dtype)
        terms = {
            "obj_ce": F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight),
            "verb_ce": verb_loss(out["pred_verb_logits"], verb_targets, self.verb_loss_type),
        }
        return {**terms, **self._matched_box_terms(out, targets, indices, n_int)}

    def selected_terms(self, out: Mapping[str, torch.Tensor], targets, indices: Indices,
                       n_int) -> dict[str, torch.Tensor]:
        """Hard-branch terms: every loss only on the queries in `indices`."""
        logits = _gather(out, indices, "pred_obj_logits")
        labels = _gather_targets(targets, indices, "obj_labels")
        if labels.numel() == 0:
            obj_ce = logits.sum() * 0
        else:
            obj_ce = F.cross_entropy(logits, labels, self.empty_weight)
        verbs = _gather(out, indices, "pred_verb_logits")
        verb_targets = _gather_targets(targets, indices, "verb_labels").to(verbs.dtype)
        terms = {"obj_ce": obj_ce, "verb_ce": verb_loss(verbs, verb_targets, self.verb_loss_type)}
        return {**terms, **self._matched_box_terms(out, targets, indices, n_int)}

    def _matched_box_terms(self, out, targets, indices: Indices, n_int) -> dict[str, torch.Tensor]:
        return box_losses(_gather(out, indices, "pred_sub_boxes"), _gather(out, indices, "pred_obj_boxes"),
                          _gather_targets(targets, indices, "sub_boxes"),
                          _gather_targets(targets, indices, "obj_boxes"), n_int)

    # ---- all layers, all branches -------------------------------------------------------------------------------
    def forward(self, outputs: Mapping, targets: Sequence[Mapping[str, torch.Tensor]],
                num_interactions: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """-> unweighted terms keyed `loss_<term>[_<layer>]`, `loss_gt_*`, `loss_occ_*`, plus logged-only extras.

        outputs: the model's training output (main predictions, `aux_outputs`, optional `gbs` / `amm`).
        """
        device = outputs["pred_obj_logits"].device
        n_int = num_interactions if num_interactions is not None else count_interactions(targets, device)
        layers = [outputs] + list(outputs.get("aux_outputs", []))
        suffixes = [""] + [f"_{i}" for i in range(len(layers) - 1)]
        losses: dict[str, torch.Tensor] = {}
        main_indices = []
        for out, sfx in zip(layers, suffixes):
            indices = self.matcher(out, targets)
            main_indices.append(indices)
            for term, v in self.main_terms(out, targets, indices, n_int).items():
                losses[f"loss_{term}{sfx}"] = v

        if outputs.get("gbs") is not None:
            aligned = [(torch.arange(int(t["obj_labels"].shape[0])),) * 2 for t in targets]
            branch = outputs["gbs"]
            for out, sfx in zip([branch] + list(branch.get("aux_outputs", [])), suffixes):
                for term, v in self.selected_terms(out, targets, aligned, n_int).items():
                    losses[f"loss_gt_{term}{sfx}"] = v
        if outputs.get("amm") is not None:
            branch = outputs["amm"]
            for out, sfx, indices in zip([branch] + list(branch.get("aux_outputs", [])), suffixes, main_indices):
                for term, v in self.selected_terms(out, targets, indices, n_int).items():
                    losses[f"loss_occ_{term}{sfx}"] = v

        with torch.no_grad():
            pred_real = (outputs["pred_obj_logits"].argmax(-1) != self.num_obj_classes).sum(1).float()
            n_gt = torch.tensor([float(t["obj_labels"].shape[0]) for t in targets], device=device)
            losses["obj_cardinality_error"] = F.l1_loss(pred_real, n_gt)
        return losses


def build_criterion(cfg, num_obj_classes: int) -> SetCriterion:
    """SetCriterion from an `HqmConfig` (matcher, loss and hqm sections)."""
    mc, lc = cfg.matcher, cfg.loss
    matcher = HungarianMatcher(mc.cost_obj_class, mc.cost_verb_class, mc.cost_bbox, mc.cost_giou)
    return SetCriterion(num_obj_classes, matcher, LossWeights(lc.obj_ce, lc.verb, lc.bbox, lc.giou), lc.eos_coef,
                        lc.verb_loss_type, cfg.hqm.hard_weight)
