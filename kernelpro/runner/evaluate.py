"""Evaluate a candidate end to end: signature, compile, SASS, the wall in a worker, sanitizers.

:class:`Evaluator` is what the CLI and the search call. It runs in the parent process and never
touches the GPU itself: it compiles the reference (the task's source with default knobs; its
``correctness.reference`` kernel or else the entry kernel) and the candidate, reads the
candidate's SASS for lower-precision arithmetic, sends the ``wall`` job to its
:class:`~kernelpro.runner.supervisor.Supervisor`, turns a hung or crashed worker into a verdict,
and optionally runs compute-sanitizer on a candidate that passed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kernelpro.candidate_launch import candidate_plan, has_launch_block
from kernelpro.compiler import Compiler, CompileRequest, CompileResult, default_arch, format_diagnostics_for_model
from kernelpro.errors import KernelproError, TaskError
from kernelpro.instantiate import plan_symbols, with_instantiations
from kernelpro.runner import sanitizer
from kernelpro.runner.inputs import fresh_seed
from kernelpro.runner.jobs import smallest_size
from kernelpro.runner.profiled_program import make_launch_once_job
from kernelpro.runner.records import CheckFailure, WallVerdict
from kernelpro.runner.sequence import reference_plan
from kernelpro.runner.supervisor import JobFailure, Supervisor
from kernelpro.runner.timing import TimingOptions
from kernelpro.runner.wall import WallConfig
from kernelpro.sass import KernelSass, sass_for_cubin
from kernelpro.task import Task

_JOB_FAILURE_CHECKS = {"timeout": "timeout", "crash": "crash", "cuda-error": "cuda-error"}


@dataclass(frozen=True)
class WallOptions:
    """How thoroughly to check and time one candidate."""

    seed: int | None = None  # None: a fresh seed from os.urandom per evaluation
    input_sets: int = 4
    extra_size_sets: int = 2
    time: bool = True
    timing: TimingOptions = field(default_factory=TimingOptions)
    sanitizer: bool = False  # memcheck (smallest and benchmark size), plus racecheck when the kernel uses shared memory
    sanitize_all: bool = False  # racecheck and synccheck whatever the kernel uses (the winner's final check)
    guard_bytes: int = 65536
    timeout_s: float = 900.0
    idle_timeout_s: float = 60.0
    sanitizer_timeout_s: float = 600.0


def signature_failure(task: Task, source: str, knobs: Mapping[str, Any] | None = None,
                      source_name: str = "candidate.cu") -> CheckFailure | None:
    """A ``signature`` failure when ``source`` lacks a kernel of the task's launch sequence or changes its
    parameter types, a ``launch`` failure when its own ``/* kernelpro launch */`` block is wrong."""
    try:
        candidate_plan(task, source, source_name, knobs)
    except TaskError as exc:
        check = "launch" if has_launch_block(source) else "signature"
        return CheckFailure(check, str(exc) if check == "launch" else exc.message, {"kernel": task.kernel})
    return None


def kernel_symbol(result: CompileResult, name: str) -> str | None:
    """The symbol of kernel ``name`` in a compile result (mangled for C++ linkage)."""
    if name in result.resources:
        return name
    return next((symbol for symbol, res in result.resources.items() if res.name == name), None)


def lower_precision_failure(task: Task, kernel: KernelSass) -> CheckFailure | None:
    """A ``lower-precision`` failure when an FP32/FP64 task's kernel does FP16 arithmetic (unless allowed)."""
    dtypes = {a.dtype for a in task.args}
    if task.correctness.allow_lower_precision or dtypes & {"float16", "bfloat16"}:
        return None
    if not dtypes & {"float32", "float64"}:
        return None
    half = [ins for ins in kernel.instructions if ins.op_class == "fp16"]
    if not half:
        return None
    return CheckFailure(
        "lower-precision",
        f"{len(half)} FP16 arithmetic instruction(s) in SASS (e.g. `{half[0].text}`) in a task whose data is FP32 or "
        "wider: results lose precision unless [correctness] allow_lower_precision = true",
        {"instructions": len(half), "examples": [ins.text for ins in half[:5]]},
    )


