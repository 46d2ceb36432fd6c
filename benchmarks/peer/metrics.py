"""What a strategy's trace is scored by.

A *trace* is the list of configuration keys a strategy evaluated, each once, in order (a repeat visit of
a configuration costs nothing on a GPU tuner with a cache, so it is not counted). Scores are against the
table's exhaustive optimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from peer.table import Table

TOLERANCE = 0.05  # "within 5% of the best configuration known": time <= 1.05 x optimum


def best_so_far(trace: Sequence[str], table: Table) -> list[float]:
    """The best passing time (us) among the first i+1 evaluations, ``inf`` while nothing passed."""
    entries, best, out = table.by_key, math.inf, []
    for key in trace:
        time_us = entries[key].time_us
        if time_us is not None:
            best = min(best, time_us)
        out.append(best)
    return out


def evaluations_to_within(trace: Sequence[str], table: Table, tolerance: float = TOLERANCE) -> int | None:
    """How many evaluations it took to first evaluate a configuration within ``tolerance`` of the optimum
    (1-based: 1 when the first one was); None when the trace never did."""
    target = table.optimum.time_us * (1 + tolerance)
    return next((i + 1 for i, best in enumerate(best_so_far(trace, table)) if best <= target), None)


def seconds_for(trace: Sequence[str], table: Table, evaluations: int) -> float | None:
    """GPU seconds the first ``evaluations`` evaluations cost: the table's recorded seconds per
    configuration (its mean where one was not recorded); None when the table recorded no seconds."""
    seconds = [table.seconds_of(key) for key in trace[:evaluations]]
    return None if any(s is None for s in seconds) else float(sum(seconds))


def best_at_budget(trace: Sequence[str], table: Table, budget: int) -> float:
    """Performance of the best configuration among the first ``budget`` evaluations as a fraction of the
    optimum's (optimum time / best time: 1.0 is optimal, 0.5 twice as slow; 0.0 when nothing passed).
    A strategy that stopped before ``budget`` is scored on what it evaluated."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    best = min(best_so_far(trace[:budget], table), default=math.inf)
    return 0.0 if math.isinf(best) else table.optimum.time_us / best


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile with linear interpolation; ``inf`` entries (not reached) sort last, and a
    quantile that falls on or next to one is ``inf``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lo, hi = math.floor(position), math.ceil(position)
    if math.isinf(ordered[hi]):
        return math.inf
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


def median_iqr(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, first and third quartile."""
    return quantile(values, 0.5), quantile(values, 0.25), quantile(values, 0.75)
