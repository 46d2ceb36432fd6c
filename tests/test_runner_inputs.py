"""Input generation: shapes from the task, seeds, the distribution rotation, initializers, bfloat16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kernelpro.runner.inputs import (
    FLOAT_DISTRIBUTIONS,
    bfloat16_bits_to_float32,
    float32_to_bfloat16_bits,
    fresh_seed,
    make_inputs,
    random_ints,
    scalar_args,
)
from kernelpro.task_loader import load_task, parse_task

WALL = Path(__file__).resolve().parent / "kernels" / "wall"
ROWSUM = load_task(WALL / "rowsum.cu")


def _task(args: str, signature: str, params: str = "N = 1000") -> object:
    return parse_task(f"""/* kernelpro
[task]
kernel = "k"
[params]
{params}
{args}
[launch]
grid = ["1"]
block = ["32"]
*/
extern "C" __global__ void k({signature}) {{}}
""")


def test_shapes_come_from_the_task_and_outputs_are_not_generated() -> None:
    inputs = make_inputs(ROWSUM, ROWSUM.env(), seed=1, size_index=0, set_index=0)
    assert set(inputs.arrays) == {"x"}
    assert inputs.arrays["x"].shape == (64, 4096) and inputs.arrays["x"].dtype == np.float32
    small = make_inputs(ROWSUM, ROWSUM.env(sizes=ROWSUM.problem_sizes()[1]), seed=1, size_index=1, set_index=0)
    assert small.arrays["x"].shape == (3, 1000)


def test_scalars_are_numpy_scalars_of_their_dtype() -> None:
    scalars = scalar_args(ROWSUM, ROWSUM.env())
    assert scalars == {"rows": 64, "cols": 4096}
    assert all(type(v) is np.int32 for v in scalars.values())
    scale = load_task(WALL / "scale.cu")
    values = scalar_args(scale, scale.env(sizes={"N": 17}))
    assert type(values["a"]) is np.float32 and values["a"] == np.float32(2.5)
    assert type(values["n"]) is np.int32 and values["n"] == 17


def test_seeds_are_reproducible_and_fresh_seeds_differ() -> None:
    a = make_inputs(ROWSUM, ROWSUM.env(), seed=42, size_index=0, set_index=1).arrays["x"]
    b = make_inputs(ROWSUM, ROWSUM.env(), seed=42, size_index=0, set_index=1).arrays["x"]
    assert np.array_equal(a, b)
    other_seed = make_inputs(ROWSUM, ROWSUM.env(), seed=43, size_index=0, set_index=1).arrays["x"]
    other_set = make_inputs(ROWSUM, ROWSUM.env(), seed=42, size_index=0, set_index=5).arrays["x"]
    assert not np.array_equal(a, other_seed) and not np.array_equal(a, other_set)
    seeds = {fresh_seed() for _ in range(20)}
    assert len(seeds) == 20 and all(0 <= s < 2**64 for s in seeds)


def test_random_rotates_over_distributions_with_negatives_tiny_values_and_heavy_tails() -> None:
    sets = [make_inputs(ROWSUM, ROWSUM.env(), seed=7, size_index=0, set_index=j) for j in range(4)]
    assert [s.distribution for s in sets] == list(FLOAT_DISTRIBUTIONS[:4])
    normal, uniform, heavy, tiny = (s.arrays["x"].astype(np.float64).ravel() for s in sets)
    assert abs(normal.mean()) < 0.01 and normal.std() == pytest.approx(1.0, abs=0.01)
    assert uniform.min() >= -1 and uniform.max() <= 1 and uniform.std() == pytest.approx(1 / np.sqrt(3), abs=0.01)
    excess_kurtosis = ((heavy - heavy.mean()) ** 4).mean() / heavy.var() ** 2 - 3
    assert excess_kurtosis > 3, "heavy should have heavier tails than a normal"
    assert heavy.std() == pytest.approx(1.0, abs=0.1) and np.abs(heavy).max() > 10
    assert 0 < np.abs(tiny).max() < 1e-28
    for data in (normal, uniform, heavy, tiny):
        assert (data < 0).mean() == pytest.approx(0.5, abs=0.02)
    # the extra sizes continue the rotation, so they see other distributions too
    assert make_inputs(ROWSUM, ROWSUM.env(), seed=7, size_index=1, set_index=0).distribution == "uniform"


def test_v2_distributions_offset_large_denormal_constant_rows() -> None:
    x = {name: make_inputs(ROWSUM, ROWSUM.env(), seed=7, size_index=0, set_index=0, rotation=k).arrays["x"]
         for k, name in enumerate(FLOAT_DISTRIBUTIONS)}
    offset, large, denormal, constant = (x[n].astype(np.float64) for n in ("offset", "large", "denormal", "constant"))
    assert offset.mean() == pytest.approx(100.0, abs=0.1) and offset.std() == pytest.approx(1.0, abs=0.1)
    with np.errstate(over="ignore"):
        assert np.exp(offset.astype(np.float32)).max() == np.inf  # exp without the max subtracted overflows
    assert 1e14 < np.abs(large).max() < 1e17 and np.isfinite((large.astype(np.float32) ** 2).sum(dtype=np.float32))
    tiny_normal = np.finfo(np.float32).tiny
    assert 0 < np.abs(denormal).max() < tiny_normal and (denormal < 0).any()
    rows = constant.reshape(constant.shape[0], -1)
    assert (rows == rows[:, :1]).all() and len(np.unique(rows[:, 0])) == rows.shape[0]


def test_excluded_distributions_leave_the_rotation() -> None:
    from dataclasses import replace

    excluded = {"offset": "log of the input", "denormal": "the reference flushes to zero"}
    task = replace(ROWSUM, correctness=replace(ROWSUM.correctness, exclude_distributions=excluded))
    seen = {make_inputs(task, task.env(), 1, 0, 0, rotation=k).distribution for k in range(16)}
    assert seen == set(FLOAT_DISTRIBUTIONS) - {"offset", "denormal"}


def test_explicit_initializers() -> None:
    task = _task("""
