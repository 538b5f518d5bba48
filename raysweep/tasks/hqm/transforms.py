"""Joint image/box transforms of QPIC's training pipeline (DETR's), with the sizes as parameters.

A target is a dict with `boxes` [N, 4] xyxy pixels (float) and `box_ids` [N] (each box's index in the record, so
HOIs can be re-linked after a crop removes boxes). Normalize turns `boxes` into cxcywh normalised by the final
(unpadded) image size and adds `size` (h, w).
"""

from __future__ import annotations

import random
from typing import Callable, Optional, Sequence

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.ops import box_convert

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Target = dict


def hflip(image: Image.Image, target: Target) -> tuple[Image.Image, Target]:
    w = image.width
    boxes = target["boxes"]
    target = {**target, "boxes": torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)}
    return TF.hflip(image), target


def crop(image: Image.Image, target: Target, top: int, left: int, height: int,
         width: int) -> tuple[Image.Image, Target]:
    """Crop; boxes are shifted, clipped to the crop, and dropped when they end up with zero width or height."""
    boxes = target["boxes"] - torch.tensor([left, top, left, top], dtype=target["boxes"].dtype)
    boxes = torch.minimum(boxes.reshape(-1, 2, 2), torch.tensor([width, height], dtype=boxes.dtype)).clamp(min=0)
    keep = (boxes[:, 1] > boxes[:, 0]).all(1)
    target = {**target, "boxes": boxes.reshape(-1, 4)[keep], "box_ids": target["box_ids"][keep]}
    return TF.crop(image, top, left, height, width), target


def resized_hw(w: int, h: int, size: int, max_size: Optional[int]) -> tuple[int, int]:
    """(height, width) with the shorter side `size`, shrunk so the longer side stays <= max_size."""
    if max_size is not None:
        short, long = float(min(w, h)), float(max(w, h))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def resize(image: Image.Image, target: Target, size: int, max_size: Optional[int]) -> tuple[Image.Image, Target]:
    h, w = resized_hw(image.width, image.height, size, max_size)
    scale = torch.tensor([w / image.width, h / image.height] * 2, dtype=target["boxes"].dtype)
    return TF.resize(image, [h, w]), {**target, "boxes": target["boxes"] * scale}


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, target):
        return hflip(image, target) if random.random() < self.p else (image, target)


class ColorJitter:
    """Photometric only; boxes untouched."""

    def __init__(self, brightness: float, contrast: float, saturation: float):
        self.jitter = T.ColorJitter(brightness, contrast, saturation)

    def __call__(self, image, target):
        return self.jitter(image), target


class RandomResize:
    def __init__(self, sizes: Sequence[int], max_size: Optional[int] = None):
        self.sizes = list(sizes)
        self.max_size = max_size

    def __call__(self, image, target):
        return resize(image, target, random.choice(self.sizes), self.max_size)


class RandomSizeCrop:
    """Crop of uniform random width in [min_size, min(W, max_size)] and height likewise, at a random position."""

    def __init__(self, min_size: int, max_size: int):
        self.min_size = min_size
        self.max_size = max_size

    def __call__(self, image, target):
        w = random.randint(min(self.min_size, image.width), min(image.width, self.max_size))
        h = random.randint(min(self.min_size, image.height), min(image.height, self.max_size))
        top, left, height, width = T.RandomCrop.get_params(image, (h, w))
        return crop(image, target, top, left, height, width)


class RandomSelect:
    """Apply `a` with probability p, else `b`."""

    def __init__(self, a: Callable, b: Callable, p: float = 0.5):
        self.a, self.b, self.p = a, b, p

    def __call__(self, image, target):
        return self.a(image, target) if random.random() < self.p else self.b(image, target)


class Normalize:
    """PIL -> ImageNet-normalised tensor; boxes xyxy pixels -> cxcywh normalised by the image size."""

    def __call__(self, image, target):
        tensor = TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)
        h, w = tensor.shape[-2:]
        target = dict(target)
        if "boxes" in target:
            boxes = box_convert(target["boxes"], "xyxy", "cxcywh")
            target["boxes"] = boxes / torch.tensor([w, h, w, h], dtype=boxes.dtype)
        target["size"] = torch.tensor([h, w])
        return tensor, target


def train_transforms(scales: Sequence[int], max_size: int, crop_resize_scales: Sequence[int], crop_min: int,
                     crop_max: int, color_jitter: float = 0.4, augment: bool = True) -> Compose:
    """QPIC's training pipeline; paper sizes: scales 480..800 step 32, max 1333, crop resize {400, 500, 600},
    crop 384..600. With augment=False: resize to the largest scale only."""
    if not augment:
        return Compose([RandomResize([max(scales)], max_size), Normalize()])
    steps: list[Callable] = [RandomHorizontalFlip()]
    if color_jitter > 0:
        steps.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    steps.append(RandomSelect(
        RandomResize(scales, max_size),
        Compose([RandomResize(crop_resize_scales), RandomSizeCrop(crop_min, crop_max), RandomResize(scales, max_size)]),
    ))
    steps.append(Normalize())
    return Compose(steps)


def eval_transforms(size: int, max_size: int) -> Compose:
    return Compose([RandomResize([size], max_size), Normalize()])
