"""A notebook's own parameters checked as papermill passes them or a person writes them, before any work.

`papermill -p worst -1` or `-p resume true` reaches the notebook as -1 or the text "true" (papermill reads
True and False, numbers and text): each check returns the value it takes, or raises a ValueError naming
the parameter, what it takes and how to write it (in the parameters cell, or to papermill). The training
settings are TrainConfig's to check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["whole_number", "probability", "flag", "choice", "text", "name_list"]


def _as_text(name: str, value: Any) -> str:
    """What to say of a number that came as text: papermill's -r (raw) passes every value as text."""
    try:
        float(value)
    except (TypeError, ValueError):
        return ""
    return (
        f" (text: write {name} = {value} without quotes, or -p {name} {value} to papermill, not -r)"
        if isinstance(value, str)
        else ""
    )


def whole_number(name: str, value: Any, minimum: int = 0) -> int:
    """`value` as an int of at least `minimum`."""
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value != int(value) or value < minimum:
        raise ValueError(
            f"{name} must be a whole number of at least {minimum}, got {value!r}{_as_text(name, value)}"
        )
    return int(value)


def probability(name: str, value: Any, zero_means: str = "") -> float:
    """`value` as a probability strictly between 0 and 1; 0 as well where `zero_means` says what it means."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0 < value < 1 or (zero_means and value == 0)):
        also = f", or 0 ({zero_means})" if zero_means else ""
        raise ValueError(
            f"{name} must be a number between 0 and 1 (e.g. 0.5){also}, got {value!r}{_as_text(name, value)}"
        )
    return float(value)


def text(name: str, value: Any) -> str:
    """`value`, text that is not empty: papermill reads -p NAME 2024 as a number and None as None (-r NAME
    VALUE passes text as it is)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f'{name} must be text that is not empty ({name} = "VALUE", or -r {name} VALUE to papermill), got {value!r}'
        )
    return value


def name_list(name: str, value: Any) -> str:
    """`value`, comma-separated names, as text or a list (papermill -y '{name}: [a, b]')."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be comma-separated names (e.g. -p {name} a,b), got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    """`value` as True or False: papermill reads only these two spellings as booleans."""
    if not isinstance(value, bool):
        raise ValueError(
            f"{name} must be True or False ({name} = True, or -p {name} True to papermill), got {value!r}"
        )
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """`value`, one of `choices`."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(choices)}")
    return value
