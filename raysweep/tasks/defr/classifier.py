"""DEFR's HOI classifier heads and their initialisations and logits, as one module driven by config.

The paper's variant names map onto `ClassifierConfig` as:

| paper | head | init | other |
|---|---|---|---|
| rand | cosine | rand | |
| rand-linear | linear | rand | |
| rand-512 / rand-512-linear (CLIP) | cosine / linear | rand | project: clip_proj (features go through visual.proj) |
| bert / clip | cosine | language | text_encoder bert / clip |
| bert-linear / clip-linear / simcse-linear | linear | language | |
| bert-shuffle / clip-shuffle | cosine | language | shuffle: true |
| i-bert / i-clip | mixing | language | |

The `*-linear` configs of the paper also set `log_scale: 0`, which turns feature normalisation off (a plain linear
probe). Text embeddings whose width differs from the image features are reconciled by `classifier.project`.
"""

from __future__ import annotations

import logging
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raysweep.errors import ConfigError
from raysweep.tasks.defr.config import ClassifierConfig
from raysweep.tasks.defr.embeddings import clip_back_projection, is_clip_encoder

log = logging.getLogger(__name__)


class HoiClassifier(nn.Module):
    """Scores features against one weight row per class.

    head "cosine": T = W / ‖W‖_row, logits = s · f · Tᵀ (W [C, D] trainable)
    head "linear": logits = Linear(s · f) = s · (W f) + b
    head "mixing": T = rownorm(M @ C), logits = s · f · Tᵀ (C [C, D] fixed buffer, M [C, C] trainable, M₀ = I)

    s = exp(logit_scale); f is L2-normalised first unless log_scale is 0. When `image_proj` is given, features are
    first mapped into the classifier's space (a trainable Linear, or CLIP's visual projection for `rand-512`).
    """

    def __init__(self, head: Literal["cosine", "linear", "mixing"], init_rows: torch.Tensor,
                 log_scale: float, log_scale_trainable: bool, log_scale_max: float,
                 linear_bias: Optional[torch.Tensor] = None, image_proj: Optional[nn.Module] = None):
        super().__init__()
        num_classes, width = init_rows.shape
        self.head = head
        self.num_classes = num_classes
        self.width = width
        self.log_scale_max = float(log_scale_max)
        # DEFR compares the live value with 0; the configured value decides here (no device sync per step). They
        # differ only for a trainable scale that starts at exactly 0.
        self.normalise_features = log_scale != 0
        self.logit_scale = nn.Parameter(torch.tensor(float(log_scale)), requires_grad=log_scale_trainable)
        self.image_proj = image_proj
        if head == "cosine":
            self.weight = nn.Parameter(init_rows.clone())
        elif head == "linear":
            self.linear = nn.Linear(width, num_classes)
            with torch.no_grad():
                self.linear.weight.copy_(init_rows)
                if linear_bias is not None:
                    self.linear.bias.copy_(linear_bias)
        elif head == "mixing":
            self.register_buffer("fixed_rows", F.normalize(init_rows.clone(), dim=1))
            self.mixing = nn.Parameter(torch.eye(num_classes))
        else:
            raise ValueError(f"unknown head {head!r}")

    def class_rows(self) -> torch.Tensor:
        """The [C, D] row-normalised class matrix T of the cosine and mixing heads."""
        if self.head == "cosine":
            return F.normalize(self.weight, dim=1)
        if self.head == "mixing":
            return F.normalize(self.mixing @ self.fixed_rows, dim=1)
        raise AttributeError("the linear head has no normalised class rows")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, feature_width] -> logits [B, C] (raw scores; no sigmoid)."""
        if self.logit_scale.requires_grad:
            with torch.no_grad():
                self.logit_scale.clamp_(max=self.log_scale_max)
        if self.image_proj is not None:
            features = self.image_proj(features)
        if self.normalise_features:
            features = F.normalize(features, dim=-1)
        scale = self.logit_scale.exp()
        if self.head == "linear":
            return self.linear(scale * features)
        return scale * features @ self.class_rows().t()


class ClipImageProjection(nn.Module):
    """f ↦ f @ P with P initialised from CLIP's visual projection [width, d]; trainable, as DEFR's rand-512 keeps
    `visual.proj` inside the fine-tuned backbone."""

    def __init__(self, clip_proj: torch.Tensor):
        super().__init__()
        self.proj = nn.Parameter(clip_proj.detach().clone().float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.proj


def build_classifier(cfg: ClassifierConfig, feature_width: int, num_classes: int,
                     class_embeddings: Optional[np.ndarray], seed: int,
                     clip_proj: Optional[torch.Tensor]) -> HoiClassifier:
    """The classifier `cfg` describes, on features of `feature_width`, for `num_classes` classes.

    class_embeddings [C, d_text]: unit text embeddings (needed for init "language"). clip_proj [feature_width, d_text]:
    CLIP's visual projection, or None. `seed` seeds the shuffle permutation (the paper's was unseeded).
    """
    clip_proj_t = None if clip_proj is None else torch.as_tensor(clip_proj, dtype=torch.float32)
    if cfg.init == "rand":
        return _build_random(cfg, feature_width, num_classes, clip_proj_t)

    if class_embeddings is None:
        raise ConfigError("classifier.init 'language' needs class embeddings from classifier.text_encoder")
    rows = torch.as_tensor(np.asarray(class_embeddings), dtype=torch.float32)
    if rows.ndim != 2 or rows.shape[0] != num_classes:
        raise ConfigError(f"classifier: {tuple(rows.shape)} class embeddings for {num_classes} classes; the prompts "
                          f"must give one entry per class")
    rows, image_proj = _reconcile_widths(cfg, rows, feature_width, clip_proj_t)
    if cfg.shuffle:
        generator = torch.Generator().manual_seed(seed)
        rows = rows[torch.randperm(num_classes, generator=generator)]
    common = dict(log_scale=cfg.log_scale, log_scale_trainable=cfg.log_scale_trainable,
                  log_scale_max=cfg.log_scale_max, image_proj=image_proj)
    if cfg.head == "cosine":  # DEFR does not re-normalise W at init; the forward normalises rows anyway
        return HoiClassifier("cosine", rows, **common)
    if cfg.head == "linear":
        return HoiClassifier("linear", F.normalize(rows, dim=1), linear_bias=torch.zeros(num_classes), **common)
    return HoiClassifier("mixing", rows, **common)


def _build_random(cfg: ClassifierConfig, feature_width: int, num_classes: int,
                  clip_proj: Optional[torch.Tensor]) -> HoiClassifier:
    """rand / rand-linear; with project "clip_proj", DEFR's rand-512 (features through CLIP's visual projection).
    The other `project` values do not apply: without text rows there is no width to match."""
    image_proj, width = None, feature_width
    if cfg.project == "clip_proj":
        if clip_proj is None or clip_proj.shape[0] != feature_width:
            raise ConfigError(f"classifier.project 'clip_proj' with classifier.init 'rand' needs a CLIP backbone with "
                              f"a visual projection from width {feature_width}; use project 'auto' instead")
        image_proj, width = ClipImageProjection(clip_proj), clip_proj.shape[1]
    common = dict(log_scale=cfg.log_scale, log_scale_trainable=cfg.log_scale_trainable,
                  log_scale_max=cfg.log_scale_max, image_proj=image_proj)
    if cfg.head == "cosine":
        return HoiClassifier("cosine", torch.randn(num_classes, width) * width ** -0.5, **common)
    if cfg.head == "linear":
        default = nn.Linear(width, num_classes)  # PyTorch's default init for weight and bias
        return HoiClassifier("linear", default.weight.data, linear_bias=default.bias.data, **common)
    raise ConfigError("classifier.head 'mixing' needs classifier.init 'language' (it mixes fixed text rows)")


def _reconcile_widths(cfg: ClassifierConfig, rows: torch.Tensor, feature_width: int,
                      clip_proj: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[nn.Module]]:
    """Text rows and image features in one space: (rows [C, D'], image-side projection or None).

    "auto": same widths -> as is; a CLIP encoder with a matching CLIP projection -> rows back-projected into the
    image space (as DEFR does); otherwise a trainable Linear(feature_width, text_width, bias=False) on the image side,
    the classifier staying in text space. "clip_proj" and "linear" force those; "none" refuses mismatched widths.
    """
    text_width = rows.shape[1]
    clip_fits = clip_proj is not None and tuple(clip_proj.shape) == (feature_width, text_width)
    mode = cfg.project
    if mode == "auto":
        if text_width == feature_width:
            return rows, None
        mode = "clip_proj" if clip_fits and is_clip_encoder(cfg.text_encoder) else "linear"
    if mode == "clip_proj":
        if not clip_fits:
            got = "none" if clip_proj is None else f"shape {tuple(clip_proj.shape)}"
            raise ConfigError(f"classifier.project 'clip_proj' needs a CLIP projection of shape "
                              f"({feature_width}, {text_width}) (got {got}); use a CLIP backbone and a CLIP "
                              f"text encoder from the same model, or project 'linear'")
        log.info("classifier: text rows (%d-d) back-projected into the %d-d image space with CLIP's projection",
                 text_width, feature_width)
        return clip_back_projection(rows, clip_proj), None
    if mode == "linear":
        log.info("classifier: trainable image-side projection %d -> %d (classifier in text space)",
                 feature_width, text_width)
        return rows, nn.Linear(feature_width, text_width, bias=False)
    if text_width != feature_width:  # mode == "none"
        raise ConfigError(f"classifier.project 'none': text embeddings are {text_width}-d but image features are "
                          f"{feature_width}-d; set classifier.project to 'auto', 'linear' or 'clip_proj'")
    return rows, None
