"""DEFR's image backbones: random timm ViTs, pretrained timm ViTs and CLIP image towers.

Every variant is reached through `build_backbone(cfg, image_size)` from `ModelConfig.backbone` / `.weights`:

- `vit_tiny` / `vit_small`: a randomly initialised timm `VisionTransformer` sized by
  `model.width/depth/heads/patch_size` (the two names are the same recipe; the sizes come from the config);
- a timm model name (`vit_base_patch32_224`, `vit_base_patch16_224.augreg_in21k`, ...) or a paper alias
  (`ImageNet1k-ViT-B` -> `vit_base_patch{P}_224`, `ImageNet21k-ViT-B` -> `vit_base_patch{P}_224.augreg_in21k`);
- an open_clip image tower `open_clip:<arch>` or a paper alias (`CLIP-ViT-B` -> `ViT-B-{P}`, `CLIP-ViT-L` -> `ViT-L-14`,
  `CLIP-RN50` / `CLIP-RN101` / `CLIP-RN50x4`).

The feature is the CLS token after the final norm ([B, width]); for CLIP ViTs it is `ln_post(CLS)` *before* the visual
projection, whose matrix is kept as `Backbone.clip_proj` for back-projecting CLIP text embeddings (see docs/defr.md).
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.errors import ConfigError, did_you_mean
from raysweep.tasks.defr.backbone_names import (  # noqa: F401 - names the tests and callers use from here
    BACKBONE_FORMS,
    OPEN_CLIP_PREFIX,
    RANDOM_VITS,
    backbone_patch_size,
)
from raysweep.tasks.defr.backbone_names import open_clip_arch as _open_clip_arch
from raysweep.tasks.defr.backbone_names import timm_name as _timm_name
from raysweep.tasks.defr.config import ModelConfig

log = logging.getLogger(__name__)

_JIT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")  # not parameters of CLIP
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

WEIGHTS_FORMS = "'random', 'hub', a hub tag (e.g. 'openai', 'augreg_in21k') or a local checkpoint path"


class Backbone(nn.Module):
    """An image encoder with a uniform face: `forward(images [B, 3, H, W]) -> features [B, width]`.

    `family` selects the input normalisation ("clip" -> CLIP mean/std, "vit" -> 0.5/0.5). `clip_proj` [width, d_text]
    is the CLIP visual projection (identity for CLIP ResNets), or None for non-CLIP backbones; it is a non-persistent
    buffer because it is only used to build the classifier, never trained.
    """

    def __init__(self, body: nn.Module, width: int, family: Literal["vit", "clip"], name: str,
                 clip_proj: Optional[torch.Tensor] = None):
        super().__init__()
        self.body = body
        self.width = int(width)
        self.family = family
        self.name = name
        self.register_buffer("clip_proj", None if clip_proj is None else clip_proj.detach().clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] normalised -> features [B, width] (CLS token after the final norm)."""
        return self.body(images)


def normalisation_for(cfg: ModelConfig) -> Literal["clip", "half"]:
    """Input normalisation of a backbone, as DEFR picks it: a name containing "clip" -> CLIP mean/std, else 0.5/0.5."""
    return "clip" if "clip" in cfg.backbone.lower() else "half"


def build_backbone(cfg: ModelConfig, image_size: int) -> Backbone:
    """The backbone named by `cfg.backbone`, with `cfg.weights`, for square inputs of `image_size` pixels."""
    name = cfg.backbone.strip()
    open_clip_arch = _open_clip_arch(name, cfg.patch_size)
    if open_clip_arch is not None:
        return _build_open_clip(cfg, open_clip_arch, image_size)
    if name in RANDOM_VITS:
        return _build_random_vit(cfg, image_size)
    return _build_timm(cfg, _timm_name(name, cfg.patch_size), image_size)


# ----------------------------------------------------------------------------------------------- names and weights

def _weights_kind(weights: str) -> Literal["random", "hub", "path", "tag"]:
    """How to read `model.weights`: an existing file or anything path-like is a checkpoint path, else a hub tag."""
    if weights == "random":
        return "random"
    if weights == "hub":
        return "hub"
    if os.path.exists(weights) or os.sep in weights or weights.endswith(CHECKPOINT_SUFFIXES):
        return "path"
    return "tag"


