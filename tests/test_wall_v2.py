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


CHECKED = 14  # 10 input sets + 4 repeats at scale.cu's 3 sizes and the drawn one; test_checked_launch_count pins it


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


def test_out_of_bounds_write_on_timed_launches_only_hits_a_timed_guard() -> None:
    def writes_past_end(kernel, geometry, args, backend) -> None:
        x, y, a, n = args
        scale(kernel, geometry, args, backend)
        past = np.lib.stride_tricks.as_strided(y, shape=(n + 3,), strides=y.strides)
        past[n + 2] = 1.0  # 8 bytes past the end of y

    result = run_wall("scale.cu", honest_until_timing(writes_past_end), time=True)
    failure = result.failures[0]
    assert failure.check == "canary" and "timed launches" in failure.message and "buffer set" in failure.message
    assert failure.where["arg"] == "y" and failure.where["byte_offset"] == 4096 * 4 + 8
    assert failure.where["side"] == "after"


def test_chunked_device_check_finds_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import kernelpro.runner.timed_check as timed_check

    backend = FakeBackend({}, seconds_per_launch=5e-6)
    whole = run_wall("scale.cu", honest_until_timing(every_third_launch), time=True, backend=backend)
    monkeypatch.setattr(timed_check, "CHUNK_ELEMENTS", 3 * 4096)  # three sets at a time
    backend = FakeBackend({}, seconds_per_launch=5e-6)
    chunked = run_wall("scale.cu", honest_until_timing(every_third_launch), time=True, backend=backend)
    for result in (whole, chunked):
        failure = result.failures[0]
        assert failure.check == "timed-output"
        assert failure.where["worked"] == pytest.approx(failure.where["launches"] / 3, rel=0.05)


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
    assert result.checked["timed_launches"]["input_sets"] == [5, 0, 1, 2, 3]  # 4 checked sets and a timing-only one
    assert sum(len(values) >= 3 for values in seen.values()) >= 100  # most timed addresses saw several input sets


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


# --- the drawn size ------------------------------------------------------------------------------------
def specialised_to_declared_sizes(kernel, geometry, args, backend) -> None:
    """Correct at the sizes the task file lists, drops the tail elsewhere (assumes a multiple of 64)."""
    x, y, a, n = args
    if int(n) in (4096, 1000, 1):
        scale(kernel, geometry, args, backend)
    else:
        m = int(n) & ~63
        y[:m] = a * x[:m]


def test_shape_specialised_kernel_fails_at_the_drawn_size() -> None:
    result = run_wall("scale.cu", specialised_to_declared_sizes)
    failure = result.failures[0]
    assert failure.check == "output"
    drawn = result.checked["drawn_size"]
    assert failure.where["size"] == drawn and "never written" in failure.message
    assert run_wall("scale.cu", specialised_to_declared_sizes, draw_size=False).failures == ()  # v1 passed it


def test_drawn_size_is_odd_in_range_and_reproducible_from_the_seed() -> None:
    from dataclasses import replace

    from kernelpro.runner.drawn_size import draw_size, ranges

    task = load_task(WALL / "scale.cu")
    assert ranges(task) == {"N": (1, 1000)}
    draws = {draw_size(task, seed, {})["N"] for seed in range(200)}
    assert all(n % 2 == 1 and 1 <= n <= 1000 for n in draws) and len(draws) > 100
    assert draw_size(task, 77, {}) == draw_size(task, 77, {})  # a resume with the same seed checks the same size
    bounded = replace(task, correctness=replace(task.correctness, drawn_size={"N": (100, 120)}))
    assert {draw_size(bounded, seed, {})["N"] for seed in range(50)} <= set(range(101, 121, 2))


