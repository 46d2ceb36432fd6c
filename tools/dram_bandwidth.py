"""DRAM bandwidth far below what a memory-side kernel should reach.

A kernel whose arithmetic intensity is below the roofline's ridge is meant to be DRAM-bound, yet in the
latency class no unit is busy: DRAM runs below 60% of peak. By Little's law, bandwidth = bytes in flight
/ latency, and the latency is the same, so reaching the achievable bandwidth needs ``achievable /
achieved`` times the bytes in flight per SM: wider loads, more independent loads per thread, or more
warps. "Achievable" is :data:`ACHIEVABLE_DRAM_FRACTION` of the data-sheet peak: sustained copies on an
H100 SXM reach about 3.0-3.1 of its 3.35 TB/s. A grid too small to fill the GPU is the more specific cause
when it fires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.roofline import BUSY_PCT
from kernelpro.tools.base import Finding, Prescription, Tool, gain_range, headroom, read

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "dram_bandwidth"
METRICS = ("dram__bytes.sum.per_second", "dram__bytes_read.sum", "dram__bytes_write.sum",
           "sm__warps_active.avg.pct_of_peak_sustained_active")
ACHIEVABLE_DRAM_FRACTION = 0.9


def trigger(ctx: DiagnosisContext) -> bool:
    verdict = ctx.verdict
    return bool(verdict and verdict.dram_bytes_per_s > 0 and verdict.memory_side and verdict.dram_pct < BUSY_PCT)


def _needed(ctx: DiagnosisContext) -> float:
    assert ctx.verdict is not None
    return 100 * ACHIEVABLE_DRAM_FRACTION / ctx.verdict.dram_pct


def analyze(ctx: DiagnosisContext) -> Finding:
    verdict = ctx.verdict
    assert verdict is not None
    where = f"{verdict.intensity:.2g} FLOP/byte, below the ridge at {verdict.ridge:.3g}" if verdict.intensity \
        else "it does no floating-point work"
    summary = (f"the kernel belongs on the DRAM roof ({where}) but DRAM runs at {verdict.dram_pct:.1f}% of peak: "
               f"each SM needs about {_needed(ctx):.0f}x more bytes in flight to reach "
               f"{ACHIEVABLE_DRAM_FRACTION:.0%} of peak")
    return Finding(NAME, "DRAM bandwidth below achievable", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    change = ("put more independent bytes in flight per SM: 128-bit loads, several loads per thread issued before "
              "their first use (unroll), and enough resident warps")
    return Prescription(NAME, change, finding.summary, gain_range(_needed(ctx), headroom(ctx)),
                        (actions.vectorize_loads(128), actions.unroll(4)), finding)


FIRES_WHEN = f"a kernel on the memory side of the ridge reaches under {BUSY_PCT:g}% of DRAM bandwidth"
TOOL = Tool(NAME, "DRAM bandwidth below the achievable peak on the memory side of the roofline",
            frozenset({"latency"}), METRICS, trigger, analyze, recommend, defers_to=("small_grid",),
            fires_when=FIRES_WHEN)
