"""Verify every timed launch: its own buffer set, poisoned and reloaded before each sample, checked after.

A timed sample is ``k`` launches; launch ``i`` of a sample uses buffer set ``i % c`` (``c = k``
except in warm mode when ``k`` sets would not fit in L2, see :mod:`kernelpro.runner.timing`).
Around every sample, always *outside* the region the CUDA events bracket:

* **before** (stream work queued ahead of the L2 flush and the start event): each set's ``in`` and
  ``inout`` buffers are reloaded, device to device, from one of several pristine input sets chosen
  at random per set and per sample, and its ``out`` buffers are filled with the poison. A launch
  therefore always starts from an unwritten output, and the contents behind an address change
  from one sample to the next;
* **after** (once the end event has completed): every set's outputs are compared on the device
  with the reference's outputs for the input set it was given (the elementwise, NaN/Inf and
  relative-L2 rules of :mod:`kernelpro.runner.compare`, one float64 reduction per output), its
  ``in`` buffers with their pristine bits; only a few numbers per set come back to the host.

A launch that left its output unwritten or wrong, or changed an input, is counted, so a candidate
that works only sometimes fails with "did its work in 3 of 40 timed launches". Guards are checked
once, after timing: a write into a guard stays there. The code uses only the array module
(``numpy`` in tests, CuPy on the GPU), whose operations run on the backend's current stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernelpro.runner.buffers import ALIGN, GuardDamage, canary_pattern, poison_bits, unsigned_view
from kernelpro.runner.compare import GLOBAL_FLOOR_ULPS, ULP
from kernelpro.runner.inputs import InputSet, storage_dtype
from kernelpro.task import FLOAT_DTYPES, Task

CHUNK_ELEMENTS = 1 << 24  # rows checked at once: ~128 MiB per float64 temporary


@dataclass(frozen=True)
class LaunchOutcome:
    """What one timed launch left behind, read after its sample."""

    sample: int  # index of the sample (warm-up and probe samples included)
    position: int  # buffer set, i.e. launch index within the sample modulo the set count
    input_set: int  # which pristine input set it was given
    unwritten: int  # output elements still holding the poison
    wrong: int  # output elements outside the tolerance (or NaN/Inf where the reference is finite)
    l2_error: float | None  # relative L2 error when it exceeds the bound, else None
    inputs_changed: int  # ``in`` elements whose bits changed
    arg: str  # the first output (or input) at fault, "" when the launch did its work

    @property
    def ok(self) -> bool:
        return not (self.unwritten or self.wrong or self.inputs_changed or self.l2_error is not None)

    def describe(self) -> str:
        """Why the launch failed, in a few words."""
        if self.inputs_changed:
            return f"changed {self.inputs_changed} element(s) of input {self.arg}"
        if self.unwritten:
            return f"left {self.unwritten} element(s) of {self.arg} unwritten"
        if self.wrong:
            return f"wrote {self.wrong} wrong element(s) of {self.arg}"
        return f"wrote {self.arg} with relative L2 error {self.l2_error:.3g}"


@dataclass(frozen=True)
class TimedReport:
    """Every timed launch's outcome, summed up."""

    launches: int  # launches verified
    failed: tuple[LaunchOutcome, ...]  # the first few failing launches
    failed_count: int
    samples: int
    unjudged: int = 0  # launches on an inout set used twice in a sample (warm rotation): inputs checked only

    @property
    def worked(self) -> int:
        return self.launches - self.failed_count


