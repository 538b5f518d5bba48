"""DEFR's multi-label losses: LSE-Sign, BCE, weighted BCE and focal.

Every loss takes raw logits [B, C] and 0/1 targets [B, C] (ambiguous labels are already 0, i.e. negatives) and
returns a scalar. Note the scales differ: LSE-Sign is a mean over images, the others a mean over images x classes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from raysweep.errors import ConfigError, did_you_mean

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSS_NAMES: tuple[str, ...] = ("lse_sign", "bce", "wbce", "focal")

_EPS64 = float(np.finfo(np.float64).eps)


def lse_sign_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image LSE-Sign loss [B] = log(1 + sum_c exp(-y_c s_c)), y = +1 where target == 1 else -1.

    logits [B, C], targets [B, C] in {0, 1}. Written as logsumexp over [0, -y_1 s_1, ..., -y_C s_C], so it is
    stable for large logits; its gradient is -y_c * softmax([0, -y s])_c, spread over all classes.
    """
    margins = torch.where(targets == 1, -logits, logits)
    zero = margins.new_zeros(margins.shape[0], 1)
    return torch.logsumexp(torch.cat([zero, margins], dim=1), dim=1)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss [B, C] on logits, from log-sigmoids so it stays finite for any logit.

    -[1[t=1] alpha (1 - p)^gamma log p + 1[t=0] (1 - alpha) p^gamma log(1 - p)], p = sigmoid(s).
    """
    log_p = F.logsigmoid(logits)  # log p
    log_not_p = F.logsigmoid(-logits)  # log(1 - p)
    positive = targets == 1
    pos_term = alpha * torch.exp(gamma * log_not_p) * log_p
    neg_term = (1.0 - alpha) * torch.exp(gamma * log_p) * log_not_p
    return -torch.where(positive, pos_term, neg_term)


def wbce_pos_weight(train_targets: torch.Tensor | np.ndarray) -> torch.Tensor:
    """WBCE positive weights [C] (float64): w_c = (N - pos_c) / (pos_c + eps), eps = float64 machine epsilon.

    train_targets [N, C] in {0, 1}: the training set's targets after min_samples rebalancing (as DEFR does).
    A class without positives gets a huge but finite weight; it never multiplies anything in training.
    """
    targets = torch.as_tensor(np.asarray(train_targets) if not torch.is_tensor(train_targets) else train_targets)
    if targets.ndim != 2:
        raise ValueError(f"train_targets must be [N, C], got shape {tuple(targets.shape)}")
    positives = (targets == 1).sum(dim=0).to(torch.float64)
    return (targets.shape[0] - positives) / (positives + _EPS64)


def build_loss(
    name: str,
    pos_weight: torch.Tensor | None = None,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> LossFn:
    """The training loss `fn(logits [B, C], targets [B, C]) -> scalar` named by `loss.name`.

    lse_sign: mean over images of `lse_sign_loss`; bce: BCE-with-logits mean over B x C; wbce: the same with
    `pos_weight` [C] (see `wbce_pos_weight`; required); focal: `focal_loss` mean over B x C.
    """
    if name not in LOSS_NAMES:
        raise ConfigError(
            f"loss.name: unknown loss {name!r}; allowed: {', '.join(LOSS_NAMES)}{did_you_mean(name, LOSS_NAMES)}"
        )
    if name == "wbce" and pos_weight is None:
        raise ValueError("loss 'wbce' needs pos_weight (see wbce_pos_weight)")

    def lse_sign(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return lse_sign_loss(logits, targets).mean()

    def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))

    def wbce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = pos_weight.to(device=logits.device, dtype=logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=weight)

    def focal(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, targets, focal_alpha, focal_gamma).mean()

    return {"lse_sign": lse_sign, "bce": bce, "wbce": wbce, "focal": focal}[name]
