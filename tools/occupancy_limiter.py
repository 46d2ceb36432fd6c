"""Theoretical occupancy held down by registers, shared memory or the block size.

Fires when fewer than half the SM's warp slots can be filled (the static analysis uses the same line:
below it, latency hiding gets thin for memory- and latency-bound code) and the occupancy calculator's
what-if table shows a change of the limiting resource that raises it. The prescription quotes that table:
the register cap (as launch bounds), the shared-memory size or the block size that reaches more warps.
Compute-bound kernels are left alone: with a unit saturated, more warps do not help.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.occupancy import WhatIfRow
from kernelpro.static_analysis import LOW_OCCUPANCY
from kernelpro.tools.base import Finding, Prescription, Tool, gain_range, headroom, read

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "occupancy_limiter"
METRICS = (
    "launch__occupancy_limit_registers",
    "launch__occupancy_limit_shared_mem",
    "launch__occupancy_limit_warps",
    "launch__occupancy_limit_blocks",
    "launch__occupancy_limit_barriers",
    "sm__maximum_warps_per_active_cycle_pct",
)
# The what-if change that relieves each limiter.
_CHANGE = {"registers": "registers", "shared_mem": "shared_mem", "warps": "block_size", "blocks": "block_size",
           "barriers": "block_size"}


def _rows(ctx: DiagnosisContext) -> list[WhatIfRow]:
    """What-if rows that change the limiting resource and raise occupancy, best first."""
    occ = ctx.occupancy
    if occ is None:
        return []
    change = _CHANGE[occ.limiter]
    rows = [r for r in ctx.what_if if r.change == change and r.occupancy.occupancy > occ.occupancy]
    enough = [r for r in rows if r.occupancy.occupancy >= LOW_OCCUPANCY]
    if enough:  # the smallest change that gets out of the low-occupancy zone
        return sorted(enough, key=lambda r: abs(r.after - r.before))
    return sorted(rows, key=lambda r: -r.occupancy.occupancy)


def trigger(ctx: DiagnosisContext) -> bool:
    return ctx.occupancy is not None and ctx.occupancy.occupancy < LOW_OCCUPANCY and bool(_rows(ctx))


def analyze(ctx: DiagnosisContext) -> Finding:
    occ = ctx.occupancy
    assert occ is not None
    detail = {
        "registers": f"{occ.registers_per_thread} registers per thread allow {occ.limit_registers} blocks",
        "shared_mem": f"{occ.shared_bytes:,} bytes of shared memory per block allow {occ.limit_shared_mem} blocks",
        "warps": f"{occ.warps_per_block}-warp blocks fit {occ.limit_warps} per SM",
        "blocks": f"{occ.threads_per_block}-thread blocks hit the {occ.limit_blocks}-block limit",
        "barriers": f"{occ.barriers} barriers per block allow {occ.limit_barriers} blocks",
    }[occ.limiter]
    summary = (f"theoretical occupancy {occ.occupancy:.0%} ({occ.active_warps_per_sm} of {occ.max_warps_per_sm} "
               f"warps per SM), limited by {occ.limiter.replace('_', ' ')}: {detail}")
    return Finding(NAME, f"occupancy limited by {occ.limiter}", summary, read(ctx, *METRICS),
                   tuple(r.text for r in _rows(ctx)[:3]))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    occ = ctx.occupancy
    assert occ is not None
    row = _rows(ctx)[0]
    new = row.occupancy
    reach = f"{new.active_warps_per_sm} warps per SM ({new.occupancy:.0%}) instead of {occ.active_warps_per_sm}"
    if row.change == "registers":
        bounds = actions.launch_bounds(occ.threads_per_block, new.blocks_per_sm)
        change = (f"cap registers at {row.after} per thread: declare launch bounds ({occ.threads_per_block}, "
                  f"{new.blocks_per_sm}) (or -maxrregcount={row.after})")
        acts: tuple[actions.Action, ...] = (bounds, actions.maxrregcount(row.after))
        why = f"{finding.summary}; at {row.after} registers {reach}; check that ptxas reports no spills"
    elif row.change == "shared_mem":
        change = f"cut shared memory to at most {row.after:,} bytes per block (smaller tiles or fewer stages)"
        acts = ()
        why = f"{finding.summary}; at {row.after:,} bytes {reach}"
    else:
        knob = ctx.launch.block_knob if ctx.launch else None
        change = f"launch {row.after}-thread blocks instead of {row.before}"
        acts = (actions.block_size(row.before, row.after, knob),)
        why = f"{finding.summary}; with {row.after}-thread blocks {reach}"
    return Prescription(NAME, change, why, gain_range(new.occupancy / occ.occupancy, headroom(ctx)), acts, finding)


FIRES_WHEN = f"theoretical occupancy under {LOW_OCCUPANCY:.0%} and the what-if table shows a change that raises it"
TOOL = Tool(NAME, "Occupancy limited by registers, shared memory or block size (what-if table)",
            frozenset({"latency", "memory"}), METRICS, trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
