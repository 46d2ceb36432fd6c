"""Register spills and local-memory arrays.

Local memory is per-thread memory that lives in DRAM behind L1/L2: ptxas puts spilled registers there,
and any per-thread array indexed with a run-time value. The counters say how much of the kernel's L1
traffic it is and whether its stores reach DRAM; ptxas and the SASS say which of the two causes it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.tools.base import Finding, Prescription, Tool, gain_range, read, sass_lines, share, task_headroom

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "local_memory"
LOCAL_LD = "smsp__sass_inst_executed_op_local_ld.sum"
LOCAL_ST = "smsp__sass_inst_executed_op_local_st.sum"
LOCAL_SECTORS = ("l1tex__t_sectors_pipe_lsu_mem_local_op_ld.sum", "l1tex__t_sectors_pipe_lsu_mem_local_op_st.sum")
GLOBAL_SECTORS = ("l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum", "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum")
DRAM_WRITE = "dram__bytes_write.sum"
METRICS = (LOCAL_LD, LOCAL_ST, *LOCAL_SECTORS, *GLOBAL_SECTORS)
SECTOR = 32


def _local_instructions(ctx: DiagnosisContext) -> float | None:
    ld, st = ctx.number(LOCAL_LD), ctx.number(LOCAL_ST)
    return None if ld is None or st is None else ld + st


def trigger(ctx: DiagnosisContext) -> bool:
    executed = _local_instructions(ctx)
    if executed is not None:
        return executed > 0
    spills = ctx.resources is not None and ctx.resources.spills
    in_sass = ctx.sass is not None and (ctx.sass.histogram["local_load"] + ctx.sass.histogram["local_store"]) > 0
    return spills or in_sass


def _sectors(ctx: DiagnosisContext, names: tuple[str, ...]) -> float | None:
    values = [ctx.number(n) for n in names]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def analyze(ctx: DiagnosisContext) -> Finding:
    res = ctx.resources
    if res is not None and res.spills:
        cause = f"ptxas spilled registers ({res.spill_store_bytes} bytes stored, {res.spill_load_bytes} loaded)"
    elif res is not None and res.stack_frame_bytes:
        cause = f"a {res.stack_frame_bytes}-byte per-thread array is indexed at run time, so it lives in local memory"
    else:
        cause = "per-thread data lives in local memory"
    parts = [cause]
    executed = _local_instructions(ctx)
    warps = ctx.launch.blocks * -(-ctx.launch.threads_per_block // 32) if ctx.launch else None
    if executed and warps:
        parts.append(f"{executed / warps:.0f} local loads/stores per warp")
    local_share = share(_sectors(ctx, LOCAL_SECTORS), (_sectors(ctx, LOCAL_SECTORS) or 0)
                        + (_sectors(ctx, GLOBAL_SECTORS) or 0))
    if local_share is not None:
        parts.append(f"{local_share:.0%} of the L1 traffic is local memory")
    written, stored = ctx.number(DRAM_WRITE), ctx.number(GLOBAL_SECTORS[1])
    if written and stored and written > 2 * stored * SECTOR:
        parts.append(f"DRAM receives {written / (stored * SECTOR):.0f}x the bytes the kernel stores to global memory")
    evidence = sass_lines(ctx, lambda ins: ins.op_class == "local_load", 1) + sass_lines(
        ctx, lambda ins: ins.op_class == "local_store", 1)
    if res is not None:
        evidence = (f"ptxas: {res.stack_frame_bytes} bytes stack frame, {res.spill_store_bytes} bytes spill stores, "
                    f"{res.spill_load_bytes} bytes spill loads", *evidence)
    return Finding(NAME, "local memory", "; ".join(parts), read(ctx, *METRICS, DRAM_WRITE), evidence)


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    res = ctx.resources
    local, total = _sectors(ctx, LOCAL_SECTORS), (_sectors(ctx, LOCAL_SECTORS) or 0) + (
        _sectors(ctx, GLOBAL_SECTORS) or 0)
    fraction = share(local, total)
    high = 1 / (1 - fraction) if fraction is not None and fraction < 1 else 2.0
    if res is not None and res.spills:
        change = ("stop the spills: fewer live values per thread (shorter unrolls, recompute cheap values), or "
                  "relax launch bounds / -maxrregcount if they force the register cap")
        acts: tuple[actions.Action, ...] = ()
    else:
        change = ("keep the per-thread array out of local memory: index it only with compile-time constants "
                  "(fully unrolled loops), or, when the index depends on thread data, move it to shared memory "
                  "laid out [element][thread] so a warp's lanes hit different banks")
        acts = (actions.unroll(None),)
    return Prescription(NAME, change, finding.summary, gain_range(high, task_headroom(ctx)), acts, finding)


FIRES_WHEN = "local loads/stores execute (without counters: ptxas spills or local-memory ops in the SASS)"
TOOL = Tool(NAME, "Register spills and local-memory arrays", frozenset({"memory", "compute", "latency"}), METRICS,
            trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
