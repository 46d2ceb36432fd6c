"""Time a kernel: warm-up, choice of method, adaptive sampling, throttle handling.

1. **Warm-up**: single launches (events method, L2 flushed unless warm) for at least
   ``warmup_s`` and ``warmup_launches``; then a probe of 5 more gives the single-launch time.
2. **Method**: a kernel of ``graph_threshold_s`` (20 µs) or more is timed one launch per sample
   between a CUDA event pair (``events``). A shorter one is dominated by launch overhead and event
   resolution, so each sample is ``k`` launches (``k`` ≈ ``batch_target_s`` / single time, at most
   ``max_batch``) captured in a CUDA graph (``graph``; ``batch`` if capture fails), and the sample
   is divided by ``k``.
3. **One buffer set per launch**: every launch of a sample runs on its own buffer set (``k`` sets),
   so flushing L2 before the sample leaves every launch cold, and every launch's output can be
   verified (:mod:`kernelpro.runner.timed_check`). ``k`` is capped so the ``k`` sets fit in
   ``rotation_budget_bytes``. Warm (no flush) uses at most as many sets as fit in half of L2 and
   rotates over them when ``k`` is larger.
4. **Sampling**: :func:`measure` until :func:`~kernelpro.runner.stats.should_stop`; after each
   sample NVML is read, and a throttled sample is dropped (``drop_throttled``) unless fewer than
   ``min_samples`` unthrottled ones remain at the end, in which case all are kept and the timing
   says ``throttled``. The first sample is also kept apart (``Timing.first_sample_s``): far above
   the median it shows a cost the warm-up did not absorb (a graph upload, a host gap).
5. **Verification around every sample**: ``hooks.before_sample()`` (poison outputs, reload inputs)
   is queued before the sample's L2 flush and start event, ``hooks.after_sample()`` (check every
   set on the device) runs after its end event completed: neither is inside the timed region.
6. **L2 flush** (cold): ``l2_flush = "clean"`` (the default) leaves L2 holding clean lines only;
   ``"dirty"`` skips the read-back, so the flush's dirty lines may be written back during the timed
   kernel (only for ``benchmarks/timing_vs_ncu.py --flush both``, which shows the difference).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from kernelpro.runner.backend import Backend, Geometry, TimedRunner
from kernelpro.runner.nvml import summarize_states
from kernelpro.runner.records import GpuState, Timing
from kernelpro.runner.stats import Comparison, RunningStats, StopRule, compare_samples, should_stop, summarize

PROBE_SAMPLES = 5


@dataclass(frozen=True)
class TimingOptions:
    """How to time (see the module docstring)."""

    warm: bool = False
    stop: StopRule = field(default_factory=StopRule)
    warmup_s: float = 0.05
    warmup_launches: int = 3
    graph_threshold_s: float = 20e-6
    batch_target_s: float = 1e-3
    max_batch: int = 1000
    use_graph: bool = True
    drop_throttled: bool = True
    rotation_budget_bytes: int = 1 << 30
    l2_flush: str = "clean"  # "clean" | "dirty" (cold timing only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimingOptions:
        values = dict(data)
        values["stop"] = StopRule(**values.get("stop", {}))
        return cls(**values)


@dataclass(frozen=True)
class Measurement:
    """What :func:`measure` collected."""

    samples: tuple[float, ...]  # the samples the statistics use
    dropped: int  # throttled samples left out
    throttled: bool  # throttling was seen
    states: tuple[GpuState, ...]
    elapsed_s: float
    stop_reason: str
    converged: bool
    first_s: float | None = None  # the very first sample, kept or dropped


class SampleHooks(Protocol):
    """The buffer sets timed launches use, and the work around each sample (see :mod:`.timed_check`)."""

    def arg_sets(self, count: int, launches_per_sample: int) -> list[Sequence[Any]]:
        """``count`` argument tuples, each on its own buffer set."""

    def before_sample(self) -> None:
        """Queue the poison and input reload of every set (ahead of the flush and the start event)."""

    def after_sample(self) -> None:
        """Check every set after the sample's end event."""


def launches_per_sample(single_s: float, options: TimingOptions, working_set_bytes: int = 0) -> int:
    """1 for a kernel of at least the graph threshold, else enough launches to fill ``batch_target_s``.

    Capped so that one buffer set per launch fits in ``rotation_budget_bytes``.
    """
    if single_s >= options.graph_threshold_s:
        return 1
    wanted = max(2, min(options.max_batch, math.ceil(options.batch_target_s / max(single_s, 1e-9))))
    affordable = options.rotation_budget_bytes // max(working_set_bytes, 1)
    return max(1, min(wanted, affordable))


