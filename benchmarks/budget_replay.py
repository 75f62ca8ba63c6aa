"""How much of its budget a re-planning run uses, replayed over made-up epoch times (no training).

    .venv/bin/python benchmarks/budget_replay.py [--csv PATH]

A run re-plans its epochs after each one as `fit` does (`seglib.engine.budget.next_plan`); its epochs
take the seconds of a scenario: steady (5% noise), one stall of 3-20 epochs' time, a lasting slowdown
from a random epoch on (1.2-1.8x, or 2-4x), or a steady drift to 1.5x. 300 runs per scenario and
budget (15, 40 or 100 epochs' time), each rule on the same times. The rules: today's (`STALL`: an
epoch over twice its window's median is left out of the pace) and the one before it (`STALL` = inf:
every epoch counts). Prints the mean and lowest share of the budget used and the share of runs that
ended past their budget (where notebook 06 has no model for that budget).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
from collections.abc import Callable

from seglib.engine import budget
from seglib.provenance import stamp

Scenario = Callable[[random.Random, int], list[float]]
MACHINE = "none: made-up epoch times, no training (the same on every machine)"


def _noise(rng: random.Random, n: int) -> list[float]:
    return [rng.lognormvariate(0, 0.05) for _ in range(n)]


def _stall(rng: random.Random, n: int) -> list[float]:
    times = _noise(rng, n)
    times[rng.randrange(3, n)] = rng.uniform(3, 20)
    return times


def _slowdown(low: float, high: float) -> Scenario:
    def times(rng: random.Random, n: int) -> list[float]:
        start, factor = rng.randrange(3, n), rng.uniform(low, high)
        return [t * (factor if i >= start else 1) for i, t in enumerate(_noise(rng, n))]

    return times


def _drift(rng: random.Random, n: int) -> list[float]:
    return [t * (1 + 0.5 * i / n) for i, t in enumerate(_noise(rng, n))]


SCENARIOS: dict[str, Scenario] = {
    "steady": _noise,
    "one stall": _stall,
    "lasting 1.2-1.8x": _slowdown(1.2, 1.8),
    "lasting 2-4x": _slowdown(2, 4),
    "drift to 1.5x": _drift,
}


def used_share(times: list[float], seconds: float, planned: int) -> float:
    """The share of `seconds` a run starting with `planned` epochs uses, its epochs taking `times`."""
    done: list[float] = []
    while len(done) < planned:
        done.append(times[len(done)])
        planned = budget.next_plan(done, seconds, planned)
    return sum(done) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", help="also write the rows here")
    args = parser.parse_args()
    rows, today = [], budget.STALL
    for name, scenario in SCENARIOS.items():
        for epochs in (15, 40, 100):
            for rule, stall in (("today's", today), ("every epoch counts", math.inf)):
                shares = []
                for trial in range(300):
                    times = scenario(random.Random(trial), 4 * epochs)
                    times[0] = 2.5  # the first epoch's one-off costs
                    budget.STALL = stall
                    shares.append(used_share(times, float(epochs), epochs))
                over = sum(s > 1 for s in shares) / len(shares)
                row = {"scenario": name, "budget_epochs": epochs, "rule": rule}
                row |= {"mean_used": round(statistics.mean(shares), 3), "lowest_used": round(min(shares), 3)}
                rows.append(row | {"past_budget": round(over, 3)})
                print(", ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    budget.STALL = today
    if args.csv:
        where = stamp() | {"machine": MACHINE}
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*where, *rows[0]], lineterminator="\n")
            writer.writeheader()
            writer.writerows(where | row for row in rows)


if __name__ == "__main__":
    main()
