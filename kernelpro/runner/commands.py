"""``kernelpro bench`` and ``kernelpro check``: command functions returning printable results.

The click layer only parses options, calls :func:`bench` / :func:`check`, prints ``str(result)``
(or ``result.data`` as JSON) and exits non-zero when ``result.ok`` is False.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelpro.runner import bounds, checks
from kernelpro.runner.device import require_gpu
from kernelpro.runner.evaluate import Evaluator, WallOptions, load_candidate
from kernelpro.runner.records import Timing, WallVerdict
from kernelpro.runner.timing import TimingOptions
from kernelpro.task import Task
from kernelpro.task_loader import load_task

_METHODS = {
    "events": "CUDA events around each launch",
    "graph": "a CUDA graph of {k} launches between one event pair",
    "batch": "{k} back-to-back launches between one event pair (graph capture failed)",
}
_L2 = {
    "flushed": "L2 flushed before each sample (cold)",
    "rotated": "L2 flushed before each sample, launches rotating over {copies} buffer copies (cold)",
    "partly-warm": "L2 flushed before each sample, but only {copies} buffer copies fitted: later launches partly warm",
    "warm": "L2 not flushed (warm)",
}


@dataclass(frozen=True)
class CommandResult:
    """A command's outcome: the text to print, the exit status and the same as JSON data."""

    text: str
    ok: bool
    data: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text


def _options(seed: int | None, warm: bool, time: bool, sanitizer: bool) -> WallOptions:
    return WallOptions(seed=seed, time=time, sanitizer=sanitizer, timing=TimingOptions(warm=warm))


def bench(task_path: str | Path, *, knobs: Mapping[str, str] | None = None, arch: str | None = None,
          warm: bool = False, seed: int | None = None, evaluator: Evaluator | None = None) -> CommandResult:
    """Check the task's kernel against its reference, then time it."""
    task = load_task(task_path)
    return _run(task, task.source, str(task.path), task.parse_knobs(knobs), (), _options(seed, warm, True, False),
                arch, evaluator, f"bench {task.name} ({task_path})")


def check(task_path: str | Path, candidate_path: str | Path, *, knobs: Mapping[str, str] | None = None,
          flags: tuple[str, ...] = (), arch: str | None = None, warm: bool = False, seed: int | None = None,
          time: bool = True, sanitizer: bool = True, evaluator: Evaluator | None = None) -> CommandResult:
    """Run the whole correctness wall (and timing) on a candidate file; compute-sanitizer unless ``sanitizer`` is
    False."""
    task = load_task(task_path)
    return _run(task, load_candidate(candidate_path), str(candidate_path), task.parse_knobs(knobs), tuple(flags),
                _options(seed, warm, time, sanitizer), arch, evaluator,
                f"check {candidate_path} against {task.name} ({task_path})")


def explain(task_path: str | Path, *, time: bool = True, sanitizer: bool = True, warm: bool = False) -> str:
    """The checks a candidate of the task goes through with these options (``kernelpro check --explain``)."""
    task = load_task(task_path)
    return checks.explain(task, _options(None, warm, time, sanitizer))


def _run(task: Task, source: str, source_name: str, knobs: Mapping[str, Any], flags: tuple[str, ...],
         options: WallOptions, arch: str | None, evaluator: Evaluator | None, title: str) -> CommandResult:
    own = evaluator is None
    if own:
        require_gpu()
    evaluator = evaluator or Evaluator(arch=arch)
    try:
        verdict = evaluator.check(task, source, knobs=knobs, flags=flags, options=options, source_name=source_name)
    finally:
        if own:
            evaluator.close()
    return _result(task, verdict, knobs, title)


def _result(task: Task, verdict: WallVerdict, knobs: Mapping[str, Any], title: str) -> CommandResult:
    achieved = achieved_rates(task, verdict, knobs)
    data = {**verdict.to_dict(), "achieved": achieved}
    return CommandResult(render(task, verdict, title, achieved), verdict.ok, data)


