"""Timing statistics: summaries, the stopping rule, Mann-Whitney and the noise-aware comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernelpro.runner.stats import (
    RunningStats,
    StopRule,
    compare_samples,
    mann_whitney_p,
    rankdata,
    should_stop,
    summarize,
)


def test_summary_of_a_known_array() -> None:
    stats = summarize([7.0, 1.0, 3.0, 10.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0])
    assert stats.n == 10
    assert stats.median == 5.5
    assert stats.p20 == pytest.approx(2.8)  # linear interpolation: 2 + 0.8 * (3 - 2)
    assert stats.p80 == pytest.approx(8.2)
    assert stats.mean == 5.5
    assert stats.std == pytest.approx(math.sqrt(55 / 6))  # sample std, ddof = 1
    assert (stats.min, stats.max) == (1.0, 10.0)
    assert stats.rel_std == pytest.approx(math.sqrt(55 / 6) / 5.5)


def test_summary_of_one_sample_and_of_none() -> None:
    assert summarize([3.0]).std == 0.0
    with pytest.raises(ValueError):
        summarize([])


def test_running_stats_match_numpy() -> None:
    data = np.random.default_rng(1).normal(10, 2, 500)
    running = RunningStats()
    for x in data:
        running.add(float(x))
    assert running.mean == pytest.approx(data.mean())
    assert running.std == pytest.approx(data.std(ddof=1))


RULE = StopRule(min_samples=10, max_samples=1000, min_time_s=0.2, max_time_s=2.0, hard_limit_s=30.0,
                target_rel_std=0.005)


@pytest.mark.parametrize(("n", "rel_std", "elapsed", "expected"), [
    (9, 0.0, 5.0, None),  # too few samples, even past max time
    (10, 0.001, 0.1, None),  # converged but not yet min time
    (10, 0.004, 0.25, "converged"),
    (10, 0.006, 0.25, None),  # noisy: keep going
    (500, 0.006, 2.0, "max-time"),
    (1000, 0.05, 0.5, "max-samples"),
    (3, 0.5, 30.0, "hard-limit"),
])
def test_stopping_rule(n: int, rel_std: float, elapsed: float, expected: str | None) -> None:
    assert should_stop(RULE, n, rel_std, elapsed) == expected


def test_ranks_average_ties() -> None:
    assert list(rankdata(np.array([10.0, 20.0, 10.0, 30.0]))) == [1.5, 3.0, 1.5, 4.0]


def test_mann_whitney_p_of_separated_samples() -> None:
    # U = 0, n1 = n2 = 5: z = (12.5 - 0.5) / sqrt(25 * 11 / 12), two-sided p = erfc(z / sqrt 2)
    z = 12.0 / math.sqrt(25 * 11 / 12)
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(0.01219, abs=1e-4)
    assert mann_whitney_p([2.0] * 6, [2.0] * 6) == 1.0


def test_overlapping_samples_are_a_tie() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(100.0, 1.0, 200)
    b = rng.normal(100.0, 1.0, 200)
    result = compare_samples(a, b)
    assert result.verdict == "tie"
    assert result.p_value is not None and result.p_value >= 0.01


def test_separated_samples_are_faster_or_slower() -> None:
    rng = np.random.default_rng(8)
    fast = rng.normal(90.0, 0.5, 50)
    slow = rng.normal(100.0, 0.5, 50)
    assert compare_samples(fast, slow).verdict == "faster"
    assert compare_samples(slow, fast).verdict == "slower"
    assert compare_samples(fast, slow).speedup == pytest.approx(100 / 90, rel=0.01)
    assert compare_samples(fast, slow).p_value < 1e-10


def test_significant_but_tiny_difference_is_a_tie() -> None:
    rng = np.random.default_rng(9)
    a = rng.normal(100.0, 0.05, 2000)
    b = rng.normal(100.3, 0.05, 2000)  # 0.3 %: p is tiny, but below the 1 % minimum effect
    result = compare_samples(a, b)
    assert result.p_value < 1e-10
    assert result.verdict == "tie" and "minimum effect" in result.reason


def test_few_samples_fall_back_to_p20_p80_ranges() -> None:
    assert compare_samples([1.0, 1.01, 1.02], [2.0, 2.01, 2.02]).verdict == "faster"
    result = compare_samples([1.0, 1.5, 2.0], [1.2, 1.7, 2.2])
    assert result.verdict == "tie" and result.p_value is None
