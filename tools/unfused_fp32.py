"""Non-fused FP32: multiplies and adds issued separately where one FFMA would do.

Counted at run time (FP32 FADD, FMUL and FFMA thread instructions), or, without counters, read from the
SASS inside loops by the static check :func:`kernelpro.static_analysis.check_unfused`. A kernel with more
add/multiply pairs than FMAs leaves fusion on the table: each fusion saves an issue slot, so the gain is
bounded by how busy the FMA pipe is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.static_analysis import check_unfused
from kernelpro.tools.base import Finding, Prescription, Tool, amdahl, gain_range, headroom, read, sass_lines

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "unfused_fp32"
_RATE = "smsp__sass_thread_inst_executed_op_{}_pred_on.sum.per_cycle_elapsed"
FADD, FMUL, FFMA = (_RATE.format(op) for op in ("fadd", "fmul", "ffma"))
FMA_PIPE = "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active"
METRICS = (FADD, FMUL, FFMA, FMA_PIPE)


def _counts(ctx: DiagnosisContext) -> tuple[float, float, float] | None:
    values = (ctx.number(FADD), ctx.number(FMUL), ctx.number(FFMA))
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def trigger(ctx: DiagnosisContext) -> bool:
    counts = _counts(ctx)
    if counts is not None:
        fadd, fmul, ffma = counts
        return min(fadd, fmul) > ffma
    return ctx.sass is not None and ctx.static_check(check_unfused) is not None


def analyze(ctx: DiagnosisContext) -> Finding:
    counts = _counts(ctx)
    if counts is not None:
        fadd, fmul, ffma = counts
        summary = (f"FP32 work runs as {fmul:.3g} multiplies and {fadd:.3g} adds per cycle against {ffma:.3g} fused "
                   "multiply-adds")
    else:
        static = ctx.static_check(check_unfused)
        summary = static.message if static else "multiplies and adds are not fused"
    evidence = sass_lines(ctx, lambda ins: ins.in_loop and ins.opcode in ("FMUL", "FADD"))
    return Finding(NAME, "unfused FP32 multiply-add", summary, read(ctx, *METRICS), evidence)


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    counts = _counts(ctx)
    if counts is not None:
        fadd, fmul, ffma = counts
        pairs, total = min(fadd, fmul), fadd + fmul + ffma
        pipe = ctx.number(FMA_PIPE)
        high = amdahl(pipe / 100 if pipe is not None else 0.5, total / (total - pairs))
    else:
        high = 1.3  # static only: each pair in a loop costs one extra issue slot
    change = ("let the compiler fuse multiply-adds: write a * b + c (or fmaf) with the product feeding the add "
              "directly, and do not compile with --fmad=false")
    return Prescription(NAME, change, finding.summary, gain_range(high, headroom(ctx)),
                        (actions.nvcc_flag("--fmad=true"),), finding)


FIRES_WHEN = "more FADD/FMUL pairs than FFMA in the executed (or static) instruction mix"
TOOL = Tool(NAME, "Non-fused FP32 (FADD + FMUL instead of FFMA)", frozenset({"compute", "latency"}), METRICS,
            trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
