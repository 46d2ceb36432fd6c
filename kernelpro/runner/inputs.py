"""Every kernel argument as numpy data: seeded input buffers and typed scalars.

**Seeds.** An evaluation has one 64-bit seed (:func:`fresh_seed`, from ``os.urandom``, unless the
caller fixes it; the verdict records it). Each input buffer of input set ``j`` at problem size
``i`` draws from ``numpy.random.default_rng(SeedSequence([seed, i, j, k]))`` (``k`` = the
argument's position), so any set can be regenerated from the verdict alone.

**Distributions.** ``init = "random"`` (the default for inputs) rotates over
:data:`FLOAT_DISTRIBUTIONS` from one input set to the next, so a kernel tuned to one distribution
meets others: ``normal`` N(0, 1); ``uniform`` U(-1, 1); ``heavy`` Student-t with 3 degrees of
freedom scaled to unit variance and clipped to ±100 (rare large values, same typical scale, so
the task's absolute tolerance still fits a legitimate reordered sum); ``tiny`` N(0, 1) times
:data:`TINY_SCALE` (1e-30 for float32, far below any atol: only the relative part of the
tolerance can judge such outputs). All are symmetric, so every set has negative values.
Integer ``random`` rotates over :data:`INT_DISTRIBUTIONS` (``small`` [-100, 100), ``wide``
[-2^20, 2^20), ``heavy`` a rounded t-distribution times 100), clipped to the dtype's range
(unsigned types draw the non-negative half). Other initializers are what they say.

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

FLOAT_DISTRIBUTIONS: tuple[str, ...] = ("normal", "uniform", "heavy", "tiny")
INT_DISTRIBUTIONS: tuple[str, ...] = ("small", "wide", "heavy")
TINY_SCALE: dict[str, float] = {"float64": 1e-150, "float32": 1e-30, "bfloat16": 1e-30, "float16": 1e-4}
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


def make_inputs(task: Task, env: Mapping[str, int | float | str], seed: int, size_index: int,
                set_index: int) -> InputSet:
    """Draw input set ``set_index`` for problem size ``size_index`` (``env`` gives the shapes)."""
    rotation = distribution_for(size_index, set_index)
    arrays = {}
    for position, arg in enumerate(task.args):
        if not arg.is_input:
            continue
        rng = np.random.default_rng(np.random.SeedSequence([seed, size_index, set_index, position]))
        arrays[arg.name] = generate(arg, task.shape(arg, env), env, rng, rotation)
    return InputSet(seed, size_index, set_index, FLOAT_DISTRIBUTIONS[rotation % len(FLOAT_DISTRIBUTIONS)], arrays)


def generate(arg: Argument, shape: tuple[int, ...], env: Mapping[str, int | float | str],
             rng: np.random.Generator, rotation: int = 0) -> np.ndarray:
    """One input buffer of ``shape`` filled per the argument's initializer (in storage dtype)."""
    init = arg.init or Init("random")
    params = [p.eval(env) for p in init.params]
    size = int(np.prod(shape))
    if init.kind == "random":
        if arg.dtype in FLOAT_DTYPES:
            name = FLOAT_DISTRIBUTIONS[rotation % len(FLOAT_DISTRIBUTIONS)]
            values = random_floats(name, size, arg.dtype, rng)
        elif arg.dtype == "bool":
            values = rng.random(size) < 0.5
        else:
            values = random_ints(INT_DISTRIBUTIONS[rotation % len(INT_DISTRIBUTIONS)], size, arg.dtype, rng)
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


def random_floats(name: str, size: int, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """``size`` floats from distribution ``name`` (float32, or float64 for float64 buffers)."""
    work = np.float64 if dtype == "float64" else np.float32
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


def random_ints(name: str, size: int, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """``size`` integers from distribution ``name``, clipped to ``dtype``'s range."""
    info = np.iinfo(np.dtype(dtype))
    if name == "small":
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
