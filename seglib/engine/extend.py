"""A model, loss or scheduler of your own, by name: `fit`, the run's record, `resume`, `evaluate`,
`predict` and `export_model` then treat it as one of seglib's.

A run records the name (config.json, the checkpoints), never the code: a later process (a resumed run,
an evaluation) registers the same name first, else its config is refused as naming an unknown choice.
Registering a name again (a notebook cell run twice) replaces what it names; seglib's own names stay.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from torch import nn

from ..models import MODELS
from .config import CHOICES, SCHEDULERS
from .losses import LOSSES, OWN_LOSSES, LossFn
from .schedulers import OWN_SCHEDULERS, SchedulerFactory

__all__ = ["register_model", "register_loss", "register_scheduler"]

_BUILT_IN = {"model": tuple(MODELS), "loss": LOSSES, "scheduler": SCHEDULERS}  # before any registration
# It becomes part of a run's default name (unet-<scheduler>-...) and of the command line's choices.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")


def register_model(name: str, model_class: Callable[..., nn.Module]) -> None:
    """`TrainConfig(model=name)` builds `model_class(in_channels=3, num_classes=1, **model_kwargs)`: an
    nn.Module that returns logits (B, num_classes, H, W) for images (B, in_channels, H, W)."""
    _check("model", name, model_class)
    takes = inspect.signature(model_class).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes.values())
    missing = [k for k in ("in_channels", "num_classes") if k not in takes and not var_kw]
    if missing:
        raise ValueError(
            f"register_model({name!r}, ...): {model_class!r} must take in_channels and num_classes "
            f"(seglib builds it with in_channels=3, num_classes=1); it does not take {missing}"
        )
    MODELS[name] = model_class
    _add("model", name)


def register_loss(name: str, loss_fn: LossFn) -> None:
    """`TrainConfig(loss=name)` trains and validates with `loss_fn(logits, target)`, a scalar tensor.
    `target` holds 1 (object), 0 and `seglib.data.IGNORE_INDEX` (pixels no loss should count; only with
    `border="ignore"`); `logits` may be bf16 under autocast."""
    _check("loss", name, loss_fn)
    OWN_LOSSES[name] = loss_fn
    _add("loss", name)


def register_scheduler(name: str, factory: SchedulerFactory, per_batch: bool = False) -> None:
    """`TrainConfig(scheduler=name)` builds `factory(cfg, optimizer, steps_per_epoch)`, a torch LRScheduler
    for `cfg.epochs` epochs, stepped after every optimizer step (`per_batch=True`) or every epoch. Its
    `state_dict` goes into `last.pt`, so a resumed run goes on where it stopped."""
    _check("scheduler", name, factory)
    if not isinstance(per_batch, bool):
        raise ValueError(
            f"register_scheduler({name!r}, ...): per_batch must be True or False, got {per_batch!r}"
        )
    OWN_SCHEDULERS[name] = (factory, per_batch)
    _add("scheduler", name)


def _check(kind: str, name: str, thing: object) -> None:
    call = f"register_{kind}({name!r}, ...)"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{call}: a name is letters, digits and '_' (e.g. 'focal'), got {name!r}")
    if name in _BUILT_IN[kind]:
        raise ValueError(f"{call}: {name!r} is seglib's own {kind}; give yours another name")
    if not callable(thing):
        raise ValueError(f"{call}: the second argument must be callable, got {thing!r}")


def _add(kind: str, name: str) -> None:
    """validate() and the command line read CHOICES: the name becomes one of them."""
    if name not in CHOICES[kind]:
        CHOICES[kind] = (*CHOICES[kind], name)
