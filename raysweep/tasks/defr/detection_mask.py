"""DEFR detection, step 2: the per-pair attention mask and the recognition model run through it (as DEFR's `DefrDet`).

A trained DEFR recognition net is reused unchanged. Its last `mask_layers` transformer blocks are run once per
(human, object) pair with a mask on the CLS query: every patch outside the union of the two boxes is "marked".
What a mark does is the `mask_mode`:

- "additive_one" (the reference as coded): the bool mask is cast to the activation dtype before attention, so a
  mark adds +1.0 to the CLS->patch logit, giving the *outside* patches more weight;
- "hard" (what the paper describes): a mark is -inf, the CLS token sees only its own token and the two boxes.

The first blocks do not depend on the pair: they run once per image (the reference reruns them per pair; the
result is identical). Supported backbones: timm ViTs with a CLS token (raysweep's random ViTs, ImageNet ViTs) and
open_clip CLIP ViTs.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from raysweep.errors import ConfigError

MaskMode = Literal["additive_one", "hard"]
MASK_MODES = ("additive_one", "hard")
MASK_BUDGET = 1 << 28  # mask elements per masked forward (1 GiB in float32)


def unmarked_patches(box: np.ndarray, width: float, height: float, grid: int) -> tuple[int, int, int, int]:
    """The grid cells a continuous box (original frame, image `width` x `height`) covers, as (xmin, ymin, xmax, ymax),
    half-open: columns xmin..xmax-1, rows ymin..ymax-1. Scaled per axis to the grid, floor/ceil, clipped."""
    x1, y1, x2, y2 = (float(v) for v in box)
    gx1, gx2 = x1 * grid / width, x2 * grid / width
    gy1, gy2 = y1 * grid / height, y2 * grid / height
    return (max(0, math.floor(gx1)), max(0, math.floor(gy1)), min(grid, math.ceil(gx2)), min(grid, math.ceil(gy2)))


def cls_marks(boxes_h: np.ndarray, boxes_o: np.ndarray, width: float, height: float, grid: int) -> torch.Tensor:
    """[P, grid * grid] bool: True for patches outside the union of each pair's two boxes (row-major patches)."""
    marks = torch.ones(len(boxes_h), grid, grid, dtype=torch.bool)
    for p, (bh, bo) in enumerate(zip(boxes_h, boxes_o)):
        for box in (bh, bo):
            x0, y0, x1, y1 = unmarked_patches(box, width, height, grid)
            marks[p, y0:y1, x0:x1] = False
    return marks.reshape(len(boxes_h), grid * grid)


