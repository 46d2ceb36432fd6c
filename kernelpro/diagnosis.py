"""Digest counters into a short, ranked list of expert prescriptions.

The KernelPro finding this layer is built on: raw counters handed to an LLM made its kernels worse, while
the same counters digested into specific prescriptions let it beat production code. So :func:`diagnose`
runs the micro-profiling tools of :mod:`kernelpro.tools` whose ``applies_to`` holds the kernel's roofline
class and whose trigger fires, drops the prescriptions another firing tool explains (``defers_to``), and
ranks the rest by expected gain. :meth:`Diagnosis.render` prints the prompt-ready block: the roofline
verdict, then the prescriptions, with no counter names unless ``raw_counters=True`` (kept for ablations).

:func:`build_context` assembles what the tools read: ncu metrics, the task, ptxas resources, SASS, the
occupancy and its what-if table, the launch configuration, device peaks and the roofline verdict. Any part
may be missing; a tool whose inputs are missing does not trigger.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kernelpro.actions import Action
from kernelpro.errors import KernelproError
from kernelpro.ncu import MetricError, NcuKernel, Value
from kernelpro.occupancy import Occupancy, WhatIfRow, compute_occupancy, what_if
from kernelpro.ptxas import KernelResources
from kernelpro.roofline import (
    DRAM_READ,
    DRAM_WRITE,
    DURATION,
    MEMORY_PCT,
    SM_PCT,
    DevicePeaks,
    RooflineVerdict,
    device_peaks,
    roofline_verdict,
)
from kernelpro.sass import KernelSass
from kernelpro.static_analysis import CheckContext, StaticReport
from kernelpro.static_analysis import Finding as StaticFinding
from kernelpro.task import Task
from kernelpro.tools import Prescription, Tool, all_tools

if TYPE_CHECKING:
    from kernelpro.profile import KernelProfile

DEFAULT_ARCH = "sm_90"
_VERDICT_COUNTERS = (DURATION, SM_PCT, MEMORY_PCT, DRAM_READ, DRAM_WRITE)


@dataclass(frozen=True)
class LaunchConfig:
    """Grid, block and dynamic shared memory of the profiled launch, and the knobs that set them."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    dynamic_shared_bytes: int = 0
    block_knob: str | None = None  # the task knob the block size is computed from, if any
    grid_knob: str | None = None

    @property
    def threads_per_block(self) -> int:
        return math.prod(self.block)

    @property
    def blocks(self) -> int:
        return math.prod(self.grid)


@dataclass(frozen=True)
class DiagnosisContext:
    """Everything a tool may read. Build it with :func:`build_context`."""

    metrics: Mapping[str, Value] = field(default_factory=dict)
    verdict: RooflineVerdict | None = None
    peaks: DevicePeaks | None = None
    task: Task | None = None
    env: Mapping[str, Any] = field(default_factory=dict)  # the task's sizes and knob values
    resources: KernelResources | None = None
    sass: KernelSass | None = None
    occupancy: Occupancy | None = None
    what_if: tuple[WhatIfRow, ...] = ()
    launch: LaunchConfig | None = None
    source: str | None = None  # the candidate's CUDA source, for tools that name arrays
    arch: str = DEFAULT_ARCH

    def number(self, name: str) -> float | None:
        """Metric ``name`` as a float; None when it was not collected or is not a number."""
        value = self.metrics.get(name)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def bound(self) -> str | None:
        return self.verdict.bound if self.verdict else None

    @property
    def sm_count(self) -> int | None:
        count = self.number("launch__sm_count")
        if count:
            return int(count)
        return self.peaks.sm_count if self.peaks else None

    @property
    def waves(self) -> float | None:
        """How many waves of blocks the grid makes (fractional): blocks / (SMs x blocks per SM)."""
        if self.launch is None or self.occupancy is None or not self.sm_count or not self.occupancy.blocks_per_sm:
            return self.number("launch__waves_per_multiprocessor")
        return self.launch.blocks / (self.sm_count * self.occupancy.blocks_per_sm)

    def static_check(self, check: Any) -> StaticFinding | None:
        """Run one :mod:`kernelpro.static_analysis` check on this context's resources, SASS and launch.

        The caller picks checks whose inputs are present: the task-reading ones (FP64, tensor cores) only
        with a task, the SASS ones only with SASS.
        """
        if self.launch is None:
            return None
        context = CheckContext(self.task, self.resources, self.sass, self.occupancy,  # type: ignore[arg-type]
                               self.launch.threads_per_block)
        return check(context)


def _knob_of(exprs: tuple, task: Task) -> str | None:
    names = set().union(*(e.names for e in exprs)) & set(task.knobs)
    return sorted(names)[0] if len(names) == 1 else None


def _launch_from_task(task: Task, env: Mapping[str, Any]) -> LaunchConfig:
    return LaunchConfig(task.grid(env), task.block(env), task.dynamic_shared_bytes(env),
                        _knob_of(task.launch.block, task), _knob_of(task.launch.grid, task))