class Evaluator:
    """Checks and times candidates of tasks; reuse one for many evaluations (it keeps the worker)."""

    def __init__(self, supervisor: Supervisor | None = None, compiler: Compiler | None = None,
                 arch: str | None = None) -> None:
        self.supervisor = supervisor or Supervisor()
        self.compiler = compiler or Compiler()
        self.arch = arch or default_arch()

    def close(self) -> None:
        self.supervisor.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bench(self, task: Task, *, knobs: Mapping[str, Any] | None = None, flags: tuple[str, ...] = (),
              options: WallOptions | None = None) -> WallVerdict:
        """The task's own kernel through the wall (against its reference) and timed."""
        return self.check(task, task.source, knobs=knobs, flags=flags, options=options, source_name=str(task.path))

    def check(self, task: Task, source: str, *, knobs: Mapping[str, Any] | None = None, flags: tuple[str, ...] = (),
              options: WallOptions | None = None, source_name: str = "candidate.cu") -> WallVerdict:
        """Run the whole wall on candidate ``source`` (the task's ``.cu`` with the entry kernel changed)."""
        options = options or WallOptions()
        started = time.perf_counter()
        seed = options.seed if options.seed is not None else fresh_seed()
        knobs = {**task.default_knobs(), **dict(knobs or {})}
        base = WallVerdict(task=task.name, kernel=task.kernel, seed=seed)

        def stop(failure: CheckFailure, **extra: Any) -> WallVerdict:
            return replace(base, failures=(failure,), seconds=time.perf_counter() - started, **extra)

        failure = signature_failure(task, source, knobs, source_name)
        if failure is not None:
            return stop(failure)
        plan = candidate_plan(task, source, source_name, knobs)
        reference = self.compiler.compile(CompileRequest(with_instantiations(task.source, task.plan), self.arch,
                                                         task.defines(), source_name=str(task.path)))
        reference_symbols: dict[str, str] = {}
        if not task.reference_is_comparator:
            reference_symbols, missing = plan_symbols(reference, reference_plan(task), dict(task.defines()))
            if not reference.ok or missing is not None:
                why = _first_error(reference) if not reference.ok else f"no kernel {missing!r} in the cubin"
                return stop(CheckFailure("reference", f"the task's reference cannot be built: {why}"))
        candidate = self.compiler.compile(CompileRequest(with_instantiations(source, plan), self.arch,
                                                         task.defines(knobs), tuple(flags), source_name=source_name))
        if not candidate.ok:
            return stop(CheckFailure("compile", format_diagnostics_for_model(candidate.diagnostics, source, 2000),
                                     {"errors": len(candidate.errors)}))
        symbols, missing = plan_symbols(candidate, plan, dict(task.defines(knobs)))
        if missing is not None:
            return stop(CheckFailure("signature", f"the compiled candidate has no kernel {missing!r}"))
        symbol = symbols[plan[0].kernel]
        notes: list[str] = []
        for kernel_symbol_name in dict.fromkeys(symbols.values()):
            sass_failures, more_notes = self._sass_failures(task, candidate, kernel_symbol_name)
            notes += more_notes
            if sass_failures:
                return replace(stop(sass_failures[0]), notes=tuple(notes))

        config = WallConfig(seed=seed, input_sets=options.input_sets, extra_size_sets=options.extra_size_sets,
                            time=options.time, timing=options.timing, guard_bytes=options.guard_bytes)
        params = {"task_source": task.source, "task_path": str(task.path), "knobs": knobs,
                  "reference_cubin": str(reference.cubin), "reference_symbols": reference_symbols,
                  "candidate_cubin": str(candidate.cubin), "candidate_symbol": symbol, "candidate_symbols": symbols,
                  "candidate_source": source, "config": config.to_dict()}
        job = self.supervisor.run("wall", params, timeout=options.timeout_s, idle_timeout=options.idle_timeout_s)
        verdict = WallVerdict.from_dict(job.value) if job.ok else replace(base, failures=(_job_failure(job.failure),))
        extra_failures, extra_flags = [], []
        if options.sanitizer and verdict.ok:
            extra_failures, extra_flags, more_notes = self._sanitize(task, candidate, symbol, knobs, seed, options,
                                                                     source, symbols)
            notes += more_notes
        return replace(verdict, failures=verdict.failures + tuple(extra_failures),
                       flags=verdict.flags + tuple(extra_flags), notes=verdict.notes + tuple(notes),
                       seconds=time.perf_counter() - started)

    # --- parts ------------------------------------------------------------------------------------
    def _sass_failures(self, task: Task, result: CompileResult, symbol: str) -> tuple[list[CheckFailure], list[str]]:
        try:
            kernels = sass_for_cubin(result.cubin)
        except KernelproError as exc:
            return [], [f"SASS not checked for lower-precision arithmetic: {exc}"]
        kernel = kernels.get(symbol)
        if kernel is None:
            return [], [f"SASS not checked: no function {symbol} in the disassembly"]
        failure = lower_precision_failure(task, kernel)
        return ([failure] if failure else []), []

    def _sanitize(self, task: Task, candidate: CompileResult, symbol: str, knobs: Mapping[str, Any], seed: int,
                  options: WallOptions, source: str, symbols: Mapping[str, str],
                  ) -> tuple[list[CheckFailure], list[CheckFailure], list[str]]:
        shared = _uses_shared_memory(task, candidate, symbols, knobs, candidate_plan(task, source, knobs=knobs))
        runs = sanitizer_plan(task, knobs, shared, options.sanitize_all)
        failures, flags = [], []
        for tool, size_index in runs:
            job = make_launch_once_job(task, candidate.cubin, symbol, knobs, launches=1, size_index=size_index,
                                       seed=seed, source=source, symbols=symbols)
            try:
                report = sanitizer.run_sanitizer(tool, job, options.sanitizer_timeout_s)
            except KernelproError as exc:
                flags.append(CheckFailure("not-sanitized", f"not sanitized: compute-sanitizer could not run: {exc}",
                                          {"tools": [t for t, _ in runs]}))
                break
            failure, flag = sanitizer.report_findings(report)
            failures += [replace(failure, where={**failure.where, "size_index": size_index})] if failure else []
            flags += [flag] if flag else []
            if failure:
                break  # one tool's finding is enough to reject; the rest would cost minutes
        return failures, flags, []


