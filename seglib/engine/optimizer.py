"""The optimizer every seglib run trains with: AdamW, fused where torch has a kernel for it.

torch's default AdamW on a CPU updates each parameter tensor with a dozen separate operations, each a
pass over the tensor and a trip through the dispatcher; the fused kernel does the same update in one
pass per tensor. It is the same algorithm (torch.optim.AdamW's `fused=True`), not a new recipe, and
just as deterministic, so a resumed run still equals an uninterrupted one. A checkpoint keeps the
optimizer's flags: a run begun unfused resumes unfused. docs/performance.md, "The fused optimizer",
has what it bought on each machine measured.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["FUSED_DEVICES", "build_optimizer", "optimizer_name"]

# Devices with a fused AdamW kernel in every torch this project runs on (2.11 on the GPU machine, 2.14).
FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW over `params`: fused when every one is a floating-point tensor on a device in FUSED_DEVICES,
    torch's default implementation otherwise."""
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """ "AdamW (fused)" or "AdamW": what a run's log says it trains with (a resumed run: as saved)."""
    fused = any(group.get("fused") for group in optimizer.param_groups)
    return f"{type(optimizer).__name__}{' (fused)' if fused else ''}"