def _launch_from_profile(profiled: object, metrics: Mapping[str, Value]) -> LaunchConfig | None:
    """The launch ncu saw: the profiled row's grid and block, else the 1-D launch sizes."""
    dynamic = metrics.get("launch__shared_mem_per_block_dynamic")
    dynamic = dynamic if isinstance(dynamic, int) else 0
    grid, block = getattr(profiled, "grid", None), getattr(profiled, "block", None)
    if grid and block:
        return LaunchConfig(tuple(grid), tuple(block), dynamic)
    grid, block = metrics.get("launch__grid_size"), metrics.get("launch__block_size")
    if isinstance(grid, int) and isinstance(block, int):
        return LaunchConfig((grid, 1, 1), (block, 1, 1), dynamic)
    return None


def _arch_from_metrics(metrics: Mapping[str, Value]) -> str | None:
    major = metrics.get("device__attribute_compute_capability_major")
    minor = metrics.get("device__attribute_compute_capability_minor")
    return f"sm_{major}{minor}" if isinstance(major, int) and isinstance(minor, int) else None


def _occupancy(ctx_metrics: Mapping[str, Value], launch: LaunchConfig, resources: KernelResources | None,
               arch: str) -> tuple[Occupancy | None, tuple[WhatIfRow, ...]]:
    """Occupancy of the launch: ncu's launch metrics when profiled (what really ran), else ptxas resources."""
    def metric(name: str) -> int | None:
        value = ctx_metrics.get(name)
        return value if isinstance(value, int) else None

    registers = metric("launch__registers_per_thread") or (resources.registers if resources else None)
    if registers is None:
        return None, ()
    static = metric("launch__shared_mem_per_block_static")
    if static is None:
        static = resources.shared_static_bytes if resources else 0
    dynamic = metric("launch__shared_mem_per_block_dynamic")
    dynamic = launch.dynamic_shared_bytes if dynamic is None else dynamic
    barriers = metric("launch__barrier_count")
    if barriers is None:
        barriers = resources.barriers if resources and resources.barriers is not None else 1
    threads = launch.threads_per_block
    try:
        occ = compute_occupancy(arch, threads, registers, static, dynamic, barriers,
                                carveout_bytes=metric("launch__shared_mem_config_size"))
        rows = tuple(what_if(arch, threads, registers, static, dynamic, barriers))
    except KernelproError:
        return None, ()
    return occ, rows


def build_context(
    metrics: Mapping[str, Value] | NcuKernel | KernelProfile | None = None,
    *,
    task: Task | None = None,
    knobs: Mapping[str, Any] | None = None,
    static: StaticReport | None = None,
    resources: KernelResources | None = None,
    sass: KernelSass | None = None,
    launch: LaunchConfig | None = None,
    source: str | None = None,
    arch: str | None = None,
    peaks: DevicePeaks | None = None,
) -> DiagnosisContext:
    """Assemble a :class:`DiagnosisContext`.

    ``metrics`` is a mapping of ncu metrics, or a profiled launch with a ``metrics`` mapping and its
    ``grid``/``block`` (an :class:`~kernelpro.ncu.NcuKernel`, a :class:`~kernelpro.profile.KernelProfile`).
    ``static`` (a :class:`~kernelpro.static_analysis.StaticReport`) supplies resources, SASS, knobs, launch
    and arch at once; explicit arguments win over it. The launch comes from ``launch``, else the task, else
    the static report, else the profiled launch.
    """
    values: Mapping[str, Value] = dict(getattr(metrics, "metrics", metrics) or {})
    entry = static.entry if static is not None else None
    resources = resources or (entry.resources if entry else None)
    sass = sass or (entry.sass if entry else None)
    knobs = dict(knobs if knobs is not None else (static.knobs if static else {}))
    arch = arch or _arch_from_metrics(values) or (static.arch if static else None) \
        or (resources.arch if resources and resources.arch else None) or DEFAULT_ARCH
    env = task.env(knobs=knobs) if task is not None else {}
    if launch is None and task is not None:
        launch = _launch_from_task(task, env)
    if launch is None and static is not None and static.grid and static.block:
        launch = LaunchConfig(static.grid, static.block, static.dynamic_shared_bytes)
    if launch is None:
        launch = _launch_from_profile(metrics, values)
    if source is None and task is not None:
        source = task.source
    occupancy, rows = _occupancy(values, launch, resources, arch) if launch else (None, ())
    verdict = None
    if values:
        try:
            peaks = peaks or device_peaks(values)
            verdict = roofline_verdict(values, peaks=peaks, task=task, env=env or None)
        except MetricError:
            verdict = None
    return DiagnosisContext(
        metrics=MappingProxyType(dict(values)), verdict=verdict, peaks=peaks, task=task,
        env=MappingProxyType(dict(env)), resources=resources, sass=sass, occupancy=occupancy, what_if=rows,
        launch=launch, source=source, arch=arch,
    )


