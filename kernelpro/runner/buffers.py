"""Kernel buffers with poisoned outputs and canary guard regions, for numpy or CuPy alike.

**Poison.** Before every launch each ``out`` buffer is filled with a recognizable pattern
(:data:`POISON_BITS`): a quiet NaN with a payload for floats, bytes ``0xA5`` for integers and bool.
An element the kernel never writes still holds it afterwards, so it cannot match the reference
(``compare`` says "never written" when the bits are the poison's).

**Canaries.** Each buffer is allocated with ``guard_bytes`` extra bytes on each side (rounded so the
interior stays 256-byte aligned, which vector loads need) filled with seeded random bytes; the
kernel gets the interior pointer. Bytes that differ afterwards are out-of-bounds writes. With
``guard_bytes = 0`` the allocation is exactly the buffer (what compute-sanitizer needs to see an
out-of-bounds access).

The classes take the array module (``numpy`` or ``cupy``) as ``xp``, so the same code serves the
GPU and the CPU tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernelpro.runner.inputs import InputSet, storage_dtype
from kernelpro.task import Task

ALIGN = 256
# Poison bit patterns by task dtype (as unsigned integers of the element's width).
POISON_BITS: dict[str, int] = {
    "float16": 0x7EA5,
    "bfloat16": 0x7FE5,
    "float32": 0x7FE5A5A5,
    "float64": 0x7FFCA5A5A5A5A5A5,
}
_INT_POISON_BYTE = 0xA5


def poison_bits(dtype: str) -> int:
    """The poison pattern of ``dtype`` as an unsigned integer of its width."""
    if dtype in POISON_BITS:
        return POISON_BITS[dtype]
    width = storage_dtype(dtype).itemsize
    return int.from_bytes(bytes([_INT_POISON_BYTE]) * width, "little")


def unsigned_view(array: Any) -> Any:
    """``array`` reinterpreted as unsigned integers of the same width (for bitwise work)."""
    return array.view(np.dtype(f"uint{array.dtype.itemsize * 8}"))


def poison(array: Any, dtype: str) -> None:
    """Fill ``array`` (numpy or CuPy, storage dtype of task dtype ``dtype``) with the poison."""
    view = unsigned_view(array)
    view.fill(view.dtype.type(poison_bits(dtype)))


def is_poison(array: np.ndarray, dtype: str) -> np.ndarray:
    """Elementwise: does the element still hold the poison pattern?"""
    view = unsigned_view(np.asarray(array))
    return view == view.dtype.type(poison_bits(dtype))


def canary_pattern(size: int, seed: int, salt: int) -> np.ndarray:
    """``size`` random guard bytes for one buffer, reproducible from ``seed`` and ``salt``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA7A2, salt]))
    return rng.integers(0, 256, size, dtype=np.uint8)


@dataclass(frozen=True)
class GuardDamage:
    """Guard bytes a kernel changed around one buffer."""

    side: str  # "before" | "after"
    count: int  # bytes changed
    offset: int  # the changed byte nearest the buffer, from its start (negative before it, >= nbytes after)


def _to_host(array: Any) -> np.ndarray:
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.array(array)


