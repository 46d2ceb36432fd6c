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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernelpro.runner.buffers import DeviceBuffers, GuardDamage, poison, poison_bits, unsigned_view
from kernelpro.runner.compare import GLOBAL_FLOOR_ULPS, ULP
from kernelpro.runner.inputs import InputSet, as_float64
from kernelpro.task import FLOAT_DTYPES, Task

_STATS = 5  # per output: poisoned, wrong, ||diff||, ||expected||, changed-input elements


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

    @property
    def worked(self) -> int:
        return self.launches - self.failed_count


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
        self.pristine = [{name: xp.asarray(array) for name, array in s.arrays.items()} for s in self.input_sets]
        self.expected = [{a.name: self._device_expected(e[a.name], a.dtype) for a in task.outputs} for e in expected]
        self.sets: list[DeviceBuffers] = []
        self.choice: list[int] = []
        self.active = 0
        self.samples = 0
        self.launches = 0
        self.failed: list[LaunchOutcome] = []
        self.failed_count = 0
        self.keep_failures = keep_failures
        self.launches_per_sample = 1

    def _device_expected(self, host: np.ndarray, dtype: str) -> Any:
        return self.xp.asarray(as_float64(host, dtype) if dtype in FLOAT_DTYPES else host)

    # --- what the timing loop calls --------------------------------------------------------------
    def arg_sets(self, count: int, launches_per_sample: int) -> list[tuple[Any, ...]]:
        """``count`` argument tuples on distinct buffer sets (made on first use), for ``launches_per_sample``."""
        while len(self.sets) < count:
            self.sets.append(DeviceBuffers(self.xp, self.task, self.shapes, self.input_sets[0], self.guard_bytes,
                                           self.to_host))
            self.choice.append(0)
        self.active = count
        self.launches_per_sample = launches_per_sample
        return [s.kernel_args(self.scalars) for s in self.sets[:count]]

    def before_sample(self) -> None:
        """Reload every active set's inputs from a randomly chosen pristine set and poison its outputs."""
        for k in range(self.active):
            j = int(self.rng.integers(len(self.input_sets)))
            self.choice[k] = j
            buffers = self.sets[k]
            for arg in self.task.buffers:
                array = buffers.buffers[arg.name].array
                if arg.is_input:
                    array[...] = self.pristine[j][arg.name]
                else:
                    poison(array, arg.dtype)

    def after_sample(self) -> None:
        """Check every active set on the device; record the launches that did not do their work."""
        xp = self.xp
        rows = [self._set_stats(k) for k in range(self.active)]
        stats = np.asarray(self.to_host(xp.stack([xp.stack(row) for row in rows])), dtype=np.float64)
        # a set is used by launches_per_sample / active launches (rounded) per sample; its state shows the last one
        uses = [len(range(k, self.launches_per_sample, self.active)) for k in range(self.active)]
        for k in range(self.active):
            self.launches += uses[k]
            outcome = self._outcome(k, stats[k])
            if not outcome.ok:
                self.failed_count += uses[k]
                if len(self.failed) < self.keep_failures:
                    self.failed.append(outcome)
        self.samples += 1

    # --- after timing ------------------------------------------------------------------------------
    def report(self) -> TimedReport:
        return TimedReport(self.launches, tuple(self.failed), self.failed_count, self.samples)

    def damaged_guards(self) -> list[tuple[int, str, GuardDamage]]:
        """``(set, buffer, damage)`` for every guard region any timed launch wrote."""
        return [(k, name, d) for k, s in enumerate(self.sets) for name, damage in s.damaged_guards().items()
                for d in damage]

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.sets)

    # --- internals ---------------------------------------------------------------------------------
    def _set_stats(self, k: int) -> list[Any]:
        xp, buffers, j = self.xp, self.sets[k], self.choice[k]
        row: list[Any] = []
        for arg in self.task.outputs:
            row += _output_stats(xp, buffers.buffers[arg.name].array, self.expected[j][arg.name], arg.dtype,
                                 self.task.tolerance_for(arg))
        for arg in self.task.buffers:
            if arg.intent == "in":
                got, want = unsigned_view(buffers.buffers[arg.name].array), unsigned_view(self.pristine[j][arg.name])
                row.append(_count(xp, got != want))
        return row

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
        return LaunchOutcome(self.samples, k, self.choice[k], unwritten, wrong, l2, changed, arg_at_fault)


class UncheckedTimedBuffers(TimedBuffers):
    """The same buffer sets without the per-sample poison, reload and check: the v1 cost, for benchmarks only."""

    def before_sample(self) -> None:
        pass

    def after_sample(self) -> None:
        self.samples += 1


def _output_stats(xp: ModuleType, got: Any, expected: Any, dtype: str, tol: Any) -> list[Any]:
    """``[poisoned, wrong, ||diff||, ||expected||]`` of one output as float64 device scalars."""
    f64 = xp.float64
    bits = unsigned_view(got)
    poisoned = _count(xp, bits == bits.dtype.type(poison_bits(dtype)))
    if dtype not in FLOAT_DTYPES:
        wrong = _count(xp, bits != unsigned_view(expected))
        zero = xp.zeros((), dtype=f64)
        return [poisoned, wrong, zero, zero]
    g = (bits.astype(xp.uint32) << 16).view(xp.float32).astype(f64) if dtype == "bfloat16" else got.astype(f64)
    e = expected
    with np.errstate(invalid="ignore", over="ignore"):  # numpy only; CuPy does not warn
        return _float_stats(xp, g, e, tol, poisoned)


def _float_stats(xp: ModuleType, g: Any, e: Any, tol: Any, poisoned: Any) -> list[Any]:
    f64 = xp.float64
    special = (xp.isnan(e) != xp.isnan(g)) | (xp.isposinf(e) != xp.isposinf(g)) | (xp.isneginf(e) != xp.isneginf(g))
    finite = xp.isfinite(e) & xp.isfinite(g)
    diff = xp.where(finite, xp.abs(g - e), 0.0)
    magnitude = xp.where(finite, xp.abs(e), 0.0)
    wrong = _count(xp, special | (finite & (diff > tol.atol + tol.rtol * magnitude)))
    scale = xp.maximum(xp.maximum(diff.max(), magnitude.max()), 1e-300) if diff.size else xp.ones((), dtype=f64)
    diff_norm = xp.sqrt(xp.sum((diff / scale) ** 2))
    exp_norm = xp.sqrt(xp.sum((magnitude / scale) ** 2))
    return [poisoned, wrong, diff_norm, exp_norm]


def _count(xp: ModuleType, mask: Any) -> Any:
    return xp.asarray(xp.count_nonzero(mask), dtype=xp.float64)
