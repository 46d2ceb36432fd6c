"""MIO / LSU throttle: the memory-instruction queues are full.

"MIO throttle" stalls mean the queue to the shared-memory / special-function units is full (typically
shared memory hammered by conflicting or narrow accesses); "LG throttle" means the local/global memory
queue is full (too many small memory instructions, often local-memory traffic). Fires when the two
together take at least :data:`MIN_SHARE` of warp time. Bank conflicts and local memory are common causes
and, when they fire, carry the specific prescription instead.
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

NAME = "mio_lsu_throttle"
METRICS = (stall_metric("mio_throttle"), stall_metric("lg_throttle"), WARP_LATENCY)
MIN_SHARE = 0.25


def trigger(ctx: DiagnosisContext) -> bool:
    throttled = stall_share(ctx, "mio_throttle", "lg_throttle")
    return throttled is not None and throttled >= MIN_SHARE


def _dominant(ctx: DiagnosisContext) -> str:
    mio, lg = stall_share(ctx, "mio_throttle") or 0.0, stall_share(ctx, "lg_throttle") or 0.0
    return "mio_throttle" if mio >= lg else "lg_throttle"


def analyze(ctx: DiagnosisContext) -> Finding:
    reason = _dominant(ctx)
    queue = "shared-memory (MIO)" if reason == "mio_throttle" else "local/global memory (LSU)"
    summary = f"warps spend {stall_share(ctx, reason):.0%} of their time waiting for the full {queue} instruction queue"
    return Finding(NAME, f"{queue} queue full", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    reason = _dominant(ctx)
    throttled = stall_share(ctx, reason) or 0.0
    if reason == "mio_throttle":
        change = ("issue fewer shared-memory instructions: remove bank conflicts, read 64/128-bit words from shared "
                  "memory, and keep values reused by a thread in registers")
        acts: tuple[actions.Action, ...] = ()
    else:
        change = ("issue fewer, wider global/local memory instructions: 128-bit loads and stores, and no "
                  "per-thread arrays in local memory")
        acts = (actions.vectorize_loads(128),)
    return Prescription(NAME, change, finding.summary, gain_range(amdahl(throttled, 2.0), headroom(ctx)), acts,
                        finding)


FIRES_WHEN = f"MIO and LSU throttle stalls together take at least {MIN_SHARE:.0%} of warp time"
TOOL = Tool(NAME, "MIO / LSU instruction-queue throttle stalls", frozenset({"memory", "compute", "latency"}),
            METRICS, trigger, analyze, recommend, defers_to=("bank_conflicts", "local_memory"),
            fires_when=FIRES_WHEN)