def attention_bias(marks: torch.Tensor, num_prefix: int, mode: MaskMode, dtype=torch.float32) -> torch.Tensor:
    """[P, L, L] float additive mask (L = num_prefix + patches): row 0 (the CLS query) gets +1.0 ("additive_one") or
    -inf ("hard") on the marked patch columns; every other entry, CLS->CLS included, is 0."""
    if mode not in MASK_MODES:
        raise ConfigError(f"detection.mask_mode {mode!r} is not one of {', '.join(MASK_MODES)}")
    num_pairs, num_patches = marks.shape
    length = num_prefix + num_patches
    bias = torch.zeros(num_pairs, length, length, dtype=dtype)
    value = 1.0 if mode == "additive_one" else float("-inf")
    bias[:, 0, num_prefix:] = torch.where(marks, torch.tensor(value, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    return bias


class PairScorer(nn.Module):
    """A DEFR net split for pairs: `image_tokens` (the shared first blocks, once per image) and `pair_logits`
    (the last `mask_layers` blocks under each pair's mask, then the final norm, the CLS feature and the classifier).
    """

    def __init__(self, net: nn.Module, mask_layers: int = 1, mask_mode: MaskMode = "additive_one"):
        super().__init__()
        body = net.backbone.body
        self.net, self.mask_mode = net, mask_mode
        self.kind = _kind(body, net.backbone.name)
        blocks = body.blocks if self.kind == "timm" else body.visual.transformer.resblocks
        if not 1 <= mask_layers <= len(blocks):
            raise ConfigError(f"detection.mask_layers {mask_layers}: the backbone has {len(blocks)} transformer "
                              f"blocks; use 1..{len(blocks)} (the reference uses 1)")
        self.mask_layers = mask_layers
        self.shared_blocks = list(blocks)[: len(blocks) - mask_layers]
        self.masked_blocks = list(blocks)[len(blocks) - mask_layers:]
        if self.kind == "timm":
            self.grid = int(body.patch_embed.grid_size[0])
            self.num_prefix = int(body.num_prefix_tokens)
        else:
            self.grid = int(body.visual.grid_size[0])
            self.num_prefix = 1
            self.heads = int(self.masked_blocks[0].attn.num_heads)

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] normalised -> tokens [B, L, D] after the shared blocks."""
        if self.kind == "timm":
            body = self.net.backbone.body
            x = body.norm_pre(body.patch_drop(body._pos_embed(body.patch_embed(images))))
            for block in self.shared_blocks:
                x = block(x)
            return x
        visual = self.net.backbone.body.visual
        x = visual._embeds(images)
        return self._clip_blocks(x, self.shared_blocks, None)

    def pair_logits(self, tokens: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
        """tokens [L, D] of one image, marks [P, patches] -> logits [P, C] (raw classifier scores).

        Pairs go through in chunks whose masks hold at most MASK_BUDGET elements: a CLIP ViT-B/16 at 672 px has
        L = 1,765 tokens and nn.MultiheadAttention wants one [L, L] mask per pair and head."""
        per_pair = tokens.shape[0] ** 2 * (self.heads if self.kind == "clip" else 1)
        chunk = max(1, MASK_BUDGET // per_pair)
        if len(marks) > chunk:
            return torch.cat([self.pair_logits(tokens, marks[s:s + chunk]) for s in range(0, len(marks), chunk)])
        bias = attention_bias(marks, self.num_prefix, self.mask_mode, tokens.dtype).to(tokens.device)
        x = tokens.unsqueeze(0).expand(len(marks), -1, -1)
        if self.kind == "timm":
            body = self.net.backbone.body
            for block in self.masked_blocks:
                x = block(x, attn_mask=bias.unsqueeze(1))
            features = body.forward_head(body.norm(x))
        else:
            visual = self.net.backbone.body.visual
            x = self._clip_blocks(x, self.masked_blocks, bias.repeat_interleave(self.heads, dim=0))
            features, _ = visual._pool(x)
        return self.net.classifier(features)

    def _clip_blocks(self, x: torch.Tensor, blocks: list, bias) -> torch.Tensor:
        batch_first = getattr(self.net.backbone.body.visual.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in blocks:
            x = block(x, attn_mask=bias)
        return x if batch_first else x.transpose(0, 1)


def _kind(body: nn.Module, name: str) -> Literal["timm", "clip"]:
    """Which token-level ViT the backbone wraps; refuses what the pair mask cannot run on."""
    visual = getattr(body, "visual", None)
    if visual is not None and hasattr(visual, "transformer") and hasattr(visual, "_embeds"):
        if getattr(visual, "pool_type", "tok") != "tok" or getattr(visual, "attn_pool", None) is not None:
            raise ConfigError(f"model.backbone {name!r}: DEFR detection needs a CLS-token CLIP ViT")
        return "clip"
    if hasattr(body, "blocks") and hasattr(body, "patch_embed") and hasattr(body, "forward_head"):
        if getattr(body, "global_pool", "token") != "token" or int(getattr(body, "num_prefix_tokens", 1)) != 1:
            raise ConfigError(f"model.backbone {name!r}: DEFR detection reads the CLS token; use model.pool 'cls' "
                              f"and a ViT without register tokens")
        return "timm"
    raise ConfigError(f"model.backbone {name!r}: DEFR detection needs a ViT backbone (the pair enters through an "
                      f"attention mask on the CLS token); CLIP ResNets have none")
