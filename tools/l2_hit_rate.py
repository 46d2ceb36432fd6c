"""Low L2 hit rate where reuse exists: DRAM delivers the same input several times.

Reuse can only be judged against the data's size, so this tool needs the task: the unique input bytes
are the sizes of its input buffers. When DRAM reads are at least :data:`MIN_REFETCH` times that, reused
data was evicted before its next use. Uncoalesced access and local memory also inflate DRAM reads and are
the more specific diagnosis when they fire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro.tools.base import Finding, Prescription, Tool, amdahl, gain_range, read, task_headroom

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "l2_hit_rate"
DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"
HITS = "lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum"
MISSES = "lts__t_sectors_srcunit_tex_op_read_lookup_miss.sum"
METRICS = (DRAM_READ, DRAM_WRITE, HITS, MISSES, "lts__t_sector_hit_rate.pct", "device__attribute_l2_cache_size")
MIN_REFETCH = 2.0


def _input_bytes(ctx: DiagnosisContext) -> float | None:
    if ctx.task is None:
        return None
    env = ctx.env or ctx.task.env()
    total = sum(ctx.task.nbytes(arg, env) for arg in ctx.task.buffers if arg.is_input)
    return float(total) or None


def _refetch(ctx: DiagnosisContext) -> float | None:
    unique, read_bytes = _input_bytes(ctx), ctx.number(DRAM_READ)
    return None if unique is None or read_bytes is None else read_bytes / unique


def trigger(ctx: DiagnosisContext) -> bool:
    refetch = _refetch(ctx)
    return refetch is not None and refetch >= MIN_REFETCH


def analyze(ctx: DiagnosisContext) -> Finding:
    refetch, unique = _refetch(ctx) or 0.0, _input_bytes(ctx) or 0.0
    summary = f"DRAM delivered {refetch:.1f}x the {unique / 1e6:.0f} MB of input, so reused data left the L2 " \
              "before its next use"
    hits, misses = ctx.number(HITS), ctx.number(MISSES)
    if hits is not None and misses:
        summary += f" (L2 read hit rate {hits / (hits + misses):.0%})"
    return Finding(NAME, "reuse missed in L2", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    refetch = _refetch(ctx) or 1.0
    read_bytes, written = ctx.number(DRAM_READ) or 0.0, ctx.number(DRAM_WRITE) or 0.0
    high = amdahl(read_bytes / (read_bytes + written) if read_bytes + written else 1.0, refetch)
    change = ("make reuse happen while the data is resident: tile the loops so each tile of input is used fully "
              "before moving on (in shared memory or registers), and order blocks so neighbours share data")
    return Prescription(NAME, change, finding.summary, gain_range(high, task_headroom(ctx)), (), finding)


FIRES_WHEN = f"DRAM reads are at least {MIN_REFETCH:g}x the task's input bytes (data fetched again instead of reused)"
TOOL = Tool(NAME, "Low L2 hit rate where the data is reused", frozenset({"memory", "latency"}), METRICS, trigger,
            analyze, recommend, defers_to=("uncoalesced", "local_memory"),
            fires_when=FIRES_WHEN)