def test_drawn_size_respects_the_launch_limits() -> None:
    from kernelpro.runner.drawn_size import draw_size, valid

    task = load_task(WALL / "softmax_tiny.cu")  # one extra size: COLS drawn between 1000 and 262144
    sizes = draw_size(task, 5, {})
    assert sizes is not None and sizes["COLS"] % 2 == 1 and 1000 <= sizes["COLS"] <= 262144
    assert valid(task, sizes, {}) and not valid(task, {**sizes, "ROWS": 0}, {})


# --- input distributions -------------------------------------------------------------------------------
def softmax_subtracts_a_constant(kernel, geometry, args, backend) -> None:
    """exp(x - 10) instead of exp(x - max): right for logits near zero, Inf/NaN on real (offset) logits."""
    x, y, rows, cols = args
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x - np.float32(10.0))
        y[...] = e / e.sum(axis=1, keepdims=True, dtype=np.float32)


def flushes_denormals(kernel, geometry, args, backend) -> None:
    """What -use_fast_math (flush-to-zero) does to subnormal inputs."""
    x, y, a, n = args
    tiny = np.finfo(np.float32).tiny
    y[:n] = np.where(np.abs(x[:n]) < tiny, 0.0, a * x[:n])


def half_precision_intermediate(kernel, geometry, args, backend) -> None:
    """Computes in float16: fine for N(0, 1), Inf for large magnitudes."""
    x, y, a, n = args
    with np.errstate(over="ignore"):
        y[:n] = (x[:n].astype(np.float16) * np.float16(a)).astype(np.float32)


@pytest.mark.parametrize(("task", "cheat", "distribution"), [
    ("softmax_tiny.cu", softmax_subtracts_a_constant, "offset"),
    ("scale.cu", flushes_denormals, "denormal"),
])
def test_new_distributions_catch_what_centred_inputs_miss(task: str, cheat: Callable, distribution: str) -> None:
    result = run_wall(task, cheat)
    failure = result.failures[0]
    assert failure.check == "output"
    assert failure.where["distribution"] == distribution


def test_half_precision_intermediate_fails_on_large_magnitudes() -> None:
    from dataclasses import replace

    from kernelpro.runner.wall import Wall, WallConfig
    from kernelpro.task import Tolerance

    assert run_wall("scale.cu", half_precision_intermediate).failures[0].check == "output"
    # even under a loose tolerance, with tiny and denormal (which float16 also flushes) opted out: large gives Inf
    task = load_task(WALL / "scale.cu")
    correctness = replace(task.correctness, tolerance=Tolerance(atol=1e-2, rtol=1e-2),
                          exclude_distributions={"tiny": "test", "denormal": "test"})
    backend = FakeBackend({"reference.cubin": scale, "candidate.cubin": half_precision_intermediate})
    wall = Wall(replace(task, correctness=correctness), backend, backend.load_kernel("reference.cubin", "scale"),
                backend.load_kernel("candidate.cubin", "scale"), {}, WallConfig(seed=3, time=False))
    failure = wall.run().failures[0]
    assert failure.where["distribution"] == "large" and "inf" in failure.message.lower()


def test_honest_softmax_passes_every_distribution() -> None:
    result = run_wall("softmax_tiny.cu", softmax)
    assert result.failures == ()
    assert set(result.checked["distributions"]) >= {"offset", "large", "denormal", "constant"}


# --- the registry behind `kernelpro check --explain` ---------------------------------------------------
def test_every_check_the_runner_raises_is_in_the_registry() -> None:
    import re
    from pathlib import Path

    from kernelpro.runner.checks import REGISTRY
    from kernelpro.runner.records import CHECKS, FLAGS
    from kernelpro.runner.sanitizer import TOOLS

    names = {c.name for c in REGISTRY}
    assert set(CHECKS) | set(FLAGS) == names and set(TOOLS) <= set(CHECKS)
    root = Path(__file__).resolve().parents[1] / "kernelpro"
    raised = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        raised |= set(re.findall(r'CheckFailure\(\s*"([a-z0-9-]+)"', text))
        raised |= set(re.findall(r'check = "([a-z0-9-]+)" if', text))
        raised |= set(re.findall(r'else "([a-z0-9-]+)"\n', text)) & names  # the other branch of those
    assert raised and raised <= names, raised - names
    assert {"timed-output", "lower-precision", "synccheck", "not-sanitized"} <= names


