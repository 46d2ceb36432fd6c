"""The structural rewrites the offline proposer tries, in order, and the skill each one implements.

A skill (``skills/<name>/SKILL.md``) may name machine-applicable rewrites in its front matter
(``rewrites: [warp_shuffle_reduction]``); this table is where a name becomes code. Each entry applies to
a source and the task (a remap needs the task's launch expressions) and raises
:class:`~kernelpro.transforms.TransformError` saying why when it does not apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kernelpro.rewrites.shuffle_reduce import shuffle_reduction
from kernelpro.rewrites.vectorize import vectorize
from kernelpro.rewrites.warp_per_row import warp_per_row
from kernelpro.task import Task
from kernelpro.transforms import Rewrite


@dataclass(frozen=True)
class StructuralRewrite:
    """A named rewrite: ``apply(source, task)`` → :class:`Rewrite`; ``skill`` is the skill that explains it."""

    name: str
    skill: str
    summary: str
    apply: Callable[[str, Task], Rewrite]
    intended: str  # the SASS change it aims at, for people
    shows: Callable[[Mapping[str, int], Mapping[str, int]], bool]  # (histogram before, after) → it is there


def _wider(before: Mapping[str, int], after: Mapping[str, int]) -> bool:
    wide = ("global_load_128", "global_load_64", "global_store_128", "global_store_64")
    return sum(after[c] for c in wide) > sum(before[c] for c in wide)


def _warp_per_row(source: str, task: Task) -> Rewrite:
    launch = task.launch
    return warp_per_row(source, task.kernel, tuple(e.text for e in launch.grid), tuple(e.text for e in launch.block),
                        launch.shared_mem.text)


REWRITES: tuple[StructuralRewrite, ...] = (
    StructuralRewrite("vectorize_loads", "vectorized-elementwise",
                      "16-byte loads/stores of any element type, alignment check and scalar tail",
                      lambda source, task: vectorize(source, task.kernel),
                      "more 64/128-bit global loads/stores (LDG.E.128)", _wider),
    StructuralRewrite("warp_shuffle_reduction", "warp-block-reductions",
                      "shared-memory tree reduction → warp shuffles plus one warp over the partials",
                      lambda source, task: shuffle_reduction(source, task.kernel),
                      "SHFL instructions for the reduction", lambda b, a: a["shuffle"] > b["shuffle"]),
    StructuralRewrite("warp_per_row", "row-reductions",
                      "one warp per row, reductions in registers, the candidate's own launch", _warp_per_row,
                      "no block barrier (BAR) left, SHFL butterflies",
                      lambda b, a: a["barrier"] == 0 < b["barrier"] and a["shuffle"] > b["shuffle"]),
)


def by_name(name: str) -> StructuralRewrite:
    """The rewrite called ``name``; KeyError naming the known ones otherwise."""
    for rewrite in REWRITES:
        if rewrite.name == name:
            return rewrite
    raise KeyError(f"no structural rewrite {name!r}; known: {', '.join(r.name for r in REWRITES)}")
