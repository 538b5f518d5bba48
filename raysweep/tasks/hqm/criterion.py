"""QPIC's set criterion plus HQM's hard-positive branch terms (docs/hqm.md).

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
    """GIoU of a[..., i] with b[..., i]; a, b [..., N, 4] cxcywh -> [..., N] (the diagonal of torchvision's matrix)."""
    a = box_convert(a, "cxcywh", "xyxy")
    b = box_convert(b, "cxcywh", "xyxy")
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    inter = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return inter / union - (hull - union) / hull


def _per_layer_sum(x: torch.Tensor) -> torch.Tensor:
    """[L, ...] -> [L]: the sum over everything but the leading (decoder-layer) dimension."""
    return x.reshape(x.shape[0], -1).sum(1)


def focal_verb_loss_layers(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`focal_verb_loss` of each leading slice: [L, ...] -> [L]."""
    p = logits.sigmoid()
    pos_mask = targets.eq(1)
    pos = _per_layer_sum(F.logsigmoid(logits) * (1 - p) ** 2 * pos_mask)
    neg = _per_layer_sum(F.logsigmoid(-logits) * p ** 2 * targets.lt(1))
    num_pos = _per_layer_sum(pos_mask).to(logits.dtype)
    return torch.where(num_pos > 0, -(pos + neg) / num_pos.clamp(min=1), -neg)


def focal_verb_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """QPIC's focal-style verb loss (no alpha, gamma 2) on any shape; targets in {0, 1}.

    pos = sum_{t=1} log(p)(1-p)^2, neg = sum_{t=0} log(1-p) p^2; -(pos+neg)/num_pos, or -neg when num_pos = 0.
    log p and log(1-p) come from logsigmoid, which equals log(sigmoid) but stays finite for large |logits|.
    """
    return focal_verb_loss_layers(logits[None], targets[None])[0]


def verb_loss_layers(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """The verb loss of each leading slice: [L, ...] -> [L] (focal, or BCE averaged over the slice)."""
    if kind == "focal":
        return focal_verb_loss_layers(logits, targets)
    if logits[0].numel() == 0:
        return _per_layer_sum(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return bce.reshape(bce.shape[0], -1).mean(1)


def verb_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    return verb_loss_layers(logits[None], targets[None], kind)[0]


def box_losses(src_sub: torch.Tensor, src_obj: torch.Tensor, tgt_sub: torch.Tensor, tgt_obj: torch.Tensor,
               num_interactions: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 and 1-GIoU sums over matched pairs ([..., M, 4] cxcywh-n each; a leading layer dimension gives one value
    per layer). Subject terms are divided by N_int (all pairs of the batch, averaged over workers); object terms by
    the local count of existing object boxes."""
    exist = (tgt_obj != 0).any(-1).to(src_sub.dtype)  # [..., M]
    denom_obj = exist.sum(-1) + 1e-4
    out = {
        "sub_bbox": F.l1_loss(src_sub, tgt_sub, reduction="none").sum((-2, -1)) / num_interactions,
        "obj_bbox": (F.l1_loss(src_obj, tgt_obj, reduction="none") * exist[..., None]).sum((-2, -1)) / denom_obj,
    }
    if src_sub.shape[-2] == 0:
        zero = src_sub.sum((-2, -1)) + src_obj.sum((-2, -1))
        return {**out, "sub_giou": zero, "obj_giou": zero}
    out["sub_giou"] = (1 - paired_giou(src_sub, tgt_sub)).sum(-1) / num_interactions
    out["obj_giou"] = ((1 - paired_giou(src_obj, tgt_obj)) * exist).sum(-1) / denom_obj
    return out


TARGET_KEYS = ("obj_labels", "verb_labels", "sub_boxes", "obj_boxes")


@dataclass
class LayerPicks:
    """Matched (query, GT pair) positions of every layer of one branch as flat index tensors [L, M] on the device:
    layer, image and query of each pick, and the pick's GT pair in the batch's concatenated targets. Every layer
    picks the same number M of pairs (sum over images of min(queries, pairs))."""

    layer: torch.Tensor
    image: torch.Tensor
    query: torch.Tensor
    pair: torch.Tensor

    @classmethod
    def of(cls, per_layer: Sequence[Indices], sizes: Sequence[int], device: torch.device) -> "LayerPicks":
        offsets = [0]
        for n in sizes[:-1]:
            offsets.append(offsets[-1] + n)
        rows = []
        for indices in per_layer:
            image = torch.cat([torch.full((len(q),), i, dtype=torch.int64) for i, (q, _) in enumerate(indices)])
            query = torch.cat([q.cpu().long() for q, _ in indices])
            pair = torch.cat([g.cpu().long() + offsets[i] for i, (_, g) in enumerate(indices)])
            rows.append(torch.stack([image, query, pair]))
        if len({r.shape[1] for r in rows}) > 1:
            raise ValueError("every decoder layer must match the same number of pairs")
        flat = torch.stack(rows).to(device, non_blocking=True)  # [L, 3, M], one copy
        layer = torch.arange(len(rows), device=device)[:, None].expand(-1, flat.shape[2])
        return cls(layer, flat[:, 0], flat[:, 1], flat[:, 2])


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
        empty_weight = torch.ones(num_obj_classes + 1)  # the no-object class weighs eos_coef in the object CE
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)
        self.num_obj_classes = num_obj_classes
        self.matcher = matcher
        self.weights = weights
        self.verb_loss_type = verb_loss_type
        self.hard_weight = hard_weight

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

    # ---- one branch, all its decoder layers at once ------------------------------------------------------------
    # Batching the layers matters on a GPU, where the step is bound by kernel launches: six layers' worth of small
    # loss kernels and six device→host copies for the matcher cost more than the arithmetic (docs/benchmarks.md).
    def branch_main_terms(self, layers: Sequence[Mapping[str, torch.Tensor]], targets: Mapping[str, torch.Tensor],
                          picks: LayerPicks, n_int) -> dict[str, torch.Tensor]:
        """The main branch's terms per layer ([L] each): obj CE and verb loss over all queries, boxes on picks."""
        logits = torch.stack([o["pred_obj_logits"] for o in layers])  # [L, B, Q, C+1]
        verbs = torch.stack([o["pred_verb_logits"] for o in layers])  # [L, B, Q, V]
        at = (picks.layer, picks.image, picks.query)
        target_classes = torch.full(logits.shape[:3], self.num_obj_classes, dtype=torch.int64, device=logits.device)
        target_classes[at] = targets["obj_labels"][picks.pair]
        verb_targets = torch.zeros_like(verbs)
        verb_targets[at] = targets["verb_labels"][picks.pair].to(verbs.dtype)
        # cross_entropy's weighted mean, per layer: sum of w_t * nll over sum of w_t
        weighted_nll = F.cross_entropy(logits.permute(0, 3, 1, 2), target_classes, self.empty_weight, reduction="none")
        terms = {"obj_ce": _per_layer_sum(weighted_nll) / _per_layer_sum(self.empty_weight[target_classes]),
                 "verb_ce": verb_loss_layers(verbs, verb_targets, self.verb_loss_type)}
        return {**terms, **self._box_terms(layers, targets, picks, n_int)}

    def branch_selected_terms(self, layers: Sequence[Mapping[str, torch.Tensor]],
                              targets: Mapping[str, torch.Tensor], picks: LayerPicks, n_int) -> dict[str, torch.Tensor]:
        """Hard-branch terms per layer ([L] each): every loss only on the picked queries."""
        at = (picks.layer, picks.image, picks.query)
        logits = torch.stack([o["pred_obj_logits"] for o in layers])[at]  # [L, M, C+1]
        labels = targets["obj_labels"][picks.pair]  # [L, M]
        if labels.shape[1] == 0:
            obj_ce = _per_layer_sum(logits) * 0
        else:
            nll = F.cross_entropy(logits.transpose(1, 2), labels, self.empty_weight, reduction="none")
            obj_ce = nll.sum(1) / self.empty_weight[labels].sum(1)
        verbs = torch.stack([o["pred_verb_logits"] for o in layers])[at]
        verb_targets = targets["verb_labels"][picks.pair].to(verbs.dtype)
        terms = {"obj_ce": obj_ce, "verb_ce": verb_loss_layers(verbs, verb_targets, self.verb_loss_type)}
        return {**terms, **self._box_terms(layers, targets, picks, n_int)}

    @staticmethod
    def _box_terms(layers, targets: Mapping[str, torch.Tensor], picks: LayerPicks, n_int) -> dict[str, torch.Tensor]:
        def picked(key: str) -> torch.Tensor:
            return torch.stack([o[key] for o in layers])[picks.layer, picks.image, picks.query]  # [L, M, 4]

        return box_losses(picked("pred_sub_boxes"), picked("pred_obj_boxes"), targets["sub_boxes"][picks.pair],
                          targets["obj_boxes"][picks.pair], n_int)

    def main_terms(self, out: Mapping[str, torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]],
                   indices: Indices, n_int) -> dict[str, torch.Tensor]:
        """One layer's main-branch terms (scalars) for a given assignment."""
        picks = LayerPicks.of([indices], _sizes(targets), out["pred_obj_logits"].device)
        return {k: v[0] for k, v in self.branch_main_terms([out], _concat(targets), picks, n_int).items()}

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
        sizes, flat = _sizes(targets), _concat(targets)
        main_indices = self.matcher.match_layers(layers, targets)
        losses: dict[str, torch.Tensor] = {}

        def store(prefix: str, terms: Mapping[str, torch.Tensor]) -> None:
            for term, per_layer in terms.items():
                for sfx, value in zip(suffixes, per_layer.unbind(0)):
                    losses[f"{prefix}{term}{sfx}"] = value

        store("loss_", self.branch_main_terms(layers, flat, LayerPicks.of(main_indices, sizes, device), n_int))
        if outputs.get("gbs") is not None:
            branch = [outputs["gbs"]] + list(outputs["gbs"].get("aux_outputs", []))
            aligned = [(torch.arange(n),) * 2 for n in sizes]  # slot j of image i is its j-th GT pair
            picks = LayerPicks.of([aligned] * len(branch), sizes, device)
            store("loss_gt_", self.branch_selected_terms(branch, flat, picks, n_int))
        if outputs.get("amm") is not None:
            branch = [outputs["amm"]] + list(outputs["amm"].get("aux_outputs", []))
            picks = LayerPicks.of(main_indices[:len(branch)], sizes, device)  # the main branch's assignment
            store("loss_occ_", self.branch_selected_terms(branch, flat, picks, n_int))

        with torch.no_grad():
            pred_real = (outputs["pred_obj_logits"].argmax(-1) != self.num_obj_classes).sum(1).float()
            n_gt = torch.tensor([float(n) for n in sizes], device=device)
            losses["obj_cardinality_error"] = F.l1_loss(pred_real, n_gt)
        return losses


def _sizes(targets: Sequence[Mapping[str, torch.Tensor]]) -> list[int]:
    return [int(t["obj_labels"].shape[0]) for t in targets]


def _concat(targets: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The batch's targets concatenated over images (what LayerPicks.pair indexes)."""
    return {key: torch.cat([t[key] for t in targets]) for key in TARGET_KEYS}


def build_criterion(cfg, num_obj_classes: int) -> SetCriterion:
    """SetCriterion from an `HqmConfig` (matcher, loss and hqm sections)."""
    mc, lc = cfg.matcher, cfg.loss
    matcher = HungarianMatcher(mc.cost_obj_class, mc.cost_verb_class, mc.cost_bbox, mc.cost_giou)
    return SetCriterion(num_obj_classes, matcher, LossWeights(lc.obj_ce, lc.verb, lc.bbox, lc.giou), lc.eos_coef,
                        lc.verb_loss_type, cfg.hqm.hard_weight)
