"""Tail effect (wave quantization): a last, partial wave of blocks leaves SMs idle.

A grid runs in waves of ``SMs x blocks per SM`` blocks. With ``w`` waves the GPU is busy for ``ceil(w)``
wave-times but does ``w`` waves of work, so ``(ceil(w) - w) / ceil(w)`` of the SM time idles in the tail.
That matters only for grids of few waves; we fire when it is at least :data:`MIN_IDLE_SHARE`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.tools.base import Finding, Prescription, Tool, gain_range, headroom, read

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "tail_effect"
METRICS = ("launch__waves_per_multiprocessor", "launch__grid_size", "launch__sm_count")
MIN_IDLE_SHARE = 0.2


def _idle_share(waves: float) -> float:
    return (math.ceil(waves) - waves) / math.ceil(waves)


def trigger(ctx: DiagnosisContext) -> bool:
    waves = ctx.waves
    return waves is not None and waves >= 1 and _idle_share(waves) >= MIN_IDLE_SHARE


def analyze(ctx: DiagnosisContext) -> Finding:
    waves = ctx.waves or 1.0
    last = waves - math.floor(waves)
    summary = (f"the grid is {waves:.2f} waves of blocks: the last wave runs {last:.0%} full, leaving "
               f"{_idle_share(waves):.0%} of the SM time idle")
    return Finding(NAME, "partial last wave", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    waves = ctx.waves or 1.0
    per_wave = None
    if ctx.sm_count and ctx.occupancy and ctx.occupancy.blocks_per_sm:
        per_wave = ctx.sm_count * ctx.occupancy.blocks_per_sm
    target = f"exactly {per_wave * max(math.floor(waves), 1)} blocks" if per_wave else "a whole number of waves"
    change = (f"make the grid a whole number of waves: with a grid-stride loop launch {target}, or resize the "
              "blocks so the block count fills whole waves")
    return Prescription(NAME, change, finding.summary, gain_range(math.ceil(waves) / waves, headroom(ctx)),
                        (actions.grid_stride_loop(),), finding)


FIRES_WHEN = f"at least one full wave and the idle part of the last wave is at least {MIN_IDLE_SHARE:.0%}"
TOOL = Tool(NAME, "Tail effect: a partial last wave of blocks", frozenset({"memory", "compute", "latency"}),
            METRICS, trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
