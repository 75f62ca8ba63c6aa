"""A model, loss, scheduler or training augmentation of your own, by name: `fit`, the run's record,
`resume`, `evaluate`, `predict` and `export_model` then treat it as one of seglib's.

A run records the name (config.json, the checkpoints), never the code: a later process (a resumed run,
an evaluation) registers the same name first, else its config is refused as naming an unknown choice.
Registering a name again (a notebook cell run twice) replaces what it names; seglib's own names stay.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from ..data import check_augmentation, is_augmentation
from ..models import MODELS
from .config import CHOICES, SCHEDULERS
from .loaders import OWN_AUGMENTATIONS
from .losses import LOSSES, OWN_LOSSES, LossFn
from .schedulers import OWN_SCHEDULERS, SchedulerFactory

__all__ = ["register_model", "register_loss", "register_scheduler", "register_augmentation", "own_names"]

# seglib's own choices, before any registration
_BUILT_IN = {"model": tuple(MODELS), "loss": LOSSES, "scheduler": SCHEDULERS, "augmentation": ("default",)}
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


def register_augmentation(name: str, build: Callable[[int, int], Any] | Any) -> None:
    """`TrainConfig(augmentation=name)` augments each training sample with an Albumentations transform (e.g.
    `A.Compose([...])`) in place of seglib's flip, rotation and colour jitter: `build(image_size, mask_fill)`
    makes it, or pass the transform itself. It gets the uint8 image and mask resized to `image_size`, and
    seglib normalises what it returns (a crop is resized back to `image_size`); `mask_fill` labels the pixels
    a rotation or shift brings in (`fill_mask=`). Seeded per sample by seglib: a run and its resume augment
    alike. It runs in the data loader, not on the device (`device_data`); a `scale_jitter` zoom comes first.
    What it gives back is checked on every sample: a uint8 image, a mask of 0, 1 (and IGNORE_INDEX) only."""
    call = f"register_augmentation({name!r}, ...)"
    if is_augmentation(build):
        build = _Given(build)
    _check("augmentation", name, build)
    try:
        inspect.signature(build).bind(64, 0)
    except TypeError:
        raise ValueError(
            f"{call}: build must take (image_size, mask_fill), e.g. lambda size, fill: ..."
        ) from None
    except ValueError:  # no signature to read (a builtin): its call below says
        pass
    made = build(64, 0)
    try:
        check_augmentation(made)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{call}: build(image_size, mask_fill) {e}" if isinstance(e, TypeError) else f"{call}: it {e}"
        ) from None
    OWN_AUGMENTATIONS[name] = build
    _add("augmentation", name)


class _Given:
    """A transform registered as it is: its builder, whatever the size and fill."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, image_size: int, mask_fill: int) -> Any:
        return self.transform


def own_names(settings: dict[str, Any]) -> list[str]:
    """The registered names a run's settings (its config) use, e.g. ["loss 'focal'"]: what a process must
    register before it resumes the run (the command line cannot)."""
    return [
        f"{kind} {settings[kind]!r}"
        for kind in _BUILT_IN
        if settings.get(kind, _BUILT_IN[kind][0]) not in _BUILT_IN[kind]
    ]


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