def sanitizer_plan(task: Task, knobs: Mapping[str, Any], shared_memory: bool,
                   everything: bool) -> list[tuple[str, int]]:
    """``(tool, size index)`` runs: memcheck at the smallest and the benchmark size, racecheck (kernels with shared
    memory, or ``everything``) and synccheck (``everything``) at the smallest."""
    small = smallest_size(task, dict(knobs))
    runs = [("memcheck", small)] + ([("memcheck", 0)] if small != 0 else [])
    if shared_memory or everything:
        runs.append(("racecheck", small))
    if everything:
        runs.append(("synccheck", small))
    return runs


def _uses_shared_memory(task: Task, result: CompileResult, symbols: Mapping[str, str], knobs: Mapping[str, Any],
                        plan: tuple) -> bool:
    if any(result.resources[s].shared_static_bytes > 0 for s in symbols.values()):
        return True
    return any(launch.shared_bytes(task.env(sizes=s, knobs=knobs)) > 0 for s in task.problem_sizes()
               for launch in plan)


def _first_error(result: CompileResult) -> str:
    errors = result.errors or result.diagnostics
    return str(errors[0]) if errors else "nvcc failed"


def _job_failure(failure: JobFailure | None) -> CheckFailure:
    if failure is None:
        return CheckFailure("worker-error", "the worker returned no result")
    check = _JOB_FAILURE_CHECKS.get(failure.kind, "worker-error")
    where = {"kind": failure.kind, "stage": failure.stage, "exit_code": failure.exit_code,
             "stderr_tail": failure.stderr_tail[-2000:]}
    return CheckFailure(check, failure.message, where)


def load_candidate(path: str | Path) -> str:
    """A candidate file's text, or a KernelproError naming it."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelproError(f"cannot read candidate: {exc}", file=path, fix="check the path") from None
