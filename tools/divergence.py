"""Warp divergence: instructions issued for fewer than 32 active threads.

ncu's average of active threads per executed warp instruction is 32 for convergent code; divergent
branches (and partial warps) lower it. We fire below :data:`MIN_ACTIVE_THREADS` (a quarter of the lanes
idle on average). Issue slots are what divergence wastes, so the gain is bounded by how busy the
schedulers are; a block size that is not a multiple of 32 explains partial warps more specifically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro.tools.base import Finding, Prescription, Tool, amdahl, gain_range, headroom, read, sass_lines

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "divergence"
ACTIVE_THREADS = "smsp__thread_inst_executed_per_inst_executed.ratio"
DIVERGENT = "smsp__sass_branch_targets_threads_divergent.sum"
ISSUE_PCT = "smsp__issue_active.avg.pct_of_peak_sustained_active"
METRICS = (ACTIVE_THREADS, DIVERGENT, ISSUE_PCT)
MIN_ACTIVE_THREADS = 24.0


def trigger(ctx: DiagnosisContext) -> bool:
    active = ctx.number(ACTIVE_THREADS)
    return active is not None and 0 < active < MIN_ACTIVE_THREADS


def analyze(ctx: DiagnosisContext) -> Finding:
    active = ctx.number(ACTIVE_THREADS) or 32.0
    summary = f"warp instructions run with {active:.1f} of 32 threads active on average"
    divergent = ctx.number(DIVERGENT)
    if divergent:
        summary += f" ({divergent:,.0f} divergent branch targets)"
    evidence = sass_lines(ctx, lambda ins: ins.opcode == "BRA" and ins.predicate is not None)
    return Finding(NAME, "warp divergence", summary, read(ctx, *METRICS), evidence)


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    active = ctx.number(ACTIVE_THREADS) or 32.0
    issue = ctx.number(ISSUE_PCT)
    high = amdahl(issue / 100 if issue is not None else 0.5, 32 / active)
    change = ("make whole warps take the same path: group work items by branch outcome (sort or bucket them), "
              "decide branches per warp instead of per thread, and turn short branches into selects")
    why = f"{finding.summary}, so {1 - active / 32:.0%} of the issued lanes do nothing"
    return Prescription(NAME, change, why, gain_range(high, headroom(ctx)), (), finding)


FIRES_WHEN = f"fewer than {MIN_ACTIVE_THREADS:g} of 32 threads active per executed instruction on average"
TOOL = Tool(NAME, "Warp divergence (active threads per instruction)", frozenset({"memory", "compute", "latency"}),
            METRICS, trigger, analyze, recommend, defers_to=("block_size_multiple",),
            fires_when=FIRES_WHEN)
