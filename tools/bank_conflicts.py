"""Shared-memory bank conflicts.

Shared memory has 32 four-byte banks; a warp access whose lanes hit the same bank at different addresses
is replayed as extra wavefronts. ncu counts the conflict wavefronts among all shared-memory wavefronts;
``wavefronts / (wavefronts - conflicts)`` is the average n-way conflict. We fire when a fifth or more of
the wavefronts are conflicts. The fix for the classic case (a 32-wide tile read by column) is one element
of padding per row, so the prescription names the array when the source declares a 2-D shared tile.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.tools.base import Finding, Prescription, Tool, amdahl, gain_range, headroom, read, sass_lines

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "bank_conflicts"
PIPE_PCT = "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed"


def _op(kind: str) -> tuple[str, str]:
    """(conflicts, wavefronts) metrics of shared loads ("ld") or stores ("st")."""
    return (f"l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_{kind}.sum",
            f"l1tex__data_pipe_lsu_wavefronts_mem_shared_op_{kind}.sum")


METRICS = (*_op("ld"), *_op("st"), PIPE_PCT)
MIN_CONFLICT_SHARE = 0.2
_SHARED_2D = re.compile(r"__shared__\s+(?:[\w:<>]+\s+)+?(\w+)\s*\[\s*(\d+)\s*\]\s*\[\s*(\d+)\s*\]")


def _counts(ctx: DiagnosisContext, kind: str) -> tuple[float, float] | None:
    conflicts, wavefronts = (ctx.number(name) for name in _op(kind))
    return None if conflicts is None or not wavefronts else (conflicts, wavefronts)


def _conflict_share(ctx: DiagnosisContext) -> float | None:
    counts = [c for kind in ("ld", "st") if (c := _counts(ctx, kind))]
    if not counts:
        return None
    return sum(c for c, _ in counts) / sum(w for _, w in counts)


def trigger(ctx: DiagnosisContext) -> bool:
    conflicts = _conflict_share(ctx)
    return conflicts is not None and conflicts >= MIN_CONFLICT_SHARE


def _ways(conflicts: float, wavefronts: float) -> float:
    return wavefronts / max(wavefronts - conflicts, 1.0)


def analyze(ctx: DiagnosisContext) -> Finding:
    parts = []
    for kind, words in (("ld", "loads"), ("st", "stores")):
        counts = _counts(ctx, kind)
        if counts and counts[0] / counts[1] >= MIN_CONFLICT_SHARE:
            parts.append(f"shared-memory {words} are {_ways(*counts):.1f}-way bank-conflicted on average")
    summary = " and ".join(parts) + f": {_conflict_share(ctx):.0%} of shared-memory wavefronts are replays"
    pipe = ctx.number(PIPE_PCT)
    if pipe is not None:
        summary += f", and the shared-memory pipe is {pipe:.0f}% busy"
    evidence = sass_lines(ctx, lambda ins: ins.op_class in ("shared_load", "shared_store"))
    return Finding(NAME, "shared-memory bank conflicts", summary, read(ctx, *METRICS), evidence)


def _tile(source: str | None) -> tuple[str, int, int] | None:
    """(name, rows, cols) of the first 2-D ``__shared__`` array whose row length is a multiple of 32."""
    for match in _SHARED_2D.finditer(source or ""):
        rows, cols = int(match[2]), int(match[3])
        if cols % 32 == 0:
            return match[1], rows, cols
    return None


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    counts = [c for kind in ("ld", "st") if (c := _counts(ctx, kind))]
    ways = _ways(sum(c for c, _ in counts), sum(w for _, w in counts))
    pipe = ctx.number(PIPE_PCT)
    high = amdahl(pipe / 100 if pipe is not None else 0.5, ways)
    tile = _tile(ctx.source)
    if tile:
        name, rows, cols = tile
        change = f"pad shared array {name} to [{rows}][{cols + 1}] so a column access touches 32 different banks"
        acts: tuple[actions.Action, ...] = (actions.pad_shared(name, cols + 1, rows),)
    else:
        change = ("pad or swizzle the shared array so the 32 lanes of a warp hit 32 different banks "
                  "(e.g. rows of 33 elements instead of 32)")
        acts = ()
    return Prescription(NAME, change, finding.summary, gain_range(high, headroom(ctx)), acts, finding)


FIRES_WHEN = f"bank-conflict replays are at least {MIN_CONFLICT_SHARE:.0%} of shared-memory wavefronts"
TOOL = Tool(NAME, "Shared-memory bank conflicts", frozenset({"memory", "compute", "latency"}), METRICS, trigger,
            analyze, recommend,
            fires_when=FIRES_WHEN)
