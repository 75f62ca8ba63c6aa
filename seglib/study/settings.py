"""What a study's runs are made of: the notebook's config function, recipe items with their changes
("recommended+ema_decay=0"), and a study's settings for the model it trains."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ..engine import RECIPES, TrainConfig

__all__ = ["ConfigFn", "json_or_text", "parse_recipes", "settings_for"]

# A config for (model, recipe, **overrides) on the notebook's data and profile: `Workspace.config`.
ConfigFn = Callable[..., TrainConfig]


# Python's spellings of JSON's true, false and null: a notebook user writes `recommended+tta=True`
PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def json_or_text(text: str) -> Any:
    """A command-line value: JSON where it parses (7, 0.99, true, "x", [1, 2]), a number as papermill's -p
    reads one (.5, 5., 1_000), Python's True, False and None as JSON's true, false and null, else the text
    itself (unet, 3,6,12)."""
    if text.strip() in PYTHON_LITERALS:
        return PYTHON_LITERALS[text.strip()]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for number in (int, float):  # as papermill's -p: 1_000 is 1000, nan a float (refused where it matters)
        try:
            return number(text)
        except ValueError:
            pass
    return text


# Settings a recipe item cannot change: the notebook's parameters or the study itself set them.
STUDY_SETS = {
    "model": "notebook 06's model_name",
    "checkpoint_every": "notebook 06's checkpoint_every",
    "run_name": "each run is named after its recipe, budget, model, seed and profile",
    "output_dir": "results_dir/runs",
    "data_root": "the notebook's data_root",
    "synthetic_root": "the notebook's data_root",
    "dataset": "the notebook's dataset",
    "device": "the notebook's device",
}


def parse_recipes(spec: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """ "original,recommended+ema_decay=0+image_size=128" -> {label: (recipe, overrides)}.

    Each comma-separated item is a recipe of `RECIPES`, optionally with `+key=value` changes (values are
    read as JSON where they parse: 0.99, true, "x"; True, False and None as true, false and null; else as
    text): an ablation is one item per lever.
    """
    known = {f.name for f in fields(TrainConfig)}
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        name, *changes = item.split("+")
        if name not in RECIPES:
            raise ValueError(f"recipes: unknown recipe {name!r} in {item!r}; choose one of {list(RECIPES)}")
        over: dict[str, Any] = {}
        for change in changes:
            key, sep, value = change.partition("=")
            if not sep or key not in known:
                raise ValueError(f"recipes: {change!r} in {item!r} is not key=value with a TrainConfig key")
            if key in STUDY_SETS:
                raise ValueError(f"recipes: {change!r} in {item!r}: the study sets {key} ({STUDY_SETS[key]})")
            if key in over:
                raise ValueError(f"recipes: {key} is set twice in {item!r}; keep one")
            over[key] = json_or_text(value)
        out[item] = (name, over)
    if not out:
        raise ValueError(f"recipes: no recipe in {spec!r}; e.g. 'original,recommended'")
    return out


def settings_for(settings: dict[str, Any], owner: str, model: str) -> dict[str, Any]:
    """A study's `settings` for `model`: its `model_kwargs` are `owner`'s (a width chosen for one model),
    so another model trains with its preset's own."""
    return settings if model == owner else {k: v for k, v in settings.items() if k != "model_kwargs"}
