"""Achieved occupancy well below the theoretical one.

The SMs could hold more warps than they do on average: blocks are short-lived (launch and retire costs
between them), warps of a block finish unevenly, or the last wave is partial. Nsight Compute reports any
gap; we fire below 80% of the theoretical value (a fifth of the possible warps missing) and only for
latency-bound kernels, where warps are what hides latency. A grid too small to fill the GPU, or a tail
wave, explains the gap more specifically, so those tools take precedence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.tools.base import Finding, Prescription, Tool, gain_range, headroom, read

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "occupancy_gap"
ACHIEVED = "sm__warps_active.avg.pct_of_peak_sustained_active"
THEORETICAL = "sm__maximum_warps_per_active_cycle_pct"
METRICS = (ACHIEVED, THEORETICAL, "launch__waves_per_multiprocessor")
MIN_RATIO = 0.8


def trigger(ctx: DiagnosisContext) -> bool:
    achieved, theoretical = ctx.number(ACHIEVED), ctx.number(THEORETICAL)
    return bool(achieved is not None and theoretical and achieved / theoretical < MIN_RATIO)


def analyze(ctx: DiagnosisContext) -> Finding:
    achieved, theoretical = ctx.number(ACHIEVED) or 0.0, ctx.number(THEORETICAL) or 1.0
    missing = 1 - achieved / theoretical
    summary = (f"the SMs hold {achieved:.0f}% of their warp slots on average against a theoretical "
               f"{theoretical:.0f}%: {missing:.0%} of the warps that could hide latency are missing")
    return Finding(NAME, "achieved occupancy below theoretical", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    achieved, theoretical = ctx.number(ACHIEVED) or 1.0, ctx.number(THEORETICAL) or 1.0
    change = ("give each block more work: a grid-stride loop over about one wave of blocks instead of many "
              "short-lived blocks, with the work split evenly between warps")
    why = f"{finding.summary}, typically from blocks that start and retire too often or warps that finish unevenly"
    return Prescription(NAME, change, why, gain_range(theoretical / max(achieved, 1e-9), headroom(ctx)),
                        (actions.grid_stride_loop(),), finding)


FIRES_WHEN = f"achieved occupancy below {MIN_RATIO:g}x the theoretical occupancy"
TOOL = Tool(NAME, "Achieved occupancy far below the theoretical occupancy", frozenset({"latency"}), METRICS,
            trigger, analyze, recommend, defers_to=("small_grid", "tail_effect"),
            fires_when=FIRES_WHEN)
