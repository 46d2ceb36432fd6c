"""Statistics of timing samples: summaries, the stopping rule and the noise-aware comparison.

**Stopping rule** (:func:`should_stop`): take at least ``min_samples`` samples over at least
``min_time_s``; then stop as soon as the relative standard deviation (std / mean) is at most
``target_rel_std`` (0.5 %). Without convergence, stop at ``max_time_s`` (or ``max_samples``) once
``min_samples`` are in, and in any case at ``hard_limit_s``.

**Comparison** (:func:`compare_samples`): two timings differ only when both

* a two-sided Mann-Whitney U test rejects "same distribution" at ``alpha`` (0.01; normal
  approximation with tie correction, fine from ~8 samples a side), and
* the medians differ by more than ``min_effect`` (1 %).

Otherwise the result is a ``tie``. The U test uses ranks, so a few outliers (a preempted sample)
do not decide it; the minimum effect covers what no within-run test can see: samples of one run
are correlated (same clocks, same temperature, same memory placement), so two runs of the *same*
kernel routinely differ by a few tenths of a percent with a tiny p-value. With fewer than 5
samples on a side the test is skipped and only non-overlapping [p20, p80] ranges (plus the
minimum effect) count as a difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SampleStats:
    """Summary of samples: n, median, p20/p80 (linear interpolation), mean, sample std (ddof 1)."""

    n: int
    median: float
    p20: float
    p80: float
    mean: float
    std: float
    min: float
    max: float

    @property
    def rel_std(self) -> float:
        return self.std / self.mean if self.mean > 0 else math.inf


def summarize(samples: Sequence[float]) -> SampleStats:
    """Statistics of a non-empty sequence of samples."""
    data = np.asarray(samples, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no samples")
    p20, median, p80 = np.percentile(data, [20, 50, 80])
    std = float(data.std(ddof=1)) if data.size > 1 else 0.0
    return SampleStats(int(data.size), float(median), float(p20), float(p80), float(data.mean()), std,
                       float(data.min()), float(data.max()))


class RunningStats:
    """Mean and variance updated one sample at a time (Welford), for the stopping rule."""

    def __init__(self) -> None:
        self.n, self.mean, self._m2 = 0, 0.0, 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self._m2 / (self.n - 1)) if self.n > 1 else math.inf

    @property
    def rel_std(self) -> float:
        return self.std / self.mean if self.mean > 0 else math.inf


@dataclass(frozen=True)
class StopRule:
    """When to stop sampling (see the module docstring)."""

    min_samples: int = 10
    max_samples: int = 2000
    min_time_s: float = 0.2
    max_time_s: float = 2.0
    hard_limit_s: float = 60.0
    target_rel_std: float = 0.005


def should_stop(rule: StopRule, n: int, rel_std: float, elapsed_s: float) -> str | None:
    """Why to stop now (``converged``, ``max-samples``, ``max-time``, ``hard-limit``), or None to go on."""
    if elapsed_s >= rule.hard_limit_s:
        return "hard-limit"
    if n >= rule.max_samples:
        return "max-samples"
    if n < rule.min_samples:
        return None
    if elapsed_s >= rule.min_time_s and rel_std <= rule.target_rel_std:
        return "converged"
    if elapsed_s >= rule.max_time_s:
        return "max-time"
    return None


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: ``faster``, ``slower`` or ``tie``, with the evidence."""

    verdict: str
    speedup: float  # median(b) / median(a): > 1 when a is faster
    p_value: float | None  # Mann-Whitney two-sided p; None where the test was skipped
    reason: str


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    start = 0
    for end in range(1, values.size + 1):
        if end == values.size or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2.0
            start = end
    return ranks


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie and continuity corrected)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n1, n2 = x.size, y.size
    both = np.concatenate([x, y])
    ranks = rankdata(both)
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    _, counts = np.unique(both, return_counts=True)
    tie_term = float(np.sum(counts.astype(np.float64) ** 3 - counts)) / (n * (n - 1))
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return 1.0  # every value equal
    z = (abs(u1 - n1 * n2 / 2.0) - 0.5) / math.sqrt(variance)
    return math.erfc(max(z, 0.0) / math.sqrt(2.0))


def compare_samples(a: Sequence[float], b: Sequence[float], alpha: float = 0.01,
                    min_effect: float = 0.01) -> Comparison:
    """Is ``a`` faster than ``b`` (times, lower is better), slower, or a tie within the noise?"""
    sa, sb = summarize(a), summarize(b)
    speedup = sb.median / sa.median if sa.median > 0 else math.inf
    effect = abs(sa.median / sb.median - 1.0) if sb.median > 0 else math.inf
    direction = "faster" if sa.median < sb.median else "slower"
    if min(sa.n, sb.n) < 5:
        separated = sa.p80 < sb.p20 or sb.p80 < sa.p20
        if separated and effect > min_effect:
            return Comparison(direction, speedup, None, "p20-p80 ranges do not overlap (few samples: no U test)")
        return Comparison("tie", speedup, None, "p20-p80 ranges overlap or the medians differ by <= "
                          f"{min_effect:.0%} (few samples: no U test)")
    p = mann_whitney_p(a, b)
    if p >= alpha:
        return Comparison("tie", speedup, p, f"Mann-Whitney p = {p:.3g} >= {alpha:g}: inside the noise")
    if effect <= min_effect:
        return Comparison("tie", speedup, p, f"medians differ by {effect:.2%} <= {min_effect:.0%}: below the "
                          "minimum effect (run-to-run drift)")
    return Comparison(direction, speedup, p, f"Mann-Whitney p = {p:.3g} < {alpha:g} and medians differ by {effect:.2%}")
