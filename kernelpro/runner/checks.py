"""The registry of checks a candidate goes through, in order: what each closes, where it runs, its cost.

:data:`REGISTRY` is the single list: :mod:`kernelpro.runner.records` takes its check and flag
names from it (a failure's ``check`` must be one of them, a test holds every ``CheckFailure`` the
runner raises to that), ``kernelpro check --explain`` prints it for a task and options, and
``docs/correctness.md`` is its long form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """One check: its name in verdicts, what it rejects, the reward hacks it closes, where it runs, its cost."""

    name: str
    rejects: str
    closes: tuple[str, ...]
    where: str  # "parent" (the evaluating process), "wall" (the worker, on the GPU), "sanitizer" (its own process)
    cost: str
    fatal: bool = True  # False: a flag in the verdict, not a failure
    applies: Callable[[Any, Any], bool] = lambda task, options: True  # (Task, WallOptions) -> runs?


def _timed(task: Any, options: Any) -> bool:
    return bool(options.time)


def _sanitized(task: Any, options: Any) -> bool:
    return bool(options.sanitizer)


def _fp32_task(task: Any, options: Any) -> bool:
    dtypes = {a.dtype for a in task.args}
    return (not task.correctness.allow_lower_precision and not dtypes & {"float16", "bfloat16"}
            and bool(dtypes & {"float32", "float64"}))


REGISTRY: tuple[Check, ...] = (
    Check("signature", "an entry kernel that is missing or takes other parameter types", (), "parent", "ms"),
    Check("compile", "a candidate nvcc rejects", (), "parent", "seconds (cached by source and flags)"),
    Check("lower-precision", "FP16/BF16 arithmetic in the SASS of an FP32/FP64 task (unless allow_lower_precision)",
          ("precision downgrade",), "parent", "ms (cuobjdump)", applies=_fp32_task),
    Check("reference", "a reference that faults, writes out of bounds or changes its inputs (a task problem)", (),
          "wall", "one reference launch per input set"),
    Check("launch", "a launch the driver refuses (resources, configuration)", (), "wall", "none"),
    Check("cuda-error", "a kernel fault (illegal address, trap); the worker is replaced", ("out-of-bounds",), "wall",
          "a worker restart (~1 s)"),
    Check("timeout", "a worker that stops answering (hung kernel): killed", (), "wall", "the idle timeout"),
    Check("crash", "a worker process that died", (), "wall", "a worker restart"),
    Check("worker-error", "a worker that raised (no CuPy, no GPU)", (), "wall", "none"),
    Check("canary", "a write into the 64 KiB guard zones around every buffer (4 KiB around each timed buffer set)",
          ("out-of-bounds",), "wall", "a host copy of the guards per launch"),
    Check("input-modified", "an `in` buffer changed, on a checked launch or on any timed launch",
          ("input mutation",), "wall", "a host compare per checked launch; a device compare per timed sample"),
    Check("output", "outputs beyond tolerance (NaN/Inf match, elementwise, relative L2) at every size (declared and "
          "the seed's drawn odd size) and every input distribution (normal, uniform, heavy, tiny, offset, large, "
          "denormal, constant rows)",
          ("zeros under a loose tolerance", "partial computation", "shape specialisation", "precision downgrade"),
          "wall", "reference + candidate launch and a host compare per input set (10 sets or more)"),
    Check("stateful", "a repeat launch on the same inputs, or a launch on fresh inputs after timing, that is wrong",
          ("caching across launches", "stale output"), "wall", "two candidate launches per size"),
    Check("determinism", "two launches on the same inputs differing bit for bit in a deterministic task", ("races",),
          "wall", "none (reuses the repeat launch)"),
    Check("timed-output", "a timed launch that left its output unwritten or wrong: every timed launch has its own "
          "buffer set, poisoned and reloaded (from up to five input sets at random) before each sample, compared "
          "on the device after it", ("stale output", "caching across launches", "timer games", "partial computation"),
          "wall", "per sample, outside the timed region: a poison fill, a device-to-device input copy and a float64 "
          "reduction over every set's outputs", applies=_timed),
    Check("roofline", "a timing above the device's peaks: DRAM bandwidth (cold), the L2 bandwidth ceiling (warm), "
          "FLOP/s", ("timer games", "side streams", "L2 persistence", "partial computation"), "wall", "none",
          applies=_timed),
    Check("memcheck", "compute-sanitizer memcheck errors, at the smallest and at the benchmark size (reads past the "
          "end are only seen here)", ("out-of-bounds",), "sanitizer", "seconds to minutes (one launch per size)",
          applies=_sanitized),
    Check("racecheck", "shared-memory hazards (kernels with shared memory; always for the winner)", ("races",),
          "sanitizer", "seconds to minutes", applies=_sanitized),
    Check("synccheck", "invalid barrier use (the winner of optimize)", ("races",), "sanitizer", "seconds",
          applies=lambda task, options: bool(options.sanitizer and options.sanitize_all)),
    Check("throttled", "the GPU throttled during timing (samples dropped)", (), "wall", "none", fatal=False,
          applies=_timed),
    Check("noisy", "timing did not converge", (), "wall", "none", fatal=False, applies=_timed),
    Check("sanitizer", "compute-sanitizer ran but gave no verdict: \"not sanitized\"", (), "sanitizer", "none",
          fatal=False, applies=_sanitized),
    Check("not-sanitized", "compute-sanitizer could not run (missing, or the device refused it): \"not sanitized\"",
          (), "sanitizer", "none", fatal=False, applies=_sanitized),
)


def applicable(task: Any, options: Any) -> tuple[Check, ...]:
    """The checks a candidate of ``task`` goes through under ``options`` (a WallOptions), in order."""
    return tuple(check for check in REGISTRY if check.applies(task, options))


def explain(task: Any, options: Any) -> str:
    """``kernelpro check --explain``: the checks, one per line, with what they close and cost."""
    lines = [f"checks for {task.name} (in order; the first failure stops the evaluation):"]
    for check in applicable(task, options):
        kind = "flag " if not check.fatal else ""
        closes = f" [closes: {', '.join(check.closes)}]" if check.closes else ""
        lines.append(f"  {kind}{check.name} ({check.where}; cost: {check.cost}): {check.rejects}{closes}")
    skipped = [c.name for c in REGISTRY if c not in applicable(task, options)]
    if skipped:
        lines.append(f"not run with these options: {', '.join(skipped)}")
    return "\n".join(lines)
