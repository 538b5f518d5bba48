"""DEFR's backbone names, without torch: what a config may name, checked while the space file is validated.

`raysweep.tasks.defr.backbones` builds the towers these names stand for.
"""

from __future__ import annotations

import re
from typing import Optional

RANDOM_VITS = ("vit_tiny", "vit_small")
OPEN_CLIP_PREFIX = "open_clip:"
BACKBONE_FORMS = (
    "'vit_tiny' / 'vit_small' (random), a timm name such as 'vit_base_patch32_224', 'ImageNet1k-ViT-B', "
    "'ImageNet21k-ViT-B', 'CLIP-ViT-B', 'CLIP-ViT-L', 'CLIP-RN50', 'CLIP-RN101', 'CLIP-RN50x4', or 'open_clip:<arch>'"
)


def open_clip_arch(name: str, patch_size: int) -> Optional[str]:
    """The open_clip architecture a backbone name refers to, or None when it is not a CLIP tower."""
    if name.startswith(OPEN_CLIP_PREFIX):
        return name[len(OPEN_CLIP_PREFIX):]
    aliases = {"CLIP-ViT-B": f"ViT-B-{patch_size}", "CLIP-ViT-L": "ViT-L-14", "CLIP-RN50": "RN50",
               "CLIP-RN101": "RN101", "CLIP-RN50x4": "RN50x4"}
    return aliases.get(name)


def backbone_patch_size(name: str, patch_size: int) -> Optional[int]:
    """The patch size the backbone named `name` cuts images into, when the name (or model.patch_size) fixes it;
    None for convolutional towers and names whose patch size is known only once the model is built."""
    if name in RANDOM_VITS:
        return patch_size
    arch = open_clip_arch(name, patch_size) or timm_name(name, patch_size)
    match = re.search(r"(?:ViT-[A-Za-z]+-|patch)(\d+)", arch)
    return int(match.group(1)) if match else None


def timm_name(name: str, patch_size: int) -> str:
    aliases = {"ImageNet1k-ViT-B": f"vit_base_patch{patch_size}_224",
               "ImageNet21k-ViT-B": f"vit_base_patch{patch_size}_224.augreg_in21k"}
    return aliases.get(name, name)
