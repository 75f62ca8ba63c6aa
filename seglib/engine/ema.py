"""Weight EMA: an exponential moving average of the weights, the model that validation and best.pt use.

Averaging the last few hundred steps smooths the step-to-step noise of small batches and high learning
rates, so the model is usable at any epoch of a run, not only at the end of its schedule.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]

# (EMA tensors, source tensors) averaged in one foreach call, and the (EMA, source) pairs that are not
_Pairs = tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]


class ModelEMA:
    """`ema = d * ema + (1 - d) * weights` after every optimizer step, on parameters and float buffers.

    With `warmup`, the decay of update n is min(decay, (1 + n) / (10 + n)) (as in timm and YOLOv5), so
    the average is not dominated by the random initialisation early in a short run. Integer buffers
    (BatchNorm's `num_batches_tracked`) are copied.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay!r}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self._source: nn.Module | None = None
        self._lists: _Pairs = ([], [], [])

    def current_decay(self) -> float:
        """The decay the next update uses."""
        n = self.updates + 1
        return min(self.decay, n / (n + 9)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        lerp_ema, lerp_src, rest = self._pairs(model)
        if lerp_ema:  # ema + (1 - d) * (t - ema), every tensor in one call: this runs after every step
            torch._foreach_lerp_(lerp_ema, lerp_src, 1.0 - d)
        for ema_t, t in rest:
            if ema_t.dtype.is_floating_point:
                ema_t.lerp_(t.to(ema_t.dtype), 1.0 - d)
            else:
                ema_t.copy_(t)
        self.updates += 1

    def _pairs(self, model: nn.Module) -> _Pairs:
        """The EMA's float tensors and the source's of the same dtype (averaged together), and the other
        (EMA, source) pairs; built once per source, by name."""
        if self._source is not model:
            src = model.state_dict()
            lerp_ema, lerp_src, rest = [], [], []
            for name, e in self.module.state_dict().items():
                t = src[name].detach()
                if e.dtype.is_floating_point and e.dtype == t.dtype:
                    lerp_ema.append(e)
                    lerp_src.append(t)
                else:
                    rest.append((e, t))
            self._lists = (lerp_ema, lerp_src, rest)
            self._source = model
        return self._lists

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])  # copies into the same tensors: the pairs stay valid
        self.updates = int(state["updates"])
