"""The diagnosis of a launch sequence: one :class:`~kernelpro.diagnosis.Diagnosis` per kernel, the dominant first.

A task (or a candidate) that launches several kernels is profiled kernel by kernel; each gets its
own context (its resources, SASS, launch geometry and counters) and its own prescriptions. What the
proposer most needs is which kernel the time goes to, so the rendering leads with each kernel's share
of the sequence's profiled time, then the prescriptions of the dominant kernel, then the others' in
what room is left. Without counters the shares are unknown and the kernels keep their launch order.
In a sequence, a kernel's roofline cross-check against the task's ``[cost]`` compares one kernel with
the whole operation's minimum work (so its "% of the task's ideal time" is an upper bound).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kernelpro.actions import Action
from kernelpro.diagnosis import Diagnosis, DiagnosisContext, LaunchConfig, build_context, diagnose
from kernelpro.static_analysis import StaticReport
from kernelpro.task import Task


@dataclass(frozen=True)
class KernelDiagnosis:
    """One launch of the sequence: its kernel, its profiled time and its diagnosis."""

    index: int  # position in the sequence, from 1
    kernel: str
    duration_s: float | None
    diagnosis: Diagnosis
    context: DiagnosisContext


@dataclass(frozen=True)
class SequenceDiagnosis:
    """Per-kernel diagnoses, the one with the most profiled time first."""

    kernels: tuple[KernelDiagnosis, ...]

    @property
    def dominant(self) -> KernelDiagnosis:
        return self.kernels[0]

    @property
    def total_s(self) -> float | None:
        times = [k.duration_s for k in self.kernels]
        return None if any(t is None for t in times) else sum(times)

    def share(self, kernel: KernelDiagnosis) -> float | None:
        total = self.total_s
        return kernel.duration_s / total if total and kernel.duration_s is not None else None

    @property
    def verdict(self) -> Any:
        return self.dominant.diagnosis.verdict

    @property
    def prescriptions(self) -> tuple:
        return tuple(p for k in self.kernels for p in k.diagnosis.prescriptions)

    @property
    def actions(self) -> tuple[Action, ...]:
        """The dominant kernel's actions first, then the others'."""
        return tuple(a for k in self.kernels for a in k.diagnosis.actions)

    def headline(self) -> str:
        parts = []
        for k in self.kernels:
            share = self.share(k)
            timing = f"{k.duration_s * 1e6:,.1f} us, {share:.0%}" if share is not None else "not profiled"
            parts.append(f"launch {k.index} {k.kernel} ({timing})")
        lead = (f"{self.dominant.kernel} dominates" if self.total_s else "time per kernel unknown")
        return f"Launch sequence of {len(self.kernels)} kernels: {'; '.join(parts)}. {lead}."

    def render(self, max_chars: int = 2000, raw_counters: bool = False) -> str:
        """The headline, then each kernel's diagnosis (dominant first) in the room that is left."""
        text = self.headline()
        for k in self.kernels:
            room = max_chars - len(text) - 40
            if room < 200:
                text += f"\n(+ the diagnosis of {k.kernel} left out)"
                continue
            text += f"\n== {k.kernel} (launch {k.index}) ==\n" + k.diagnosis.render(room, raw_counters)
        return text[:max_chars]

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": True, "dominant": self.dominant.kernel,
                "bound": self.verdict.bound if self.verdict else None,
                "prescriptions": [p.to_dict() for p in self.prescriptions],
                "fired": sorted({name for k in self.kernels for name in k.diagnosis.fired}),
                "errors": {f"{k.kernel}: {tool}": why for k in self.kernels
                           for tool, why in k.diagnosis.errors.items()},
                "kernels": [{"launch": k.index, "kernel": k.kernel, "duration_s": k.duration_s, "share": self.share(k),
                             **k.diagnosis.to_dict()} for k in self.kernels]}


def diagnose_sequence(task: Task, static: StaticReport, profiles: Sequence[Any | None],
                      knobs: Mapping[str, Any]) -> SequenceDiagnosis:
    """Diagnose each launch of ``static.launches`` with its profile (``None`` where none was taken)."""
    by_symbol = {k.symbol: k for k in static.kernels}
    found = []
    for index, (launch, profile) in enumerate(zip(static.launches, profiles, strict=True), 1):
        kernel = by_symbol[launch.symbol]
        ctx = build_context(profile, task=task, knobs=knobs, resources=kernel.resources, sass=kernel.sass,
                            launch=LaunchConfig(launch.grid, launch.block, launch.dynamic_shared_bytes),
                            arch=static.arch)
        duration = profile.duration_s if profile is not None else None
        found.append(KernelDiagnosis(index, launch.kernel, duration, diagnose(ctx), ctx))
    found.sort(key=lambda k: -(k.duration_s or 0.0))
    return SequenceDiagnosis(tuple(found))
