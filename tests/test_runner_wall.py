"""The correctness wall and the timing loop on a numpy stand-in for the GPU.

:class:`FakeBackend` implements :class:`kernelpro.runner.backend.Backend` with numpy arrays and
"kernels" that are Python functions over the launch arguments, so every check of the wall (and
the timing method selection) runs here on the real task files of ``tests/kernels/wall``. The
planted Python kernels mirror the planted ``.cu`` candidates that the GPU tests run for real.
Times reported by the fake timer are the fake kernel's declared duration on a virtual clock:
they test the timing logic, they are not measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kernelpro.runner.backend import Geometry, KernelFault, LaunchRejected
from kernelpro.runner.inputs import FLOAT_DISTRIBUTIONS, make_inputs, scalar_args
from kernelpro.runner.records import DeviceInfo, GpuState
from kernelpro.runner.sequence import BoundSequence
from kernelpro.runner.stats import StopRule
from kernelpro.runner.timed_check import TimedBuffers
from kernelpro.runner.timing import TimingOptions, measure, time_kernel
from kernelpro.runner.wall import Wall, WallConfig
from kernelpro.task_loader import load_task

WALL = Path(__file__).resolve().parent / "kernels" / "wall"
H100 = DeviceInfo(name="NVIDIA H100 80GB HBM3", compute_capability="9.0", sm_count=132, sm_clock_khz=1_980_000,
                  memory_clock_khz=2_619_000, memory_bus_bits=5120, l2_bytes=50 * 1024 * 1024,
                  total_memory_bytes=80 * 1024**3)
FAST_STOP = StopRule(min_samples=10, max_samples=200, min_time_s=0.001, max_time_s=0.01, hard_limit_s=1.0)
FAST_TIMING = TimingOptions(stop=FAST_STOP, warmup_s=0.0)


class FakeKernel:
    def __init__(self, fn: Callable, symbol: str) -> None:
        self.fn = fn
        self.symbol = symbol
        self.launches = 0
        self.state: dict[str, Any] = {}


class FakeTimer:
    def __init__(self, backend: FakeBackend, kernel: FakeKernel, geometry: Geometry, arg_sets, launches: int,
                 flush: bool, use_graph: bool) -> None:
        self.backend, self.kernel, self.geometry = backend, kernel, geometry
        self.arg_sets = [tuple(a) for a in arg_sets]
        self.launches_per_sample = launches
        self.flush = flush
        self.method = "events" if launches == 1 else ("graph" if use_graph else "batch")
        backend.timers.append(self)

    def sample(self) -> float:
        log = self.backend.log
        if self.flush:
            self.backend.flushes += 1
            log.append("flush")
        log.append("start")
        for i in range(self.launches_per_sample):
            args = self.arg_sets[i % len(self.arg_sets)]
            self.backend.used_outputs.add(id(args[1]))
            log.append("launch")
            self.backend.launch(self.kernel, self.geometry, args)
        log.append("end")
        self.backend.synchronize()
        seconds = self.backend.seconds_per_launch * self.launches_per_sample
        self.backend.now += seconds + 20e-6
        return seconds

    def close(self) -> None:
        pass


class FakeBackend:
    """numpy buffers; ``kernels`` maps a cubin name to a Python kernel ``fn(kernel, geometry, args)``."""

    xp = np

    def __init__(self, kernels: dict[str, Callable], seconds_per_launch: float = 100e-6,
                 states: Callable[[int], GpuState | None] | None = None) -> None:
        self.kernels = kernels
        self.seconds_per_launch = seconds_per_launch
        self.states = states
        self.pending_fault: str | None = None
        self.flushes = 0
        self.timers: list[FakeTimer] = []
        self.used_outputs: set[int] = set()
        self.now = 0.0
        self.readings = 0
        self.log: list[str] = []  # what the timer did, in order

    def clock(self) -> float:
        return self.now

    def load_kernel(self, cubin: str, symbol: str) -> FakeKernel:
        return FakeKernel(self.kernels[cubin], symbol)

    def launch(self, kernel: FakeKernel, geometry: Geometry, args) -> None:
        if isinstance(kernel, BoundSequence):
            kernel.issue(self, args)
            return
        kernel.launches += 1
        kernel.fn(kernel, geometry, args, self)

    def synchronize(self) -> None:
        if self.pending_fault:
            raise KernelFault(self.pending_fault)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return np.array(array)

    def copy(self, array: np.ndarray) -> np.ndarray:
        return array.copy()

    def timed_runner(self, kernel, geometry, arg_sets, launches_per_sample, flush_l2, use_graph) -> FakeTimer:
        return FakeTimer(self, kernel, geometry, arg_sets, launches_per_sample, flush_l2, use_graph)

    def gpu_state(self) -> GpuState | None:
        self.readings += 1
        return self.states(self.readings) if self.states else None

    def device_info(self) -> DeviceInfo:
        return H100

    def memory_stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


# --- Python stand-ins for kernels (args in signature order, as numpy interior views and scalars) ----
def scale(kernel, geometry, args, backend) -> None:
    x, y, a, n = args
    y[:n] = a * x[:n]


def scale_noop(kernel, geometry, args, backend) -> None:
    pass


def scale_first_half(kernel, geometry, args, backend) -> None:
    x, y, a, n = args
    y[:n // 2] = a * x[:n // 2]


def scale_out_of_bounds(kernel, geometry, args, backend) -> None:
    x, y, a, n = args
    scale(kernel, geometry, args, backend)
    past = np.lib.stride_tricks.as_strided(y, shape=(n + 1,), strides=y.strides)  # what y[n] = ... does on a GPU
    past[n] = a * x[n - 1]


def scale_writes_before(kernel, geometry, args, backend) -> None:
    x, y, a, n = args
    scale(kernel, geometry, args, backend)
    raw = y.base  # the whole allocation, guards included: write the 4 bytes just before y
    while raw.base is not None:
        raw = raw.base
    offset = y.__array_interface__["data"][0] - raw.__array_interface__["data"][0]
    raw[offset - 4:offset] = 0x11


def scale_modifies_input(kernel, geometry, args, backend) -> None:
    x, y, a, n = args
    scale(kernel, geometry, args, backend)
    x[:n] = 0.0


def scale_only_4096(kernel, geometry, args, backend) -> None:
    if args[3] == 4096:
        scale(kernel, geometry, args, backend)


def scale_once(kernel, geometry, args, backend) -> None:
    if not kernel.state.get("done"):
        scale(kernel, geometry, args, backend)
        kernel.state["done"] = True


def scale_stops_after_20(kernel, geometry, args, backend) -> None:
    if kernel.launches <= 20:
        scale(kernel, geometry, args, backend)


def scale_nondeterministic(kernel, geometry, args, backend) -> None:
    x, y, a, n = args
    wobble = np.float32(1 + 2e-7 * (kernel.launches % 2))  # within tolerance, but not the same bits
    y[:n] = (a * x[:n]) * wobble


def scale_faults(kernel, geometry, args, backend) -> None:
    backend.pending_fault = "an illegal memory access was encountered"


def scale_rejected(kernel, geometry, args, backend) -> None:
    raise LaunchRejected("too many resources requested for launch")


def scale_times_x_a(kernel, geometry, args, backend) -> None:
    x, y, a, n = args
    for start in range(0, n, 7):  # another order of work, same arithmetic
        y[start:start + 7] = x[start:start + 7] * a


def softmax(kernel, geometry, args, backend) -> None:
    x, y, rows, cols = args
    e = np.exp(x - x.max(axis=1, keepdims=True))
    y[...] = e / e.sum(axis=1, keepdims=True, dtype=np.float32)


def softmax_zeros_where_tiny(kernel, geometry, args, backend) -> None:
    softmax(kernel, geometry, args, backend)
    y = args[1]
    y[y < 1e-5] = 0.0


def total(kernel, geometry, args, backend) -> None:
    x, out, n = args
    out[0] = x[:n].sum(dtype=np.float32)


def run_wall(task_file: str, candidate: Callable, reference: Callable | None = None, *, seed: int = 12345,
             time: bool = False, backend: FakeBackend | None = None, **config: Any):
    task = load_task(WALL / task_file)
    reference = reference or {"scale.cu": scale, "softmax_tiny.cu": softmax, "total.cu": total}[task_file]
    backend = backend or FakeBackend({})
    backend.kernels.update({"reference.cubin": reference, "candidate.cubin": candidate})
    wall = Wall(task, backend, backend.load_kernel("reference.cubin", task.kernel),
                backend.load_kernel("candidate.cubin", task.kernel), {},
                WallConfig(seed=seed, time=time, **{"timing": FAST_TIMING, **config}))
    return wall.run()


# --- the checks -------------------------------------------------------------------------------------
def test_correct_candidate_passes_every_size_and_set() -> None:
    result = run_wall("scale.cu", scale_times_x_a)
    assert result.failures == ()
    drawn = result.checked["drawn_size"]["N"]
    assert result.checked["sizes"] == ["N=4096", "N=1000", "N=1", f"N={drawn}"]
    assert drawn % 2 == 1 and 1 <= drawn <= 1000
    assert result.checked["input_sets"] == 4 + 2 + 2 + 2
    assert result.checked["distributions"] == list(FLOAT_DISTRIBUTIONS)
    # per size: one launch of each kernel per set, plus the candidate's repeat on set 0
    assert result.checked["launches"] == 2 * 10 + 4


@pytest.mark.parametrize(("candidate", "check", "detail"), [
    (scale_noop, "output", "never written"),
    (scale_first_half, "output", "y[2048]"),
    (scale_out_of_bounds, "canary", "after buffer y"),
    (scale_writes_before, "canary", "before buffer y"),
    (scale_modifies_input, "input-modified", "input x[0] changed"),
    (scale_only_4096, "output", "N=1000"),
    (scale_once, "stateful", "a repeat launch on the same inputs"),
    (scale_nondeterministic, "determinism", "differ at y["),
    (scale_rejected, "launch", "too many resources"),
])
def test_planted_holes_fail_the_right_check(candidate: Callable, check: str, detail: str) -> None:
    result = run_wall("scale.cu", candidate)
    assert result.failures, "the planted candidate passed"
    assert result.failures[0].check == check, result.failures[0]
    assert detail in result.failures[0].message
    assert not result.context_lost


def test_output_failure_says_where_with_multi_dim_index() -> None:
    def wrong_row(kernel, geometry, args, backend) -> None:
        softmax(kernel, geometry, args, backend)
        args[1][2, 7] += 1.0

    result = run_wall("softmax_tiny.cu", wrong_row, input_sets=1, extra_size_sets=0)
    (failure,) = result.failures
    assert failure.check == "output"
    assert failure.where["index"] == [2, 7]
    assert failure.where["rule"] == "elementwise"
    assert failure.where["arg"] == "y" and failure.where["seed"] == 12345 and failure.where["set"] == 0
    assert failure.where["bad"] == 1 and failure.where["max_abs_err"] > 0.99
    assert "y[2, 7]" in failure.message and "seed 12345" in failure.message


def test_zeros_where_the_reference_is_tiny_fail_the_relative_rule() -> None:
    result = run_wall("softmax_tiny.cu", softmax_zeros_where_tiny, input_sets=1, extra_size_sets=0)
    (failure,) = result.failures
    assert failure.check == "output"
    assert failure.where["rule"] == "relative-l2"


def test_kernel_fault_loses_the_context() -> None:
    result = run_wall("scale.cu", scale_faults)
    assert result.failures[0].check == "cuda-error"
    assert "illegal memory access" in result.failures[0].message
    assert result.context_lost


def test_reference_problems_are_blamed_on_the_task() -> None:
    result = run_wall("scale.cu", scale, reference=scale_modifies_input)
    assert result.failures[0].check == "reference"


def test_constant_for_one_seed_passes_only_that_seed() -> None:
    task = load_task(WALL / "total.cu")
    inputs = make_inputs(task, task.env(), seed=0, size_index=0, set_index=0)
    answer = np.float32(inputs.arrays["x"].astype(np.float64).sum())

    def constant(kernel, geometry, args, backend) -> None:
        args[1][0] = answer

    assert run_wall("total.cu", constant, seed=0, input_sets=1).failures == ()
    result = run_wall("total.cu", constant, seed=1)
    assert result.failures[0].check == "output"


def test_state_after_timing_is_caught_by_the_recheck() -> None:
    task = load_task(WALL / "scale.cu")
    backend = FakeBackend({"reference.cubin": scale})
    seen: list[str] = []

    def breaks_after_timing(kernel, geometry, args, backend) -> None:
        if not any("timing" in stage for stage in seen):
            scale(kernel, geometry, args, backend)

    backend.kernels["candidate.cubin"] = breaks_after_timing
    wall = Wall(task, backend, backend.load_kernel("reference.cubin", "scale"),
                backend.load_kernel("candidate.cubin", "scale"), {},
                WallConfig(seed=1, time=True, timing=FAST_TIMING), progress=seen.append)
    result = wall.run()
    assert result.failures[0].check == "timed-output"  # broken from the first timed launch: caught there

    def breaks_after_timed_launches(kernel, geometry, args, backend) -> None:
        if "after timing" not in (seen[-1] if seen else ""):
            scale(kernel, geometry, args, backend)

    backend.kernels["candidate.cubin"] = breaks_after_timed_launches
    seen.clear()
    wall = Wall(task, backend, backend.load_kernel("reference.cubin", "scale"),
                backend.load_kernel("candidate.cubin", "scale"), {},
                WallConfig(seed=1, time=True, timing=FAST_TIMING), progress=seen.append)
    result = wall.run()
    assert result.timing is not None
    assert result.failures[0].check == "stateful"
    assert "after" in result.failures[0].message and "timed launches" in result.failures[0].message
    assert result.failures[0].where["launch"] == "after-timing"


def test_kernel_that_stops_working_after_n_launches_fails_during_timing() -> None:
    result = run_wall("scale.cu", scale_stops_after_20, time=True)
    failure = result.failures[0]
    assert failure.check == "timed-output"
    assert f"did its work in {failure.where['worked']} of {failure.where['launches']} timed launches" in failure.message
    assert 0 < failure.where["worked"] < failure.where["launches"]
    assert "unwritten" in failure.message
    assert result.timing is not None  # kept as evidence


def test_timing_runs_after_the_checks_and_passes_roofline() -> None:
    backend = FakeBackend({}, seconds_per_launch=100e-6)
    result = run_wall("scale.cu", scale, time=True, backend=backend)
    assert result.failures == ()
    timing = result.timing
    assert timing.method == "events" and timing.l2 == "flushed" and timing.launches_per_sample == 1
    assert timing.median_s == pytest.approx(100e-6)
    assert backend.flushes >= timing.n


def test_impossibly_fast_timing_fails_roofline() -> None:
    backend = FakeBackend({}, seconds_per_launch=1e-9)  # 32 KB in 1 ns = 32 TB/s, ten times HBM3
    result = run_wall("scale.cu", scale, time=True, backend=backend)
    assert result.failures[0].check == "roofline"
    assert "GB/s" in result.failures[0].message
    assert result.timing is not None and result.timing.median_s == pytest.approx(1e-9)  # the evidence is kept


def test_compare_timings_of_two_candidates() -> None:
    from dataclasses import replace

    from kernelpro.runner.timing import compare_timings

    slow, _ = _time(FakeBackend({}, seconds_per_launch=100e-6))
    fast, _ = _time(FakeBackend({}, seconds_per_launch=80e-6))
    assert compare_timings(fast, slow).verdict == "faster"
    assert compare_timings(slow, slow).verdict == "tie"
    with pytest.raises(ValueError, match="warm"):
        compare_timings(fast, replace(slow, l2="warm"))


# --- timing -------------------------------------------------------------------------------------------
def _time(backend: FakeBackend, options: TimingOptions = FAST_TIMING, candidate: Callable = scale):
    task = load_task(WALL / "scale.cu")
    backend.kernels["k"] = candidate
    kernel = backend.load_kernel("k", "scale")
    inputs = make_inputs(task, task.env(), 7, 0, 0)
    expected = {"y": (np.float32(2.5) * inputs.arrays["x"]).astype(np.float32)}
    hooks = TimedBuffers(np, task, {"x": (4096,), "y": (4096,)}, [inputs], [expected], scalar_args(task, task.env()),
                         256, np.random.default_rng(0), backend.to_host)
    geometry = Geometry(task.grid(task.env()), task.block(task.env()), 0)
    timing = time_kernel(backend, kernel, geometry, hooks, 2 * 4096 * 4, options, clock=backend.clock)
    return timing, hooks


def test_microsecond_kernels_are_timed_as_graphs_over_rotating_copies() -> None:
    backend = FakeBackend({}, seconds_per_launch=5e-6)
    timing, _ = _time(backend)
    assert timing.method == "graph"
    assert timing.launches_per_sample == 200  # 1 ms / 5 us
    assert timing.l2 == "rotated" and timing.buffer_copies == 200  # 32 KB working set: every launch its own copy
    assert len(backend.used_outputs) >= 200
    assert timing.median_s == pytest.approx(5e-6)


def test_launches_per_sample_is_capped_so_each_launch_has_its_own_buffer_set() -> None:
    from kernelpro.runner.timing import buffer_sets, launches_per_sample

    options = TimingOptions(rotation_budget_bytes=1 << 30)
    assert launches_per_sample(5e-6, options, working_set_bytes=32 << 10) == 200
    assert launches_per_sample(5e-6, options, working_set_bytes=10 << 20) == 102  # 1 GiB / 10 MiB
    assert buffer_sets(200, 32 << 10, 50 << 20, warm=False) == 200
    assert buffer_sets(200, 10 << 20, 50 << 20, warm=True) == 2  # warm: what fits in half of L2


def test_warm_mode_never_flushes_and_says_so() -> None:
    backend = FakeBackend({}, seconds_per_launch=5e-6)
    timing, _ = _time(backend, TimingOptions(warm=True, stop=FAST_STOP, warmup_s=0.0))
    assert timing.warm and timing.l2 == "warm" and timing.buffer_copies == 200  # 200 x 32 KB fit in half of L2
    assert backend.flushes == 0


def test_batch_method_when_graphs_are_off() -> None:
    backend = FakeBackend({}, seconds_per_launch=5e-6)
    timing, _ = _time(backend, TimingOptions(use_graph=False, stop=FAST_STOP, warmup_s=0.0))
    assert timing.method == "batch"


def test_throttled_samples_are_dropped_and_flagged() -> None:
    def every_third(reading: int) -> GpuState:
        throttled = reading % 3 == 0
        return GpuState(1755 if throttled else 1980, 2619, 60, 0x4 if throttled else 0, throttled)

    backend = FakeBackend({}, seconds_per_launch=100e-6, states=every_third)
    timing, _ = _time(backend)
    assert timing.throttled and timing.dropped_throttled > 0
    assert timing.clocks.sm_clock_mhz_min == 1755 and timing.clocks.sm_clock_mhz_max == 1980
    assert "sw_power_cap" in timing.clocks.reasons


def test_measure_keeps_throttled_samples_when_too_few_remain() -> None:
    values = iter([1.0] * 100)
    clock_ticks = iter(np.arange(0, 100, 0.01))
    result = measure(lambda: next(values), lambda: GpuState(1500, 2619, 80, 0x40, True), FAST_STOP,
                     clock=lambda: float(next(clock_ticks)))
    assert result.throttled and result.dropped == 0
    assert len(result.samples) >= FAST_STOP.min_samples


def test_wall_config_survives_the_pipe() -> None:
    import json

    config = WallConfig(seed=2**64 - 1, input_sets=3, time=False,
                        timing=TimingOptions(warm=True, stop=StopRule(min_samples=20)))
    assert WallConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_sanitizers_run_on_the_smallest_problem_size() -> None:
    from kernelpro.runner.jobs import smallest_size

    task = load_task(WALL / "rowsum.cu")
    assert task.problem_sizes()[smallest_size(task, task.default_knobs())] == {"ROWS": 5, "COLS": 1}
