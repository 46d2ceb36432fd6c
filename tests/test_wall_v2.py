"""Wall v2 on the numpy stand-in: each new check fails the cheat it closes and passes an honest kernel.

The cheats are Python "kernels" over the launch arguments (numpy views into guarded allocations),
each mimicking what a CUDA kernel written to fool the wall can observe and do: the contents of its
output and input, buffer addresses, how many launches it has seen, the time between launches.
Their CUDA counterparts are in ``tests/kernels/wall/planted`` (run by ``tests/test_runner_gpu.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from test_runner_wall import FAST_STOP, WALL, FakeBackend, run_wall, scale, softmax

from kernelpro.runner.backend import Geometry
from kernelpro.runner.bounds import check_timing, l2_peak
from kernelpro.runner.buffers import is_poison
from kernelpro.runner.inputs import make_inputs, scalar_args
from kernelpro.runner.records import Timing
from kernelpro.runner.timed_check import TimedBuffers
from kernelpro.runner.timing import TimingOptions, time_kernel
from kernelpro.task_loader import load_task


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


# --- cheats on the timed launches -------------------------------------------------------------------
def skip_if_written(kernel, geometry, args, backend) -> None:
    """The issue's example: skip when the output's first element no longer holds the poison."""
    x, y, a, n = args
    if not is_poison(y[:1], "float32")[0]:
        return
    scale(kernel, geometry, args, backend)


def skip_seen_addresses(kernel, geometry, args, backend) -> None:
    """Skip on an address seen 5 times or more: the checked launches' fresh buffers rarely repeat, timing's do."""
    seen = kernel.state.setdefault("seen", {})
    seen[address(args[1])] = seen.get(address(args[1]), 0) + 1
    if seen[address(args[1])] >= 5:
        return
    scale(kernel, geometry, args, backend)


def every_third_launch(kernel, geometry, args, backend) -> None:
    if kernel.launches % 3 == 1:
        scale(kernel, geometry, args, backend)


def skip_back_to_back(kernel, geometry, args, backend) -> None:
    """%globaltimer: a launch less than 10 us after the previous one is part of a timed batch: skip it."""
    last = kernel.state.get("last")
    kernel.state["last"] = backend.now
    if last is not None and backend.now - last < 10e-6:
        return
    scale(kernel, geometry, args, backend)


def cache_by_input_address(kernel, geometry, args, backend) -> None:
    """Remember the output per input address; replay it when the address comes back."""
    x, y, a, n = args
    cache = kernel.state.setdefault("cache", {})
    count, cached = cache.get(address(x), (0, None))
    if count >= 5 and cached.shape == y[:n].shape:
        y[:n] = cached
    else:
        scale(kernel, geometry, args, backend)
    cache[address(x)] = (count + 1, y[:n].copy())


def clobber_input_when_repeated(kernel, geometry, args, backend) -> None:
    """Use the input as scratch, but only where the address repeats (timing), never on a checked launch."""
    seen = kernel.state.setdefault("seen", {})
    scale(kernel, geometry, args, backend)
    seen[address(args[0])] = seen.get(address(args[0]), 0) + 1
    if seen[address(args[0])] >= 5:
        args[0][:8] = 0.0



def honest_until_timing(cheat: Callable) -> Callable:
    """``cheat`` from the first timed launch on: the wall's earlier, checked launches all see an honest kernel."""
    def kernel_fn(kernel, geometry, args, backend) -> None:
        limit = kernel.state.setdefault("limit", CHECKED)
        (scale if kernel.launches <= limit else cheat)(kernel, geometry, args, backend)
    kernel_fn.__name__ = cheat.__name__
    return kernel_fn


def do_nothing(kernel, geometry, args, backend) -> None:
    pass


CHECKED = 11  # 8 input sets + 3 repeats at scale.cu's sizes; test_checked_launch_count pins it


def test_checked_launch_count() -> None:
    result = run_wall("scale.cu", scale)
    assert result.checked["launches"] - result.checked["input_sets"] == CHECKED  # all launches minus the reference's


@pytest.mark.parametrize(("cheat", "check", "words"), [
    (do_nothing, "timed-output", "unwritten"),
    (skip_seen_addresses, "timed-output", "unwritten"),
    (every_third_launch, "timed-output", "unwritten"),
    (skip_if_written, None, ""),  # every timed launch starts from poison: it never gets to skip
    (cache_by_input_address, "timed-output", "wrong"),
    (clobber_input_when_repeated, "input-modified", "changed"),
])
def test_cheats_on_timed_launches_fail(cheat: Callable, check: str | None, words: str) -> None:
    result = run_wall("scale.cu", honest_until_timing(cheat), time=True)
    if check is None:
        assert result.failures == ()
        assert result.checked["timed_launches"]["worked"] == result.checked["timed_launches"]["launches"]
        return
    assert result.failures, "the cheat passed"
    failure = result.failures[0]
    assert failure.check == check, failure
    assert failure.where["launch"] == "timing"
    assert words in failure.message
    assert "did its work in" in failure.message and "timed launches" in failure.message


def test_cheats_keyed_on_addresses_are_caught_before_timing_too() -> None:
    """Pool allocators reuse addresses, so the checked launches already see repeats."""
    for cheat in (skip_seen_addresses, cache_by_input_address, every_third_launch):
        assert run_wall("scale.cu", cheat, time=True).failures


