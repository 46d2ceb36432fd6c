"""Every kernel argument as numpy data: seeded input buffers and typed scalars.

**Seeds.** An evaluation has one 64-bit seed (:func:`fresh_seed`, from ``os.urandom``, unless the
caller fixes it; the verdict records it). Each input buffer of input set ``j`` at problem size
``i`` draws from ``numpy.random.default_rng(SeedSequence([seed, i, j, k]))`` (``k`` = the
argument's position), so any set can be regenerated from the verdict alone.

**Distributions.** ``init = "random"`` (the default for inputs) rotates over
:data:`FLOAT_DISTRIBUTIONS` from one input set to the next (the wall numbers its sets across all
sizes, so an evaluation meets every distribution), so a kernel tuned to one distribution meets
others: ``normal`` N(0, 1); ``uniform`` U(-1, 1); ``heavy`` Student-t with 3 degrees of freedom
scaled to unit variance and clipped to ±100 (rare large values, same typical scale, so the task's
absolute tolerance still fits a legitimate reordered sum); ``tiny`` N(0, 1) times
:data:`TINY_SCALE` (1e-30 for float32, far below any atol: only the relative part of the
tolerance can judge such outputs); ``offset`` N(0, 1) plus a large common mean
(:data:`OFFSET_MEAN`, 100 for float32: ``exp`` of it overflows, so a softmax that subtracts a
constant instead of the row maximum gives Inf/NaN, and a one-pass variance loses its digits);
``large`` N(0, 1) times :data:`LARGE_SCALE` (1e15 for float32: squares and dot products over a
million elements stay finite, a float16 intermediate does not); ``denormal`` U(-1, 1) times the
dtype's smallest normal (subnormal values: flush-to-zero arithmetic loses them all); ``constant``
one N(0, 1) value per row (last axis), so every element of a row ties (zero variance, argmax
ties, uniform softmax). A task opts a distribution out with ``[correctness] exclude_distributions
= { name = "reason" }``. Integer ``random`` rotates over :data:`INT_DISTRIBUTIONS` (``small``
[-100, 100), ``wide`` [-2^20, 2^20), ``heavy`` a rounded t-distribution times 100, ``offset``
1000 + [-100, 100), ``constant`` rows), clipped to the dtype's range (unsigned types draw the
non-negative half). Other initializers are what they say.

**bfloat16.** numpy has no bfloat16: such buffers are stored as ``uint16`` bit patterns (what the
GPU reads as ``__nv_bfloat16``), produced from float32 with round-to-nearest-even
(:func:`float32_to_bfloat16_bits`) and read back through float32 (:func:`bfloat16_bits_to_float32`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kernelpro.task import FLOAT_DTYPES, Argument, Init, Task

FLOAT_DISTRIBUTIONS: tuple[str, ...] = ("normal", "uniform", "heavy", "tiny", "offset", "large", "denormal",
                                         "constant")
INT_DISTRIBUTIONS: tuple[str, ...] = ("small", "wide", "heavy", "offset", "constant")
TINY_SCALE: dict[str, float] = {"float64": 1e-150, "float32": 1e-30, "bfloat16": 1e-30, "float16": 1e-4}
OFFSET_MEAN: dict[str, float] = {"float64": 1e4, "float32": 100.0, "bfloat16": 20.0, "float16": 20.0}
LARGE_SCALE: dict[str, float] = {"float64": 1e150, "float32": 1e15, "bfloat16": 1e15, "float16": 16.0}
SMALLEST_NORMAL: dict[str, float] = {"float64": 2.2250738585072014e-308, "float32": 1.1754944e-38,
                                     "bfloat16": 1.1754944e-38, "float16": 6.1035156e-05}
HEAVY_DF = 3.0
HEAVY_CLIP = 100.0

# Storage dtype per task dtype (bfloat16 is stored as its bit pattern).
_STORAGE: dict[str, str] = {"bfloat16": "uint16"}


def storage_dtype(dtype: str) -> np.dtype:
    """The numpy dtype a buffer of task dtype ``dtype`` is stored as."""
    return np.dtype(_STORAGE.get(dtype, dtype))


def fresh_seed() -> int:
    """A new 64-bit evaluation seed from the operating system's entropy."""
    return int.from_bytes(os.urandom(8), "little")