@dataclass(frozen=True)
class Diagnosis:
    """The ranked prescriptions for one kernel, and what was run to get them."""

    verdict: RooflineVerdict | None
    prescriptions: tuple[Prescription, ...]  # ranked, most expected gain first
    fired: tuple[str, ...]  # tools whose trigger fired (deferred ones included)
    deferred: tuple[Prescription, ...] = ()  # explained by another firing tool; not rendered
    errors: Mapping[str, str] = field(default_factory=dict)  # tool -> why it could not run
    verdict_counters: Mapping[str, float] = field(default_factory=dict)  # the speed-of-light counters

    @property
    def actions(self) -> tuple[Action, ...]:
        """The machine actions of the prescriptions, in rank order (for an offline proposer)."""
        return tuple(a for p in self.prescriptions for a in p.actions)

    def counters(self) -> dict[str, float]:
        """The speed-of-light counters and every counter the prescriptions are based on (for ``raw_counters``)."""
        values: dict[str, float] = dict(self.verdict_counters)
        for p in self.prescriptions:
            if p.finding:
                values.update(p.finding.metrics)
        return values

    def render(self, max_chars: int = 2000, raw_counters: bool = False) -> str:
        """The prompt-ready text: the verdict, then the prescriptions, at most ``max_chars`` characters.

        Prescriptions that do not fit are left out (and counted). With ``raw_counters`` the counters behind
        them follow, as ``name = value`` lines -- for ablations only.
        """
        head = f"Roofline: {self.verdict.line()}" if self.verdict else "Roofline: not profiled."
        lines = [head]
        if self.prescriptions:
            lines.append("Prescriptions, most expected gain first:")
        else:
            lines.append("No tool found a limit worth a prescription.")
        body = [_item(i, p) for i, p in enumerate(self.prescriptions, 1)]
        tail = []
        if raw_counters:
            tail = ["Counters:"] + [f"{name} = {_number(value)}" for name, value in sorted(self.counters().items())]
        text = "\n".join(lines)
        shown = 0
        for item in body:
            remaining = len(body) - shown - 1
            note = f"\n(+{remaining} more left out)" if remaining else ""
            if len(text) + 1 + len(item) + len(note) > max_chars:
                break
            text += "\n" + item
            shown += 1
        if shown < len(body):
            text += f"\n(+{len(body) - shown} more left out)"
        for line in tail:
            if len(text) + 1 + len(line) > max_chars:
                break
            text += "\n" + line
        return text[:max_chars]

    def to_dict(self) -> dict[str, Any]:
        return {"bound": self.verdict.bound if self.verdict else None,
                "verdict": self.verdict.line() if self.verdict else None,
                "prescriptions": [p.to_dict() for p in self.prescriptions],
                "fired": list(self.fired), "deferred": [p.tool for p in self.deferred],
                "errors": dict(self.errors)}


def _number(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:.4g}"


def _times(value: float) -> str:
    return f"{value:.1f}x" if value < 10 else f"{value:.0f}x"


def _item(index: int, p: Prescription) -> str:
    low, high = p.gain
    change = p.change[:1].upper() + p.change[1:]
    return f"{index}. {change}. Why: {p.why}. Expected speed-up {_times(low)}-{_times(high)}."


def diagnose(ctx: DiagnosisContext, tools: Iterable[Tool] | None = None) -> Diagnosis:
    """Run the applicable tools on ``ctx`` and rank their prescriptions (see the module docstring).

    Without a roofline verdict (no counters) every tool is tried; their triggers need their inputs.
    """
    tools = tuple(all_tools() if tools is None else tools)
    fired: list[tuple[int, Tool, Prescription]] = []
    errors: dict[str, str] = {}
    for order, tool in enumerate(tools):
        if ctx.bound is not None and ctx.bound not in tool.applies_to:
            continue
        try:
            if not tool.trigger(ctx):
                continue
            finding = tool.analyze(ctx)
            fired.append((order, tool, tool.recommend(finding, ctx)))
        except (MetricError, KernelproError, ZeroDivisionError) as exc:
            errors[tool.name] = str(exc)
    names = {tool.name for _, tool, _ in fired}
    kept = [(o, p) for o, tool, p in fired if not names.intersection(tool.defers_to)]
    deferred = tuple(p for _, tool, p in fired if names.intersection(tool.defers_to))
    kept.sort(key=lambda item: (-item[1].score, item[0]))
    sol = {name: value for name in _VERDICT_COUNTERS if (value := ctx.number(name)) is not None}
    return Diagnosis(ctx.verdict, tuple(p for _, p in kept), tuple(tool.name for _, tool, _ in fired), deferred,
                     MappingProxyType(errors), MappingProxyType(sol))