def test_explain_lists_what_runs_for_the_options() -> None:
    from kernelpro.runner.commands import explain

    text = explain(WALL / "scale.cu")
    assert "timed-output" in text and "memcheck" in text and "closes: precision downgrade" in text
    assert "synccheck" in text.splitlines()[-1]  # only the final check of optimize runs it
    quick = explain(WALL / "scale.cu", time=False, sanitizer=False)
    assert "timed-output" in quick.splitlines()[-1] and "memcheck" in quick.splitlines()[-1]


def test_inout_sets_reused_within_a_warm_sample_are_not_misjudged() -> None:
    """total += sum(x) applied twice in one sample is right, and differs from one application."""
    from dataclasses import replace

    from kernelpro.task import Init

    task = load_task(WALL / "total.cu")
    out = next(a for a in task.args if a.name == "out")
    inout = replace(out, intent="inout", init=Init("zeros"))
    task = replace(task, args=tuple(inout if a.name == "out" else a for a in task.args))

    def accumulate(kernel, geometry, args, backend) -> None:
        x, total, n = args
        total[0] += x[:n].sum(dtype=np.float32)

    backend = FakeBackend({"k": accumulate}, seconds_per_launch=5e-6)
    inputs = make_inputs(task, task.env(), 3, 0, 0)
    expected = {"out": np.array([inputs.arrays["x"].sum(dtype=np.float32)], dtype=np.float32)}
    hooks = TimedBuffers(np, task, {"x": inputs.arrays["x"].shape, "out": (1,)}, [inputs], [expected],
                         scalar_args(task, task.env()), 256, np.random.default_rng(0), backend.to_host)
    hooks.arg_sets(10, 40)  # warm rotation: 10 sets for 40 launches, each set 4 times a sample
    for _ in range(3):
        hooks.before_sample()
        for launch in range(40):
            accumulate(None, None, (hooks.groups[-1]["x"].interior(launch % 10),
                                    hooks.groups[-1]["out"].interior(launch % 10), np.int32(inputs.arrays["x"].size)),
                       backend)
        hooks.after_sample()
    report = hooks.report()
    assert report.failed_count == 0 and report.unjudged == 120 and report.launches == 0


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "int32"])
def test_device_check_counts_per_set(dtype: str) -> None:
    from kernelpro.runner.buffers import poison
    from kernelpro.runner.inputs import storage_dtype, to_storage
    from kernelpro.runner.timed_check import _output_stats
    from kernelpro.task import DEFAULT_TOLERANCES, Tolerance

    tol = DEFAULT_TOLERANCES.get(dtype, Tolerance(atol=0.0, rtol=0.0))
    expected = to_storage(np.arange(1, 9, dtype=np.float64) * 3, dtype)
    got = np.stack([expected.copy() for _ in range(4)])
    poison(got[1, :3], dtype)  # set 1: three elements never written
    got[2, 5] = to_storage(np.array([1000.0]), dtype)[0]  # set 2: one wrong element
    got[3] = to_storage(np.zeros(8), dtype)  # set 3: all zeros
    poisoned, wrong, diff_norm, exp_norm = _output_stats(np, got, np.stack([expected] * 4), dtype, tol)
    assert list(poisoned) == [0, 3, 0, 0]
    assert wrong[0] == 0 and wrong[1] == 3 and wrong[2] == 1 and wrong[3] == 8
    assert got.dtype == storage_dtype(dtype)
    if dtype != "int32":
        assert diff_norm[0] == 0 and diff_norm[3] == pytest.approx(exp_norm[3])  # zeros: relative L2 error 1
