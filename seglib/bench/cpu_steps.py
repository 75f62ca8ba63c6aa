"""The training-step rows on a CPU: each side in a worker process of its own (`workers`), taking turns."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..allocator import allocator_env
from ..engine.fastpath import FORMATS
from .steps import achieved_row, step_flops, step_what
from .timing import memory_row, row
from .workers import run_rounds, step_workers


def _glibc_env() -> dict[str, str]:
    """This process's environment without a preloaded allocator: the plain glibc process the original ran in."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    return {**env, "SEGLIB_JEMALLOC": "0"}


def _step_configs(spec: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """The workers of one step row, (spec, env) by label: the reference (glibc, NCHW); seglib (its
    allocator, both formats, choosing one as fit() would); seglib-glibc when seglib's allocator is jemalloc."""
    seglib_env = {**os.environ, **allocator_env()}
    configs = {
        "reference": ({**spec, "mode": "reference", "formats": ["nchw"]}, _glibc_env()),
        "seglib": ({**spec, "mode": "seglib", "formats": list(FORMATS), "choose": True}, seglib_env),
    }
    if "jemalloc" in seglib_env.get("LD_PRELOAD", ""):
        configs["seglib-glibc"] = ({**spec, "mode": "seglib", "formats": list(FORMATS)}, _glibc_env())
    return configs


def cpu_train_step(
    name: str, kwargs: dict[str, Any], size: int, batch: int, steps: int, reps: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Training step on a CPU, each side in a worker process of its own, taking turns `reps` times
    (the package's docstring). The rows, and seglib's choice of memory format (`steps.choice_dict`)."""
    cpu = torch.device("cpu")
    flops = step_flops(name, kwargs, size, cpu)
    spec = {"model": name, "model_kwargs": kwargs, "size": size, "batch": batch, "steps": steps}
    with step_workers(_step_configs(spec)) as workers:
        answers = run_rounds(workers, reps)
        ready = {label: w.ready for label, w in workers.items()}
    choice = ready["seglib"]["choice"]
    return _cpu_step_rows(step_what(name, kwargs, size, batch), flops, ready, answers), choice


def _cpu_step_rows(
    what: str, flops: int, ready: dict[str, dict[str, Any]], answers: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The step rows from the workers' answers: reference against seglib's chosen format, achieved
    GFLOP/s, one candidate row per (format, allocator) against the reference, and peak RSS."""
    chosen = ready["seglib"]["choice"]["format"]

    def rates(label: str, fmt: str) -> list[float]:
        return [a["rates"][fmt] for a in answers[label]]

    def peak(label: str, fmt: str) -> float:
        return max(a["peak_mb"][fmt] for a in answers[label])

    ref, fast = rates("reference", "nchw"), rates("seglib", chosen)
    rows = [row(what, "images/s", ref, fast), achieved_row(what, ref, fast, flops)]
    for label in ("seglib", "seglib-glibc"):
        for fmt in ready[label]["formats"] if label in ready else ():
            candidate = f"{what} candidate {fmt} + {ready[label]['allocator']}"
            rows.append(row(candidate, "images/s", ref, rates(label, fmt)))
    rows.append(memory_row(what, "MB peak RSS", peak("reference", "nchw"), peak("seglib", chosen)))
    return rows
