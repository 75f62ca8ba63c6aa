"""UNet of Ronneberger et al. (2015), as the original workbook builds it, with padded convolutions.

DoubleConv (conv3x3-BN-ReLU x2, padding 1, no bias) -> 4 Down (maxpool + DoubleConv) -> 4 Up
(ConvTranspose2d x2, pad to the skip, concat, DoubleConv) -> 1x1 OutConv. Widths 64..1024 by default;
`base_channels` scales them all. Any input size works: the Up blocks pad to the skip's size.
`dropout` > 0 adds the paper's "drop-out layers at the end of the contracting path" (Dropout2d on the
two deepest feature maps, training only); the original workbook has none (0, the default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_base_channels, check_dropout

__all__ = ["DoubleConv", "Down", "Up", "OutConv", "UNet", "pad_to"]


def pad_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Zero-pad `x` at the right/bottom (and left/top, split evenly) to the spatial size of `ref`."""
    dy = ref.shape[-2] - x.shape[-2]
    dx = ref.shape[-1] - x.shape[-1]
    # Under torch.export the sizes are symbols: a test on them would fix the graph to the example's sizes.
    if not torch.compiler.is_exporting() and dy == 0 and dx == 0:
        return x
    # (d - d % 2) // 2 is d // 2 (floor) for either sign, written so because the ONNX exporter divides a
    # negative size (a crop) toward zero, which would crop the other side.
    left, top = (dx - dx % 2) // 2, (dy - dy % 2) // 2
    return F.pad(x, [left, dx - left, top, dy - top])


class DoubleConv(nn.Sequential):
    """(conv3x3 -> BN -> ReLU) x 2, padding 1 so the size is kept."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        mid = mid_channels or out_channels
        super().__init__(
            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """MaxPool2d(2) then DoubleConv: halves the size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """ConvTranspose2d (x2), pad to the skip's size, concat with the skip, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = pad_to(self.up(x), skip)  # (B, C/2, Hs, Ws): odd sizes lose a pixel in the pooling
        return self.conv(torch.cat([skip, x], dim=1))  # (B, C, Hs, Ws)


class OutConv(nn.Conv2d):
    """1x1 convolution to the class logits."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)


class UNet(nn.Module):
    """UNet returning logits of shape (B, num_classes, H, W) for any H, W >= 1."""

    def __init__(
        self, in_channels: int = 3, num_classes: int = 1, base_channels: int = 64, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_base_channels(base_channels)
        check_dropout(dropout)
        c = [base_channels * 2**i for i in range(5)]  # 64, 128, 256, 512, 1024
        self.in_channels, self.num_classes, self.base_channels = in_channels, num_classes, base_channels
        self.inc = DoubleConv(in_channels, c[0])
        self.down1 = Down(c[0], c[1])
        self.down2 = Down(c[1], c[2])
        self.down3 = Down(c[2], c[3])
        self.down4 = Down(c[3], c[4])
        self.up1 = Up(c[4], c[3])
        self.up2 = Up(c[3], c[2])
        self.up3 = Up(c[2], c[1])
        self.up4 = Up(c[1], c[0])
        self.outc = OutConv(c[0], num_classes)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < 16 or w < 16:  # they would pool to zero size: pad them up, crop back at the end
            x = pad_to(x, x.new_empty(1, 1, max(h, 16), max(w, 16)))
        x1 = self.inc(x)  # (B, 64, H, W)
        x2 = self.down1(x1)  # (B, 128, H/2, W/2)
        x3 = self.down2(x2)  # (B, 256, H/4, W/4)
        x4 = self.dropout(self.down3(x3))  # (B, 512, H/8, W/8)
        x5 = self.dropout(self.down4(x4))  # (B, 1024, H/16, W/16)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)  # (B, 64, H, W)
        logits = self.outc(x)  # (B, num_classes, H, W)
        if logits.shape[-2:] != (h, w):
            dy, dx = (logits.shape[-2] - h) // 2, (logits.shape[-1] - w) // 2
            logits = logits[..., dy : dy + h, dx : dx + w]
        return logits
