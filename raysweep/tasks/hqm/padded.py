"""A padded image batch with its padding mask (DETR's NestedTensor, reduced to what this task needs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class PaddedBatch:
    """tensors [B, C, H, W] padded bottom-right with zeros; mask [B, H, W], True where a pixel is padding."""

    tensors: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PaddedBatch":
        return PaddedBatch(self.tensors.to(device, non_blocking=non_blocking),
                           self.mask.to(device, non_blocking=non_blocking))

    def __len__(self) -> int:
        return self.tensors.shape[0]

    @classmethod
    def from_images(cls, images: Sequence[torch.Tensor]) -> "PaddedBatch":
        """Pad [C, H_i, W_i] images to the batch's max H and W (bottom-right)."""
        c = images[0].shape[0]
        h = max(im.shape[1] for im in images)
        w = max(im.shape[2] for im in images)
        tensors = images[0].new_zeros((len(images), c, h, w))
        mask = torch.ones((len(images), h, w), dtype=torch.bool)
        for i, im in enumerate(images):
            tensors[i, :, : im.shape[1], : im.shape[2]].copy_(im)
            mask[i, : im.shape[1], : im.shape[2]] = False
        return cls(tensors, mask)
