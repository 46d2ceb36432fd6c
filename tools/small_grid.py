"""A grid too small to fill the GPU.

Fires when some SMs get no block at all (fewer blocks than SMs), or the grid fills less than half of one
wave of block slots (``SMs x blocks per SM``), so most of the latency-hiding warps the GPU could run do
not exist. The gain is at least the SM fill (every SM working) and at most the block-slot fill, both
capped by the roofline headroom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.tools.base import Finding, Prescription, Tool, headroom, read

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "small_grid"
METRICS = ("launch__grid_size", "launch__sm_count", "launch__waves_per_multiprocessor", "launch__block_size")
MIN_WAVE_FILL = 0.5


def _slots(ctx: DiagnosisContext) -> int | None:
    """Blocks the whole GPU holds at once."""
    if not ctx.sm_count or ctx.occupancy is None or not ctx.occupancy.blocks_per_sm:
        return None
    return ctx.sm_count * ctx.occupancy.blocks_per_sm


def trigger(ctx: DiagnosisContext) -> bool:
    if ctx.launch is None or not ctx.sm_count:
        return False
    blocks, slots = ctx.launch.blocks, _slots(ctx)
    return blocks < ctx.sm_count or (slots is not None and blocks < MIN_WAVE_FILL * slots)


def analyze(ctx: DiagnosisContext) -> Finding:
    assert ctx.launch is not None and ctx.sm_count
    blocks, sms, slots = ctx.launch.blocks, ctx.sm_count, _slots(ctx)
    summary = f"{blocks} blocks of {ctx.launch.threads_per_block} threads on {sms} SMs"
    if blocks < sms:
        summary += f": {sms - blocks} SMs get no block"
    if slots:
        summary += f"; the grid fills {blocks / slots:.1%} of the {slots} blocks the GPU holds at once"
    return Finding(NAME, "grid too small", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    assert ctx.launch is not None and ctx.sm_count
    blocks, sms, threads = ctx.launch.blocks, ctx.sm_count, ctx.launch.threads_per_block
    slots = _slots(ctx) or sms
    cap = headroom(ctx)
    high = slots / blocks if cap is None else min(slots / blocks, cap)
    low = min(max(sms / blocks, 1.0), high)
    if ctx.sass is None or ctx.sass.loops:  # the kernel loops over its work (or may): launch more blocks
        change = f"launch at least {slots} blocks ({sms} SMs x {slots // sms}) and let a grid-stride loop share " \
                 "the work"
        acts = (actions.increase_grid(slots, ctx.launch.grid_knob),)
    else:  # one element per thread and few of them: smaller blocks make more of them
        new = max(32, (threads * blocks // sms) // 32 * 32)
        change = f"split the work into at least {sms} blocks: use {new}-thread blocks, or a grid-stride loop " \
                 f"over {slots} blocks"
        acts = (actions.block_size(threads, new, ctx.launch.block_knob), actions.grid_stride_loop())
    return Prescription(NAME, change, finding.summary, (low, max(high, 1.0)), acts, finding)


FIRES_WHEN = f"fewer blocks than SMs, or the grid fills under {MIN_WAVE_FILL:.0%} of one wave of block slots"
TOOL = Tool(NAME, "Grid too small to fill the SMs", frozenset({"memory", "compute", "latency"}), METRICS,
            trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
