"""The first timed sample is kept next to the statistics, and the cold flush mode reaches the timer.

A first sample far above the median shows a cost the warm-up did not absorb (a graph upload, a host
gap): ``kernelpro bench`` prints it next to the median. Times here are the numpy stand-in's virtual
clock (tests/test_runner_wall.py), not measurements.
"""

from __future__ import annotations

import itertools

import pytest
from test_runner_wall import FAST_STOP, FakeBackend, _time

from kernelpro.runner.commands import render_timing
from kernelpro.runner.records import Timing
from kernelpro.runner.timing import TimingOptions, measure


def test_measure_keeps_the_first_sample_even_when_it_is_dropped() -> None:
    values = itertools.chain([9e-6], itertools.repeat(1e-6))
    ticks = itertools.count()
    result = measure(lambda: next(values), None, FAST_STOP, clock=lambda: next(ticks) * 1e-3)
    assert result.first_s == 9e-6 and result.samples[0] == 9e-6

    from kernelpro.runner.records import GpuState

    readings = itertools.count()
    throttled_first = lambda: GpuState(1000, 2600, 60, 0x4, next(readings) == 0)  # noqa: E731
    values = itertools.chain([9e-6], itertools.repeat(1e-6))
    result = measure(lambda: next(values), throttled_first, FAST_STOP, clock=lambda: next(ticks) * 1e-5)
    assert result.first_s == 9e-6 and 9e-6 not in result.samples  # dropped as throttled, still reported


def test_time_kernel_reports_the_first_sample_per_launch() -> None:
    for seconds in (5e-6, 100e-6):  # graph of k launches, and one launch per sample
        timing, _ = _time(FakeBackend({}, seconds_per_launch=seconds))
        assert timing.first_sample_s == pytest.approx(seconds)


def test_first_sample_round_trips_and_is_printed() -> None:
    timing, _ = _time(FakeBackend({}, seconds_per_launch=100e-6))
    slow_start = Timing.from_dict({**timing.to_dict(), "first_sample_s": 250e-6})
    assert Timing.from_dict(slow_start.to_dict()) == slow_start
    text = "\n".join(render_timing(slow_start))
    assert "first sample: 250.000 us (2.50x the median)" in text
    old = {k: v for k, v in timing.to_dict().items() if k != "first_sample_s"}  # a record journaled before
    assert Timing.from_dict(old).first_sample_s is None
    assert "first sample" not in "\n".join(render_timing(Timing.from_dict(old)))


def test_cold_flush_mode_reaches_the_timer() -> None:
    for mode, expected in (("clean", True), ("dirty", "dirty")):
        backend = FakeBackend({}, seconds_per_launch=100e-6)
        _time(backend, TimingOptions(stop=FAST_STOP, warmup_s=0.0, l2_flush=mode))
        assert {timer.flush for timer in backend.timers} == {expected}
    backend = FakeBackend({}, seconds_per_launch=100e-6)
    _time(backend, TimingOptions(warm=True, stop=FAST_STOP, warmup_s=0.0, l2_flush="dirty"))
    assert {timer.flush for timer in backend.timers} == {False}  # warm never flushes
    with pytest.raises(ValueError, match="l2_flush"):
        _time(backend, TimingOptions(stop=FAST_STOP, warmup_s=0.0, l2_flush="sometimes"))
