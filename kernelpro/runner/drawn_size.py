"""One extra problem size per evaluation, drawn from its seed: odd, so no multiple of 32 or 64.

The declared sizes (benchmark and ``[correctness] sizes``) are public: a candidate can be
specialised to them (drop a tail, assume a multiple of 64, branch on ``n == 1000``). So each
evaluation also checks a size nobody could read in advance, drawn from the evaluation's seed (the
verdict records both, and the same seed draws the same size on a resume).

**Ranges.** A parameter gets ``[correctness] drawn_size = { NAME = [low, high] }`` when the task
gives it; otherwise the range its extra sizes span (``[min, max]`` over ``[correctness] sizes``,
the benchmark size left out so the drawn size stays as cheap as the extra ones; with a single
extra value, the range between it and the benchmark value). A parameter the declared sizes never
vary is left at the benchmark value: the task has not declared it variable (a
head dimension, a bin count). Within its range each parameter takes an odd value when one exists.

**Validity.** A draw must give positive shapes, 1 to 1024 threads per block, a non-empty grid and
evaluable expressions (what the loader checks for declared sizes); up to :data:`ATTEMPTS` draws are
tried, then the evaluation goes on without one and says so.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kernelpro.expr import ExprError
from kernelpro.task import Task

ATTEMPTS = 32
_SALT = 0x512E


def ranges(task: Task) -> dict[str, tuple[int, int]]:
    """Per parameter the ``[low, high]`` a drawn size takes it from (only the parameters that vary)."""
    found: dict[str, tuple[int, int]] = {}
    extra = [{**task.params, **s} for s in task.correctness.sizes]
    for name, benchmark in task.params.items():
        values = sorted({size[name] for size in extra})
        if len(values) == 1 and values[0] != benchmark:
            values = sorted((values[0], benchmark))  # one extra size: span it and the benchmark size
        if len(values) > 1:
            found[name] = (max(1, values[0]), values[-1])
    for name, (low, high) in task.correctness.drawn_size.items():
        found[name] = (low, high)
    return found


def _odd_in(rng: np.random.Generator, low: int, high: int) -> int:
    first = low if low % 2 else low + 1
    if first > high:
        return int(rng.integers(low, high + 1))
    return first + 2 * int(rng.integers(0, (high - first) // 2 + 1))


def valid(task: Task, sizes: Mapping[str, int], knobs: Mapping[str, int | float | str]) -> bool:
    """Does ``sizes`` give a launchable problem (positive shapes, 1..1024 threads, a grid)?"""
    try:
        for env in (task.env(sizes=sizes), task.env(sizes=sizes, knobs=knobs)):
            if any(d <= 0 for arg in task.buffers for d in task.shape(arg, env)):
                return False
            if not 1 <= task.threads_per_block(env) <= 1024 or min(task.grid(env)) < 1:
                return False
            task.dynamic_shared_bytes(env)
    except (ExprError, ValueError, ZeroDivisionError, OverflowError):
        return False
    return True


def draw_size(task: Task, seed: int, knobs: Mapping[str, int | float | str]) -> dict[str, int] | None:
    """The evaluation's drawn size (full param dict), or None when nothing varies or no draw is valid."""
    spans = ranges(task)
    if not spans:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SALT]))
    declared = [dict(s) for s in task.problem_sizes()]
    for _ in range(ATTEMPTS):
        sizes = {**task.params, **{name: _odd_in(rng, low, high) for name, (low, high) in spans.items()}}
        if sizes not in declared and valid(task, sizes, knobs):
            return sizes
    return None
