"""Launch sequences on the numpy stand-in: a two-kernel task with a scratch buffer, a candidate with
its own launch (geometry, kernels, fused), NULL pointers, device values from the device, and the
comparator as the reference. The Python "kernels" honour their launch geometry (each block handles
the rows its index covers), so a candidate checked with the wrong launch would miss rows."""

from __future__ import annotations

import numpy as np
import pytest
from test_runner_wall import FAST_TIMING, H100, FakeBackend, FakeKernel

from kernelpro.candidate_launch import candidate_plan, render_launch_block
from kernelpro.errors import TaskError
from kernelpro.runner.buffers import is_poison
from kernelpro.runner.records import DeviceInfo
from kernelpro.runner.sequence import NULL_POINTER, ComparatorReference, LaunchSequence
from kernelpro.runner.wall import Wall, WallConfig
from kernelpro.task_loader import parse_task

TASK = '''/* kernelpro
[task]
name = "center_rows"
kernel = "row_mean"

[params]
ROWS = 37
COLS = 50

[[args]]
name = "x"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "out"

[[args]]
name = "mean"
dtype = "float32"
shape = ["ROWS"]
intent = "scratch"

[[launch]]
kernel = "row_mean"
grid = ["min(ROWS, SM_COUNT)"]
block = ["32"]
args = ["x", "mean", "ROWS", "COLS"]

[[launch]]
kernel = "center"
grid = ["ROWS"]
block = ["128"]
args = ["x", "mean", "null", "y", "COLS"]

[correctness]
sizes = [{ ROWS = 5, COLS = 3 }]

[comparator]
library = "numpy"
expr = "y[...] = x - x.mean(axis=1, keepdims=True, dtype=numpy.float32)"
*/
extern "C" __global__ void row_mean(const float* x, float* mean, int rows, int cols) { }
extern "C" __global__ void center(const float* x, const float* mean, const float* bias, float* y, int cols) { }
extern "C" __global__ void center_fused(const float* x, float* y, int rows, int cols) { }
'''

FUSED = '''
/* kernelpro launch
[[launch]]
kernel = "center_fused"
grid = ["ceil_div(ROWS, 4)"]
block = ["128"]
args = ["x", "y", "ROWS", "COLS"]
*/
'''


def row_mean(kernel, geometry, args, backend) -> None:
    x, mean, rows, cols = args
    kernel.state.setdefault("scratch_at_entry", []).append(bool(is_poison(mean, "float32").all()))
    for r in range(0, rows, geometry.grid[0]):  # grid-stride over rows, as the CUDA kernel would
        block_rows = range(r, min(r + geometry.grid[0], rows))
        for row in block_rows:
            mean[row] = x[row, :cols].mean(dtype=np.float32)


def center(kernel, geometry, args, backend) -> None:
    x, mean, bias, y, cols = args
    kernel.state["bias"] = bias
    for row in range(geometry.grid[0]):  # one block per row
        y[row, :cols] = x[row, :cols] - mean[row]


def center_fused(kernel, geometry, args, backend) -> None:
    x, y, rows, cols = args
    warps = geometry.block[0] // 32
    for row in range(min(rows, geometry.grid[0] * warps)):  # one warp per row
        y[row, :cols] = x[row, :cols] - x[row, :cols].mean(dtype=np.float32)


def task_and_backend(device: DeviceInfo = H100):
    task = parse_task(TASK, "center_rows.cu")
    backend = FakeBackend({})
    backend.device_info = lambda: device
    return task, backend


def sequence(task, plan, fns) -> LaunchSequence:
    return LaunchSequence(task, plan, {launch.kernel: FakeKernel(fns[launch.kernel_name], launch.kernel_name)
                                       for launch in plan})


def run(task, backend, candidate_source: str, fns: dict, *, time: bool = False, reference=None, draw_size=True):
    plan = candidate_plan(task, candidate_source)
    reference = reference or sequence(task, task.plan, {"row_mean": row_mean, "center": center})
    candidate = sequence(task, plan, fns)
    wall = Wall(task, backend, reference, candidate, {}, WallConfig(seed=7, time=time, timing=FAST_TIMING,
                                                                               draw_size=draw_size))
    return wall.run(), candidate


def test_two_kernel_task_against_itself_passes_with_scratch_poisoned_before_each_sequence() -> None:
    task, backend = task_and_backend()
    result, candidate = run(task, backend, TASK, {"row_mean": row_mean, "center": center})
    assert result.failures == ()
    assert result.checked["sizes"][:2] == ["ROWS=37, COLS=50", "ROWS=5, COLS=3"]  # then the seed's drawn size
    assert len(result.checked["sizes"]) == 3 and "drawn_size" in result.checked
    assert result.checked["launch_sequence"] == ["row_mean", "center"]
    entries = candidate.kernels["row_mean"].state["scratch_at_entry"]
    # + one repeat launch per size
    assert len(entries) == result.checked["input_sets"] + len(result.checked["sizes"]) and all(entries)
    assert candidate.kernels["center"].state["bias"] is NULL_POINTER


