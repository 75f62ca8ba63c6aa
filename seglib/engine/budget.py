"""A run with a budget of minutes: it re-plans its epochs from its own epochs' times as it goes.

A plan made before a run (`seglib.study.fit_to_budget`: two probe epochs and a margin) misses either way,
because a run's epochs come out faster or slower than the probe's: runs planned that way ended well before
their budget, or past it (docs/experiments/recipe_study_resnet34_unet.md). With `TrainConfig.budget_minutes`
set, `epochs` is the first plan; the run re-plans once it has a pace of its own, and each time its training
time passes one of `REPLAN_AT` (shares of the budget): it keeps the epochs done and adds as many as fit in
the rest of the budget at the pace of its recent epochs. Past the last share, the plan can still shrink
where the run slows down. The learning-rate schedule then continues as that of a run planned for the new
number of epochs from the start (`schedulers.rescheduled`).

The decision is a function of the run's history (its epochs' seconds), which last.pt keeps; so a resumed
run keeps the plan it had. Training time is what history.csv counts: training and validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

SizeAt = Callable[[int, int], int]  # (epoch, epochs planned) -> the image size that epoch trains at

__all__ = [
    "REPLAN_AT",
    "MARGIN",
    "MIN_EPOCHS_TIMED",
    "RECENT",
    "STALL",
    "kept_plan_note",
    "planned_epochs",
    "next_plan",
]

REPLAN_AT = (0.25, 0.6, 0.85)  # shares of the budget where the plan may grow as well as shrink
MARGIN = 1.03  # the run's own recent epochs vary little; a small margin keeps its end within the budget
MIN_EPOCHS_TIMED = 3  # the first epoch carries one-off costs; two more give a pace
RECENT = 5  # epochs that say how fast the run goes now (a run's epochs can slow down as it goes)
STALL = 2.0  # an epoch this many times the median is a stall; a slowdown that lasts soon moves the median


def _pace(seconds: Sequence[float]) -> float:
    """Seconds an epoch of the rest of the run is expected to take: `_recent` of the epochs done, never
    counting the first epoch (its one-off costs)."""
    return _recent(list(seconds[1:]) or list(seconds))


def _recent(timed: Sequence[float]) -> float:
    """The slower of the mean of the later half of `timed` and of its last `RECENT`, each without a stall."""
    half = timed[len(timed) // 2 :] or timed
    last = timed[-RECENT:]
    return max(_steady_mean(half), _steady_mean(last))


def _steady_mean(timed: Sequence[float]) -> float:
    """The mean of `timed`, without its slowest epoch where that took over `STALL` times the median: a
    one-off stall (the host busy elsewhere) is counted in the time spent, but not in the pace of the
    epochs ahead. Counted, it would shrink a plan past the last mark for good, and the run end early."""
    ordered = sorted(timed)
    if len(ordered) >= 3 and ordered[-1] > STALL * ordered[len(ordered) // 2]:
        ordered.pop()
    return sum(ordered) / len(ordered)


def _paces(seconds: Sequence[float], sizes: Sequence[int]) -> dict[int, float]:
    """`_pace` of the epochs done at each image size (progressive resizing), the run's first epoch counted
    only where its size has no other."""
    paces = {}
    for size in dict.fromkeys(sizes):
        at = [t for i, (t, s) in enumerate(zip(seconds, sizes, strict=True)) if s == size and i > 0]
        paces[size] = _recent(at) if at else seconds[0]
    return paces


def _cost(size: int, paces: dict[int, float]) -> float:
    """Seconds an epoch at `size` is expected to take: its own pace, else the largest size's scaled by the
    pixels (an upper bound: part of an epoch, validation among it, does not shrink with the images)."""
    if size in paces:
        return paces[size]
    ref = max(paces)
    return paces[ref] * (size / ref) ** 2


def kept_plan_note(epochs: int, budget_minutes: float | None) -> str:
    """What a budget run with a first plan too short to re-plan does, or "": a plan of at most
    `MIN_EPOCHS_TIMED` epochs ends by the time the run has a pace, and lengthening it then would raise its
    annealed learning rate again, so it is kept (a study's plan for a budget this short is its own)."""
    if budget_minutes is None or epochs > MIN_EPOCHS_TIMED:
        return ""
    return (
        f"seglib: budget {budget_minutes:g} min: the first plan of {epochs} epoch(s) is kept (a plan of at most "
        f"{MIN_EPOCHS_TIMED} epochs ends by the time the run has timed its pace); give epochs >= "
        f"{MIN_EPOCHS_TIMED + 1} to let the budget decide"
    )


def planned_epochs(
    seconds: Sequence[float],
    budget_seconds: float,
    margin: float = MARGIN,
    sizes: Sequence[int] | None = None,
    size_at: SizeAt | None = None,
) -> int:
    """The epochs a run can have within `budget_seconds`, its epochs so far having taken `seconds`: those
    done, plus as many more as fit at its recent pace (`_pace`) with `margin`. Those done, if the budget
    is spent. With progressive resizing, `sizes` are the sizes of the epochs done and `size_at(epoch,
    epochs)` the size of a later epoch in a plan of `epochs`: each size at its own pace (`_cost`)."""
    done = len(seconds)
    if done == 0:
        raise ValueError("planned_epochs needs the seconds of at least one epoch")
    left = budget_seconds - sum(seconds)
    if sizes is None or size_at is None:
        return done + max(0, math.floor(left / (margin * _pace(seconds))))
    paces = _paces(seconds, sizes)

    def fits(epochs: int) -> bool:
        return margin * sum(_cost(size_at(e, epochs), paces) for e in range(done + 1, epochs + 1)) <= left

    # A longer plan costs more (its new epoch outweighs the earlier ones it moves to a smaller size): the
    # last plan that fits is found by doubling, then halving.
    low, high = done, done + 1
    while fits(high):
        low, high = high, done + 2 * (high - done)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def next_plan(
    seconds: Sequence[float],
    budget_seconds: float,
    planned: int,
    sizes: Sequence[int] | None = None,
    size_at: SizeAt | None = None,
) -> int:
    """The run's epochs after the epoch just done (the last of `seconds`), `planned` so far.

    Once it has a pace (`MIN_EPOCHS_TIMED` epochs; so `epochs` need only be a first guess, of more) and at
    each epoch that passes a share of `REPLAN_AT`, the epochs that fit (`planned_epochs`); after the last
    share, at every epoch, fewer where the recent pace no longer fits the plan (a run slowing down near its
    end). Never past the planned last epoch: lengthening a finished schedule would raise the learning rate
    again (a shorter first plan is kept: `kept_plan_note`).

    With progressive resizing (`sizes` of the epochs done, `size_at`), a plan is only re-made before the
    last share once every size still ahead has a pace of its own (a size not trained yet, scaled from a
    smaller one by its pixels, would be overestimated: validation and the data work do not shrink), and the
    first epoch at a new size is a first pace too.
    """
    done = len(seconds)
    if done < MIN_EPOCHS_TIMED or done >= planned:
        return planned

    def fits() -> int:
        return planned_epochs(seconds, budget_seconds, MARGIN, sizes, size_at)

    now, before = sum(seconds), sum(seconds[:-1])
    if now >= REPLAN_AT[-1] * budget_seconds and not before < REPLAN_AT[-1] * budget_seconds:
        # Past the last mark, where a slower pace would carry the run past its budget: shrink only. Earlier, a
        # few slow epochs wait for the next mark (each change of plan moves the lr schedule).
        return min(planned, fits())
    first = done == MIN_EPOCHS_TIMED
    if sizes is not None and size_at is not None:  # progressive resizing
        if not {size_at(e, planned) for e in range(done + 1, planned + 1)} <= set(sizes[1:]):
            return planned  # a size ahead has no pace yet
        first = first or sizes[-1] != sizes[-2]
    if first or any(before < share * budget_seconds <= now for share in REPLAN_AT):
        return fits()
    return planned
