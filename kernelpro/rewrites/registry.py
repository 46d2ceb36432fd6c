"""The structural rewrites the offline proposer tries, in order, and the skill each one implements.

A skill (``skills/<name>/SKILL.md``) may name machine-applicable rewrites in its front matter
(``rewrites: [warp_shuffle_reduction]``); this table is where a name becomes code. Each entry applies to
a source and the task (a remap needs the task's launch expressions) and raises
:class:`~kernelpro.transforms.TransformError` saying why when it does not apply.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kernelpro.rewrites.coarsen import coarsen_rows
from kernelpro.rewrites.launch import launch_text
from kernelpro.rewrites.privatize import privatize_histogram
from kernelpro.rewrites.shuffle_reduce import shuffle_reduction
from kernelpro.rewrites.shuffle_scan import shuffle_scan
from kernelpro.rewrites.thread_to_warp import thread_to_warp
from kernelpro.rewrites.transpose import tiled_transpose
from kernelpro.rewrites.vectorize import vectorize
from kernelpro.rewrites.warp_per_row import warp_per_row
from kernelpro.sass import KernelSass
from kernelpro.task import Task
from kernelpro.transforms import Rewrite, TransformError


@dataclass(frozen=True)
class StructuralRewrite:
    """A named rewrite: ``apply(source, task)`` → :class:`Rewrite`; ``skill`` is the skill that explains it."""

    name: str
    skill: str
    summary: str
    apply: Callable[[str, Task], Rewrite]
    intended: str  # the SASS change it aims at, for people
    shows: Callable[[Mapping[str, int], Mapping[str, int]], bool]  # (sass_counts before, after) → it is there


def sass_counts(kernel: KernelSass) -> dict[str, int]:
    """The kernel's instruction-class histogram plus shared- and global-memory atomics counted apart."""
    counts = {name: kernel.histogram[name] for name in kernel.histogram}
    counts["atomic_shared"] = sum(i.opcode == "ATOMS" for i in kernel.instructions)
    counts["atomic_global"] = sum(i.opcode in ("RED", "REDG", "ATOM", "ATOMG") for i in kernel.instructions)
    counts["barrier_in_loops"] = kernel.histogram_in_loops["barrier"]  # each runs once per iteration
    return counts


def _wider(before: Mapping[str, int], after: Mapping[str, int]) -> bool:
    wide = ("global_load_128", "global_load_64", "global_store_128", "global_store_64")
    return sum(after[c] for c in wide) > sum(before[c] for c in wide)


def _launch(task: Task) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(e.text for e in task.launch.grid), tuple(e.text for e in task.launch.block)


def proven_widths(task: Task, source: str) -> frozenset[str]:
    """``{"blockDim.x", <the task's block expression>}`` when every launch the task allows is a 1-D block of a
    power-of-two multiple of 32 threads (at most 1024) and the source has no launch of its own; else empty."""
    if launch_text(source) is not None or len(task.launch.block) != 1:
        return frozenset()
    for values in itertools.product(*(knob.values for knob in task.knobs.values())):
        config = dict(zip(task.knobs, values, strict=True))
        if task.satisfies_constraints(config):
            threads = task.block(task.env(knobs=config))[0]
            if threads % 32 or threads & (threads - 1) or threads > 1024:
                return frozenset()
    return frozenset({"blockDim.x", task.launch.block[0].text.strip()})


def _thread_to_warp(source: str, task: Task, per_block: bool = False) -> Rewrite:
    for values in itertools.product(*(knob.values for knob in task.knobs.values())):
        config = dict(zip(task.knobs, values, strict=True))
        if task.satisfies_constraints(config) and task.block(task.env(knobs=config))[0] % 32:
            raise TransformError(f"the block size is not a multiple of 32 for knobs {config}: warps would span rows")
    return thread_to_warp(source, task.kernel, _launch(task)[0], per_block=per_block)


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
                      lambda source, task: shuffle_reduction(source, task.kernel, proven_widths(task, source)),
                      "SHFL instructions for the reduction", lambda b, a: a["shuffle"] > b["shuffle"]),
    StructuralRewrite("warp_shuffle_scan", "prefix-scan",
                      "shared-memory Hillis-Steele scan → warp shuffle-up scans plus one warp over the totals",
                      lambda source, task: shuffle_scan(source, task.kernel, proven_widths(task, source)),
                      "SHFL.UP instructions for the scan", lambda b, a: a["shuffle"] > b["shuffle"]),
    StructuralRewrite("thread_to_warp", "row-reductions",
                      "thread-per-row → warp-per-row: lanes stride the row, accumulators combined by shuffles",
                      _thread_to_warp, "SHFL butterflies for the row's accumulators",
                      lambda b, a: a["shuffle"] > b["shuffle"]),
    StructuralRewrite("thread_to_block", "row-reductions",
                      "thread-per-row → block-per-row: threads stride the row, shuffles then shared partials",
                      lambda source, task: _thread_to_warp(source, task, per_block=True),
                      "SHFL butterflies and one barrier per accumulator", lambda b, a: a["shuffle"] > b["shuffle"]),
    StructuralRewrite("warp_per_row", "row-reductions",
                      "one warp per row, reductions in registers, the candidate's own launch", _warp_per_row,
                      "no block barrier (BAR) left, SHFL butterflies",
                      lambda b, a: a["barrier"] == 0 < b["barrier"] and a["shuffle"] > b["shuffle"]),
    StructuralRewrite("privatize_histogram", "histogram-privatization",
                      "shared-memory bins per block, grid-stride loop, one global atomic per bin per block",
                      lambda source, task: privatize_histogram(source, task.kernel, *_launch(task)),
                      "shared-memory atomics (ATOMS) instead of global atomics (RED) per element",
                      lambda b, a: a["atomic_shared"] > b["atomic_shared"]),
    StructuralRewrite("tiled_transpose", "tiled-transpose",
                      "naive transpose → padded 32x33 shared-memory tile, coalesced both ways, own launch",
                      lambda source, task: tiled_transpose(source, task.kernel, _launch(task)[0]),
                      "the copy goes through shared memory (STS, LDS, one BAR)",
                      lambda b, a: a["shared_store"] > b["shared_store"] and a["barrier"] > b["barrier"]),
    StructuralRewrite("coarsen_rows", "thread-coarsening",
                      "2-D pointwise kernel → 4 rows per thread (unrolled), grid y divided by 4, own launch",
                      lambda source, task: coarsen_rows(source, task.kernel, *_launch(task)),
                      "4x the global loads per thread, issued back to back",
                      lambda b, a: a["global_load_32"] + a["global_load_128"] >= 3 * (b["global_load_32"]
                                                                                      + b["global_load_128"]) > 0),
)