class _Bank:
    """One buffer argument across ``count`` buffer sets: a ``(count, row)`` array, one set per row.

    Each row is ``front`` guard elements, the buffer, ``rear`` guard elements (256-byte aligned, as
    :class:`~kernelpro.runner.buffers.GuardedBuffer`), so every set's interior is aligned and the
    per-sample work is one array operation over all sets.
    """

    def __init__(self, xp: ModuleType, count: int, shape: tuple[int, ...], dtype: np.dtype, guard_bytes: int,
                 seed: int, salt: int) -> None:
        self.xp, self.shape, self.dtype = xp, tuple(shape), np.dtype(dtype)
        self.n = math.prod(self.shape)
        nbytes = self.n * self.dtype.itemsize
        front = -(-guard_bytes // ALIGN) * ALIGN
        rear = front + (-nbytes % ALIGN) if front else 0
        self.nbytes = nbytes
        self.front, self.rear = front // self.dtype.itemsize, rear // self.dtype.itemsize
        self.rows = xp.empty((count, self.front + self.n + self.rear), dtype=self.dtype)
        pattern = canary_pattern(front + rear, seed, salt)
        self.front_pattern = pattern[:front].view(self.dtype)
        self.rear_pattern = pattern[front:].view(self.dtype)
        if self.front:
            self.rows[:, :self.front] = xp.asarray(self.front_pattern)
        if self.rear:
            self.rows[:, self.front + self.n:] = xp.asarray(self.rear_pattern)

    @property
    def interiors(self) -> Any:
        """``(count, n)``: every set's buffer, flattened."""
        return self.rows[:, self.front:self.front + self.n]

    def interior(self, k: int) -> Any:
        return self.rows[k, self.front:self.front + self.n].reshape(self.shape)

    def damage(self, to_host: Callable[[Any], np.ndarray]) -> list[tuple[int, GuardDamage]]:
        """``(set, damage)`` for every guard region that no longer holds its pattern."""
        found = []
        width = self.dtype.itemsize
        for side, part, pattern in (("before", slice(0, self.front), self.front_pattern),
                                    ("after", slice(self.front + self.n, None), self.rear_pattern)):
            if not pattern.size:
                continue
            guards = self.xp.ascontiguousarray(self.rows[:, part])
            now = np.ascontiguousarray(to_host(guards)).view(np.uint8).reshape(len(self.rows), -1)
            changed = now != pattern.view(np.uint8)[None, :]
            for k in np.flatnonzero(changed.any(axis=1)):
                where = np.flatnonzero(changed[k])
                offset = int(where[-1]) - self.front * width if side == "before" else self.nbytes + int(where[0])
                found.append((int(k), GuardDamage(side, int(where.size), offset)))
        return found


class TimedBuffers:
    """The buffer sets timed launches run on, with the per-sample poison, reload and device check.

    ``input_sets[j]`` are the pristine inputs and ``expected[j]`` the reference's host outputs for
    them; ``rng`` picks an input set per buffer set per sample.
    """

    def __init__(self, xp: ModuleType, task: Task, shapes: Mapping[str, tuple[int, ...]],
                 input_sets: Sequence[InputSet], expected: Sequence[Mapping[str, np.ndarray]],
                 scalars: Mapping[str, Any], guard_bytes: int, rng: np.random.Generator,
                 to_host: Callable[[Any], np.ndarray], keep_failures: int = 5) -> None:
        self.xp, self.task, self.shapes, self.scalars = xp, task, dict(shapes), dict(scalars)
        self.input_sets, self.guard_bytes, self.rng, self.to_host = list(input_sets), guard_bytes, rng, to_host
        self.pristine = {a.name: xp.asarray(np.stack([s.arrays[a.name].reshape(-1) for s in self.input_sets]))
                         for a in task.buffers if a.is_input}
        self.expected = {a.name: xp.asarray(np.stack([np.asarray(e[a.name]).reshape(-1) for e in expected]))
                         for a in task.outputs}  # in storage dtype; decoded to float64 a chunk at a time
        self.groups: list[dict[str, _Bank]] = []  # one group of banks per arg_sets call; the last is active
        self.choice = np.zeros(0, dtype=np.int64)
        self.active = 0
        self.samples = 0
        self.launches = 0
        self.failed: list[LaunchOutcome] = []
        self.failed_count = 0
        self.unjudged = 0  # launches whose outputs could not be judged (see after_sample)
        self.keep_failures = keep_failures
        self.launches_per_sample = 1

    # --- what the timing loop calls --------------------------------------------------------------
    def arg_sets(self, count: int, launches_per_sample: int) -> list[tuple[Any, ...]]:
        """``count`` argument tuples on distinct buffer sets, for ``launches_per_sample`` launches a sample."""
        seed = self.input_sets[0].seed
        group = {arg.name: _Bank(self.xp, count, self.shapes[arg.name], storage_dtype(arg.dtype), self.guard_bytes,
                                 seed, position)
                 for position, arg in enumerate(self.task.args) if arg.is_buffer}
        self.groups.append(group)
        self.active, self.launches_per_sample = count, launches_per_sample
        self.choice = np.zeros(count, dtype=np.int64)
        return [tuple(group[a.name].interior(k) if a.is_buffer else self.scalars[a.name] for a in self.task.args)
                for k in range(count)]

    def before_sample(self) -> None:
        """Reload every active set's inputs from a randomly chosen pristine set and poison its outputs."""
        self.choice = self.rng.integers(len(self.input_sets), size=self.active)
        group = self.groups[-1]
        for arg in self.task.buffers:
            bank = group[arg.name]
            if arg.is_input:
                for part in _chunks(self.active, bank.n):
                    bank.interiors[part] = self.pristine[arg.name][self.xp.asarray(self.choice[part])]
            else:
                view = unsigned_view(bank.rows)[:, bank.front:bank.front + bank.n]
                view.fill(view.dtype.type(poison_bits(arg.dtype)))

    def after_sample(self) -> None:
        """Check every active set on the device; record the launches that did not do their work."""
        xp, group = self.xp, self.groups[-1]
        widest = max(group[a.name].n for a in self.task.buffers)
        blocks = []
        for part in _chunks(self.active, widest):  # bounded temporaries: a float64 copy of a chunk at a time
            rows = xp.asarray(self.choice[part])
            columns = []
            for arg in self.task.outputs:
                columns += _output_stats(xp, group[arg.name].interiors[part], self.expected[arg.name][rows],
                                         arg.dtype, self.task.tolerance_for(arg))
            for arg in self.task.buffers:
                if arg.intent == "in":
                    got = unsigned_view(group[arg.name].interiors[part])
                    columns.append(_count(xp, got != unsigned_view(self.pristine[arg.name][rows])))
            blocks.append(xp.stack(columns, axis=1))
        stats = np.asarray(self.to_host(xp.concatenate(blocks)), dtype=np.float64)
        # set k is used by the launches k, k + active, ... of a sample; its state shows the last of them
        uses = np.array([len(range(k, self.launches_per_sample, self.active)) for k in range(self.active)])
        # an inout buffer launched on twice in a sample (warm rotation) holds two applications: not judged
        judged = (uses == 1) | (not any(a.intent == "inout" for a in self.task.buffers))
        self.launches += int(uses[judged].sum())
        self.unjudged += int(uses[~judged].sum())
        outputs = len(self.task.outputs)
        stats[~judged, :4 * outputs] = 0.0
        for k in np.flatnonzero(self._suspect(stats)):
            outcome = self._outcome(int(k), stats[k])
            if not outcome.ok:
                self.failed_count += int(uses[k])
                if len(self.failed) < self.keep_failures:
                    self.failed.append(outcome)
        self.samples += 1

    def _suspect(self, stats: np.ndarray) -> np.ndarray:
        """Rows with any unwritten, wrong or changed element, or a relative L2 error above the bound."""
        outputs = len(self.task.outputs)
        suspect = (stats[:, 4 * outputs:] > 0).any(axis=1)
        for n, arg in enumerate(self.task.outputs):
            bound = max(self.task.tolerance_for(arg).rtol, GLOBAL_FLOOR_ULPS * ULP.get(arg.dtype, 0.0))
            poisoned, bad, diff_norm, exp_norm = stats[:, 4 * n:4 * n + 4].T
            suspect |= (poisoned > 0) | (bad > 0) | ((exp_norm > 0) & (diff_norm > bound * exp_norm))
        return suspect

    # --- after timing ------------------------------------------------------------------------------
    @property
    def set_count(self) -> int:
        return self.active

    def report(self) -> TimedReport:
        return TimedReport(self.launches, tuple(self.failed), self.failed_count, self.samples, self.unjudged)

    def damaged_guards(self) -> list[tuple[int, str, GuardDamage, int]]:
        """``(set, buffer, damage, buffer bytes)`` for every guard region any timed launch wrote."""
        return [(k, name, d, bank.nbytes) for group in self.groups for name, bank in group.items()
                for k, d in bank.damage(self.to_host)]

    # --- internals ---------------------------------------------------------------------------------
    def _outcome(self, k: int, stats: np.ndarray) -> LaunchOutcome:
        unwritten = wrong = changed = 0
        l2: float | None = None
        arg_at_fault = ""
        for n, arg in enumerate(self.task.outputs):
            poisoned, bad, diff_norm, exp_norm = stats[4 * n:4 * n + 4]
            bound = max(self.task.tolerance_for(arg).rtol, GLOBAL_FLOOR_ULPS * ULP.get(arg.dtype, 0.0))
            rel = diff_norm / exp_norm if exp_norm > 0 else 0.0
            if (poisoned or bad or rel > bound) and not arg_at_fault:
                arg_at_fault = arg.name
                unwritten, wrong, l2 = int(poisoned), int(bad), (float(rel) if rel > bound else None)
        inputs = [a for a in self.task.buffers if a.intent == "in"]
        for n, arg in enumerate(inputs):
            count = int(stats[4 * len(self.task.outputs) + n])
            if count and not changed:
                changed, arg_at_fault = count, arg.name
        return LaunchOutcome(self.samples, k, int(self.choice[k]), unwritten, wrong, l2, changed, arg_at_fault)


class UncheckedTimedBuffers(TimedBuffers):
    """The same buffer sets without the per-sample poison, reload and check: the v1 cost, for benchmarks only.

    Inputs are uploaded once per group of sets (as v1 did), outputs never poisoned again.
    """

    _loaded: object = None

    def before_sample(self) -> None:
        if self._loaded is not self.groups[-1]:
            super().before_sample()
            self._loaded = self.groups[-1]

    def after_sample(self) -> None:
        self.samples += 1


def _chunks(rows: int, width: int) -> list[slice]:
    """Row slices of at most :data:`CHUNK_ELEMENTS` elements each (at least one row)."""
    step = max(1, CHUNK_ELEMENTS // max(width, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _output_stats(xp: ModuleType, got: Any, expected: Any, dtype: str, tol: Any) -> list[Any]:
    """Per row (set) of ``got``: ``[poisoned, wrong, ||diff||, ||expected||]`` as float64 device vectors."""
    bits = unsigned_view(got)
    poisoned = _count(xp, bits == bits.dtype.type(poison_bits(dtype)))
    if dtype not in FLOAT_DTYPES:
        wrong = _count(xp, bits != unsigned_view(expected))
        zero = xp.zeros(len(got), dtype=xp.float64)
        return [poisoned, wrong, zero, zero]
    with np.errstate(invalid="ignore", over="ignore"):  # numpy only; CuPy does not warn
        return _float_stats(xp, _float64(xp, got, dtype), _float64(xp, expected, dtype), tol, poisoned)


def _float64(xp: ModuleType, values: Any, dtype: str) -> Any:
    """Float buffer values (storage dtype, bfloat16 as bits) as float64, on the device."""
    if dtype == "bfloat16":
        return (unsigned_view(values).astype(xp.uint32) << 16).view(xp.float32).astype(xp.float64)
    return values.astype(xp.float64)


def _float_stats(xp: ModuleType, g: Any, e: Any, tol: Any, poisoned: Any) -> list[Any]:
    special = (xp.isnan(e) != xp.isnan(g)) | (xp.isposinf(e) != xp.isposinf(g)) | (xp.isneginf(e) != xp.isneginf(g))
    finite = xp.isfinite(e) & xp.isfinite(g)
    diff = xp.where(finite, xp.abs(g - e), 0.0)
    magnitude = xp.where(finite, xp.abs(e), 0.0)
    wrong = _count(xp, special | (finite & (diff > tol.atol + tol.rtol * magnitude)))
    scale = xp.maximum(xp.maximum(diff.max(axis=1), magnitude.max(axis=1)), 1e-300)[:, None]
    diff_norm = xp.sqrt(xp.sum((diff / scale) ** 2, axis=1))
    exp_norm = xp.sqrt(xp.sum((magnitude / scale) ** 2, axis=1))
    return [poisoned, wrong, diff_norm, exp_norm]


def _count(xp: ModuleType, mask: Any) -> Any:
    """Per row, the true elements of a 2-D mask, as float64."""
    return xp.count_nonzero(mask, axis=1).astype(xp.float64)
