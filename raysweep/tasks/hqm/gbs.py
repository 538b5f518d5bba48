"""GBS: ground-truth boxes shifted into an IoU band, as HQM's code does it (see docs/hqm.md).

Despite the method's name ("Gaussian"), the reference samples a discrete uniform grid: per box, a scale
ratio 1 + step*k_r and a centre shift (step*k_x*w, step*k_y*h), k ~ U{k_min..k_max}. An attempt is accepted for
the whole per-worker batch when at least `accept_ratio` of its boxes land strictly inside the band; then only the
in-band boxes are replaced. After `attempts` failures nothing is shifted. Subjects and objects are shifted
separately. Each (subject, object) pair then becomes a 12-d spatial vector that a small MLP turns into a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torchvision.ops import box_convert


@dataclass(frozen=True)
class ShiftParams:
    band_low: float = 0.4  # accepted IoU with the source box: band_low < IoU < band_high (strict)
    band_high: float = 0.6
    attempts: int = 40
    accept_ratio: float = 0.7  # fraction of the batch's boxes that must land in the band
    step: float = 0.04
    k_min: int = -10
    k_max: int = 9


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of a[i] with b[i] (continuous, no +1); a, b [N, 4] xyxy -> [N]."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def draw_grid_steps(attempts: int, n: int, params: ShiftParams, generator: Optional[torch.Generator],
                    device: torch.device) -> torch.Tensor:
    """[attempts, n, 3] integer steps (k_ratio, k_x, k_y), each uniform in k_min..k_max."""
    return torch.randint(params.k_min, params.k_max + 1, (attempts, n, 3), generator=generator, device=device)


def batch_accepts(num_in_band: int, num_boxes: int, accept_ratio: float) -> bool:
    """An attempt is kept when the in-band fraction reaches the ratio (7 of 10 passes 0.7)."""
    return num_in_band / num_boxes >= accept_ratio


def shift_boxes(boxes: torch.Tensor, image_wh: torch.Tensor, params: ShiftParams = ShiftParams(),
                generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, int]:
    """Shift one set of boxes (one batch's subjects, or its objects) into the IoU band.

    boxes [N, 4] xyxy pixels; image_wh [N, 2] the (augmented, unpadded) width and height of each box's image.
    -> (boxes [N, 4]: candidates where in band, exact GT elsewhere; the 1-based accepted attempt, 0 if none).

    The reference tries attempts one after another until one is accepted; here all attempts are drawn and scored
    at once and the first accepted one is kept, the same rule, with one device sync instead of one per attempt
    (the sequential loop cost ~11 ms of a 130 ms H100 step, docs/benchmarks.md).
    """
    n = boxes.shape[0]
    if n == 0:
        return boxes.clone(), 0
    wh = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    upper = (image_wh - 1).to(boxes.dtype).repeat(1, 2)
    k = draw_grid_steps(params.attempts, n, params, generator, boxes.device).to(boxes.dtype)  # [A, N, 3]
    ratio = 1 + params.step * k[..., :1]
    new_centre = centre + params.step * k[..., 1:] * wh
    half = ratio * wh / 2
    cand = torch.minimum(torch.cat([new_centre - half, new_centre + half], -1).clamp(min=0), upper)  # [A, N, 4]
    iou = paired_iou(boxes.expand_as(cand).reshape(-1, 4), cand.reshape(-1, 4)).view(params.attempts, n)
    in_band = (iou > params.band_low) & (iou < params.band_high)
    for attempt, count in enumerate(in_band.sum(1).tolist(), start=1):
        if batch_accepts(count, n, params.accept_ratio):
            return torch.where(in_band[attempt - 1, :, None], cand[attempt - 1], boxes), attempt
    return boxes.clone(), 0


def spatial_vector(sub: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """[sub cxcywh, obj cxcywh, sub_cx - obj_cx, sub_cy - obj_cy, sub_w*sub_h, obj_w*obj_h]; [N, 4] x2 -> [N, 12]."""
    return torch.cat([sub, obj, sub[:, :2] - obj[:, :2], (sub[:, 2] * sub[:, 3])[:, None],
                      (obj[:, 2] * obj[:, 3])[:, None]], 1)


@dataclass
class ShiftedQueries:
    """spatial [B, G, 12] (zero rows for padding), key_padding_mask [B, G] (True = padding; images without
    pairs get an all-False row so their softmax stays finite), counts: pairs per image, accepted attempts."""

    spatial: torch.Tensor
    key_padding_mask: torch.Tensor
    counts: list[int]
    sub_attempt: int
    obj_attempt: int


def shifted_queries(sub_boxes: Sequence[torch.Tensor], obj_boxes: Sequence[torch.Tensor], image_hw: torch.Tensor,
                    params: ShiftParams = ShiftParams(),
                    generator: Optional[torch.Generator] = None) -> Optional[ShiftedQueries]:
    """Per-image GT pair boxes (cxcywh-n, [n_i, 4]) -> padded 12-d query vectors; None if the batch has no pair.

    image_hw [B, 2]: each image's augmented size (height, width), which normalises its boxes.
    """
    counts = [int(b.shape[0]) for b in sub_boxes]
    if sum(counts) == 0:
        return None
    wh = image_hw.flip(1).to(sub_boxes[0].dtype)
    per_box_wh = torch.cat([wh[i].expand(c, 2) for i, c in enumerate(counts)])
    scale = per_box_wh.repeat(1, 2)

    def shift(boxes: Sequence[torch.Tensor]) -> tuple[torch.Tensor, int]:
        px = box_convert(torch.cat(list(boxes)), "cxcywh", "xyxy") * scale
        shifted, attempt = shift_boxes(px, per_box_wh, params, generator)
        return box_convert(shifted / scale, "xyxy", "cxcywh"), attempt

    sub, sub_attempt = shift(sub_boxes)
    obj, obj_attempt = shift(obj_boxes)
    vec = spatial_vector(sub, obj)
    g = max(counts)
    spatial = vec.new_zeros((len(counts), g, 12))
    mask = torch.zeros((len(counts), g), dtype=torch.bool, device=vec.device)
    start = 0
    for i, c in enumerate(counts):
        spatial[i, :c] = vec[start:start + c]
        if c > 0:
            mask[i, c:] = True
        start += c
    return ShiftedQueries(spatial, mask, counts, sub_attempt, obj_attempt)