class GuardedBuffer:
    """One buffer of ``shape`` and storage dtype ``dtype`` inside a larger allocation with guards."""

    def __init__(self, xp: ModuleType, shape: tuple[int, ...], dtype: np.dtype, guard_bytes: int,
                 pattern_seed: int = 0, salt: int = 0) -> None:
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        guard = -(-guard_bytes // ALIGN) * ALIGN
        self.front = guard
        self.rear = guard + (-self.nbytes % ALIGN) if guard else 0
        self.raw = xp.empty(self.front + self.nbytes + self.rear, dtype=xp.uint8)
        self.array = self.raw[self.front:self.front + self.nbytes].view(self.dtype).reshape(self.shape)
        self.pattern = canary_pattern(self.front + self.rear, pattern_seed, salt)
        self.fill_guards()

    def fill_guards(self) -> None:
        """(Re)write the guard pattern on both sides."""
        if self.front:
            self.raw[:self.front] = self.xp.asarray(self.pattern[:self.front])
        if self.rear:
            self.raw[self.front + self.nbytes:] = self.xp.asarray(self.pattern[self.front:])

    def damage(self) -> list[GuardDamage]:
        """The guard regions that no longer hold their pattern."""
        found = []
        if self.front:
            changed = np.flatnonzero(_to_host(self.raw[:self.front]) != self.pattern[:self.front])
            if changed.size:
                found.append(GuardDamage("before", int(changed.size), int(changed[-1]) - self.front))
        if self.rear:
            changed = np.flatnonzero(_to_host(self.raw[self.front + self.nbytes:]) != self.pattern[self.front:])
            if changed.size:
                found.append(GuardDamage("after", int(changed.size), self.nbytes + int(changed[0])))
        return found


class DeviceBuffers:
    """Every buffer argument of ``task`` for one launch: inputs uploaded, outputs poisoned, guards set.

    ``shapes`` maps argument names to their shapes at the launch's problem size; ``to_host``
    copies a device array into a new numpy array.
    """

    def __init__(self, xp: ModuleType, task: Task, shapes: Mapping[str, tuple[int, ...]], inputs: InputSet,
                 guard_bytes: int, to_host: Callable[[Any], np.ndarray] = _to_host) -> None:
        self.task = task
        self.to_host = to_host
        self.buffers: dict[str, GuardedBuffer] = {}
        for position, arg in enumerate(task.args):
            if arg.is_buffer:
                self.buffers[arg.name] = GuardedBuffer(xp, shapes[arg.name], storage_dtype(arg.dtype), guard_bytes,
                                                       inputs.seed, position)
        self.reset(inputs)

    def reset(self, inputs: InputSet) -> None:
        """Upload the inputs (``in`` and ``inout``), poison the ``out`` and ``scratch`` buffers, rewrite the
        guards."""
        for arg in self.task.buffers:
            buffer = self.buffers[arg.name]
            if arg.is_input:
                _upload(buffer.array, inputs.arrays[arg.name])
            else:
                poison(buffer.array, arg.dtype)
            buffer.fill_guards()

    def scrub(self) -> None:
        """Poison the ``out``, ``inout`` and ``scratch`` buffers (before freeing them)."""
        for arg in self.task.buffers:
            if arg.is_output or arg.is_scratch:
                poison(self.buffers[arg.name].array, arg.dtype)

    def kernel_args(self, scalars: Mapping[str, Any]) -> tuple[Any, ...]:
        """The kernel's arguments in signature order: interior arrays and typed scalars."""
        return tuple(self.buffers[a.name].array if a.is_buffer else scalars[a.name] for a in self.task.args)

    def outputs(self) -> dict[str, np.ndarray]:
        """Host copies of the ``out`` and ``inout`` buffers."""
        return {a.name: self.to_host(self.buffers[a.name].array) for a in self.task.outputs}

    def damaged_guards(self) -> dict[str, list[GuardDamage]]:
        """Per buffer name, the guard regions that changed (only damaged buffers are listed)."""
        found = {name: buffer.damage() for name, buffer in self.buffers.items()}
        return {name: damage for name, damage in found.items() if damage}

    def changed_inputs(self, inputs: InputSet) -> dict[str, tuple[int, ...]]:
        """Per ``in`` buffer that no longer holds its uploaded bits, the first changed index."""
        changed = {}
        for arg in self.task.buffers:
            if arg.intent == "in":
                index = first_difference(self.to_host(self.buffers[arg.name].array), inputs.arrays[arg.name])
                if index is not None:
                    changed[arg.name] = index
        return changed

    def nbytes(self) -> int:
        """Bytes of all buffers, guards excluded (the working set one launch touches at most)."""
        return sum(b.nbytes for b in self.buffers.values())


def set_bytes(task: Task, shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Bytes of one set of ``task``'s buffers at ``shapes``, guards excluded (:meth:`DeviceBuffers.nbytes` without
    allocating it)."""
    return sum(math.prod(shapes[arg.name]) * storage_dtype(arg.dtype).itemsize for arg in task.buffers)


def _upload(device: Any, host: np.ndarray) -> None:
    if isinstance(device, np.ndarray):
        device[...] = host
    else:  # cupy.ndarray.set copies host data into an existing device array
        device.set(np.ascontiguousarray(host, dtype=device.dtype))


def first_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None:
    """The first index where ``a`` and ``b`` differ bit for bit (NaN payloads included), else None."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return ()
    differs = unsigned_view(np.ascontiguousarray(a)) != unsigned_view(np.ascontiguousarray(b))
    flat = np.flatnonzero(differs)
    if flat.size == 0:
        return None
    return tuple(int(i) for i in np.unravel_index(int(flat[0]), a.shape))