def check_local_weights(cfg: ModelConfig, image_size: Optional[int] = None) -> None:
    """Fail early (ConfigError) when `model.weights` names a local checkpoint that does not exist or cannot be
    loaded; hub tags are left to the trial, which is where a download would happen.

    With `image_size`, the backbone is built with the checkpoint exactly as a trial builds it, so a corrupt file or
    one that does not fit the configured model is refused before any trial starts.
    """
    if _weights_kind(cfg.weights) == "path":
        _check_checkpoint_file(cfg.backbone, cfg.weights)
        if image_size is not None:
            build_backbone(cfg, image_size)


def _check_checkpoint_file(backbone: str, weights: str) -> None:
    if not os.path.isfile(weights):
        raise ConfigError(
            f"model.weights {weights!r} for backbone {backbone!r}: no such checkpoint file; "
            f"give an existing local checkpoint path, or one of {WEIGHTS_FORMS}")


def _weights_error(backbone: str, weights: str, exc: BaseException) -> ConfigError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if os.path.isfile(weights):  # a local file that is corrupt or holds another model
        return ConfigError(
            f"model.weights {weights!r} for backbone {backbone!r} could not be loaded ({type(exc).__name__}: "
            f"{reason}); give a checkpoint of this backbone at this size (a state dict saved by torch.save or "
            f"safetensors)")
    return ConfigError(
        f"model.weights {weights!r} for backbone {backbone!r} could not be loaded ({type(exc).__name__}: {reason}); "
        f"without network access, download the checkpoint elsewhere and set model.weights to its local path")


def _check_divisible(backbone: str, image_size: int, patch: int) -> None:
    if image_size % patch:
        raise ConfigError(
            f"data.image_size {image_size} is not a multiple of backbone {backbone!r}'s patch size {patch}; "
            f"use a multiple of {patch} (e.g. {max(patch, image_size // patch * patch)})")


def _is_torchscript_archive(path: str) -> bool:
    """True for TorchScript (JIT) files such as OpenAI's original CLIP checkpoints."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") for n in archive.namelist())


# ----------------------------------------------------------------------------------------------- timm

def conv_stem(stride: int, backbone: str) -> nn.Sequential:
    """log2(stride) blocks of 3×3 conv (stride 2) + BatchNorm + ReLU, widths 32, 64, 128, ...: the hybrid ViT's stem."""
    if stride < 2 or stride & (stride - 1):
        raise ConfigError(f"model.patch_size {stride}: backbone {backbone!r} with model.stem 'conv' needs a power of "
                          f"two ≥ 2 (the stem halves the image that many times)")
    layers: list[nn.Module] = []
    channels = 3
    for i in range(stride.bit_length() - 1):
        out = 32 * 2**i
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers)