def achieved_rates(task: Task, verdict: WallVerdict, knobs: Mapping[str, Any]) -> dict[str, float | None]:
    """Achieved bytes/s and FLOP/s from the task's cost at the benchmark size, with the device's peaks."""
    if verdict.timing is None or task.cost is None:
        return {}
    env = task.env(knobs=knobs)
    seconds = verdict.timing.median_s
    rates: dict[str, float | None] = {"bytes_per_s": task.bytes_moved(env) / seconds,
                                      "flops_per_s": task.flops(env) / seconds}
    if verdict.device is not None:
        limits = bounds.peaks(verdict.device, (a.dtype for a in task.buffers), task.correctness.allow_lower_precision)
        rates.update(peak_bytes_per_s=limits.dram_bytes_per_s, peak_flops_per_s=limits.flops_per_s)
    return rates


def render(task: Task, verdict: WallVerdict, title: str, achieved: Mapping[str, float | None]) -> str:
    """The verdict as text: pass/fail, what was checked, failures, flags, timing and rates."""
    lines = [title]
    if verdict.device is not None:
        lines.append(f"device: {verdict.device.name} (sm_{verdict.device.compute_capability.replace('.', '')})")
    lines.append("PASS" if verdict.ok else f"FAIL ({verdict.reason})")
    checked = verdict.checked
    if checked:
        lines.append(f"checked: {checked.get('input_sets', 0)} input sets over sizes "
                     f"{'; '.join(checked.get('sizes', [])) or 'none'} "
                     f"(distributions: {', '.join(checked.get('distributions', [])) or 'n/a'}), seed {verdict.seed}; "
                     f"reference: {checked.get('reference', 'n/a')}")
    else:
        lines.append(f"seed {verdict.seed}")
    timed = checked.get("timed_launches") if checked else None
    if timed:
        lines.append(f"timed launches verified: {timed['worked']} of {timed['launches']} did their work "
                     f"({timed['buffer_sets']} buffer sets, poisoned and reloaded before every sample)")
    lines += [f"  x {failure}" for failure in verdict.failures]
    lines += [f"  ! {flag}" for flag in verdict.flags]
    lines += [f"  note: {note}" for note in verdict.notes]
    if verdict.timing is not None:
        lines += render_timing(verdict.timing)
    if achieved:
        lines.append(_rates_line(achieved))
    return "\n".join(lines)


def render_timing(timing: Timing) -> list[str]:
    """Median/p20/p80/std/n, the method, cold or warm, and the clocks."""
    us = 1e6
    lines = [f"time: median {timing.median_s * us:.3f} us  p20 {timing.p20_s * us:.3f}  p80 {timing.p80_s * us:.3f}  "
             f"std {timing.std_s * us:.3f} ({timing.rel_std:.2%})  n {timing.n}  ({timing.stop_reason})"]
    if timing.first_sample_s is not None:
        lines.append(f"first sample: {timing.first_sample_s * us:.3f} us "
                     f"({timing.first_sample_s / timing.median_s:.2f}x the median)" if timing.median_s > 0 else
                     f"first sample: {timing.first_sample_s * us:.3f} us")
    method = _METHODS.get(timing.method, timing.method).format(k=timing.launches_per_sample)
    cache = _L2.get(timing.l2, timing.l2).format(copies=timing.buffer_copies)
    lines.append(f"method: {method}; {cache}")
    clocks = timing.clocks
    if clocks is None:
        lines.append("clocks: not read (no NVML: pip install nvidia-ml-py)")
    else:
        throttle = ", ".join(clocks.reasons) or "none"
        if timing.dropped_throttled:
            throttle += f" ({timing.dropped_throttled} throttled samples dropped)"
        lines.append(f"clocks: SM {clocks.sm_clock_mhz_median or 0:.0f} MHz ({clocks.sm_clock_mhz_min}-"
                     f"{clocks.sm_clock_mhz_max}), memory {clocks.memory_clock_mhz} MHz, max "
                     f"{clocks.temperature_c_max} C; clock limits: {throttle}")
    return lines


def _rates_line(achieved: Mapping[str, float | None]) -> str:
    def part(value: float | None, peak: float | None, unit: str, scale: float) -> str:
        text = f"{value / scale:.1f} {unit}"
        return text + (f" ({value / peak:.1%} of {peak / scale:.1f} {unit} peak)" if peak else "")

    return "achieved: " + ", ".join([
        part(achieved["bytes_per_s"], achieved.get("peak_bytes_per_s"), "GB/s", 1e9),
        part(achieved["flops_per_s"], achieved.get("peak_flops_per_s"), "GFLOP/s", 1e9),
    ])

