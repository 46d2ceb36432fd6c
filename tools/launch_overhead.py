"""Launch overhead dominating: the kernel runs for only a few microseconds.

A kernel launch costs a few microseconds of host and GPU front-end time whatever the kernel does; we take
:data:`LAUNCH_COST_US` as that cost. Below :data:`MAX_DURATION_US` of GPU time, that fixed cost is a large
part of what the caller pays, and the kernel's inner speed matters less than doing more per launch. The
prescription is about the caller (fusion, CUDA graphs), so it carries no machine action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro.tools.base import Finding, Prescription, Tool, gain_range, read

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "launch_overhead"
DURATION = "gpu__time_duration.sum"
METRICS = (DURATION,)
MAX_DURATION_US = 5.0
LAUNCH_COST_US = 3.0


def _duration_us(ctx: DiagnosisContext) -> float | None:
    ns = ctx.number(DURATION)
    return None if ns is None else ns / 1000


def trigger(ctx: DiagnosisContext) -> bool:
    us = _duration_us(ctx)
    return us is not None and 0 < us < MAX_DURATION_US


def analyze(ctx: DiagnosisContext) -> Finding:
    us = _duration_us(ctx) or 0.0
    summary = f"the kernel runs {us:.1f} us, about the cost of launching it (a few us)"
    return Finding(NAME, "launch overhead", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    us = _duration_us(ctx) or MAX_DURATION_US
    change = ("do more work per launch: fuse this kernel with its neighbours, batch several problems into one "
              "launch, or replay the sequence as a CUDA graph")
    return Prescription(NAME, change, finding.summary, gain_range((us + LAUNCH_COST_US) / us), (), finding)


FIRES_WHEN = f"the kernel runs for less than {MAX_DURATION_US:g} microseconds"
TOOL = Tool(NAME, "Launch overhead dominating (kernel of a few microseconds)",
            frozenset({"memory", "compute", "latency"}), METRICS, trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
