"""The correctness wall: run a candidate against the reference until one check fails or all pass.

The threat model behind each check is ``docs/correctness.md``; the check names come from the
registry in :mod:`kernelpro.runner.checks`.

For every problem size (the benchmark size first, then ``[correctness] sizes``, then one odd size
drawn from the seed, :mod:`kernelpro.runner.drawn_size`) and several input sets each
(``input_sets`` at the benchmark size, ``extra_size_sets`` at the others; fresh data per set,
distributions rotating over all the sets of the evaluation, see :mod:`kernelpro.runner.inputs`):

1. the reference (default knobs) and the candidate (its knobs) each run once on freshly allocated
   buffers: inputs uploaded, outputs poisoned, canary guards (64 KiB) around every buffer;
2. after each launch: guards intact (``canary``), ``in`` buffers unchanged (``input-modified``);
   the reference failing either is a task problem (``reference``);
3. every output matches the reference (``output``, rules in :mod:`kernelpro.runner.compare`);
4. on the first set of each size the candidate runs again on the same inputs: the outputs must
   still match (else ``stateful``: it keeps state across launches) and, in a deterministic task,
   be bit-identical to the first run (``determinism``).

Then, if timing is on: the candidate is timed at the benchmark size (:mod:`kernelpro.runner.timing`)
with every timed launch on its own buffer set, poisoned and reloaded before each sample and checked
on the device after it (:mod:`kernelpro.runner.timed_check`: ``timed-output``, ``input-modified``,
then ``canary`` on every set); the timing is held against the device's peaks (``roofline``: DRAM
when cold, L2 when warm, FLOP/s), and one more input set, never seen before, is drawn and checked
after the timed launches (``stateful`` again).

The first failing step stops the wall. A kernel fault (illegal address...) also marks the result
``context_lost``: the worker must not run more CUDA work in that process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kernelpro.device_values import values_for_device
from kernelpro.expr import ExprError
from kernelpro.runner import bounds
from kernelpro.runner.backend import Backend, KernelFault, LaunchRejected
from kernelpro.runner.buffers import DeviceBuffers, GuardDamage, first_difference, set_bytes
from kernelpro.runner.compare import compare_output
from kernelpro.runner.drawn_size import draw_size
from kernelpro.runner.inputs import FLOAT_DISTRIBUTIONS, InputSet, as_float64, make_inputs, scalar_args
from kernelpro.runner.records import CheckFailure, Timing
from kernelpro.runner.sequence import as_sequence
from kernelpro.runner.timed_check import TimedBuffers, TimedReport, UncheckedTimedBuffers
from kernelpro.runner.timing import TimingOptions, time_kernel
from kernelpro.task import FLOAT_DTYPES, Task


@dataclass(frozen=True)
class WallConfig:
    """What the wall runs: the seed, how many input sets, timing, guard size, roofline slack."""

    seed: int
    input_sets: int = 4
    extra_size_sets: int = 2
    time: bool = True
    timing: TimingOptions = field(default_factory=TimingOptions)
    draw_size: bool = True  # add the seed's drawn size (kernelpro.runner.drawn_size)
    verify_timed: bool = True  # poison and check every timed launch; False only to measure the cost of doing so
    guard_bytes: int = 65536
    timed_guard_bytes: int = 4096  # per timed buffer set (up to max_batch of them)
    roofline_slack: float = bounds.DEFAULT_SLACK

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WallConfig:
        values = dict(data)
        values["timing"] = TimingOptions.from_dict(values.get("timing", {}))
        return cls(**values)


@dataclass(frozen=True)
class WallResult:
    """What the wall found (the worker turns it into a :class:`~kernelpro.runner.records.WallVerdict`)."""

    failures: tuple[CheckFailure, ...]
    flags: tuple[CheckFailure, ...]
    checked: Mapping[str, Any]
    timing: Timing | None
    context_lost: bool


class _Stop(Exception):
    def __init__(self, failures: list[CheckFailure], context_lost: bool = False) -> None:
        super().__init__(failures[0].message)
        self.failures = failures
        self.context_lost = context_lost


def size_label(task: Task, sizes: Mapping[str, int]) -> str:
    """``M=127, N=65`` for a problem size (``default`` for a task without params)."""
    return ", ".join(f"{name}={sizes[name]}" for name in task.params) or "default"


def _value(array: np.ndarray, index: tuple[int, ...], dtype: str) -> float | int | bool:
    element = np.asarray(array)[index] if index else np.asarray(array).reshape(-1)[0]
    if dtype in FLOAT_DTYPES:
        return float(as_float64(np.asarray([element]), dtype)[0])
    return element.item()


class Wall:
    """Checks ``candidate`` against ``reference`` (loaded kernels of ``backend``) for ``task``."""

    def __init__(self, task: Task, backend: Backend, reference: Any, candidate: Any,
                 knobs: Mapping[str, int | float | str], config: WallConfig,
                 progress: Callable[[str], None] | None = None) -> None:
        self.task = task
        self.backend = backend
        # A loaded kernel stands for the task's own launch sequence of it (a single-kernel task).
        self.reference = as_sequence(task, reference)
        self.candidate = as_sequence(task, candidate)
        info = backend.device_info()
        self.device = values_for_device(info.compute_capability, info.sm_count, info.l2_bytes)
        self.knobs = dict(knobs)
        self.config = config
        self.progress = progress or (lambda stage: None)
        self.launches = 0
        self.distributions: set[str] = set()
        self._expected: dict[tuple[int, int], dict[str, np.ndarray]] = {}  # reference outputs per (size, set)
        self.timed: dict[str, Any] = {}
        self.timing: Timing | None = None
        self.sets_drawn = 0  # input sets drawn so far: the distribution rotation

    # --- the run ----------------------------------------------------------------------------------
    def run(self) -> WallResult:
        """Run every check; the first failing step ends the run."""
        checked: dict[str, Any] = {"sizes": [], "input_sets": 0, "reference": self.task.correctness.reference
                                   or f"{self.reference.label} (default knobs)"}
        if self.task.is_sequence or self.candidate.plan != self.task.plan:
            checked["launch_sequence"] = [launch.kernel for launch in self.candidate.plan]
        timing, flags = None, []
        sizes_to_check = self.task.problem_sizes()
        drawn = draw_size(self.task, self.config.seed, self.knobs) if self.config.draw_size else None
        if drawn is not None:
            sizes_to_check.append(drawn)
            checked["drawn_size"] = drawn
        try:
            for size_index, sizes in enumerate(sizes_to_check):
                count = self.config.input_sets if size_index == 0 else self.config.extra_size_sets
                for set_index in range(count):
                    self._check_set(size_index, sizes, set_index, repeat=set_index == 0)
                    checked["input_sets"] += 1
                checked["sizes"].append(size_label(self.task, sizes))
            if self.config.time:
                timing = self._time()
                flags += self._timing_flags(timing)
                self._check_roofline(timing)
                self._recheck_after_timing(timing)
        except _Stop as stop:
            timing = timing or self.timing  # a timing that failed its checks is kept as evidence
            return WallResult(tuple(stop.failures), tuple(flags), self._checked(checked), timing, stop.context_lost)
        return WallResult((), tuple(flags), self._checked(checked), timing, False)

    def _checked(self, checked: dict[str, Any]) -> dict[str, Any]:
        order = [d for d in FLOAT_DISTRIBUTIONS if d in self.distributions]
        return {**checked, "distributions": order, "launches": self.launches,
                **({"timed_launches": self.timed} if self.timed else {})}

    # --- one input set ----------------------------------------------------------------------------
    def _envs(self, sizes: Mapping[str, int]) -> tuple[dict, dict]:
        return (self.task.env(sizes=sizes, device=self.device),
                self.task.env(sizes=sizes, knobs=self.knobs, device=self.device))

    def _shapes(self, env_ref: Mapping, env_cand: Mapping, where: dict) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for arg in self.task.buffers:
            ref, cand = self.task.shape(arg, env_ref), self.task.shape(arg, env_cand)
            if ref != cand:
                raise _Stop([CheckFailure("launch", f"the shape of {arg.name} depends on the knobs ({ref} with the "
                                          f"defaults, {cand} with the candidate's), so outputs cannot be compared",
                                          {**where, "arg": arg.name})])
            shapes[arg.name] = ref
        return shapes

    def _where(self, sizes: Mapping[str, int], size_index: int, inputs: InputSet) -> dict[str, Any]:
        return {"size": dict(sizes), "size_index": size_index, "set": inputs.set_index,
                "distribution": inputs.distribution, "seed": self.config.seed}

    def _check_set(self, size_index: int, sizes: Mapping[str, int], set_index: int, repeat: bool) -> None:
        env_ref, env_cand = self._envs(sizes)
        inputs = make_inputs(self.task, env_ref, self.config.seed, size_index, set_index, rotation=self.sets_drawn)
        self.sets_drawn += 1
        self.distributions.add(inputs.distribution)
        where = self._where(sizes, size_index, inputs)
        shapes = self._shapes(env_ref, env_cand, where)
        context = (f"{size_label(self.task, sizes)}, input set {set_index} ({inputs.distribution}), "
                   f"seed {self.config.seed}")
        expected = self._launch("reference", env_ref, shapes, inputs, where, context)
        self._expected[(size_index, set_index)] = expected
        got = self._launch("candidate", env_cand, shapes, inputs, where, context)
        self._compare(expected, got, "output", "", where, context)
        if not repeat:
            return
        where = {**where, "launch": "repeat"}
        again = self._launch("candidate", env_cand, shapes, inputs, where, context + ", repeat")
        self._compare(expected, again, "stateful", "a repeat launch on the same inputs: ", where, context)
        if self.task.correctness.deterministic:
            self._same_bits(got, again, where, context)

    def _launch(self, role: str, env: Mapping, shapes: Mapping[str, tuple[int, ...]], inputs: InputSet,
                where: dict, context: str) -> dict[str, np.ndarray]:
        """One launch on fresh buffers; returns the outputs after checking guards and inputs."""
        kernel = self.reference if role == "reference" else self.candidate
        buffers = DeviceBuffers(self.backend.xp, self.task, shapes, inputs, self.config.guard_bytes,
                                self.backend.to_host)
        args = buffers.kernel_args(scalar_args(self.task, env))
        label = f"{role} launch ({context})"
        self.progress(label)
        try:
            bound = kernel.bind(env)
        except ExprError as exc:  # e.g. a launch expression over this GPU's device values that divides by zero
            raise _Stop([CheckFailure("reference" if role == "reference" else "launch", f"{label}: {exc}",
                                      where)]) from None
        self._run(role, bound, args, label, where)
        outputs = buffers.outputs()
        failures = self._guard_failures(role, buffers, label, where) + self._input_failures(role, buffers, inputs,
                                                                                            label, where)
        if failures:
            raise _Stop(failures)
        if role == "reference":
            buffers.scrub()  # the pool may hand this memory to the candidate: leave no answers in it
        return outputs

    def _run(self, role: str, sequence: Any, args: tuple, label: str, where: dict) -> None:
        self.launches += 1
        steps = sequence.describe()
        details = {**where, "role": role, **(steps[0] if len(steps) == 1 else {"launches": steps})}
        try:
            sequence.issue(self.backend, args)
            self.backend.synchronize()
        except LaunchRejected as exc:
            raise _Stop([CheckFailure("reference" if role == "reference" else "launch", f"{label}: {exc}",
                                      details)]) from None
        except KernelFault as exc:  # from the launch too: a fault of earlier work surfaces at the next call
            check = "reference" if role == "reference" else "cuda-error"
            raise _Stop([CheckFailure(check, f"{label}: the kernel faulted: {exc}", details)],
                        context_lost=True) from None

    def _guard_failures(self, role: str, buffers: DeviceBuffers, label: str, where: dict) -> list[CheckFailure]:
        return [self._guard_failure(label, name, buffers.buffers[name].nbytes, d, where, role)
                for name, damage in buffers.damaged_guards().items() for d in damage]

    @staticmethod
    def _guard_failure(label: str, name: str, nbytes: int, d: GuardDamage, where: dict, role: str) -> CheckFailure:
        who = "the reference kernel" if role == "reference" else "the kernel"
        return CheckFailure(
            "reference" if role == "reference" else "canary",
            f"{label}: {who} wrote {d.count} guard byte(s) {d.side} buffer {name}, the nearest at byte offset "
            f"{d.offset} ({name} spans bytes 0..{nbytes - 1}): out-of-bounds write",
            {**where, "arg": name, "side": d.side, "bytes_changed": d.count, "byte_offset": d.offset},
        )

    def _input_failures(self, role: str, buffers: DeviceBuffers, inputs: InputSet, label: str,
                        where: dict) -> list[CheckFailure]:
        failures = []
        for name, index in buffers.changed_inputs(inputs).items():
            arg = next(a for a in self.task.args if a.name == name)
            before = _value(inputs.arrays[name], index, arg.dtype)
            after = _value(self.backend.to_host(buffers.buffers[name].array), index, arg.dtype)
            at = f"{name}[{', '.join(map(str, index))}]"
            failures.append(CheckFailure(
                "reference" if role == "reference" else "input-modified",
                f"{label}: input {at} changed from {before!r} to {after!r} (intent \"in\": the kernel must not write "
                "it; declare it \"inout\" if it should)",
                {**where, "arg": name, "index": list(index), "before": before, "after": after},
            ))
        return failures

    def _compare(self, expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], check: str, prefix: str,
                 where: dict, context: str) -> None:
        failures = []
        for arg in self.task.outputs:
            mismatch = compare_output(got[arg.name], expected[arg.name], arg.dtype, self.task.tolerance_for(arg))
            if mismatch is not None:
                failures.append(CheckFailure(check, f"{prefix}{mismatch.describe(arg.name)} [{context}]",
                                             {**where, "arg": arg.name, **mismatch.where()}))
        if failures:
            raise _Stop(failures)

    def _same_bits(self, first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray], where: dict,
                   context: str) -> None:
        for arg in self.task.outputs:
            index = first_difference(first[arg.name], second[arg.name])
            if index is not None:
                a, b = _value(first[arg.name], index, arg.dtype), _value(second[arg.name], index, arg.dtype)
                at = f"{arg.name}[{', '.join(map(str, index))}]"
                raise _Stop([CheckFailure(
                    "determinism",
                    f"two launches on the same inputs differ at {at}: {a!r} then {b!r} (both within tolerance, but "
                    f"the task says deterministic = true) [{context}]",
                    {**where, "arg": arg.name, "index": list(index), "first": a, "second": b},
                )])

    # --- timing and what follows ---------------------------------------------------------------------
    def _time(self) -> Timing:
        sizes = self.task.problem_sizes()[0]
        env_ref, env_cand = self._envs(sizes)
        sets = [make_inputs(self.task, env_ref, self.config.seed, 0, index)
                for index in self._timed_input_sets(env_ref)]
        where = {**self._where(sizes, 0, sets[0]), "launch": "timing"}
        shapes = self._shapes(env_ref, env_cand, where)
        context = f"{size_label(self.task, sizes)}, timed input sets, seed {self.config.seed}"
        expected = [self._expected.get((0, s.set_index)) or self._launch("reference", env_ref, shapes, s, where,
                                                                             context) for s in sets]
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, 0x71AED]))
        kind = TimedBuffers if self.config.verify_timed else UncheckedTimedBuffers
        hooks = kind(self.backend.xp, self.task, shapes, sets, expected, scalar_args(self.task, env_cand),
                     self.config.timed_guard_bytes, rng, self.backend.to_host)
        working_set = set_bytes(self.task, shapes)
        self.progress("timing")
        label = f"timed launches ({size_label(self.task, sizes)})"
        try:
            timing = time_kernel(self.backend, self.candidate.bind(env_cand), None, hooks, working_set,
                                 self.config.timing, self.progress)
        except LaunchRejected as exc:
            raise _Stop([CheckFailure("launch", f"{label}: {exc}", where)]) from None
        except KernelFault as exc:
            raise _Stop([CheckFailure("cuda-error", f"{label}: the kernel faulted: {exc}", where)],
                        context_lost=True) from None
        self.timing = timing
        report = hooks.report()
        self.launches += report.launches
        self.timed = {"launches": report.launches, "worked": report.worked, "buffer_sets": hooks.set_count,
                      "input_sets": [s.set_index for s in sets],
                      **({"unjudged": report.unjudged} if report.unjudged else {})}
        failures = [self._guard_failure(f"{label}, buffer set {k}", name, nbytes, d, {**where, "buffer_set": k},
                                        "candidate")
                    for k, name, d, nbytes in hooks.damaged_guards()]
        if failures:
            raise _Stop(failures)
        if report.failed_count:
            raise _Stop([self._timed_failure(report, label, where, timing)])
        return timing

    def _timed_input_sets(self, env: Mapping) -> list[int]:
        """Input sets the timed launches draw from: one only timing sees, then the benchmark size's checked sets
        (their reference outputs are known), as many as fit in half the rotation budget (at least two)."""
        per_set = sum(self.task.nbytes(arg, env) for arg in self.task.buffers)
        fit = max(2, self.config.timing.rotation_budget_bytes // 2 // max(per_set, 1))
        return ([self.config.input_sets + 1] + list(range(self.config.input_sets)))[:fit]

    def _timed_failure(self, report: TimedReport, label: str, where: dict, timing: Timing) -> CheckFailure:
        first = report.failed[0]
        check = "input-modified" if first.inputs_changed else "timed-output"
        return CheckFailure(
            check,
            f"{label}: the candidate did its work in {report.worked} of {report.launches} timed launches; e.g. "
            f"sample {first.sample}, buffer set {first.position}: it {first.describe()}. Every launch must compute "
            "its outputs (no skipping when the output looks written, no launch-count, address or timer tricks)",
            {**where, "launches": report.launches, "worked": report.worked, "sample": first.sample,
             "buffer_set": first.position, "arg": first.arg, "unwritten": first.unwritten, "wrong": first.wrong,
             "inputs_changed": first.inputs_changed, "launches_per_sample": timing.launches_per_sample},
        )

    def _check_roofline(self, timing: Timing) -> None:
        sizes = self.task.problem_sizes()[0]
        failure = bounds.check_timing(self.task, self._envs(sizes)[1], timing, self.backend.device_info(),
                                      self.config.roofline_slack)
        if failure is not None:
            raise _Stop([CheckFailure(failure.check, failure.message,
                                      {"size": dict(sizes), "launch": "timing", **failure.where})])

    def _recheck_after_timing(self, timing: Timing) -> None:
        sizes = self.task.problem_sizes()[0]
        env_ref, env_cand = self._envs(sizes)
        inputs = make_inputs(self.task, env_ref, self.config.seed, 0, self.config.input_sets)
        self.distributions.add(inputs.distribution)
        where = {**self._where(sizes, 0, inputs), "launch": "after-timing"}
        shapes = self._shapes(env_ref, env_cand, where)
        context = (f"{size_label(self.task, sizes)}, fresh input set {inputs.set_index} ({inputs.distribution}), "
                   f"seed {self.config.seed}")
        expected = self._launch("reference", env_ref, shapes, inputs, where, context)
        got = self._launch("candidate", env_cand, shapes, inputs, where, context + ", after timing")
        self._compare(expected, got, "stateful", f"after {timing.n * timing.launches_per_sample} timed launches, a "
                      "launch on fresh inputs: ", where, context)

    def _timing_flags(self, timing: Timing) -> list[CheckFailure]:
        flags = []
        if timing.throttled:
            reasons = ", ".join(timing.clocks.reasons) if timing.clocks else "unknown"
            handling = (f"{timing.dropped_throttled} throttled sample(s) dropped" if timing.dropped_throttled
                        else "throttled samples kept: too few samples without throttling")
            flags.append(CheckFailure("throttled", f"the GPU throttled during timing ({reasons}); {handling}",
                                      {"dropped": timing.dropped_throttled}))
        if not timing.converged:
            flags.append(CheckFailure("noisy", f"timing did not converge: relative std {timing.rel_std:.2%} after "
                                      f"{timing.n} samples ({timing.stop_reason})", {"rel_std": timing.rel_std}))
        return flags
