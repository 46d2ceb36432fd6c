"""Block size not a multiple of the 32-thread warp: the last warp of every block runs partly empty.

The static check :func:`kernelpro.static_analysis.check_block_size` decides from the launch; the gain is
the share of issued lanes that are empty, ``round_up(threads, 32) / threads``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.static_analysis import check_block_size
from kernelpro.tools.base import Finding, Prescription, Tool, gain_range, headroom, read

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "block_size_multiple"
METRICS = ("launch__block_size", "smsp__thread_inst_executed_per_inst_executed.ratio")
WARP = 32


def trigger(ctx: DiagnosisContext) -> bool:
    return ctx.static_check(check_block_size) is not None


def analyze(ctx: DiagnosisContext) -> Finding:
    static = ctx.static_check(check_block_size)
    assert static is not None
    return Finding(NAME, "partial warps", static.message, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    assert ctx.launch is not None
    threads = ctx.launch.threads_per_block
    new = -(-threads // WARP) * WARP
    change = f"launch {new}-thread blocks instead of {threads} (a multiple of 32), guarding the extra threads"
    return Prescription(NAME, change, finding.summary, gain_range(new / threads, headroom(ctx)),
                        (actions.block_size(threads, new, ctx.launch.block_knob),), finding)


FIRES_WHEN = "threads per block is not a multiple of 32"
TOOL = Tool(NAME, "Block size not a multiple of 32", frozenset({"memory", "compute", "latency"}), METRICS,
            trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