def test_back_to_back_skipping_fails_in_batched_timing() -> None:
    backend = FakeBackend({}, seconds_per_launch=5e-6)  # microsecond kernel: batches of 200 launches per sample
    result = run_wall("scale.cu", honest_until_timing(skip_back_to_back), time=True, backend=backend)
    failure = result.failures[0]
    assert failure.check == "timed-output"
    assert failure.where["worked"] < failure.where["launches"] / 2  # the first launch of each sample only


def test_skip_if_written_is_timed_doing_its_work() -> None:
    """Every launch starts from a poisoned output, so this cheat never gets to skip: it passes honestly."""
    backend = FakeBackend({}, seconds_per_launch=5e-6)
    result = run_wall("scale.cu", skip_if_written, time=True, backend=backend)
    assert result.failures == ()
    timed = result.checked["timed_launches"]
    assert timed["worked"] == timed["launches"] >= 200


def test_honest_kernel_passes_with_every_timed_launch_verified() -> None:
    backend = FakeBackend({}, seconds_per_launch=5e-6)
    result = run_wall("scale.cu", scale, time=True, backend=backend)
    assert result.failures == ()
    timed = result.checked["timed_launches"]
    assert timed["launches"] == timed["worked"]
    assert timed["launches"] >= result.timing.n * result.timing.launches_per_sample
    assert timed["buffer_sets"] == result.timing.launches_per_sample == 200


def test_poison_and_check_stay_outside_the_timed_region() -> None:
    """Order of operations per sample: reload+poison, flush, start, the launches, end, then the check."""
    task = load_task(WALL / "scale.cu")
    backend = FakeBackend({"k": scale}, seconds_per_launch=5e-6)
    inputs = make_inputs(task, task.env(), 7, 0, 0)
    expected = {"y": (np.float32(2.5) * inputs.arrays["x"]).astype(np.float32)}

    class Logged(TimedBuffers):
        def before_sample(self) -> None:
            backend.log.append("before")
            super().before_sample()

        def after_sample(self) -> None:
            backend.log.append("after")
            super().after_sample()

    hooks = Logged(np, task, {"x": (4096,), "y": (4096,)}, [inputs], [expected], scalar_args(task, task.env()), 256,
                   np.random.default_rng(0), backend.to_host)
    timing = time_kernel(backend, backend.load_kernel("k", "scale"), Geometry((16, 1, 1), (256, 1, 1)), hooks,
                         2 * 4096 * 4, TimingOptions(stop=FAST_STOP, warmup_s=0.0), clock=backend.clock)
    k = timing.launches_per_sample
    batched = ["before", "flush", "start"] + ["launch"] * k + ["end", "after"]
    text = " ".join(backend.log)
    assert text.endswith(" ".join(batched))
    assert text.count(" ".join(batched)) >= timing.n
    single = ["before", "flush", "start", "launch", "end", "after"]
    assert text.startswith(" ".join(single))


def test_timed_inputs_alternate_between_input_sets_at_the_same_addresses() -> None:
    seen: dict[int, set[float]] = {}

    def spy(kernel, geometry, args, backend) -> None:
        seen.setdefault(address(args[0]), set()).add(float(args[0][0]))
        scale(kernel, geometry, args, backend)

    result = run_wall("scale.cu", spy, time=True, backend=FakeBackend({}, seconds_per_launch=5e-6))
    assert result.failures == ()
    assert result.checked["timed_launches"]["input_sets"] == [0, 5]
    assert sum(len(values) == 2 for values in seen.values()) >= 100  # most timed addresses saw both input sets


# --- warm mode: an L2 ceiling ------------------------------------------------------------------------
def _timing(seconds: float, warm: bool) -> Timing:
    return Timing(median_s=seconds, p20_s=seconds, p80_s=seconds, std_s=0.0, mean_s=seconds, n=10, method="graph",
                  launches_per_sample=100, l2="warm" if warm else "rotated", buffer_copies=100, converged=True,
                  stop_reason="converged", dropped_throttled=0, throttled=False, elapsed_s=1.0)


def test_warm_timing_has_an_l2_ceiling() -> None:
    from test_runner_wall import H100

    task = load_task(WALL / "scale.cu")
    env = task.env()  # N = 4096: 32 KB of [cost] bytes
    assert l2_peak(H100) == pytest.approx(132 * 1.98e9 * 64)
    honest = 32768 / 5e12  # 5 TB/s: an L2-resident kernel, above DRAM's 3.35 TB/s
    assert check_timing(task, env, _timing(honest, warm=True), H100) is None
    assert check_timing(task, env, _timing(honest, warm=False), H100).check == "roofline"  # cold: above DRAM
    skipping = honest / 20  # skips 19 of 20 launches' work
    failure = check_timing(task, env, _timing(skipping, warm=True), H100)
    assert failure is not None and "L2 bandwidth ceiling" in failure.message


def test_warm_skipping_kernel_fails_the_wall() -> None:
    backend = FakeBackend({}, seconds_per_launch=32768 / 100e12)  # 100 TB/s "measured"
    result = run_wall("scale.cu", scale, time=True, backend=backend,
                      timing=TimingOptions(warm=True, stop=FAST_STOP, warmup_s=0.0))
    assert result.failures[0].check == "roofline"
    assert "L2" in result.failures[0].message


# keep the honest softmax importable for the distribution tests below
_ = softmax
