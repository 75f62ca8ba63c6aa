"""The models' settings checked before any weight is made: one rule each, for the models and for
`TrainConfig` (which checks them before the data is cached)."""

from __future__ import annotations

from typing import Any

__all__ = ["check_base_channels", "check_dropout", "check_encoder_width"]


def check_base_channels(value: Any) -> None:
    """Refuse a `base_channels` that is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"base_channels must be a positive integer, e.g. 16; got {value!r}")


def check_dropout(value: Any) -> None:
    """Refuse a `dropout` outside [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"dropout must be a number in [0, 1), e.g. 0.2; got {value!r}")


def check_encoder_width(encoder_weights: Any, base_channels: Any) -> None:
    """Refuse pretrained encoder weights with other widths than the ResNet34's own."""
    if encoder_weights is not None and base_channels != 64:
        raise ValueError(
            f"encoder_weights need the ResNet34's own widths (base_channels=64), got "
            f"base_channels={base_channels}; drop one of the two"
        )