[[args]]
name = "idx"
dtype = "int32"
shape = ["N"]
init = "randint(0, 50)"
intent = "in"
[[args]]
name = "w"
dtype = "float32"
shape = ["N"]
init = "uniform(0.5, 1.5)"
intent = "in"
[[args]]
name = "acc"
dtype = "float64"
shape = ["N"]
init = "full(2.5)"
intent = "inout"
[[args]]
name = "pos"
dtype = "int8"
shape = ["N"]
init = "arange"
intent = "in"
[[args]]
name = "out"
dtype = "float32"
shape = ["N"]
intent = "out"
""", "const int* idx, const float* w, double* acc, const signed char* pos, float* out")
    arrays = make_inputs(task, task.env(), seed=3, size_index=0, set_index=0).arrays
    assert set(arrays) == {"idx", "w", "acc", "pos"}  # inout is initialized, out is not
    assert arrays["idx"].dtype == np.int32 and arrays["idx"].min() >= 0 and arrays["idx"].max() < 50
    assert len(np.unique(arrays["idx"])) == 50
    assert arrays["w"].min() >= 0.5 and arrays["w"].max() < 1.5
    assert np.all(arrays["acc"] == 2.5) and arrays["acc"].dtype == np.float64
    assert list(arrays["pos"][126:130]) == [126, 127, -128, -127]  # arange wraps like a C cast


def test_integer_random_stays_in_the_dtype_range() -> None:
    rng = np.random.default_rng(0)
    for name in ("small", "wide", "heavy"):
        values = random_ints(name, 10_000, "int8", rng)
        assert values.min() >= -128 and values.max() <= 127
        assert random_ints(name, 1000, "uint16", rng).min() >= 0
    assert random_ints("wide", 10_000, "int32", rng).max() > 1000


def test_bfloat16_bits() -> None:
    values = np.array([1.0, -2.0, 0.0, np.inf, 3.140625], np.float32)
    bits = float32_to_bfloat16_bits(values)
    assert list(bits) == [0x3F80, 0xC000, 0x0000, 0x7F80, 0x4049]
    assert np.array_equal(bfloat16_bits_to_float32(bits), values)
    # round to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 and rounds to 1
    assert float32_to_bfloat16_bits(np.array([1 + 2**-8], np.float32))[0] == 0x3F80
    assert float32_to_bfloat16_bits(np.array([1 + 3 * 2**-8], np.float32))[0] == 0x3F82
    assert np.isnan(bfloat16_bits_to_float32(float32_to_bfloat16_bits(np.array([np.nan], np.float32))))[0]


def test_bfloat16_buffers_are_stored_as_bits() -> None:
    task = _task("""
[[args]]
name = "x"
dtype = "bfloat16"
shape = ["N"]
intent = "in"
[[args]]
name = "y"
dtype = "bfloat16"
shape = ["N"]
intent = "out"
[[args]]
name = "s"
dtype = "bfloat16"
value = "2"
""", "const __nv_bfloat16* x, __nv_bfloat16* y, __nv_bfloat16 s")
    x = make_inputs(task, task.env(), seed=1, size_index=0, set_index=0).arrays["x"]
    assert x.dtype == np.uint16
    assert bfloat16_bits_to_float32(x).std() == pytest.approx(1.0, abs=0.1)
    assert scalar_args(task, task.env())["s"] == np.uint16(0x4000)
