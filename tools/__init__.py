"""Micro-profiling tools: one expert rule per module (installed as ``kernelpro.tools``).

Each module defines ``TOOL``, a :class:`~kernelpro.tools.base.Tool`; :func:`all_tools` is the registry,
in the order ties are ranked. ``kernelpro.diagnosis`` runs them; ``kernelpro.profile`` collects the union
of their ``metrics`` in its second stage.
"""

from __future__ import annotations

from kernelpro.tools import (
    atomic_contention,
    bank_conflicts,
    barrier_stalls,
    block_size_multiple,
    divergence,
    dram_bandwidth,
    fp64_promotion,
    l2_hit_rate,
    launch_overhead,
    local_memory,
    long_scoreboard,
    mio_lsu_throttle,
    occupancy_gap,
    occupancy_limiter,
    scalar_loads,
    small_grid,
    tail_effect,
    tensor_cores,
    uncoalesced,
    unfused_fp32,
)
from kernelpro.tools.base import Finding, Prescription, Tool

_TOOLS: tuple[Tool, ...] = tuple(
    module.TOOL
    for module in (
        small_grid,
        local_memory,
        uncoalesced,
        bank_conflicts,
        tensor_cores,
        occupancy_limiter,
        block_size_multiple,
        tail_effect,
        occupancy_gap,
        dram_bandwidth,
        l2_hit_rate,
        scalar_loads,
        fp64_promotion,
        unfused_fp32,
        divergence,
        atomic_contention,
        mio_lsu_throttle,
        long_scoreboard,
        barrier_stalls,
        launch_overhead,
    )
)

__all__ = ["Finding", "Prescription", "Tool", "all_tools", "describe", "get_tool"]


def all_tools() -> tuple[Tool, ...]:
    """Every registered tool."""
    return _TOOLS


def get_tool(name: str) -> Tool:
    """The tool called ``name``; ``KeyError`` listing the known names otherwise."""
    for tool in _TOOLS:
        if tool.name == name:
            return tool
    raise KeyError(f"no tool {name!r}; known: {', '.join(t.name for t in _TOOLS)}")


def describe() -> list[dict[str, object]]:
    """One JSON-able row per tool (for ``kernelpro tools``): name, title, trigger, classes, metrics, deferrals."""
    return [{"name": t.name, "title": t.title, "fires_when": t.fires_when, "applies_to": sorted(t.applies_to),
             "metrics": list(t.metrics), "defers_to": list(t.defers_to)} for t in _TOOLS]