def buffer_sets(launches: int, working_set_bytes: int, l2_bytes: int, warm: bool) -> int:
    """Buffer sets a sample of ``launches`` launches uses: one per launch, or what fits in half of L2 when warm."""
    if not warm:
        return launches
    return max(1, min(launches, (l2_bytes // 2) // max(working_set_bytes, 1)))


def measure(sample: Callable[[], float], monitor: Callable[[], GpuState | None] | None, rule: StopRule,
            drop_throttled: bool = True, clock: Callable[[], float] = time.perf_counter,
            progress: Callable[[str], None] | None = None, progress_every_s: float = 1.0) -> Measurement:
    """Call ``sample`` (seconds per launch) until ``rule`` says stop; read ``monitor`` after each."""
    kept: list[float] = []
    dropped: list[float] = []
    states: list[GpuState] = []
    running = RunningStats()
    start = last_report = clock()
    first: float | None = None
    while True:
        value = sample()
        first = value if first is None else first
        state = monitor() if monitor is not None else None
        if state is not None:
            states.append(state)
        if state is not None and state.throttled and drop_throttled:
            dropped.append(value)
        else:
            kept.append(value)
            running.add(value)
        now = clock()
        elapsed = now - start
        reason = should_stop(rule, running.n, running.rel_std, elapsed)
        if reason is None and len(kept) + len(dropped) >= rule.max_samples:
            reason = "max-samples"
        if reason is None and elapsed >= rule.max_time_s and len(kept) + len(dropped) >= rule.min_samples:
            reason = "max-time"  # mostly throttled samples: stop anyway, keep them below
        if reason is not None:
            break
        if progress is not None and now - last_report >= progress_every_s:
            progress(f"timing: {len(kept)} samples")
            last_report = now
    throttled = bool(dropped) or any(s.throttled for s in states)
    if len(kept) < rule.min_samples and dropped:
        kept += dropped
        dropped = []
    converged = summarize(kept).rel_std <= rule.target_rel_std
    return Measurement(tuple(kept), len(dropped), throttled, tuple(states), elapsed, reason, converged, first)


def time_kernel(backend: Backend, kernel: Any, geometry: Geometry, hooks: SampleHooks, working_set_bytes: int,
                options: TimingOptions, progress: Callable[[str], None] | None = None,
                clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``kernel`` on the buffer sets of ``hooks``, verifying every sample (warm-up included)."""
    if options.l2_flush not in ("clean", "dirty"):
        raise ValueError(f"l2_flush must be 'clean' or 'dirty', not {options.l2_flush!r}")
    flush: bool | str = False if options.warm else (True if options.l2_flush == "clean" else "dirty")

    def checked(runner: TimedRunner) -> float:
        hooks.before_sample()
        seconds = runner.sample()
        hooks.after_sample()
        return seconds

    single = backend.timed_runner(kernel, geometry, hooks.arg_sets(1, 1), 1, flush, use_graph=False)
    try:
        start, count = clock(), 0
        while count < options.warmup_launches or clock() - start < options.warmup_s:
            checked(single)
            count += 1
        probe = sorted(checked(single) for _ in range(PROBE_SAMPLES))[PROBE_SAMPLES // 2]
    except BaseException:
        single.close()
        raise
    k = launches_per_sample(probe, options, working_set_bytes)
    copies = 1
    runner = single
    if k > 1:
        single.close()
        copies = buffer_sets(k, working_set_bytes, backend.device_info().l2_bytes, options.warm)
        runner = backend.timed_runner(kernel, geometry, hooks.arg_sets(copies, k), k, flush, options.use_graph)
    try:
        result = measure(lambda: checked(runner) / k, backend.gpu_state, options.stop, options.drop_throttled,
                         clock=clock, progress=progress)
    finally:
        runner.close()
    stats = summarize(result.samples)
    l2 = "warm" if options.warm else "flushed" if k == 1 else "rotated"
    return Timing(
        median_s=stats.median, p20_s=stats.p20, p80_s=stats.p80, std_s=stats.std, mean_s=stats.mean, n=stats.n,
        method=runner.method, launches_per_sample=k, l2=l2, buffer_copies=copies, converged=result.converged,
        stop_reason=result.stop_reason, dropped_throttled=result.dropped, throttled=result.throttled,
        elapsed_s=result.elapsed_s, clocks=summarize_states(result.states), samples_s=result.samples,
        first_sample_s=result.first_s,
    )


def compare_timings(candidate: Timing, baseline: Timing, alpha: float = 0.01, min_effect: float = 0.01) -> Comparison:
    """Is ``candidate`` faster than ``baseline``, slower, or a tie inside the noise (see :mod:`.stats`)?

    Both must be cold or both warm: a warm time is not comparable with a cold one.
    """
    if (candidate.l2 == "warm") != (baseline.l2 == "warm"):
        raise ValueError(f"cannot compare a {candidate.l2} timing with a {baseline.l2} one")
    a = candidate.samples_s or (candidate.median_s,)
    b = baseline.samples_s or (baseline.median_s,)
    return compare_samples(a, b, alpha, min_effect)
