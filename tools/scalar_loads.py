"""Scalar 32-bit global loads in a loop over contiguous data: vectorize to 128 bits.

Builds on the static check :func:`kernelpro.static_analysis.check_scalar_loads` (all global loads 32-bit,
some inside loops, none wider) and adds what only counters know: whether the accesses are contiguous and
aligned, i.e. use essentially every byte of each 32-byte sector they fetch (at least
:data:`FULL_SECTOR_BYTES`). Only then can float4 loads replace four scalar ones. One-element-per-thread
kernels without a loop are left to the static report: vectorizing them means re-sizing the grid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.static_analysis import check_narrow_accesses, check_scalar_loads
from kernelpro.tools.base import Finding, Prescription, Tool, amdahl, gain_range, headroom, read

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "scalar_loads"
BYTES_PER_SECTOR = "smsp__sass_average_data_bytes_per_sector_mem_global_op_ld.ratio"
LSU_PCT = "sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active"
METRICS = (BYTES_PER_SECTOR, LSU_PCT, "smsp__sass_inst_executed_op_global_ld.sum")
FULL_SECTOR_BYTES = 30.0  # misaligned but contiguous warps already drop to ~26 of 32


def trigger(ctx: DiagnosisContext) -> bool:
    if ctx.sass is None:
        return False
    static = ctx.static_check(check_scalar_loads) or ctx.static_check(check_narrow_accesses)
    if static is None or static.severity != "warning":  # "warning": scalar (or 8/16-bit) loads inside loops
        return False
    used = ctx.number(BYTES_PER_SECTOR)
    return used is None or used >= FULL_SECTOR_BYTES


def analyze(ctx: DiagnosisContext) -> Finding:
    assert ctx.sass is not None
    static = ctx.static_check(check_scalar_loads)
    hist, loops = ctx.sass.histogram, ctx.sass.histogram_in_loops
    width = "32-bit" if static else "8/16-bit"
    cls = "global_load_32" if static else "global_load_narrow"
    static = static or ctx.static_check(check_narrow_accesses)
    count, in_loops = hist[cls], loops[cls]
    summary = (f"the kernel's {count} global load instruction{'s' if count > 1 else ''} {'are' if count > 1 else 'is'}"
               f" scalar {width}, {in_loops} inside loops, none wider")
    used = ctx.number(BYTES_PER_SECTOR)
    if used is not None:
        summary += f"; the accesses are contiguous ({used:.0f} of every 32 fetched bytes used)"
    return Finding(NAME, "scalar global loads", summary, read(ctx, *METRICS), static.evidence if static else ())


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    if ctx.bound == "latency":
        high = 4.0  # four times the bytes in flight per load instruction
        effect = "each float4 load puts 4x the bytes in flight, which a latency-bound loop needs"
    else:
        lsu = ctx.number(LSU_PCT)
        high = amdahl(lsu / 100, 4.0) if lsu is not None else 1.25
        effect = "a quarter of the load instructions for the same bytes"
    change = ("load 128-bit vectors (float4) in the hot loop, four elements per thread per iteration, with a "
              "scalar loop for the remainder")
    return Prescription(NAME, change, f"{finding.summary}; {effect}", gain_range(high, headroom(ctx)),
                        (actions.vectorize_loads(128),), finding)


FIRES_WHEN = f"only scalar 32-bit global loads in loops, using at least {FULL_SECTOR_BYTES:g} bytes of each sector"
TOOL = Tool(NAME, "Scalar 32-bit global loads where 128-bit loads fit", frozenset({"memory", "latency"}), METRICS,
            trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
