"""No tensor-core instructions in a matmul-shaped FP16/BF16 task.

The static check :func:`kernelpro.static_analysis.check_tensor_cores` decides from the task (half
precision data, at least its matmul intensity in FLOP/byte) and the SASS (no HMMA/HGMMA); the tensor
pipe's utilisation, when collected, confirms it sat idle. Rewriting the inner product for tensor cores is
beyond a mechanical edit, so the action is for the LLM only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro import actions
from kernelpro.static_analysis import check_tensor_cores
from kernelpro.tools.base import Finding, Prescription, Tool, gain_range, read, task_headroom

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "tensor_cores"
TENSOR_PCT = "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed"
METRICS = (TENSOR_PCT, "sm__inst_executed_pipe_tensor_op_hmma.avg.pct_of_peak_sustained_elapsed",
           "sm__inst_executed_pipe_tensor_op_gmma.avg.pct_of_peak_sustained_elapsed")
IDLE_PCT = 1.0


def trigger(ctx: DiagnosisContext) -> bool:
    if ctx.task is None or ctx.sass is None:
        return False
    pipe = ctx.number(TENSOR_PCT)
    return ctx.static_check(check_tensor_cores) is not None and (pipe is None or pipe < IDLE_PCT)


def analyze(ctx: DiagnosisContext) -> Finding:
    static = ctx.static_check(check_tensor_cores)
    assert static is not None and ctx.task is not None
    intensity = (ctx.task.flops(ctx.env or None) or 0) / (ctx.task.bytes_moved(ctx.env or None) or 1)
    summary = (f"a half-precision matmul-shaped task ({intensity:.0f} FLOP/byte) runs on the scalar FP pipes: "
               "no tensor-core instruction in the SASS")
    return Finding(NAME, "tensor cores unused", summary, read(ctx, *METRICS))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    dtypes = sorted({a.dtype for a in ctx.task.args if a.dtype in ("float16", "bfloat16")}) if ctx.task else []
    ratio = 8.0  # dense FP16 tensor vs half2 FMA peak on Hopper and Ampere data-center parts (989 vs 134)
    if ctx.peaks and ctx.peaks.tensor and ctx.peaks.fp16:
        ratio = ctx.peaks.tensor / ctx.peaks.fp16
    change = ("compute the tile products with tensor-core MMA (wmma or mma.sync; wgmma on sm_90a), staging "
              "tiles of both operands in shared memory")
    why = f"{finding.summary}; tensor cores give {ratio:.0f}x the half-precision FMA rate"
    return Prescription(NAME, change, why, gain_range(ratio, task_headroom(ctx)),
                        (actions.use_tensor_cores(dtypes[0] if dtypes else None),), finding)


FIRES_WHEN = f"a matmul-shaped FP16/BF16 task without tensor-core instructions; tensor pipe under {IDLE_PCT:g}% busy"
TOOL = Tool(NAME, "Matmul-shaped FP16/BF16 task without tensor-core instructions",
            frozenset({"memory", "compute", "latency"}), METRICS, trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
