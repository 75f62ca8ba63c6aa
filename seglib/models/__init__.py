"""The two segmentation models and their registry. This package imports torch only."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .resnet34_unet import ResNet34Encoder, ResNet34UNet
from .unet import UNet

__all__ = ["MODELS", "build_model", "UNet", "ResNet34UNet", "ResNet34Encoder", "count_parameters"]

MODELS: dict[str, Callable[..., nn.Module]] = {"unet": UNet, "resnet34_unet": ResNet34UNet}


def build_model(name: str, in_channels: int = 3, num_classes: int = 1, **kwargs: object) -> nn.Module:
    """Build a model by registry name ("unet" or "resnet34_unet"); it returns logits (B, C, H, W)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
