"""DEFR's network: an image backbone followed by the HOI classifier, and its AdamW parameter groups."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from raysweep.tasks.defr.backbones import Backbone, build_backbone
from raysweep.tasks.defr.classifier import HoiClassifier, build_classifier
from raysweep.tasks.defr.config import ClassifierConfig, DefrConfig
from raysweep.tasks.defr.embeddings import clip_visual_projection, is_clip_encoder, text_embeddings
from raysweep.tasks.defr.prompts import class_prompts
from raysweep.tasks.defr.text_tower import resolve_text_encoder

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


def back_projection_matrix(backbone: Backbone, classifier_cfg: ClassifierConfig, text_width: int,
                           cache_dir: Optional[Path]) -> Optional[torch.Tensor]:
    """The CLIP projection [backbone.width, text_width] to hand `build_classifier`, or None.

    The backbone's own `clip_proj` when it has one; otherwise, for a CLIP text encoder whose width differs from the
    image features, the visual projection of the text encoder's CLIP checkpoint, as DEFR's im1k/im21k `clip`
    configs back-project CLIP text into a 768-d ImageNet ViT's feature space.
    """
    if backbone.clip_proj is not None:
        return backbone.clip_proj
    wanted = (text_width != backbone.width and classifier_cfg.project in ("auto", "clip_proj")
              and is_clip_encoder(classifier_cfg.text_encoder))
    if not wanted:
        return None
    proj = clip_visual_projection(classifier_cfg.text_encoder, classifier_cfg.text_encoder_weights, cache_dir)
    return torch.from_numpy(proj) if proj.shape == (backbone.width, text_width) else None


def class_text_embeddings(cfg: DefrConfig, class_names: Sequence[tuple[str, str]],
                          cache_dir: Optional[Path]) -> np.ndarray:
    """Unit text embeddings [C, d_text] of the classes' prompts under cfg's text encoder, cached under cache_dir."""
    encoder, weights = resolve_text_encoder(cfg.model, cfg.classifier)
    return text_embeddings(class_prompts(list(class_names), cfg.prompts), encoder, weights, cache_dir)


def build_defr_net(cfg: DefrConfig, num_classes: int, cache_dir: Optional[Path],
                   class_embeddings: Optional[Callable[[], np.ndarray]] = None) -> DefrNet:
    """Backbone + classifier over `num_classes`: the one way DEFR's network is assembled (task and tests).

    With classifier.init "language", `class_embeddings()` gives the classes' unit text embeddings [C, d_text] (e.g.
    `class_text_embeddings`); it is called after the backbone is built, so the backbone's random initialisation is
    the same whether or not the embeddings come from the cache.
    """
    backbone = build_backbone(cfg.model, cfg.data.image_size)
    embeddings, clip_proj = None, backbone.clip_proj
    if cfg.classifier.init == "language":
        if class_embeddings is None:
            raise ValueError("classifier.init 'language' needs the classes' text embeddings (class_embeddings)")
        embeddings = class_embeddings()
        clip_proj = back_projection_matrix(backbone, cfg.classifier, embeddings.shape[1], cache_dir)
    classifier = build_classifier(cfg.classifier, backbone.width, num_classes, embeddings, cfg.train.seed, clip_proj)
    log.info("DEFR net: backbone %s (%d-d), classifier %s/%s over %d classes", cfg.model.backbone, backbone.width,
             cfg.classifier.head, cfg.classifier.init, num_classes)
    return DefrNet(backbone, classifier)
