"""Atomic contention: many threads updating the same global addresses.

Global atomics and reductions are executed by the L2's atomic units, one slice per address range. When
threads hammer few addresses, the slices owning them saturate while the rest idle: the busiest slice's
atomic unit is busy at least :data:`MIN_HOT_SLICE_PCT` of the time *and* at least :data:`MIN_SKEW` times the
average slice. The second condition tells contention from heavy but well-spread atomics (a histogram over
many bins keeps every slice equally busy; aggregating would not relieve one hot slice there). The fix is to
aggregate before the global update (warp, then block), which divides the atomics by up to the block size;
the gain is that factor applied to the hot slice's share of the time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro.tools.base import Finding, Prescription, Tool, amdahl, gain_range, headroom, read, sass_lines

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "atomic_contention"
ATOMS = "lts__t_requests_srcunit_tex_op_atom_dot_alu.sum"
CAS = "lts__t_requests_srcunit_tex_op_atom_dot_cas.sum"
REDS = "lts__t_requests_srcunit_tex_op_red.sum"
HOT_SLICE = "lts__d_atomic_input_cycles_active.max.pct_of_peak_sustained_elapsed"
AVG_SLICE = "lts__d_atomic_input_cycles_active.avg.pct_of_peak_sustained_elapsed"
METRICS = (ATOMS, CAS, REDS, HOT_SLICE, AVG_SLICE, "l1tex__t_requests_pipe_lsu_mem_global_op_atom.sum",
           "smsp__inst_executed_op_global_red.sum")
MIN_HOT_SLICE_PCT = 40.0
MIN_SKEW = 3.0  # hot slice vs the average slice
WARP = 32


def trigger(ctx: DiagnosisContext) -> bool:
    requests = sum(ctx.number(m) or 0.0 for m in (ATOMS, CAS, REDS))
    hot, avg = ctx.number(HOT_SLICE), ctx.number(AVG_SLICE)
    if requests <= 0 or hot is None or hot < MIN_HOT_SLICE_PCT:
        return False
    return avg is None or hot >= MIN_SKEW * avg


def analyze(ctx: DiagnosisContext) -> Finding:
    requests = sum(ctx.number(m) or 0.0 for m in (ATOMS, CAS, REDS))
    hot, avg = ctx.number(HOT_SLICE) or 0.0, ctx.number(AVG_SLICE) or 0.0
    summary = (f"{requests:,.0f} atomic requests reach L2; the busiest L2 slice's atomic unit is {hot:.0f}% busy "
               f"against {avg:.1f}% on average, so updates pile up on a few addresses")
    return Finding(NAME, "atomic contention", summary, read(ctx, *METRICS),
                   sass_lines(ctx, lambda ins: ins.op_class == "atomic"))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    threads = ctx.launch.threads_per_block if ctx.launch else WARP
    high = amdahl((ctx.number(HOT_SLICE) or 0.0) / 100, float(threads))  # the hot slice's share of time shrinks
    change = ("aggregate before the global atomic: reduce within each warp with shuffles, then within the block in "
              "shared memory, and issue one global atomic per block")
    return Prescription(NAME, change, finding.summary, gain_range(high, headroom(ctx)), (), finding)


FIRES_WHEN = (f"atomics are issued and the busiest L2 slice's atomic unit is at least {MIN_HOT_SLICE_PCT:g}% busy "
              f"and {MIN_SKEW:g}x the average slice")
TOOL = Tool(NAME, "Atomic contention on few global addresses", frozenset({"memory", "compute", "latency"}),
            METRICS, trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