def _build_random_vit(cfg: ModelConfig, image_size: int) -> Backbone:
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    if cfg.width % cfg.heads:
        raise ConfigError(f"model.width {cfg.width} must be divisible by model.heads {cfg.heads}")
    _check_divisible(cfg.backbone, image_size, cfg.patch_size)
    kind = _weights_kind(cfg.weights)
    if kind in ("hub", "tag"):
        raise ConfigError(
            f"model.weights {cfg.weights!r}: backbone {cfg.backbone!r} is a random ViT sized by model.width/depth/"
            f"heads and has no hub weights; use 'random', a local checkpoint path, or a timm name such as "
            f"'vit_small_patch16_224'")
    pool = "token" if cfg.pool == "cls" else "avg"
    if cfg.stem == "conv":
        from functools import partial

        from timm.layers import HybridEmbed

        embed = partial(HybridEmbed, backbone=conv_stem(cfg.patch_size, cfg.backbone))
        body = VisionTransformer(img_size=image_size, patch_size=1, embed_dim=cfg.width, depth=cfg.depth,
                                 num_heads=cfg.heads, num_classes=0, drop_path_rate=cfg.drop_path, embed_layer=embed,
                                 global_pool=pool)
    else:
        body = VisionTransformer(img_size=image_size, patch_size=cfg.patch_size, embed_dim=cfg.width,
                                 depth=cfg.depth, num_heads=cfg.heads, num_classes=0, drop_path_rate=cfg.drop_path,
                                 global_pool=pool)
    if kind == "path":
        import timm.models

        _check_checkpoint_file(cfg.backbone, cfg.weights)
        try:
            state = timm.models.load_state_dict(cfg.weights, weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
            state = checkpoint_filter_fn(state, body)  # resamples pos_embed to this image size
            body.load_state_dict(state, strict=True)
        except Exception as exc:  # a wrong or corrupt file: report it as the user's config, never fall back
            raise _weights_error(cfg.backbone, cfg.weights, exc) from exc
        log.info("backbone %s: loaded weights from %s", cfg.backbone, cfg.weights)
    else:
        log.info("backbone %s: random init (width %d, depth %d, heads %d, patch %d, image %d)", cfg.backbone,
                 cfg.width, cfg.depth, cfg.heads, cfg.patch_size, image_size)
    return Backbone(body, width=body.num_features, family="vit", name=cfg.backbone)


def _build_timm(cfg: ModelConfig, name: str, image_size: int) -> Backbone:
    import timm

    architecture = name.split(".")[0]
    if not timm.is_model(architecture):
        raise ConfigError(
            f"model.backbone {cfg.backbone!r} is not a known backbone{did_you_mean(architecture, timm.list_models())}; "
            f"allowed: {BACKBONE_FORMS}")
    kind = _weights_kind(cfg.weights)
    kwargs: dict = dict(num_classes=0, drop_path_rate=cfg.drop_path)
    if kind == "tag":
        name = f"{architecture}.{cfg.weights}"
    if kind == "path":
        _check_checkpoint_file(cfg.backbone, cfg.weights)
        kwargs["pretrained_cfg_overlay"] = dict(file=str(Path(cfg.weights).resolve()))
    try:
        try:
            body = timm.create_model(name, pretrained=kind != "random", img_size=image_size, **kwargs)
        except TypeError:  # not a ViT-like model: it has no img_size argument
            body = timm.create_model(name, pretrained=kind != "random", **kwargs)
    except ConfigError:
        raise
    except Exception as exc:
        if kind == "random":
            raise
        raise _weights_error(cfg.backbone, cfg.weights, exc) from exc
    patch = getattr(getattr(body, "patch_embed", None), "patch_size", None)
    if patch is not None:
        _check_divisible(cfg.backbone, image_size, patch[0])
    if kind == "random":
        log.info("backbone %s (timm %s): random init", cfg.backbone, name)
    else:
        source = cfg.weights if kind == "path" else body.pretrained_cfg.get("hf_hub_id") or name
        log.info("backbone %s (timm %s): loaded weights %s", cfg.backbone, name, source)
    family = "clip" if normalisation_for(cfg) == "clip" else "vit"
    return Backbone(body, width=body.num_features, family=family, name=cfg.backbone)


# ----------------------------------------------------------------------------------------------- open_clip

class _ClipViTImageTower(nn.Module):
    """open_clip's VisionTransformer without its projection: returns ln_post(CLS) [B, width]."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)


def load_open_clip(arch: str, weights: str, what: str, openai_family: bool = False):
    """A full open_clip CLIP model (image + text towers) on CPU, fp32, in eval mode.

    `weights`: "random" (random init), "hub" (the "openai" tag), a tag, or a local checkpoint path (an
    open_clip / OpenAI state dict, or an OpenAI TorchScript file). `what` names the config key in error messages.
    OpenAI's CLIP uses QuickGELU: it is switched on for tags that need it, for TorchScript files, and, for random init
    and plain state dicts, when `openai_family` (the paper's CLIP-* aliases); otherwise the arch's config decides
    (`open_clip:ViT-B-32-quickgelu` forces it).
    """
    import open_clip

    if arch not in open_clip.list_models():
        raise ConfigError(
            f"{what}: {arch!r} is not an open_clip architecture{did_you_mean(arch, open_clip.list_models())}; "
            f"see open_clip.list_models()")
    kind = _weights_kind(weights)
    tag = {"hub": "openai", "tag": weights}.get(kind)
    if tag is not None and tag not in open_clip.list_pretrained_tags_by_model(arch):
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ConfigError(f"{what}: weights {weights!r} is not a pretrained tag of open_clip {arch!r}"
                          f"{did_you_mean(tag, tags)}; allowed: {tags or 'none'}, 'random', or a local checkpoint path")
    if tag is not None:
        quick_gelu = bool((open_clip.get_pretrained_cfg(arch, tag) or {}).get("quick_gelu"))
    else:
        quick_gelu = openai_family
    try:
        if kind == "random":
            model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu)
        elif kind == "path":
            if not os.path.isfile(weights):
                raise ConfigError(f"{what}: weights {weights!r} for {arch!r}: no such checkpoint file; "
                                  f"give an existing local checkpoint path, or one of {WEIGHTS_FORMS}")
            if _is_torchscript_archive(weights):  # OpenAI's original JIT files (DEFR's `clip/ViT-B-32.pt`)
                model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)
                state = torch.jit.load(weights, map_location="cpu").state_dict()
                state = {k: v.float() for k, v in state.items() if k not in _JIT_EXTRA_KEYS}
                model.load_state_dict(state, strict=True)
            else:
                model = open_clip.create_model(arch, pretrained=weights, force_quick_gelu=quick_gelu)
        else:
            model = open_clip.create_model(arch, pretrained=tag, force_quick_gelu=quick_gelu)
    except ConfigError:
        raise
    except Exception as exc:
        if kind == "random":
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(
            f"{what}: weights {weights!r} for open_clip {arch!r} could not be loaded ({type(exc).__name__}: "
            f"{reason}); without network access, download the checkpoint elsewhere and give its local path") from exc
    source = "random init" if kind == "random" else f"loaded weights {weights} ({tag or 'local file'})"
    log.info("open_clip %s: %s", arch, source)
    return model.float().eval()


def _build_open_clip(cfg: ModelConfig, arch: str, image_size: int) -> Backbone:
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if cfg.drop_path > 0:
        raise ConfigError(f"model.drop_path {cfg.drop_path} is not supported for CLIP backbone {cfg.backbone!r}; "
                          f"set model.drop_path to 0 or use a timm backbone")
    openai_family = not cfg.backbone.startswith(OPEN_CLIP_PREFIX)
    visual = load_open_clip(arch, cfg.weights, f"model.backbone {cfg.backbone!r}", openai_family).visual
    visual.train()
    if isinstance(visual, VisionTransformer):
        if visual.attn_pool is not None or visual.pool_type != "tok":
            raise ConfigError(f"model.backbone {cfg.backbone!r}: only CLS-token CLIP ViTs are supported")
        _check_divisible(cfg.backbone, image_size, visual.patch_size[0])
        grid = image_size // visual.patch_size[0]
        if tuple(visual.grid_size) != (grid, grid):
            log.info("backbone %s: position embeddings interpolated (bicubic) from %s to %dx%d", cfg.backbone,
                     "x".join(map(str, visual.grid_size)), grid, grid)
            visual.positional_embedding = nn.Parameter(
                interpolate_token_grid(visual.positional_embedding.data, grid))
            visual.grid_size = (grid, grid)
            visual.image_size = (image_size, image_size)
        clip_proj = visual.proj.data.clone()
        visual.proj = None  # DEFR's feature is ln_post(CLS), 768-d for ViT-B
        width = clip_proj.shape[0]
        body: nn.Module = _ClipViTImageTower(visual)
    elif isinstance(visual, ModifiedResNet):
        _check_divisible(cfg.backbone, image_size, 32)
        grid = image_size // 32
        pos = visual.attnpool.positional_embedding
        if pos.shape[0] != grid * grid + 1:
            visual.attnpool.positional_embedding = nn.Parameter(interpolate_token_grid(pos.data, grid))
            visual.image_size = image_size
        width = visual.attnpool.c_proj.out_features
        clip_proj = torch.eye(width)  # the attnpool output already lives in the joint space
        body = visual
    else:
        raise ConfigError(f"model.backbone {cfg.backbone!r}: open_clip image tower {type(visual).__name__} is not "
                          f"supported; use a CLIP ViT or ResNet (e.g. 'open_clip:ViT-B-32', 'open_clip:RN50')")
    return Backbone(body, width=width, family="clip", name=cfg.backbone, clip_proj=clip_proj)


def interpolate_token_grid(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """[1 + g*g, D] position embeddings (CLS first) -> [1 + grid*grid, D]; the grid part is resized bicubically
    (align_corners=False, as DEFR does for CLIP), the CLS row is kept."""
    cls, tokens = pos_embed[:1], pos_embed[1:]
    old = int(round(tokens.shape[0] ** 0.5))
    assert old * old == tokens.shape[0], f"position grid of {tokens.shape[0]} tokens is not square"
    tokens = tokens.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    tokens = F.interpolate(tokens, size=(grid, grid), mode="bicubic", align_corners=False)
    tokens = tokens.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(pos_embed.dtype)
    return torch.cat([cls, tokens], dim=0)
