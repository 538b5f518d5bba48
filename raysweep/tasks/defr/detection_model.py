"""A DEFR recognition net rebuilt from a checkpoint's state dict, for detection.

The architecture comes from the trial's config (backbone, image size, classifier head and scale); the classifier's
shapes (class count, row width, image-side projection) come from the state dict itself, so neither the text encoder
nor the training data is needed: every weight is overwritten by the checkpoint anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from raysweep.errors import DataError
from raysweep.tasks.defr.config import DefrConfig


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of a sweep checkpoint (`state.pt`: {"model": state_dict, ...}, weights_only)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint {str(path)!r}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: one line, the file named
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {reason})") from None
    if not isinstance(state, Mapping) or not isinstance(state.get("model"), Mapping):
        raise DataError(f"checkpoint {str(path)!r}: expected a raysweep state.pt, a dict with a 'model' state dict")
    return dict(state["model"])


def build_net_from_state(cfg: DefrConfig, state: Mapping[str, Any], source: str = "checkpoint") -> torch.nn.Module:
    """The DefrNet `cfg` describes with the weights of `state` loaded strictly (DataError when they do not fit)."""
    from torch import nn

    from raysweep.tasks.defr.backbones import build_backbone
    from raysweep.tasks.defr.classifier import ClipImageProjection, HoiClassifier
    from raysweep.tasks.defr.model import DefrNet

    model_cfg = cfg.model.model_copy(update={"weights": "random"})  # the checkpoint holds the trained weights
    backbone = build_backbone(model_cfg, cfg.data.image_size)
    head = cfg.classifier.head
    rows_key = {"cosine": "classifier.weight", "linear": "classifier.linear.weight",
                "mixing": "classifier.fixed_rows"}[head]
    if rows_key not in state:
        raise DataError(f"{source}: no {rows_key!r} in the model state; it was not saved by a DEFR trial with "
                        f"classifier.head {head!r}")
    rows = torch.zeros_like(state[rows_key], dtype=torch.float32)
    image_proj = None
    if "classifier.image_proj.weight" in state:
        out_width, in_width = state["classifier.image_proj.weight"].shape
        image_proj = nn.Linear(in_width, out_width, bias=False)
    elif "classifier.image_proj.proj" in state:
        image_proj = ClipImageProjection(torch.zeros_like(state["classifier.image_proj.proj"], dtype=torch.float32))
    c = cfg.classifier
    classifier = HoiClassifier(head, rows, log_scale=c.log_scale, log_scale_trainable=c.log_scale_trainable,
                               log_scale_max=c.log_scale_max,
                               linear_bias=torch.zeros(rows.shape[0]) if head == "linear" else None,
                               image_proj=image_proj)
    net = DefrNet(backbone, classifier)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise DataError(f"{source}: the weights do not fit the trial's model config ({reason})") from None
    return net.eval()
