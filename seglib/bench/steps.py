"""The training step each side runs (the original's and seglib's), its FLOPs, and its rows' names."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..allocator import allocator_name
from ..engine.fastpath import FormatChoice
from ..engine.losses import bce_loss
from ..engine.optimizer import build_optimizer
from ..engine.runtime import autocast
from ..metrics import confusion_counts, dice_from_counts
from ..models import build_model
from .timing import row


def reference_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    """The original's step: fp32, and `.item()` on the loss and the Dice of every batch (a host sync)."""
    logits = model(x)
    loss = bce_loss(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    loss.item(), dice_from_counts(*confusion_counts(logits.detach(), y)).mean().item()


def fast_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, amp: bool
) -> torch.Tensor:
    """seglib's step: bf16 autocast where native (`runtime.default_amp`), loss + Dice left on the device."""
    with autocast(x.device, amp):
        logits = model(x)
    loss = bce_loss(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach() + dice_from_counts(*confusion_counts(logits.detach(), y)).mean()


def train_step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward + backward, counted by torch.utils.flop_counter."""
    with FlopCounterMode(display=False) as counter:
        bce_loss(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def step_flops(name: str, kwargs: dict[str, Any], size: int, device: torch.device) -> int:
    """FLOPs of one image's training step (forward + backward)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size, device=device)
    y = (torch.rand(1, 1, size, size, device=device) > 0.5).float()
    return train_step_flops(build_model(name, **kwargs).to(device), x, y)


def model_and_optimizer(
    name: str, kwargs: dict[str, Any], device: torch.device, fmt: torch.memory_format, seglib: bool
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model in `fmt` and its AdamW: seglib's (`fit`'s, fused where it can be) or the original's."""
    model = build_model(name, **kwargs).to(device).to(memory_format=fmt)
    if seglib:
        return model, build_optimizer(model.parameters(), 1e-4, 1e-4)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def step_what(name: str, kwargs: dict[str, Any], size: int, batch: int) -> str:
    """A step row's name, e.g. "train step unet-w16 128px b4"."""
    return f"train step {name}{'-w' + str(kwargs['base_channels']) if kwargs else ''} {size}px b{batch}"


def achieved_row(what: str, ref: list[float], fast: list[float], flops_per_image: float) -> dict[str, Any]:
    """GFLOP/s achieved by each side, from its images/s and the FLOPs of one image's step."""
    gflop = flops_per_image / 1e9
    return row(f"{what} achieved", "GFLOP/s", [r * gflop for r in ref], [f * gflop for f in fast])


def choice_dict(choice: FormatChoice) -> dict[str, Any]:
    """A FormatChoice as JSON: the format's name, why, the probe's rates and this process's allocator."""
    return {
        "format": "channels_last" if choice.channels_last else "nchw",
        "source": choice.source,
        "rates": dict(choice.rates),
        "others": choice.others,  # cores other programs used during the probe
        "allocator": allocator_name(),
        "describe": choice.describe(),
    }
