"""Multi-head attention with nn.MultiheadAttention's parameters and math, plus two hooks HQM's AMM needs.

Same parameter names as torch's module (`in_proj_weight` [3E, E], `in_proj_bias` [3E], `out_proj`), so DETR
checkpoints load unchanged. In addition it can
  (a) return the detached pre-softmax logits (after the key-padding -inf), which AMM ranks, and
  (b) hide keys given a boolean hard mask (True = set that logit to -inf before the softmax).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class MultiheadAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None, hard_mask: Optional[torch.Tensor] = None,
                need_logits: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """query [L, B, E], key/value [S, B, E]; key_padding_mask [B, S] (True = padding);
        hard_mask [B*heads, L, S] (True = hide), rows ordered batch-major (b * heads + h) like torch's.

        -> (output [L, B, E], logits [B*heads, L, S] detached pre-softmax, or None unless need_logits).
        A row the hard mask would hide completely keeps its unmasked logits (otherwise its softmax is NaN).
        """
        L, B, E = query.shape
        S = key.shape[0]
        h, d = self.num_heads, self.head_dim
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q).reshape(L, B * h, d).transpose(0, 1)
        k = F.linear(key, w_k, b_k).reshape(S, B * h, d).transpose(0, 1)
        v = F.linear(value, w_v, b_v).reshape(S, B * h, d).transpose(0, 1)
        p_drop = self.dropout if self.training else 0.0

        if not need_logits and hard_mask is None:
            # Fused kernel; identical math (its boolean mask marks keys that take part).
            keep = None if key_padding_mask is None else ~key_padding_mask.view(B, 1, 1, S)
            out = F.scaled_dot_product_attention(q.view(B, h, L, d), k.view(B, h, S, d), v.view(B, h, S, d),
                                                 attn_mask=keep, dropout_p=p_drop)
            out = out.reshape(B * h, L, d)
            logits = None
        else:
            attn = torch.bmm(q * d ** -0.5, k.transpose(1, 2))  # [B*h, L, S]
            if key_padding_mask is not None:
                attn = attn.masked_fill(key_padding_mask.repeat_interleave(h, 0)[:, None, :], float("-inf"))
            logits = attn.detach() if need_logits else None
            if hard_mask is not None:
                hidden = attn.masked_fill(hard_mask, float("-inf"))
                all_hidden = torch.isneginf(hidden).all(-1, keepdim=True)
                attn = torch.where(all_hidden, attn, hidden)
            attn = F.dropout(attn.softmax(-1), p_drop, self.training)
            out = torch.bmm(attn, v)
        out = out.transpose(0, 1).reshape(L, B, E)
        return self.out_proj(out), logits
