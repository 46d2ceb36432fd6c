"""Uncoalesced global access: fetched sectors mostly wasted.

Memory moves in 32-byte sectors. ncu counts how many bytes of each fetched sector the warp's threads
actually asked for. A contiguous but misaligned warp wastes at most one extra sector per request (~26 of
32 bytes used); strided or scattered access drops far lower. Below :data:`MIN_BYTES_PER_SECTOR` (half a
sector) the pattern is strided or scattered, and the traffic it causes is ``32 / used`` times what it
needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernelpro.tools.base import Finding, Prescription, Tool, amdahl, gain_range, read, sass_lines, task_headroom

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

NAME = "uncoalesced"
MIN_BYTES_PER_SECTOR = 16.0
SECTOR = 32.0


def _op(kind: str) -> tuple[str, str, str]:
    """(bytes used per sector, sectors, requests) metrics of global loads ("ld") or stores ("st")."""
    return (f"smsp__sass_average_data_bytes_per_sector_mem_global_op_{kind}.ratio",
            f"l1tex__t_sectors_pipe_lsu_mem_global_op_{kind}.sum",
            f"l1tex__t_requests_pipe_lsu_mem_global_op_{kind}.sum")


METRICS = (*_op("ld"), *_op("st"))
_WORDS = {"ld": ("loads", "LDG"), "st": ("stores", "STG")}


def _worst(ctx: DiagnosisContext) -> tuple[str, float] | None:
    """The access kind with the fewest bytes used per sector, among those that moved any."""
    used = {}
    for kind in ("ld", "st"):
        ratio, sectors, _ = _op(kind)
        value, moved = ctx.number(ratio), ctx.number(sectors)
        if value is not None and value > 0 and moved:
            used[kind] = value
    if not used:
        return None
    kind = min(used, key=used.__getitem__)
    return kind, used[kind]


def trigger(ctx: DiagnosisContext) -> bool:
    worst = _worst(ctx)
    return worst is not None and worst[1] < MIN_BYTES_PER_SECTOR


def analyze(ctx: DiagnosisContext) -> Finding:
    worst = _worst(ctx)
    assert worst is not None
    kind, used = worst
    _, sectors, requests = _op(kind)
    words, opcode = _WORDS[kind]
    per_request = (ctx.number(sectors) or 0) / (ctx.number(requests) or 1)
    summary = (f"global {words} use {used:.0f} of every 32 bytes they fetch ({per_request:.1f} sectors per warp "
               f"request): {SECTOR / used:.0f}x the traffic the data needs")
    return Finding(NAME, f"uncoalesced global {words}", summary, read(ctx, *METRICS),
                   sass_lines(ctx, lambda ins: ins.opcode == opcode))


def recommend(finding: Finding, ctx: DiagnosisContext) -> Prescription:
    worst = _worst(ctx)
    assert worst is not None
    kind, used = worst
    own = ctx.number(_op(kind)[1]) or 0.0
    other = ctx.number(_op("st" if kind == "ld" else "ld")[1]) or 0.0
    high = amdahl(own / (own + other) if own + other else 1.0, SECTOR / used)
    change = ("make consecutive threads of a warp touch consecutive addresses: change the index mapping, or "
              "stage the data through a shared-memory tile (coalesced global access, strided reads from "
              "shared memory)")
    return Prescription(NAME, change, finding.summary, gain_range(high, task_headroom(ctx)), (), finding)


FIRES_WHEN = f"global accesses use under {MIN_BYTES_PER_SECTOR:g} of the {SECTOR:g} bytes of each sector they fetch"
TOOL = Tool(NAME, "Uncoalesced global loads/stores (bytes used per sector)", frozenset({"memory", "latency"}),
            METRICS, trigger, analyze, recommend,
            fires_when=FIRES_WHEN)
