"""Test-time augmentation: the mirror image, and the image at other input sizes.

`TTA(flip=True)` (or `tta=True`) averages each image's logits with those of its mirror image.
`TTA(scales=(1.2,))` also averages in the logits of the image resized from its original to each other
size, the model's size s times the scale to a multiple of 32 (`tta_sizes`: 160 -> 192, 96 -> 128),
each up-sampled back to s (with `flip`, each size flipped too). Every path that scores or predicts
(`evaluate`, `predict`, the command line) takes one; validation during training uses `cfg.tta` (flip
only), so a run's epochs cost the same. A scale that rounds back to s (1.2 at 64 px), or to another
scale's size, adds nothing: `warn_unused_scales` names it (`UnusedScaleWarning`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TTA",
    "UnusedScaleWarning",
    "as_tta",
    "forward_tta",
    "tta_label",
    "tta_sizes",
    "unused_scales",
    "warn_unused_scales",
]


@dataclass(frozen=True)
class TTA:
    """What `forward_tta` averages: the mirror image (`flip`) and the image at `scales` x the model's size."""

    flip: bool = False
    scales: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise ValueError(f"TTA flip must be True or False, got {self.flip!r}")
        if not isinstance(self.scales, tuple | list):
            raise ValueError(
                f"TTA scales must be a tuple of factors, e.g. scales=(1.2,), got {self.scales!r}"
            )
        object.__setattr__(self, "scales", tuple(self.scales))  # frozen, hashable
        bad = [s for s in self.scales if not (isinstance(s, int | float) and s > 0 and s != 1)]
        if bad or len(set(self.scales)) < len(self.scales):
            raise ValueError(
                f"TTA scales {self.scales!r}: give distinct positive factors other than 1 (the model's own "
                "size always counts), e.g. scales=(1.2,) for 192 px beside 160"
            )


def tta_label(tta: bool | TTA) -> str:
    """How a table says which TTA scored it: "none", "flip", "scales 1.2" or "flip + scales 1.2"."""
    t = as_tta(tta)
    parts = (["flip"] if t.flip else []) + (
        [f"scales {' '.join(f'{s:g}' for s in t.scales)}"] if t.scales else []
    )
    return " + ".join(parts) or "none"


def as_tta(tta: bool | TTA) -> TTA:
    """`tta` as a TTA: True is the mirror image alone, False none."""
    if isinstance(tta, TTA):
        return tta
    if isinstance(tta, bool):
        return TTA(flip=tta)
    raise ValueError(f"tta must be True, False or a TTA(flip=..., scales=(...)), got {tta!r}")


def _scaled(size: int, scale: float) -> int:
    """size x scale to a multiple of 32, at least 32."""
    return max(32, round(size * scale / 32) * 32)


def tta_sizes(size: int, tta: bool | TTA) -> tuple[int, ...]:
    """The other input sizes of `tta` for a model input of `size`: size x scale to a multiple of 32 (at
    least 32), without `size` itself or repeats."""
    sizes = (_scaled(size, s) for s in as_tta(tta).scales)
    return tuple(dict.fromkeys(s for s in sizes if s != size))


class UnusedScaleWarning(UserWarning):
    """A TTA scale that adds no input size: it rounds back to the model's size or to another scale's."""


def unused_scales(size: int, tta: bool | TTA) -> tuple[float, ...]:
    """The scales of `tta` that add no size to `tta_sizes(size, tta)` (in the order given)."""
    seen, unused = {size}, []
    for s in as_tta(tta).scales:
        other = _scaled(size, s)
        if other in seen:
            unused.append(s)
        seen.add(other)
    return tuple(unused)


def warn_unused_scales(size: int, tta: bool | TTA, option: str = "TTA scales", stacklevel: int = 2) -> None:
    """An `UnusedScaleWarning` naming the scales of `tta` that add nothing for a model input of `size`
    (`unused_scales`) and scales that would; `option` names the setting (e.g. "--tta_scales"),
    `stacklevel` counts from the caller of this function (1: that caller's line)."""
    unused = unused_scales(size, tta)
    if not unused:
        return
    # the scales of the nearest multiples of 32 above and below the model's size, which do add one
    up, down = (size // 32 + 1) * 32, (size - 1) // 32 * 32
    hints = [f"{other / size:.3g} ({other} px)" for other in (up, down) if other >= 32]
    warnings.warn(
        f"{option} {', '.join(f'{s:g}' for s in unused)}: no input size beside this model's {size} px "
        f"({size} x scale is rounded to a multiple of 32, at least 32, and lands on {size} px or on an "
        f"earlier scale's size), so they change nothing; give scales that reach another multiple of 32, "
        f"e.g. {' or '.join(hints)}, or leave them out",
        UnusedScaleWarning,
        stacklevel=stacklevel + 1,
    )


def _flipped(model: nn.Module, x: torch.Tensor, flip: bool) -> torch.Tensor:
    logits = model(x).float()
    if flip:
        logits = (logits + model(x.flip(-1)).float().flip(-1)) / 2
    return logits


def forward_tta(
    model: nn.Module, x: torch.Tensor, tta: bool | TTA, extra: Sequence[torch.Tensor] = ()
) -> torch.Tensor:
    """Logits at x's size: model(x), with `flip` averaged with the mirror image's; `extra` (the same
    images at `tta_sizes`) each adds its logits, up-sampled to x's size, to the mean."""
    flip = as_tta(tta).flip
    logits = _flipped(model, x, flip)
    for e in extra:
        other = _flipped(model, e, flip)
        logits = logits + F.interpolate(other, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return logits / (1 + len(extra)) if extra else logits