def distribution_for(size_index: int, set_index: int) -> int:
    """Index into the rotation for input set ``set_index`` at problem size ``size_index``."""
    return size_index + set_index


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of ``values``, rounded to nearest even; NaN stays NaN."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():  # rounding could carry a NaN's payload into Inf: keep it a quiet NaN with its sign
        rounded[nan] = ((bits[nan] >> 16) & 0x8000).astype(np.uint16) | np.uint16(0x7FC0)
    return rounded


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact: bfloat16 is float32's upper half)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def as_float64(array: np.ndarray, dtype: str) -> np.ndarray:
    """A float buffer's values as float64 (decoding bfloat16 bit patterns)."""
    if dtype == "bfloat16":
        return bfloat16_bits_to_float32(array).astype(np.float64)
    return np.asarray(array, dtype=np.float64)


@dataclass(frozen=True)
class InputSet:
    """The host data of one input set: every ``in``/``inout`` buffer, in storage dtype."""

    seed: int
    size_index: int
    set_index: int
    distribution: str  # what ``init = "random"`` floats were drawn from in this set
    arrays: Mapping[str, np.ndarray]


def allowed(task: Task, names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` without the task's ``exclude_distributions`` (in rotation order)."""
    kept = tuple(n for n in names if n not in task.correctness.exclude_distributions)
    return kept or names[:1]


def make_inputs(task: Task, env: Mapping[str, int | float | str], seed: int, size_index: int,
                set_index: int, rotation: int | None = None) -> InputSet:
    """Draw input set ``set_index`` for problem size ``size_index`` (``env`` gives the shapes).

    ``rotation`` picks the distribution (default :func:`distribution_for`); the wall passes its
    running count of input sets.
    """
    rotation = distribution_for(size_index, set_index) if rotation is None else rotation
    floats, ints = allowed(task, FLOAT_DISTRIBUTIONS), allowed(task, INT_DISTRIBUTIONS)
    arrays = {}
    for position, arg in enumerate(task.args):
        if not arg.is_input:
            continue
        rng = np.random.default_rng(np.random.SeedSequence([seed, size_index, set_index, position]))
        arrays[arg.name] = generate(arg, task.shape(arg, env), env, rng, rotation, floats, ints)
    return InputSet(seed, size_index, set_index, floats[rotation % len(floats)], arrays)


def generate(arg: Argument, shape: tuple[int, ...], env: Mapping[str, int | float | str],
             rng: np.random.Generator, rotation: int = 0, floats: tuple[str, ...] = FLOAT_DISTRIBUTIONS,
             ints: tuple[str, ...] = INT_DISTRIBUTIONS) -> np.ndarray:
    """One input buffer of ``shape`` filled per the argument's initializer (in storage dtype)."""
    init = arg.init or Init("random")
    params = [p.eval(env) for p in init.params]
    size = int(np.prod(shape))
    row = shape[-1] if shape else 1
    if init.kind == "random":
        if arg.dtype in FLOAT_DTYPES:
            values = random_floats(floats[rotation % len(floats)], size, arg.dtype, rng, row)
        elif arg.dtype == "bool":
            values = rng.random(size) < 0.5
        else:
            values = random_ints(ints[rotation % len(ints)], size, arg.dtype, rng, row)
    elif init.kind == "normal":
        mean, std = params or (0.0, 1.0)
        values = rng.normal(float(mean), float(std), size)
    elif init.kind == "uniform":
        low, high = params or (-1.0, 1.0)
        values = rng.uniform(float(low), float(high), size)
    elif init.kind == "randint":
        values = rng.integers(int(params[0]), int(params[1]), size, dtype=np.int64)
    elif init.kind in ("zeros", "ones", "full"):
        value = {"zeros": 0, "ones": 1}.get(init.kind, params[0] if params else 0)
        values = np.full(size, value)
    elif init.kind == "arange":
        values = np.arange(size, dtype=np.int64)
    else:  # the loader rejects other kinds; this guards a hand-built Task
        raise ValueError(f"unknown initializer {init.kind!r} for argument {arg.name}")
    return to_storage(values, arg.dtype).reshape(shape)


def _rows(values: np.ndarray, size: int, row: int) -> np.ndarray:
    """One value per row of ``row`` elements, repeated along the row."""
    return np.repeat(values[:-(-size // max(row, 1))], max(row, 1))[:size]


def random_floats(name: str, size: int, dtype: str, rng: np.random.Generator, row: int = 1) -> np.ndarray:
    """``size`` floats from distribution ``name`` (float32, or float64 for float64 buffers); rows of ``row``."""
    work = np.float64 if dtype == "float64" else np.float32
    if name == "offset":
        return (rng.standard_normal(size) + OFFSET_MEAN[dtype]).astype(work)
    if name == "large":
        return (rng.standard_normal(size) * LARGE_SCALE[dtype]).astype(work)
    if name == "denormal":
        return (rng.uniform(-1.0, 1.0, size) * SMALLEST_NORMAL[dtype]).astype(work)
    if name == "constant":
        return _rows(rng.standard_normal(-(-size // max(row, 1))), size, row).astype(work)
    if name == "normal":
        return rng.standard_normal(size, dtype=work)
    if name == "uniform":
        return (rng.random(size, dtype=work) * 2 - 1).astype(work)
    if name == "heavy":
        t = rng.standard_t(HEAVY_DF, size) / np.sqrt(HEAVY_DF / (HEAVY_DF - 2))
        return np.clip(t, -HEAVY_CLIP, HEAVY_CLIP).astype(work)
    if name == "tiny":
        return (rng.standard_normal(size, dtype=np.float64) * TINY_SCALE[dtype]).astype(work)
    raise ValueError(f"unknown distribution {name!r}")


def random_ints(name: str, size: int, dtype: str, rng: np.random.Generator, row: int = 1) -> np.ndarray:
    """``size`` integers from distribution ``name``, clipped to ``dtype``'s range; rows of ``row``."""
    info = np.iinfo(np.dtype(dtype))
    if name == "offset":
        values = 1000 + rng.integers(-100, 100, size, dtype=np.int64)
    elif name == "constant":
        values = _rows(rng.integers(-100, 100, -(-size // max(row, 1)), dtype=np.int64), size, row)
    elif name == "small":
        values = rng.integers(-100, 100, size, dtype=np.int64)
    elif name == "wide":
        values = rng.integers(-(1 << 20), 1 << 20, size, dtype=np.int64)
    elif name == "heavy":
        values = np.round(np.clip(rng.standard_t(HEAVY_DF, size), -1e6, 1e6) * 100).astype(np.int64)
    else:
        raise ValueError(f"unknown distribution {name!r}")
    if info.min == 0:
        values = np.abs(values)
    return np.clip(values, max(info.min, -(1 << 62)), min(info.max, 1 << 62))


def to_storage(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` converted to the storage of ``dtype``; integers wrap like a C cast (``arange``)."""
    if dtype == "bfloat16":
        return float32_to_bfloat16_bits(np.asarray(values, dtype=np.float32))
    target = storage_dtype(dtype)
    values = np.asarray(values)
    if target.kind in "iu" and values.dtype.kind in "iu":
        return values.astype(np.int64).astype(target)  # two's-complement wrap, e.g. arange in int8
    if target.kind == "b":
        return values.astype(bool)
    return values.astype(target)


def scalar_args(task: Task, env: Mapping[str, int | float | str]) -> dict[str, np.generic]:
    """Every by-value argument as a numpy scalar of its dtype (what the kernel's C type expects)."""
    scalars = {}
    for arg in task.args:
        if arg.is_buffer:
            continue
        value = arg.value.eval(env) if arg.value is not None else 0
        if arg.dtype == "bfloat16":
            scalars[arg.name] = np.uint16(float32_to_bfloat16_bits(np.array([value], np.float32))[0])
        elif arg.dtype in FLOAT_DTYPES:
            scalars[arg.name] = np.dtype(arg.dtype).type(float(value))
        elif arg.dtype == "bool":
            scalars[arg.name] = np.bool_(bool(value))
        else:
            scalars[arg.name] = to_storage(np.array([int(value)]), arg.dtype)[0]
    return scalars
