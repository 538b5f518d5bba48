"""AMM: attention-map masking, as HQM's code does it (see docs/hqm.md).

For every (head, query) row of the main branch's detached cross-attention logits of a decoder layer, take the
top-K keys; hide one random subset of floor(fraction * K) rank positions (shared by every row of that layer call)
from the AMM branch's own cross-attention in the same layer. K is clamped to the number of keys (small images).
"""

from __future__ import annotations

import math
from typing import Optional

import torch


def num_hidden(topk: int, fraction: float) -> int:
    """floor(fraction * K), as the reference's int(); the epsilon keeps e.g. 0.29 * 100 from flooring to 28."""
    return int(math.floor(fraction * topk + 1e-9))


def amm_hard_mask(logits: torch.Tensor, topk: int = 100, fraction: float = 0.4,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """logits [B*heads, Q, S] (pre-softmax, main branch) -> boolean mask [B*heads, Q, S], True = hide."""
    k = min(topk, logits.shape[-1])
    ranks = torch.randperm(k, generator=generator, device="cpu" if generator is None else generator.device)
    ranks = ranks[: num_hidden(k, fraction)].to(logits.device)
    top = logits.topk(k, dim=-1).indices  # [B*heads, Q, k], rank order
    mask = torch.zeros_like(logits, dtype=torch.bool)
    return mask.scatter_(-1, top[..., ranks], True)
