"""What every micro-profiling tool is made of: the :class:`Tool` record, its :class:`Finding` and its
:class:`Prescription`, and the arithmetic for expected gains.

A tool is one deterministic expert rule. ``trigger(ctx)`` is a cheap yes/no on the diagnosis context
(:class:`kernelpro.diagnosis.DiagnosisContext`); ``analyze(ctx)`` quantifies the limit (which limit, by how
much, from which counters and SASS lines); ``recommend(finding, ctx)`` turns that into a prescription: what
to change, why, the expected speed-up as a range, and machine actions where one exists.

**Expected gains** are speed-up ranges of the whole kernel, ``(low, high)``. Each tool computes ``high``
from its own limit (usually Amdahl's law: the share of time the limit costs, and how much the fix removes),
capped by a roofline headroom the fix cannot beat. ``low`` is the geometric midpoint between no gain and
``high`` (``sqrt(high)``): real fixes rarely recover everything, and a geometric midpoint keeps a 100x
bound from reading as a promise. Prescriptions are ranked by the geometric mean of the range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kernelpro.actions import Action
from kernelpro.roofline import BOUNDS

if TYPE_CHECKING:
    from kernelpro.diagnosis import DiagnosisContext

ALL_BOUNDS = frozenset(BOUNDS)

# Warp-state metrics several tools read: the average cycles a warp spends per issued instruction, in total
# and per stall reason (the reasons add up to the total).
WARP_LATENCY = "smsp__average_warp_latency_per_inst_issued.ratio"


def stall_metric(reason: str) -> str:
    """The ncu metric of one stall reason, e.g. ``long_scoreboard``."""
    return f"smsp__average_warps_issue_stalled_{reason}_per_issue_active.ratio"


@dataclass(frozen=True)
class Finding:
    """What a tool measured: the limit, quantified, with the counters and code lines behind it."""

    tool: str
    limit: str  # short name of the limit, e.g. "shared-memory bank conflicts"
    summary: str  # quantified and prompt-ready: numbers, never counter names
    metrics: Mapping[str, float] = field(default_factory=dict)  # counter name -> value it read
    evidence: tuple[str, ...] = ()  # SASS or ptxas lines

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))


@dataclass(frozen=True)
class Prescription:
    """What to change, why, how much it should buy (speed-up range), and how to apply it."""

    tool: str
    change: str  # imperative, specific: "pad shared array t to [32][33]"
    why: str  # the quantified reason, in words
    gain: tuple[float, float]  # expected kernel speed-up, (low, high), both >= 1
    actions: tuple[Action, ...] = ()
    finding: Finding | None = None

    @property
    def score(self) -> float:
        """The ranking key: the geometric mean of the gain range."""
        return math.sqrt(self.gain[0] * self.gain[1])

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "change": self.change, "why": self.why, "gain": list(self.gain),
                "actions": [a.to_dict() for a in self.actions],
                "limit": self.finding.limit if self.finding else None,
                "metrics": dict(self.finding.metrics) if self.finding else {},
                "evidence": list(self.finding.evidence) if self.finding else []}


@dataclass(frozen=True)
class Tool:
    """One micro-profiling rule (see the module docstring)."""

    name: str
    title: str  # one line for `kernelpro tools`
    applies_to: frozenset[str]  # roofline classes it runs for
    metrics: tuple[str, ...]  # ncu metrics it reads; the stage-2 collection is their union
    trigger: Callable[[DiagnosisContext], bool]
    analyze: Callable[[DiagnosisContext], Finding]
    recommend: Callable[[Finding, DiagnosisContext], Prescription]
    defers_to: tuple[str, ...] = ()  # tools whose firing explains this one; its prescription is then dropped
    fires_when: str = ""  # the trigger in words, for `kernelpro tools`

    def __post_init__(self) -> None:
        object.__setattr__(self, "applies_to", frozenset(self.applies_to))
        unknown = self.applies_to - ALL_BOUNDS
        if unknown:
            raise ValueError(f"tool {self.name}: unknown roofline classes {sorted(unknown)}")


def amdahl(fraction: float, factor: float) -> float:
    """Speed-up when ``fraction`` of the time gets ``factor`` times faster."""
    fraction = min(max(fraction, 0.0), 1.0)
    return 1.0 / ((1.0 - fraction) + fraction / max(factor, 1.0))


def gain_range(high: float, cap: float | None = None) -> tuple[float, float]:
    """``(sqrt(high), high)`` with ``high`` capped at ``cap`` and floored at 1 (see the module docstring)."""
    if cap is not None:
        high = min(high, cap)
    high = max(high, 1.0)
    return (math.sqrt(high), high)


def share(part: float | None, whole: float | None) -> float | None:
    """``part / whole``, or None when either is unknown or the whole is zero."""
    if part is None or not whole:
        return None
    return part / whole


def stall_share(ctx: DiagnosisContext, *reasons: str) -> float | None:
    """The fraction of warp time spent stalled on ``reasons`` (None without warp-state counters)."""
    total = ctx.number(WARP_LATENCY)
    parts = [ctx.number(stall_metric(r)) for r in reasons]
    if total is None or any(p is None for p in parts):
        return None
    return share(sum(p for p in parts if p is not None), total)


def read(ctx: DiagnosisContext, *names: str) -> dict[str, float]:
    """The numeric values of ``names`` that the context has (for a finding's ``metrics``)."""
    return {name: value for name in names if (value := ctx.number(name)) is not None}


def sass_lines(ctx: DiagnosisContext, predicate: Callable[[Any], bool], limit: int = 3) -> tuple[str, ...]:
    """Up to ``limit`` SASS instructions matching ``predicate``, as ``/*offset*/ text`` evidence lines."""
    if ctx.sass is None:
        return ()
    hits = [ins for ins in ctx.sass.instructions if predicate(ins)]
    return tuple(f"/*{ins.offset:04x}*/ {ins.text}" for ins in hits[:limit])


def headroom(ctx: DiagnosisContext) -> float | None:
    """The roofline headroom at the measured traffic: the cap for fixes that move the same bytes."""
    return ctx.verdict.headroom if ctx.verdict else None


def task_headroom(ctx: DiagnosisContext) -> float | None:
    """Time over the ideal time of the task's minimum cost: the cap for fixes that cut traffic."""
    return ctx.verdict.task_headroom if ctx.verdict else None
