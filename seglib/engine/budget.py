"""A run with a budget of minutes: it re-plans its epochs from its own epochs' times as it goes.

A plan made before a run (`seglib.study.fit_to_budget`: two probe epochs and a margin) misses by 5-20%
either way, because a run's epochs come out faster or slower than the probe's: runs planned that way ended
well before their budget, or past it. With `TrainConfig.budget_minutes` set, `epochs` is the first plan; the
run checks it once it has a pace of its own, and each time its training time passes one of `REPLAN_AT`
(shares of the budget): it keeps the epochs done and adds as many as fit in the rest of the budget at the
pace of its recent epochs. The learning-rate schedule
then continues as that of a run planned for the new number of epochs from the start (`schedulers.rescheduled`).

The decision is a function of the run's history (its epochs' seconds), which last.pt keeps; so a resumed
run keeps the plan it had. Training time is what history.csv counts: training and validation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["REPLAN_AT", "MARGIN", "MIN_EPOCHS_TIMED", "planned_epochs", "replan_due"]

REPLAN_AT = (0.25, 0.6, 0.85)  # shares of the budget after which the plan is checked
MARGIN = 1.03  # the run's own recent epochs vary little; a small margin keeps its end within the budget
MIN_EPOCHS_TIMED = 3  # the first epoch carries one-off costs; two more give a pace


def planned_epochs(seconds: Sequence[float], budget_seconds: float, margin: float = MARGIN) -> int:
    """The epochs a run can have within `budget_seconds`, its epochs so far having taken `seconds`: those
    done, plus as many more as fit at the pace of the later half of them (never the first, whose one-off
    costs do not come again), with `margin`. Those done, if the budget is spent."""
    done = len(seconds)
    if done == 0:
        raise ValueError("planned_epochs needs the seconds of at least one epoch")
    recent = list(seconds[max(1, done // 2) :]) or list(seconds)
    pace = margin * sum(recent) / len(recent)
    left = budget_seconds - sum(seconds)
    return done + max(0, math.floor(left / pace))


def replan_due(seconds: Sequence[float], budget_seconds: float, planned: int) -> bool:
    """True when the epoch just done (the last of `seconds`) is where the run re-plans: the first with a pace
    (`MIN_EPOCHS_TIMED`; so `epochs` need only be a first guess), and each that passes a share of `REPLAN_AT`.
    Never at the planned last epoch: lengthening a finished schedule would raise the learning rate again."""
    done = len(seconds)
    if done < MIN_EPOCHS_TIMED or done >= planned:
        return False
    if done == MIN_EPOCHS_TIMED:
        return True
    now, before = sum(seconds), sum(seconds[:-1])
    return any(before < share * budget_seconds <= now for share in REPLAN_AT)
