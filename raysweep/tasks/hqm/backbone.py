"""ResNet backbone with frozen BatchNorm and DETR's parameter names.

The state-dict layout is DETR's: `backbone.0.body.<resnet layer>...` for the CNN (`backbone.0` is the ResNet
wrapper, `backbone.1` the parameter-free position encoding). Only the last stage's output (stride 32) is used.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50, resnet101
from torchvision.ops import FrozenBatchNorm2d

from raysweep.errors import ConfigError, did_you_mean

from .padded import PaddedBatch
from .position_encoding import PositionEmbeddingSine

# Trainable stages when the backbone learns at all (lr_backbone > 0): conv1/bn1/layer1 stay frozen, as in DETR.
TRAINABLE_STAGES = ("layer2", "layer3", "layer4")

_TORCHVISION_RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101}
BACKBONES: tuple[str, ...] = tuple(_TORCHVISION_RESNETS) + ("tiny",)


class _BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; the tiny backbone's block (names as torchvision's BasicBlock)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = FrozenBatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), FrozenBatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


class TinyResNet(nn.Module):
    """A ResNet-shaped conv stack for CPU smoke runs: same stage names and stride 32, one block per stage.

    Channels are width, 2w, 4w, 8w. Its BatchNorms are frozen at identity like the big backbones' (there are no
    ImageNet statistics to freeze), so the init below is what keeps the signal scale.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans = [width, width, 2 * width, 4 * width, 8 * width]
        for i in range(4):
            setattr(self, f"layer{i + 1}", nn.Sequential(_BasicBlock(chans[i], chans[i + 1], 1 if i == 0 else 2)))
        # He (fan-in) init, with each block's second conv halved and linear init on the shortcut convs: with
        # identity BatchNorm this keeps the activation scale near 1-2 through all stages instead of vanishing.
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                linear = "downsample" in name
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear" if linear else "relu")
                if name.endswith("conv2"):
                    m.weight.data.mul_(0.5)
        self.num_channels = 8 * width


class ResNetBody(nn.Module):
    """conv1 .. layer4 of a ResNet (no avgpool/fc); returns the stride-32 feature map."""

    def __init__(self, net: nn.Module):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Backbone(nn.Module):
    """`backbone.0`: the CNN body plus the padding-mask downsampling."""

    def __init__(self, name: str, train_backbone: bool, tiny_width: int = 16):
        super().__init__()
        if name == "tiny":
            net = TinyResNet(tiny_width)
            self.num_channels = net.num_channels
        elif name in _TORCHVISION_RESNETS:
            # weights=None: the DETR checkpoint (model.pretrained) supplies the backbone weights.
            net = _TORCHVISION_RESNETS[name](weights=None, norm_layer=FrozenBatchNorm2d)
            self.num_channels = 512 if name in ("resnet18", "resnet34") else 2048
        else:
            raise ConfigError(f"model.backbone: unknown backbone {name!r}{did_you_mean(name, BACKBONES)}; "
                              f"allowed: {', '.join(BACKBONES)}")
        self.body = ResNetBody(net)
        for pname, p in self.body.named_parameters():
            if not train_backbone or not pname.startswith(TRAINABLE_STAGES):
                p.requires_grad_(False)

    def forward(self, batch: PaddedBatch) -> PaddedBatch:
        """images [B, 3, H, W], mask [B, H, W] (True = padding) -> features [B, C, H/32, W/32] + mask."""
        feat = self.body(batch.tensors)
        mask = F.interpolate(batch.mask[None].float(), size=feat.shape[-2:]).to(torch.bool)[0]
        return PaddedBatch(feat, mask)


class Joiner(nn.Sequential):
    """`backbone` = Sequential(Backbone, PositionEmbeddingSine), so the CNN lives under `backbone.0`."""

    def __init__(self, backbone: Backbone, position_embedding: PositionEmbeddingSine):
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels

    def forward(self, batch: PaddedBatch) -> tuple[PaddedBatch, torch.Tensor]:
        """-> (stride-32 features with mask, position embedding [B, d_model, h, w])."""
        feat = self[0](batch)
        return feat, self[1](feat.mask).to(feat.tensors.dtype)


def build_backbone(name: str, d_model: int, train_backbone: bool, tiny_width: int = 16,
                   position_embedding: Optional[PositionEmbeddingSine] = None) -> Joiner:
    pos = position_embedding or PositionEmbeddingSine(d_model // 2, normalize=True)
    return Joiner(Backbone(name, train_backbone, tiny_width), pos)
