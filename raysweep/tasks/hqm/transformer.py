"""DETR's encoder-decoder transformer, with a decoder that HQM's extra branches can re-run.

Sequence-first tensors ([length, batch, d_model]) as in DETR. Parameter names follow DETR's checkpoint:
`encoder.layers.N.{self_attn, linear1, linear2, norm1, norm2}`, `decoder.layers.N.{self_attn, multihead_attn,
linear1, linear2, norm1, norm2, norm3}`, `decoder.norm`. The decoder's cross-attention is our
`MultiheadAttention` so it can return pre-softmax logits (for AMM) and apply a hard mask.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiheadAttention


def _with_pos(x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
    return x if pos is None else x + pos


class _Layer(nn.Module):
    """What DETR's encoder and decoder layers share: self-attention (then, in the decoder, cross-attention), the
    feed-forward block, and one LayerNorm and Dropout per sub-layer. Modules are created in DETR's order, so the
    random initialisation and the checkpoint's parameter names are DETR's."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, pre_norm: bool,
                 cross_attention: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        if cross_attention:
            self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        sublayers = range(1, 4 if cross_attention else 3)
        for i in sublayers:
            self.add_module(f"norm{i}", nn.LayerNorm(d_model))
        for i in sublayers:
            self.add_module(f"dropout{i}", nn.Dropout(dropout))
        self.pre_norm = pre_norm

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class TransformerEncoderLayer(_Layer):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, pre_norm: bool):
        super().__init__(d_model, nhead, dim_feedforward, dropout, pre_norm, cross_attention=False)

    def forward(self, src: torch.Tensor, key_padding_mask: Optional[torch.Tensor], pos: Optional[torch.Tensor]):
        """src, pos [HW, B, d]; key_padding_mask [B, HW] -> [HW, B, d]. Position is added to q and k only."""
        if self.pre_norm:
            x = self.norm1(src)
            q = k = _with_pos(x, pos)
            src = src + self.dropout1(self.self_attn(q, k, x, key_padding_mask=key_padding_mask, need_weights=False)[0])
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = _with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, key_padding_mask=key_padding_mask,
                                                             need_weights=False)[0]))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class TransformerDecoderLayer(_Layer):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, pre_norm: bool):
        super().__init__(d_model, nhead, dim_feedforward, dropout, pre_norm, cross_attention=True)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_key_padding_mask: Optional[torch.Tensor],
                pos: Optional[torch.Tensor], query_pos: Optional[torch.Tensor],
                tgt_key_padding_mask: Optional[torch.Tensor] = None, hard_mask: Optional[torch.Tensor] = None,
                need_logits: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """tgt, query_pos [Q, B, d]; memory, pos [HW, B, d]; memory_key_padding_mask [B, HW];
        tgt_key_padding_mask [B, Q]; hard_mask [B*heads, Q, HW] -> (tgt [Q, B, d], cross logits or None).

        query_pos goes into q and k of self-attention and q of cross-attention; pos into k of cross-attention.
        """
        x = self.norm1(tgt) if self.pre_norm else tgt
        q = k = _with_pos(x, query_pos)
        sa = self.self_attn(q, k, x, key_padding_mask=tgt_key_padding_mask, need_weights=False)[0]
        tgt = tgt + self.dropout1(sa)
        if not self.pre_norm:
            tgt = self.norm1(tgt)
        x = self.norm2(tgt) if self.pre_norm else tgt
        ca, logits = self.multihead_attn(_with_pos(x, query_pos), _with_pos(memory, pos), memory,
                                         key_padding_mask=memory_key_padding_mask, hard_mask=hard_mask,
                                         need_logits=need_logits)
        tgt = tgt + self.dropout2(ca)
        if not self.pre_norm:
            tgt = self.norm2(tgt)
        x = self.norm3(tgt) if self.pre_norm else tgt
        tgt = tgt + self.dropout3(self._ffn(x))
        if not self.pre_norm:
            tgt = self.norm3(tgt)
        return tgt, logits


class TransformerEncoder(nn.Module):
    def __init__(self, layer: TransformerEncoderLayer, num_layers: int, norm: Optional[nn.LayerNorm]):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm  # only with pre-norm, as in DETR (no `encoder.norm` key otherwise)

    def forward(self, src, key_padding_mask, pos):
        for layer in self.layers:
            src = layer(src, key_padding_mask, pos)
        return src if self.norm is None else self.norm(src)


@dataclass
class DecoderOutput:
    """Per decoder layer, batch-first: `normed` [L, B, Q, d] (after decoder.norm, what the heads see in QPIC),
    `raw` [L, B, Q, d] (the layer outputs themselves), `logits`: per layer cross-attention logits or None."""

    normed: torch.Tensor
    raw: torch.Tensor
    logits: list[Optional[torch.Tensor]]


class TransformerDecoder(nn.Module):
    def __init__(self, layer: TransformerDecoderLayer, num_layers: int, norm: nn.LayerNorm):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_key_padding_mask: torch.Tensor,
                pos: torch.Tensor, query_pos: torch.Tensor, tgt_key_padding_mask: Optional[torch.Tensor] = None,
                need_logits: bool = False, hard_masks: Optional[Sequence[torch.Tensor]] = None) -> DecoderOutput:
        """Run every layer; `hard_masks[i]` is layer i's cross-attention hard mask [B*heads, Q, HW] (AMM)."""
        raw, logits = [], []
        out = tgt
        for i, layer in enumerate(self.layers):
            out, lg = layer(out, memory, memory_key_padding_mask, pos, query_pos, tgt_key_padding_mask,
                            hard_mask=None if hard_masks is None else hard_masks[i], need_logits=need_logits)
            raw.append(out)
            logits.append(lg)
        raw_t = torch.stack(raw).transpose(1, 2)  # [L, B, Q, d]
        return DecoderOutput(self.norm(raw_t), raw_t, logits)


class Transformer(nn.Module):
    """Encoder + decoder with DETR's xavier init of every >1-d parameter."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1, pre_norm: bool = False):
        super().__init__()
        enc_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, pre_norm)
        self.encoder = TransformerEncoder(enc_layer, num_encoder_layers, nn.LayerNorm(d_model) if pre_norm else None)
        dec_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, pre_norm)
        self.decoder = TransformerDecoder(dec_layer, num_decoder_layers, nn.LayerNorm(d_model))
        self.d_model = d_model
        self.nhead = nhead
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, src: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor):
        """src, pos [B, d, h, w]; mask [B, h, w] -> (memory [hw, B, d], mask [B, hw], pos [hw, B, d])."""
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos.flatten(2).permute(2, 0, 1)
        mask = mask.flatten(1)
        return self.encoder(src, mask, pos), mask, pos

    def decode(self, query_pos: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, pos: torch.Tensor,
               tgt_key_padding_mask: Optional[torch.Tensor] = None, need_logits: bool = False,
               hard_masks: Optional[Sequence[torch.Tensor]] = None) -> DecoderOutput:
        """query_pos [Q, B, d]; the content input (tgt) starts at zeros, as in DETR."""
        return self.decoder(torch.zeros_like(query_pos), memory, memory_mask, pos, query_pos,
                            tgt_key_padding_mask, need_logits, hard_masks)
