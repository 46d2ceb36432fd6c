"""Long-scoreboard stalls: warps wait for global/local memory results.

ncu splits each warp's cycles per issued instruction into stall reasons; "long scoreboard" is waiting for
an L1TEX result (global, local, texture). Memory-bound kernels always wait there, so the tool runs only
for latency-bound ones, where it means too few independent loads are in flight. It fires when the wait is
at least :data:`MIN_SHARE` of warp time. A tiny grid, local memory, uncoalesced access or the DRAM
bandwidth tool name the cause more precisely and take precedence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.tools.base import (
    WARP_LATENCY,
    Finding,
    Prescription,
    Tool,
    amdahl,
    gain_range,
    headroom,
    read,
    stall_metric,
    stall_share,
)

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "long_scoreboard"
METRICS = (stall_metric("long_scoreboard"), WARP_LATENCY)
MIN_SHARE = 0.4
UNROLL = 4


def trigger(ctx: DiagnosisContext) -> bool:
    waiting = stall_share(ctx, "long_scoreboard")
    return waiting is not None and waiting >= MIN_SHARE


def analyze(ctx: DiagnosisContext) -> Finding:
    waiting = stall_share(ctx, "long_scoreboard") or 0.0
    summary = (f"warps spend {waiting:.0%} of their time waiting for global/local memory results "
               f"({ctx.number(stall_metric('long_scoreboard')):.0f} of {ctx.number(WARP_LATENCY):.0f} cycles per "
               "issued instruction)")
    return Finding(NAME, "waiting on memory (long scoreboard)", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    waiting = stall_share(ctx, "long_scoreboard") or 0.0
    change = (f"issue the loads of several iterations before using any: unroll the loop by {UNROLL} with the loads "
              "hoisted, or prefetch the next tile (into registers, or with cp.async into shared memory)")
    return Prescription(NAME, change, finding.summary, gain_range(amdahl(waiting, UNROLL), headroom(ctx)),
                        (actions.unroll(UNROLL),), finding)


FIRES_WHEN = f"waiting on global/local memory (long scoreboard) takes at least {MIN_SHARE:.0%} of warp time"
TOOL = Tool(NAME, "Long-scoreboard stalls (waiting on global/local memory)", frozenset({"latency"}), METRICS,
            trigger, analyze, recommend,
            defers_to=("small_grid", "dram_bandwidth", "local_memory", "uncoalesced"),
            fires_when=FIRES_WHEN)
