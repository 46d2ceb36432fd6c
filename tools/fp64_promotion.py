"""FP64 arithmetic or F2F conversions in FP32 code (a double literal or a double math call).

With a task, the static check :func:`kernelpro.static_analysis.check_fp64` decides (FP64 in SASS, no
float64 data). Without one, conversions between float and double (``F2F.F64.F32`` and back) are the sign:
single-precision data going through double arithmetic. Counters, when collected,
say how busy the FP64 pipe really was, and so how much removing it can buy: FP64 runs at a fraction of
FP32 throughput (1/2 on H100, 1/64 on consumer parts; the ratio comes from the device peaks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro.static_analysis import check_fp64
from kernelpro.tools.base import Finding, Prescription, Tool, amdahl, gain_range, headroom, read, sass_lines

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "fp64_promotion"
FP64_PIPE = "sm__pipe_fp64_cycles_active.avg.pct_of_peak_sustained_active"
METRICS = (
    FP64_PIPE,
    "smsp__sass_thread_inst_executed_op_dadd_pred_on.sum.per_cycle_elapsed",
    "smsp__sass_thread_inst_executed_op_dmul_pred_on.sum.per_cycle_elapsed",
    "smsp__sass_thread_inst_executed_op_dfma_pred_on.sum.per_cycle_elapsed",
)
_FP64 = ("fp64", "fp64_conversion")
STATIC_GAIN = 1.5  # without counters: conversions per element are cheap unless the kernel is compute-bound


def trigger(ctx: DiagnosisContext) -> bool:
    if ctx.sass is None:
        return False
    if ctx.task is not None:
        return ctx.static_check(check_fp64) is not None
    return any(_float_double_conversion(ins) for ins in ctx.sass.instructions)


def _float_double_conversion(ins) -> bool:
    """``F2F.F64.F32`` / ``F2F.F32.F64``: single-precision data going through double arithmetic."""
    return ins.opcode == "F2F" and {"F64", "F32"} <= set(ins.modifiers)


def analyze(ctx: DiagnosisContext) -> Finding:
    assert ctx.sass is not None
    hist = ctx.sass.histogram
    summary = (f"{hist['fp64'] + hist['fp64_conversion']} FP64 instructions ({hist['fp64_conversion']} "
               "conversions) in single-precision code")
    pipe = ctx.number(FP64_PIPE)
    if pipe is not None:
        summary += f"; the FP64 pipe is busy {pipe:.1f}% of the time"
    evidence = sass_lines(ctx, lambda ins: ins.op_class in _FP64)
    return Finding(NAME, "FP64 in FP32 code", summary, read(ctx, *METRICS), evidence)


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    pipe = ctx.number(FP64_PIPE)
    ratio = ctx.peaks.fp32 / ctx.peaks.fp64 if ctx.peaks and ctx.peaks.fp64 else 2.0
    high = amdahl(pipe / 100, ratio) if pipe is not None else STATIC_GAIN
    change = ("keep the arithmetic in FP32: float literals (0.5f, not 0.5), float math functions (sqrtf, expf) "
              "and no implicit promotion to double")
    why = f"{finding.summary}; FP64 runs at 1/{ratio:.0f} of the FP32 rate on this GPU"
    return Prescription(NAME, change, why, gain_range(high, headroom(ctx)), (), finding)


FIRES_WHEN = "FP64 instructions or float<->double conversions in a task without float64 data"
TOOL = Tool(NAME, "FP64 arithmetic or conversions in FP32 code", frozenset({"memory", "compute", "latency"}),
            METRICS, trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
