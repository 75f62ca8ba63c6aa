"""ResNet34-UNet: a from-scratch ResNet34 encoder with a UNet decoder.

The encoder's parameter and buffer names are torchvision's `resnet34` (without `fc`), so its
ImageNet weights, or any torchvision ResNet34 state_dict, load strictly into `model.encoder`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .checks import check_base_channels, check_encoder_width
from .unet import pad_to

__all__ = ["BasicBlock", "ResNet34Encoder", "DecoderBlock", "ResNet34UNet", "IMAGENET_URL"]

# torchvision's ResNet34_Weights.IMAGENET1K_V1 (the file torchvision itself downloads).
IMAGENET_URL = "https://download.pytorch.org/models/resnet34-b627a593.pth"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 downsample) shortcut, as torchvision's."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet34Encoder(nn.Module):
    """7x7/2 stem, 3x3/2 maxpool, BasicBlock stages [3, 4, 6, 3] at 64, 128, 256, 512 channels.

    `base_channels` scales the widths (64 is torchvision's ResNet34). `forward` returns the stem output
    (H/2) and the four stages (H/4 .. H/32); `channels` gives their widths.
    """

    def __init__(
        self,
        in_channels: int = 3,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        zero_init_residual: bool = False,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        check_base_channels(base_channels)
        c = base_channels
        self.channels = (c, c, 2 * c, 4 * c, 8 * c)
        self.conv1 = nn.Conv2d(in_channels, c, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(c, c, layers[0], stride=1)
        self.layer2 = self._stage(c, 2 * c, layers[1], stride=2)
        self.layer3 = self._stage(2 * c, 4 * c, layers[2], stride=2)
        self.layer4 = self._stage(4 * c, 8 * c, layers[3], stride=2)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017; torchvision's flag)
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        first = BasicBlock(in_channels, out_channels, stride)
        return nn.Sequential(first, *[BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        x1 = self.layer1(self.maxpool(stem))  # (B, 64, H/4, W/4)
        x2 = self.layer2(x1)  # (B, 128, H/8, W/8)
        x3 = self.layer3(x2)  # (B, 256, H/16, W/16)
        x4 = self.layer4(x3)  # (B, 512, H/32, W/32)
        return [stem, x1, x2, x3, x4]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DecoderBlock(nn.Module):
    """ConvTranspose2d to the skip's width, pad (or crop) to the skip, concat, two conv3x3-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        self.conv = nn.Sequential(
            *_conv_bn_relu(2 * skip_channels, out_channels), *_conv_bn_relu(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # The encoder rounds odd sizes up, so the up-sampled map can be a pixel larger than the skip.
        x = pad_to(self.up(x), skip)
        return self.conv(torch.cat([skip, x], dim=1))


class ResNet34UNet(nn.Module):
    """ResNet34 encoder + UNet decoder (512->256->128->64->64) + final up-sampling + conv head.

    Returns logits of shape (B, num_classes, H, W) for any H, W >= 1.
    `encoder_weights`: None (random), "imagenet" (torchvision's ImageNet weights, downloaded once into
    the torch hub cache) or the path of a torchvision ResNet34 state_dict file. `zero_init_residual`:
    the last BatchNorm of every residual block starts at zero (for training from scratch).
    `base_channels` scales every width but the head's 32 (64: the design's; the same depth narrower, as
    the UNet's `base_channels`); torchvision's weights need 64.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        encoder_weights: str | os.PathLike[str] | None = None,
        zero_init_residual: bool = False,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        check_encoder_width(encoder_weights, base_channels)
        self.in_channels, self.num_classes, self.base_channels = in_channels, num_classes, base_channels
        self.encoder = ResNet34Encoder(
            in_channels, zero_init_residual=zero_init_residual, base_channels=base_channels
        )
        c0, c1, c2, c3, c4 = self.encoder.channels
        self.dec4 = DecoderBlock(c4, c3, c3)
        self.dec3 = DecoderBlock(c3, c2, c2)
        self.dec2 = DecoderBlock(c2, c1, c1)
        self.dec1 = DecoderBlock(c1, c0, c0)
        self.final_up = nn.ConvTranspose2d(c0, c0, kernel_size=2, stride=2)
        self.head = nn.Sequential(*_conv_bn_relu(c0, 32), nn.Conv2d(32, num_classes, kernel_size=1))
        if encoder_weights is not None:
            load_encoder_weights(self.encoder, encoder_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem, x1, x2, x3, x4 = self.encoder(x)
        d = self.dec4(x4, x3)  # (B, 256, H/16, W/16)
        d = self.dec3(d, x2)  # (B, 128, H/8, W/8)
        d = self.dec2(d, x1)  # (B, 64, H/4, W/4)
        d = self.dec1(d, stem)  # (B, 64, H/2, W/2)
        d = pad_to(self.final_up(d), x)  # (B, 64, H, W)
        return self.head(d)  # (B, num_classes, H, W)


def load_encoder_weights(
    encoder: ResNet34Encoder, weights: str | os.PathLike[str], url: str = IMAGENET_URL
) -> None:
    """Load torchvision ResNet34 weights ("imagenet" or a state_dict file) into `encoder`, strictly."""
    if str(weights) == "imagenet":
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True)
        except Exception as e:  # urllib raises several types; the user needs one message
            raise RuntimeError(
                f"could not download the ImageNet weights of ResNet34 from {url} ({type(e).__name__}: {e}). "
                "This needs internet access once (they are cached in the torch hub folder, "
                f"{torch.hub.get_dir()}). Offline, pass encoder_weights=None, or the path of a "
                "torchvision resnet34 state_dict file you copied here."
            ) from e
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"encoder_weights={str(weights)!r} is neither 'imagenet' nor an existing file; "
                "pass None, 'imagenet' or the path of a torchvision resnet34 state_dict (.pth)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    encoder.load_state_dict(state, strict=True)
