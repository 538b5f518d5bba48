"""QPIC's HOI detector with HQM's two optional training branches, in one class (docs/hqm.md).

Inference is QPIC: learnable queries -> decoder -> four heads on every decoder layer. In training one hard-positive
branch may run after the main branch, over the same encoder memory and with the same decoder weights and heads:
  "gbs": queries built from shifted GT boxes (zero content, pos = tanh(MLP(12-d vector))), own decoder pass;
  "amm": the learnable queries again, with the main branch's most-attended keys partly hidden in cross-attention.

State-dict layout: `layout="qpic"` registers the heads at the top level (QPIC's keys); `layout="hqm"` registers the
same heads under `transformer.decoder` (HQM's keys). The computation is identical either way.
`query_embed_sp` exists only when GBS is enabled.
"""

from __future__ import annotations

from typing import Literal, Mapping, Optional, Sequence

import torch
from torch import nn

from .amm import amm_hard_mask
from .backbone import Joiner
from .gbs import ShiftParams, shifted_queries
from .padded import PaddedBatch
from .transformer import DecoderOutput, Transformer

HEAD_NAMES = ("obj_class_embed", "verb_class_embed", "sub_bbox_embed", "obj_bbox_embed")
Branch = Optional[Literal["gbs", "amm"]]


class MLP(nn.Module):
    """Linear layers with ReLU between them; parameters `layers.{i}.*` as in DETR."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class HoiDetector(nn.Module):
    def __init__(self, backbone: Joiner, transformer: Transformer, num_obj_classes: int, num_verb_classes: int,
                 num_queries: int = 100, aux_loss: bool = True, gbs: bool = False, amm: bool = False,
                 layout: Literal["qpic", "hqm"] = "qpic",
                 head_init: Literal["torch_default", "xavier"] = "torch_default",
                 amm_topk: int = 100, amm_fraction: float = 0.4, amm_skip_final_norm: bool = True,
                 shift_params: ShiftParams = ShiftParams()):
        super().__init__()
        d = transformer.d_model
        # Registration order reproduces the reference state-dict order.
        self.transformer = transformer
        self.query_embed = nn.Embedding(num_queries, d)
        heads = {
            "obj_class_embed": nn.Linear(d, num_obj_classes + 1),  # last row: no-object
            "verb_class_embed": nn.Linear(d, num_verb_classes),
            "sub_bbox_embed": MLP(d, d, 4, 3),
            "obj_bbox_embed": MLP(d, d, 4, 3),
        }
        owner = transformer.decoder if layout == "hqm" else self
        for name, head in heads.items():
            owner.add_module(name, head)
            if head_init == "xavier":  # HQM re-inits its in-decoder heads with the transformer's xavier init
                for p in head.parameters():
                    if p.dim() > 1:
                        nn.init.xavier_uniform_(p)
        self.input_proj = nn.Conv2d(backbone.num_channels, d, kernel_size=1)
        self.backbone = backbone
        self.query_embed_sp = MLP(12, d, d, 2) if gbs else None
        self.layout = layout
        self.num_queries = num_queries
        self.num_obj_classes = num_obj_classes
        self.num_verb_classes = num_verb_classes
        self.aux_loss = aux_loss
        self.gbs = gbs
        self.amm = amm
        self.amm_topk = amm_topk
        self.amm_fraction = amm_fraction
        self.amm_skip_final_norm = amm_skip_final_norm
        self.shift_params = shift_params

    def head(self, name: str) -> nn.Module:
        return getattr(self.transformer.decoder if self.layout == "hqm" else self, name)

    def predict_heads(self, hs: torch.Tensor) -> dict:
        """hs [L, B, Q, d] -> final layer's predictions plus `aux_outputs` (earlier layers, with aux_loss):
        pred_obj_logits [B, Q, C+1], pred_verb_logits [B, Q, V], pred_sub_boxes / pred_obj_boxes [B, Q, 4]
        (sigmoid, cxcywh normalised by the unpadded image size)."""
        if not self.aux_loss:
            hs = hs[-1:]
        obj = self.head("obj_class_embed")(hs)
        verb = self.head("verb_class_embed")(hs)
        sub_box = self.head("sub_bbox_embed")(hs).sigmoid()
        obj_box = self.head("obj_bbox_embed")(hs).sigmoid()
        layers = [{"pred_obj_logits": a, "pred_verb_logits": b, "pred_sub_boxes": c, "pred_obj_boxes": e}
                  for a, b, c, e in zip(obj, verb, sub_box, obj_box)]
        out = dict(layers[-1])
        if self.aux_loss:
            out["aux_outputs"] = layers[:-1]
        return out

    def forward(self, samples: PaddedBatch, targets: Optional[Sequence[Mapping[str, torch.Tensor]]] = None,
                branch: Branch = None) -> dict:
        """samples: images [B, 3, H, W] + padding mask [B, H, W]. targets (needed for "gbs"): per image
        sub_boxes / obj_boxes [n_i, 4] cxcywh-n and size [2] (h, w of the unpadded augmented image).

        -> predict_heads(...) of the main branch, plus `gbs` / `amm`: the same structure for the hard branch
        (`gbs` has max n_i queries per image, index-aligned with the GT pairs; None if the batch has no pair).
        """
        feat, pos = self.backbone(samples)
        memory, mem_mask, pos = self.transformer.encode(self.input_proj(feat.tensors), feat.mask, pos)
        b = memory.shape[1]
        query_pos = self.query_embed.weight.unsqueeze(1).expand(-1, b, -1)
        main = self.transformer.decode(query_pos, memory, mem_mask, pos, need_logits=branch == "amm")
        out = self.predict_heads(main.normed)
        if branch == "gbs":
            if not self.gbs:
                raise ValueError("branch 'gbs' needs a model built with gbs=True")
            out["gbs"] = self._gbs_branch(targets, memory, mem_mask, pos)
        elif branch == "amm":
            out["amm"] = self._amm_branch(main, query_pos, memory, mem_mask, pos)
        elif branch is not None:
            raise ValueError(f"unknown branch {branch!r}")
        return out

    def _gbs_branch(self, targets, memory, mem_mask, pos) -> Optional[dict]:
        assert targets is not None, "GBS needs the training targets"
        image_hw = torch.stack([torch.as_tensor(t["size"], device=memory.device) for t in targets])
        queries = shifted_queries([t["sub_boxes"] for t in targets], [t["obj_boxes"] for t in targets],
                                  image_hw, self.shift_params)
        if queries is None:
            return None
        query_pos = torch.tanh(self.query_embed_sp(queries.spatial.to(memory.dtype))).transpose(0, 1)
        dec = self.transformer.decode(query_pos, memory, mem_mask, pos, tgt_key_padding_mask=queries.key_padding_mask)
        out = self.predict_heads(dec.normed)
        out["shift_attempts"] = (queries.sub_attempt, queries.obj_attempt)
        return out

    def _amm_branch(self, main: DecoderOutput, query_pos, memory, mem_mask, pos) -> dict:
        masks = [amm_hard_mask(lg, self.amm_topk, self.amm_fraction) for lg in main.logits]
        dec = self.transformer.decode(query_pos, memory, mem_mask, pos, hard_masks=masks)
        # The reference applies the heads to the raw layer outputs here (no decoder.norm), unlike elsewhere.
        return self.predict_heads(dec.raw if self.amm_skip_final_norm else dec.normed)


def build_model(cfg, num_obj_classes: int, num_verb_classes: int) -> HoiDetector:
    """HoiDetector from an `HqmConfig` (model, hqm and optim sections); pretrained weights are loaded separately."""
    from .backbone import build_backbone

    m, h = cfg.model, cfg.hqm
    backbone = build_backbone(m.backbone, m.d_model, train_backbone=cfg.optim.lr_backbone > 0, tiny_width=m.tiny_width)
    transformer = Transformer(m.d_model, m.nhead, m.enc_layers, m.dec_layers, m.dim_feedforward, m.dropout, m.pre_norm)
    shift = ShiftParams(band_low=h.gbs_band[0], band_high=h.gbs_band[1], attempts=h.gbs_attempts,
                        accept_ratio=h.gbs_accept_ratio, step=h.gbs_step)
    return HoiDetector(backbone, transformer, num_obj_classes, num_verb_classes, num_queries=m.num_queries,
                       aux_loss=m.aux_loss, gbs=h.gbs, amm=h.amm, layout=m.layout, head_init=m.head_init,
                       amm_topk=h.amm_topk, amm_fraction=h.amm_fraction, amm_skip_final_norm=h.amm_skip_final_norm,
                       shift_params=shift)
