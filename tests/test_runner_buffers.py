"""Poison patterns and canary guard regions at the numpy level (the GPU path runs the same code on CuPy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kernelpro.runner.buffers import (
    ALIGN,
    DeviceBuffers,
    GuardedBuffer,
    canary_pattern,
    first_difference,
    is_poison,
    poison,
    poison_bits,
    set_bytes,
)
from kernelpro.runner.inputs import bfloat16_bits_to_float32, make_inputs, scalar_args, storage_dtype
from kernelpro.task_loader import load_task

WALL = Path(__file__).resolve().parent / "kernels" / "wall"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_float_poison_is_a_quiet_nan(dtype: str) -> None:
    array = np.zeros(5, storage_dtype(dtype))
    poison(array, dtype)
    values = bfloat16_bits_to_float32(array) if dtype == "bfloat16" else array
    assert np.isnan(values).all()
    assert is_poison(array, dtype).all()
    quiet_bit = {"float16": 9, "bfloat16": 6, "float32": 22, "float64": 51}[dtype]  # top mantissa bit
    assert poison_bits(dtype) >> quiet_bit & 1, "a signaling NaN could be quieted (changed) by a copy"


@pytest.mark.parametrize(("dtype", "pattern"), [("int8", 0xA5), ("uint16", 0xA5A5), ("int32", 0xA5A5A5A5),
                                                ("uint64", 0xA5A5A5A5A5A5A5A5), ("bool", 0xA5)])
def test_integer_poison_is_a_byte_pattern(dtype: str, pattern: int) -> None:
    array = np.zeros(3, storage_dtype(dtype))
    poison(array, dtype)
    assert poison_bits(dtype) == pattern
    assert array.tobytes() == bytes([0xA5]) * array.nbytes
    assert is_poison(array, dtype).all()
    array[1:2].view(np.uint8)[0] = 0
    assert list(is_poison(array, dtype)) == [True, False, True]


def test_canary_patterns_are_seeded() -> None:
    assert np.array_equal(canary_pattern(64, 1, 2), canary_pattern(64, 1, 2))
    assert not np.array_equal(canary_pattern(64, 1, 2), canary_pattern(64, 1, 3))


def test_guarded_buffer_layout_and_intact_guards() -> None:
    buffer = GuardedBuffer(np, (3, 5), np.float32, guard_bytes=1000, pattern_seed=9)
    assert buffer.array.shape == (3, 5) and buffer.array.dtype == np.float32
    offset = buffer.array.__array_interface__["data"][0] - buffer.raw.__array_interface__["data"][0]
    assert offset == buffer.front and buffer.front % ALIGN == 0 and buffer.front >= 1000
    assert (buffer.front + buffer.nbytes + buffer.rear) % ALIGN == 0 and buffer.rear >= 1000
    buffer.array[...] = 7.0  # in-bounds writes leave the guards alone
    assert buffer.damage() == []


def test_writes_past_either_end_are_found() -> None:
    buffer = GuardedBuffer(np, (10,), np.float32, guard_bytes=256, pattern_seed=1)
    past = np.lib.stride_tricks.as_strided(buffer.array, shape=(12,), strides=buffer.array.strides)
    past[11] = 123.0  # y[11] of a 10-element buffer: bytes 44..47
    (damage,) = buffer.damage()
    assert damage.side == "after" and damage.offset == 44 and damage.count >= 1
    buffer.fill_guards()
    assert buffer.damage() == []
    buffer.raw[buffer.front - 3] ^= 0xFF
    (damage,) = buffer.damage()
    assert (damage.side, damage.offset, damage.count) == ("before", -3, 1)


def test_no_guards_means_an_exact_allocation() -> None:
    buffer = GuardedBuffer(np, (17,), np.float64, guard_bytes=0)
    assert buffer.raw.nbytes == 17 * 8 and buffer.damage() == []


def test_device_buffers_upload_inputs_and_poison_outputs() -> None:
    task = load_task(WALL / "scale.cu")
    env = task.env(sizes={"N": 100})
    inputs = make_inputs(task, env, seed=5, size_index=0, set_index=0)
    buffers = DeviceBuffers(np, task, {"x": (100,), "y": (100,)}, inputs, guard_bytes=512)
    args = buffers.kernel_args(scalar_args(task, env))
    assert [type(a).__name__ for a in args] == ["ndarray", "ndarray", "float32", "int32"]
    assert np.array_equal(args[0], inputs.arrays["x"])
    assert is_poison(args[1], "float32").all()
    args[1][:] = 1.0
    args[0][3] = 99.0
    assert buffers.changed_inputs(inputs) == {"x": (3,)}
    buffers.reset(inputs)
    assert buffers.changed_inputs(inputs) == {} and is_poison(buffers.outputs()["y"], "float32").all()
    assert buffers.nbytes() == 800


@pytest.mark.parametrize("name", ["hgemm", "histogram", "sumsq_partials", "decode_attention"])
def test_set_bytes_is_what_a_buffer_set_allocates(name: str) -> None:
    """The timing's working set is counted without allocating a set: 16-bit, byte, scratch and many buffers."""
    task = load_task(Path(__file__).resolve().parents[1] / "tasks" / f"{name}.cu")
    env = task.env(sizes=task.problem_sizes()[-1])
    shapes = {a.name: task.shape(a, env) for a in task.buffers}
    inputs = make_inputs(task, env, seed=5, size_index=len(task.problem_sizes()) - 1, set_index=0)
    assert set_bytes(task, shapes) == DeviceBuffers(np, task, shapes, inputs, guard_bytes=0).nbytes() > 0


def test_first_difference_is_bitwise() -> None:
    a = np.array([[1.0, np.nan], [0.0, 2.0]], np.float32)
    assert first_difference(a, a.copy()) is None  # NaN equals itself bit for bit
    b = a.copy()
    b[1, 0] = -0.0  # equal as values, different bits
    assert first_difference(a, b) == (1, 0)