def test_timing_covers_the_whole_sequence() -> None:
    task, backend = task_and_backend()
    result, candidate = run(task, backend, TASK, {"row_mean": row_mean, "center": center}, time=True)
    assert result.failures == () and result.timing is not None
    first, second = candidate.kernels["row_mean"], candidate.kernels["center"]
    assert first.launches == second.launches  # every timed launch ran both kernels, in order
    timed = result.timing.n * result.timing.launches_per_sample
    assert first.launches >= timed > 0


def test_fused_candidate_with_its_own_launch_passes_and_is_timed() -> None:
    task, backend = task_and_backend()
    result, candidate = run(task, backend, TASK + FUSED, {"center_fused": center_fused}, time=True)
    assert result.failures == ()
    assert result.checked["launch_sequence"] == ["center_fused"]
    assert result.timing is not None and result.timing.n >= 10
    fused = candidate.kernels["center_fused"]
    assert fused.launches > result.checked["input_sets"]  # the wall's launches and the timed ones


def test_candidate_is_checked_with_its_own_geometry_at_every_size() -> None:
    task, backend = task_and_backend()
    # Two warps per block but the launch still assumes four rows per block: ROWS=37 needs 10 blocks of 4 rows.
    wrong = FUSED.replace('block = ["128"]', 'block = ["64"]')
    result, _ = run(task, backend, TASK + wrong, {"center_fused": center_fused})
    assert [f.check for f in result.failures] == ["output"]
    assert "never written" in result.failures[0].message or "y[" in result.failures[0].message


def test_second_kernel_reading_unwritten_scratch_fails() -> None:
    task, backend = task_and_backend()

    def lazy_mean(kernel, geometry, args, backend) -> None:  # writes only the first row of the scratch
        x, mean, rows, cols = args
        mean[0] = x[0, :cols].mean(dtype=np.float32)

    result, _ = run(task, backend, TASK, {"row_mean": lazy_mean, "center": center})
    assert [f.check for f in result.failures] == ["output"]


def test_device_values_come_from_the_visible_device() -> None:
    small = DeviceInfo(name="tiny", compute_capability="9.0", sm_count=4, sm_clock_khz=None, memory_clock_khz=None,
                       memory_bus_bits=None, l2_bytes=1 << 20, total_memory_bytes=1 << 30)
    task, backend = task_and_backend(small)
    seen = []

    def recording_mean(kernel, geometry, args, backend) -> None:
        seen.append(geometry.grid[0])
        row_mean(kernel, geometry, args, backend)

    result, _ = run(task, backend, TASK, {"row_mean": recording_mean, "center": center})
    assert result.failures == ()
    assert set(seen) == {4}  # min(ROWS, SM_COUNT) with 4 SMs at both sizes (37 and 5 rows)


def test_comparator_reference_checks_candidates() -> None:
    text = TASK.replace("[correctness]", '[correctness]\nreference = "comparator"', 1)
    task, backend = task_and_backend()
    task = parse_task(text, "center_rows.cu")
    good, _ = run(task, backend, text + FUSED, {"center_fused": center_fused}, reference=ComparatorReference(task))
    assert good.failures == () and good.checked["reference"] == "comparator"

    def off_by_one(kernel, geometry, args, backend) -> None:
        center_fused(kernel, geometry, args, backend)
        args[1][0, 0] += 1.0

    bad, _ = run(task, backend, text + FUSED, {"center_fused": off_by_one}, reference=ComparatorReference(task))
    assert [f.check for f in bad.failures] == ["output"] and "y[0, 0]" in bad.failures[0].message


@pytest.mark.parametrize(("block", "words"), [
    (FUSED.replace('args = ["x", "y", "ROWS", "COLS"]', 'args = ["x", "x", "ROWS", "COLS"]'), "passed twice"),
    (FUSED.replace('"x", "y", "ROWS", "COLS"', '"x", "mean", "ROWS", "COLS"'), "no launch writes output y"),
    (FUSED.replace('"x", "y", "ROWS", "COLS"', '"x", "z", "ROWS", "COLS"'), "'z' is not a task buffer"),
    (FUSED.replace('kernel = "center_fused"', 'kernel = "center_fusd"'), "'center_fusd' is not a __global__"),
    (FUSED.replace("[[launch]]", "[params]\nROWS = 4\n[[launch]]"), "only hold [[launch]] tables"),
    (FUSED.replace('grid = ["ceil_div(ROWS, 4)"]', 'grid = ["ROWS - 5"]'), "grid (0, 1, 1) at ROWS=5"),
    (FUSED.replace('block = ["128"]', 'block = 128 128'), "bad TOML in the launch block"),
])
def test_candidate_launch_block_errors(block: str, words: str) -> None:
    task = parse_task(TASK, "center_rows.cu")
    with pytest.raises(TaskError) as info:
        candidate_plan(task, TASK + block, "cand.cu")
    assert words in str(info.value) and info.value.line is not None and info.value.fix


