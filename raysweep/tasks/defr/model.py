"""DEFR's network: an image backbone followed by the HOI classifier, and its AdamW parameter groups."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from raysweep.tasks.defr.backbones import Backbone, build_backbone
from raysweep.tasks.defr.classifier import HoiClassifier, build_classifier
from raysweep.tasks.defr.config import DefrConfig
from raysweep.tasks.defr.embeddings import clip_visual_projection, is_clip_encoder, text_embeddings
from raysweep.tasks.defr.prompts import class_prompts

log = logging.getLogger(__name__)

# Parameters kept out of weight decay (besides every 1-d tensor: norms, biases, logit_scale).
NO_DECAY_NAMES = ("pos_embed", "positional_embedding", "cls_token", "class_embedding", "logit_scale", "reg_token")


class DefrNet(nn.Module):
    def __init__(self, backbone: Backbone, classifier: HoiClassifier):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] normalised -> logits [B, C] (raw scores, ranked directly by the metric)."""
        return self.classifier(self.backbone(images))

    def param_groups(self, backbone_lr_mult: float, weight_decay: float, no_decay_norm_bias: bool,
                     base_lr: float) -> list[dict]:
        """AdamW groups: backbone at base_lr × backbone_lr_mult, the classifier at base_lr; with
        `no_decay_norm_bias`, norms, biases, position embeddings, class tokens and logit_scale get no weight decay.
        Frozen parameters (requires_grad False) are left out; empty groups are dropped. Each group has a "name"."""
        groups = []
        for part, module, lr in (("backbone", self.backbone, base_lr * backbone_lr_mult),
                                 ("classifier", self.classifier, base_lr)):
            decay, no_decay = [], []
            for name, param in module.named_parameters():
                if not param.requires_grad:
                    continue
                exempt = param.ndim <= 1 or any(key in name for key in NO_DECAY_NAMES)
                (no_decay if no_decay_norm_bias and exempt else decay).append(param)
            groups.append(dict(name=f"{part}/decay", params=decay, lr=lr, weight_decay=weight_decay))
            groups.append(dict(name=f"{part}/no_decay", params=no_decay, lr=lr, weight_decay=0.0))
        return [g for g in groups if g["params"]]


def build_defr_net(cfg: DefrConfig, class_names: list[tuple[str, str]], cache_dir: Optional[Path]) -> DefrNet:
    """Backbone + classifier for `class_names` ((verb, object) per class); text embeddings cached under cache_dir.

    For a CLIP text encoder, the back-projection matrix is the backbone's own `clip_proj` when it has one, else the
    visual projection of the text encoder's CLIP checkpoint (DEFR's im1k/im21k `clip` configs do this).
    """
    backbone = build_backbone(cfg.model, cfg.data.image_size)
    embeddings = None
    clip_proj = backbone.clip_proj
    if cfg.classifier.init == "language":
        prompts = class_prompts(class_names, cfg.prompts)
        embeddings = text_embeddings(prompts, cfg.classifier.text_encoder, cfg.classifier.text_encoder_weights,
                                     cache_dir)
        needs_proj = embeddings.shape[1] != backbone.width and cfg.classifier.project in ("auto", "clip_proj")
        if clip_proj is None and needs_proj and is_clip_encoder(cfg.classifier.text_encoder):
            proj = clip_visual_projection(cfg.classifier.text_encoder, cfg.classifier.text_encoder_weights, cache_dir)
            if proj.shape == (backbone.width, embeddings.shape[1]):
                clip_proj = torch.from_numpy(proj)
    classifier = build_classifier(cfg.classifier, backbone.width, len(class_names), embeddings, cfg.train.seed,
                                  clip_proj)
    log.info("DEFR net: backbone %s (%d-d), classifier %s/%s over %d classes", cfg.model.backbone, backbone.width,
             cfg.classifier.head, cfg.classifier.init, len(class_names))
    return DefrNet(backbone, classifier)
