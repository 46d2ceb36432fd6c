"""Barrier stalls: warps wait at block-wide barriers for the slowest warp of their block.

Fires when waiting at barriers takes at least :data:`MIN_SHARE` of warp time: the warps of a block do
unequal work between barriers, or barriers are more frequent than the data dependencies need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro.tools.base import (
    WARP_LATENCY,
    Finding,
    Prescription,
    Tool,
    amdahl,
    gain_range,
    headroom,
    read,
    sass_lines,
    stall_metric,
    stall_share,
)

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "barrier_stalls"
METRICS = (stall_metric("barrier"), WARP_LATENCY, "launch__barrier_count")
MIN_SHARE = 0.2


def trigger(ctx: DiagnosisContext) -> bool:
    waiting = stall_share(ctx, "barrier")
    return waiting is not None and waiting >= MIN_SHARE


def analyze(ctx: DiagnosisContext) -> Finding:
    summary = f"warps spend {stall_share(ctx, 'barrier'):.0%} of their time waiting at block-wide barriers"
    if ctx.sass is not None:
        summary += f" ({ctx.sass.histogram['barrier']} barrier instructions, {ctx.sass.histogram_in_loops['barrier']}" \
                   " inside loops)"
    return Finding(NAME, "barrier stalls", summary, read(ctx, *METRICS),
                   sass_lines(ctx, lambda ins: ins.op_class == "barrier"))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    waiting = stall_share(ctx, "barrier") or 0.0
    change = ("use fewer block-wide barriers: double-buffer shared tiles so each tile needs one barrier, give the "
              "warps of a block equal work between barriers, and use warp-level sync where only a warp shares data")
    return Prescription(NAME, change, finding.summary, gain_range(amdahl(waiting, 2.0), headroom(ctx)), (), finding)


FIRES_WHEN = f"waiting at block barriers takes at least {MIN_SHARE:.0%} of warp time"
TOOL = Tool(NAME, "Barrier stalls (warps waiting at block barriers)", frozenset({"memory", "compute", "latency"}),
            METRICS, trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