def test_without_a_block_the_candidate_must_keep_the_task_kernels() -> None:
    task = parse_task(TASK, "center_rows.cu")
    with pytest.raises(TaskError, match="no __global__ kernel 'center'"):
        candidate_plan(task, TASK.replace("void center(", "void centre("))


def test_rendered_block_round_trips() -> None:
    task = parse_task(TASK, "center_rows.cu")
    plan = candidate_plan(task, TASK + FUSED)
    again = candidate_plan(task, TASK + "\n" + render_launch_block(plan) + "\n")
    assert again == plan
    assert candidate_plan(task, TASK + "\n" + render_launch_block(task.plan) + "\n") == task.plan


def test_buffers_larger_than_the_visible_gpu_are_a_task_problem_before_any_allocation() -> None:
    from kernelpro.runner.jobs import too_big_for

    task = parse_task(TASK, "center_rows.cu")
    small = DeviceInfo(name="tiny", compute_capability="9.0", sm_count=4, sm_clock_khz=None, memory_clock_khz=None,
                       memory_bus_bits=None, l2_bytes=1 << 20, total_memory_bytes=10_000)
    problem = too_big_for(task, small)
    assert problem is not None and "the buffers need 14.6 KiB at ROWS=37, COLS=50" in problem and "9.8 KiB" in problem
    assert too_big_for(task, H100) is None


def test_a_launch_that_cannot_be_evaluated_on_this_gpu_is_a_launch_failure() -> None:
    four_sms = DeviceInfo(name="tiny", compute_capability="9.0", sm_count=4, sm_clock_khz=None,
                          memory_clock_khz=None, memory_bus_bits=None, l2_bytes=1 << 20, total_memory_bytes=1 << 30)
    task, backend = task_and_backend(four_sms)
    odd = FUSED.replace('grid = ["ceil_div(ROWS, 4)"]', 'grid = ["ceil_div(ROWS, 4) + 8 // (SM_COUNT - 4)"]')
    result, _ = run(task, backend, TASK + odd, {"center_fused": center_fused})  # fine on an H100's 132 SMs
    assert [f.check for f in result.failures] == ["launch"] and "division by zero" in result.failures[0].message


OPTIONAL_BIAS = TASK.replace('''[[args]]
name = "mean"''', '''[[args]]
name = "bias"
dtype = "float32"
shape = ["COLS * HAS_BIAS"]
intent = "in"

[[args]]
name = "mean"''').replace("COLS = 50\n", "COLS = 50\nHAS_BIAS = 1\n").replace(
    '"null", "y", "COLS"]', '"bias if HAS_BIAS else null", "y", "COLS"]').replace(
    "sizes = [{ ROWS = 5, COLS = 3 }]", "sizes = [{ ROWS = 5, COLS = 3, HAS_BIAS = 0 }]")


def center_bias(kernel, geometry, args, backend) -> None:
    x, mean, bias, y, cols = args
    kernel.state.setdefault("bias", []).append(bias is NULL_POINTER)
    for row in range(geometry.grid[0]):
        y[row, :cols] = x[row, :cols] - mean[row] + (0 if bias is NULL_POINTER else bias[:cols])


def test_optional_pointer_is_null_where_its_condition_is_false() -> None:
    task = parse_task(OPTIONAL_BIAS, "center_bias.cu")
    assert [a.kind for a in task.plan[1].args] == ["arg", "arg", "optional", "arg", "expr"]
    backend = FakeBackend({})
    backend.device_info = lambda: H100
    fns = {"row_mean": row_mean, "center": center_bias}
    # without the seed's drawn size, which may draw either HAS_BIAS value
    result, candidate = run(task, backend, OPTIONAL_BIAS, fns, reference=sequence(task, task.plan, fns),
                            draw_size=False)
    assert result.failures == ()
    nulls = candidate.kernels["center"].state["bias"]
    assert nulls[:5] == [False] * 5 and nulls[5:] == [True] * (len(nulls) - 5)  # 4 sets + repeat, then HAS_BIAS=0
    # a candidate that ignores the bias fails at the size that has one
    ignoring = {"row_mean": row_mean, "center": center}
    bad, _ = run(task, backend, OPTIONAL_BIAS, ignoring, reference=sequence(task, task.plan, fns))
    assert [f.check for f in bad.failures] == ["output"]


def test_a_zero_sized_buffer_must_be_optional() -> None:
    with pytest.raises(TaskError, match="every dimension must be positive"):
        parse_task(OPTIONAL_BIAS.replace('"bias if HAS_BIAS else null"', '"bias"'), "t.cu")
    with pytest.raises(TaskError, match="an optional pointer must be an input buffer"):
        parse_task(OPTIONAL_BIAS.replace('"bias if HAS_BIAS else null", "y"', '"bias", "y if HAS_BIAS else null"'),
                   "t.cu")
