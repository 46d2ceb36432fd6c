"""The benchmark suite: run every task in ``tasks/``, tabulate against the baseline, production and the roofline.

:func:`run_suite` runs one task at a time through an injected ``run_one(task) -> TaskOutcome`` (the CLI
passes a function that runs ``kernelpro optimize`` with a budget and times the task's ``[comparator]``
with :func:`time_comparator`), so the table arithmetic and the writers need no GPU. Per task the table
has the baseline, best and production medians, the speedup over the baseline, the ratio to production
(production time / our time: above 1 means kernelpro's kernel is faster), the percentage of the roofline
bound the best reaches, and the evaluations and minutes spent. The bottom rows are geometric means, the
number of tasks at 80% or more of their roofline bound and the number at or above production.

:func:`write_suite` writes ``results/suite-<gpu>-<date>.json`` and ``.md`` with the GPU, driver, clocks,
kernelpro version and the exact command, so a published number can be traced to how it was made.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kernelpro.runner import bounds
from kernelpro.runner.records import DeviceInfo
from kernelpro.task import Task

ROOFLINE_TARGET_PCT = 80.0  # a task "at the roofline" reaches this share of its bound
TABLE_COLUMNS = ("task", "baseline µs", "best µs", "production µs", "speedup", "vs production", "% roofline",
                 "evals", "minutes")


@dataclass(frozen=True)
class TaskOutcome:
    """What ``run_one`` measured for one task; times are medians in microseconds, None where not measured.

    ``stand_in`` marks an outcome that was not measured on a GPU (tests, dry runs): the table says so.
    """

    task: str
    baseline_us: float | None
    best_us: float | None
    production_us: float | None = None
    roofline_bound_us: float | None = None  # the time the roofline allows; filled by run_suite when None
    evaluations: int = 0
    minutes: float = 0.0
    best_knobs: Mapping[str, Any] = field(default_factory=dict)
    comparator: str | None = None  # "library: expr" of the production implementation
    run_dir: str | None = None
    error: str | None = None
    stand_in: bool = False


@dataclass(frozen=True)
class SuiteRow:
    """One task's line of the table: the outcome and the ratios derived from it."""

    outcome: TaskOutcome

    @property
    def ok(self) -> bool:
        return self.outcome.error is None and _positive(self.outcome.best_us)

    @property
    def speedup(self) -> float | None:
        """Baseline time over best time (>= 1 once the search finds anything)."""
        o = self.outcome
        return o.baseline_us / o.best_us if self.ok and _positive(o.baseline_us) else None

    @property
    def vs_production(self) -> float | None:
        """Production time over best time: above 1 means kernelpro's kernel beats production."""
        o = self.outcome
        return o.production_us / o.best_us if self.ok and _positive(o.production_us) else None

    @property
    def roofline_pct(self) -> float | None:
        """The roofline bound over the best time, in percent (100 = at the bound)."""
        o = self.outcome
        return 100.0 * o.roofline_bound_us / o.best_us if self.ok and _positive(o.roofline_bound_us) else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self.outcome)
        data["best_knobs"] = dict(self.outcome.best_knobs)
        data.update(speedup=self.speedup, vs_production=self.vs_production, roofline_pct=self.roofline_pct)
        return data


@dataclass(frozen=True)
class SuiteEnvironment:
    """Where and how the suite ran: enough to reproduce or to refuse comparing two tables."""

    gpu: str
    compute_capability: str | None = None
    driver: str | None = None
    sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    kernelpro_version: str = ""
    command: str = ""
    started: str = ""  # ISO 8601, UTC

    @classmethod
    def from_device(cls, device: DeviceInfo, *, driver: str | None = None, command: str = "",
                    started: _dt.datetime | None = None) -> SuiteEnvironment:
        from kernelpro import __version__

        return cls(
            gpu=device.name,
            compute_capability=device.compute_capability,
            driver=driver,
            sm_clock_mhz=device.sm_clock_khz / 1e3 if device.sm_clock_khz else None,
            memory_clock_mhz=device.memory_clock_khz / 1e3 if device.memory_clock_khz else None,
            kernelpro_version=__version__,
            command=command,
            started=(started or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds"),
        )


@dataclass(frozen=True)
class SuiteTable:
    """All rows and the summary figures."""

    rows: tuple[SuiteRow, ...]
    environment: SuiteEnvironment

    @property
    def stand_in(self) -> bool:
        return any(r.outcome.stand_in for r in self.rows)

    def geomean(self, attribute: str) -> float | None:
        """Geometric mean of ``speedup``, ``vs_production`` or ``roofline_pct`` over the rows that have it."""
        return geometric_mean(v for r in self.rows if (v := getattr(r, attribute)) is not None)

    @property
    def at_roofline(self) -> int:
        """Tasks whose best reaches :data:`ROOFLINE_TARGET_PCT` of the roofline bound."""
        return sum(1 for r in self.rows if r.roofline_pct is not None and r.roofline_pct >= ROOFLINE_TARGET_PCT)

    @property
    def at_or_above_production(self) -> int:
        """Tasks where kernelpro's best is at least as fast as the production implementation."""
        return sum(1 for r in self.rows if r.vs_production is not None and r.vs_production >= 1.0)

    @property
    def with_production(self) -> int:
        return sum(1 for r in self.rows if r.vs_production is not None)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if not r.ok)

    def summary(self) -> dict[str, Any]:
        return {
            "tasks": len(self.rows),
            "failed": self.failed,
            "geomean_speedup": self.geomean("speedup"),
            "geomean_vs_production": self.geomean("vs_production"),
            "geomean_roofline_pct": self.geomean("roofline_pct"),
            "at_roofline": self.at_roofline,
            "roofline_target_pct": ROOFLINE_TARGET_PCT,
            "at_or_above_production": self.at_or_above_production,
            "with_production": self.with_production,
            "evaluations": sum(r.outcome.evaluations for r in self.rows),
            "minutes": sum(r.outcome.minutes for r in self.rows),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": asdict(self.environment),
            "stand_in": self.stand_in,
            "rows": [r.to_dict() for r in self.rows],
            "summary": self.summary(),
        }


def _positive(value: float | None) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def geometric_mean(values: Iterable[float]) -> float | None:
    """The geometric mean of the positive finite ``values``; None when there are none."""
    logs = [math.log(v) for v in values if _positive(v)]
    return math.exp(sum(logs) / len(logs)) if logs else None


def roofline_bound_us(task: Task, device: DeviceInfo, knobs: Mapping[str, Any] | None = None) -> float | None:
    """The fastest time the roofline allows for the task's cost at its benchmark size, in microseconds.

    The bound is the larger of bytes / peak DRAM bandwidth and FLOPs / peak FLOP rate (for the fastest unit
    the task's dtypes may use: tensor cores for half precision); None without a ``[cost]`` or known peaks.
    """
    if task.cost is None:
        return None
    env = task.env(knobs=knobs)
    limits = bounds.peaks(device, (a.dtype for a in task.buffers), task.correctness.allow_lower_precision)
    seconds = max(task.bytes_moved(env) / limits.dram_bytes_per_s if limits.dram_bytes_per_s else 0.0,
                  task.flops(env) / limits.flops_per_s if limits.flops_per_s else 0.0)
    return seconds * 1e6 if seconds > 0 else None


def run_suite(
    tasks: Sequence[Task],
    run_one: Callable[[Task], TaskOutcome],
    device_info: DeviceInfo | None,
    *,
    environment: SuiteEnvironment | None = None,
    command: str = "",
    on_outcome: Callable[[TaskOutcome], None] | None = None,
) -> SuiteTable:
    """Run ``run_one`` on every task in order and tabulate.

    A task whose ``run_one`` raises becomes a row with ``error`` set (the suite goes on); a missing
    ``roofline_bound_us`` is computed from the task's cost and ``device_info``. ``on_outcome`` sees each
    outcome as it arrives (progress output).
    """
    if environment is None:
        environment = (SuiteEnvironment.from_device(device_info, command=command) if device_info is not None
                       else SuiteEnvironment(gpu="unknown", command=command))
    rows = []
    for task in tasks:
        start = time.perf_counter()
        try:
            outcome = run_one(task)
        except Exception as exc:  # noqa: BLE001 - one task's failure must not lose the others' results
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            outcome = TaskOutcome(task.name, None, None, minutes=(time.perf_counter() - start) / 60, error=last)
        if outcome.roofline_bound_us is None and device_info is not None:
            outcome = _with_bound(outcome, task, device_info)
        if on_outcome is not None:
            on_outcome(outcome)
        rows.append(SuiteRow(outcome))
    return SuiteTable(tuple(rows), environment)


def _with_bound(outcome: TaskOutcome, task: Task, device: DeviceInfo) -> TaskOutcome:
    from dataclasses import replace

    knobs = {k: v for k, v in outcome.best_knobs.items() if k in task.knobs}
    return replace(outcome, roofline_bound_us=roofline_bound_us(task, device, knobs))


# --- writers -------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def suite_paths(results_dir: Path, environment: SuiteEnvironment) -> tuple[Path, Path]:
    """``results/suite-<gpu>-<date>.json`` and ``.md`` (the date from ``environment.started``, else today)."""
    date = environment.started[:10] if environment.started else _dt.date.today().isoformat()
    stem = f"suite-{slug(environment.gpu)}-{date}"
    return results_dir / f"{stem}.json", results_dir / f"{stem}.md"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def render_markdown(table: SuiteTable) -> str:
    """The table as Markdown: environment, one row per task, the geometric means and counts at the bottom."""
    env = table.environment
    out = [f"# kernelpro suite: {env.gpu}", ""]
    if table.stand_in:
        out += ["> **Stand-in outcomes, not measurements**: some rows were not measured on a GPU.", ""]
    out += [
        f"- GPU: {env.gpu}" + (f" (compute capability {env.compute_capability})" if env.compute_capability else ""),
        f"- driver: {env.driver or 'unknown'}",
        f"- clocks: SM {_fmt(env.sm_clock_mhz, '.0f', ' MHz')}, memory {_fmt(env.memory_clock_mhz, '.0f', ' MHz')}",
        f"- kernelpro: {env.kernelpro_version or 'unknown'}",
        f"- command: `{env.command}`" if env.command else "- command: -",
        f"- started: {env.started or '-'}",
        "",
        "Times are medians in µs. *speedup* = baseline / best; *vs production* = production / best (above 1: "
        "kernelpro's kernel is faster); *% roofline* = the roofline bound / best.",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" if c == "task" else "---:" for c in TABLE_COLUMNS) + "|",
    ]
    for row in table.rows:
        o = row.outcome
        name = o.task + (" (stand-in)" if o.stand_in else "") + (f" — failed: {o.error}" if o.error else "")
        cells = [name, _fmt(o.baseline_us, ",.2f"), _fmt(o.best_us, ",.2f"), _fmt(o.production_us, ",.2f"),
                 _fmt(row.speedup, ".2f", "x"), _fmt(row.vs_production, ".2f", "x"), _fmt(row.roofline_pct, ".1f", "%"),
                 str(o.evaluations), f"{o.minutes:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    s = table.summary()
    out.append("| **geometric mean** | | | | " + " | ".join([
        _fmt(s["geomean_speedup"], ".2f", "x"), _fmt(s["geomean_vs_production"], ".2f", "x"),
        _fmt(s["geomean_roofline_pct"], ".1f", "%"), str(s["evaluations"]), f"{s['minutes']:.1f}"]) + " |")
    out += [
        "",
        f"- tasks at ≥ {ROOFLINE_TARGET_PCT:.0f}% of their roofline bound: {s['at_roofline']} of {s['tasks']}",
        f"- tasks at or above production: {s['at_or_above_production']} of {s['with_production']} with a comparator",
        f"- failed: {s['failed']}",
        "",
    ]
    return "\n".join(out)


def write_suite(table: SuiteTable, results_dir: Path = Path("results")) -> tuple[Path, Path]:
    """Write the JSON and Markdown files; returns their paths."""
    json_path, md_path = suite_paths(Path(results_dir), table.environment)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(table.to_json(), indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(render_markdown(table))
    return json_path, md_path


# --- production timing (GPU) ------------------------------------------------------------------------


def time_comparator(
    task: Task,
    *,
    sizes: Mapping[str, int] | None = None,
    warmup: int = 3,
    repeats: int = 20,
    seed: int = 0,
    flush_l2: bool = True,
) -> float:
    """Median time in seconds of the task's ``[comparator]`` statement, timed with CUDA events (CuPy).

    The arguments are bound by name: input buffers filled like the correctness wall's first input set,
    outputs allocated, scalars as Python numbers; ``cupy`` and ``cupyx`` are in scope, and ``torch`` (with
    every buffer as a zero-copy torch tensor) when the library is torch. Each repeat runs after an L2 flush
    (a memset twice the L2 size, outside the timed region) unless ``flush_l2`` is false. GPU-only.
    """
    import cupy
    import cupyx
    import numpy as np

    from kernelpro.errors import KernelproError
    from kernelpro.runner.inputs import make_inputs, scalar_args

    if task.comparator is None:
        raise KernelproError(f"task {task.name} has no [comparator]", file=task.path,
                             fix="add [comparator] library and expr to time production")
    env = task.env(sizes=sizes)
    inputs = make_inputs(task, env, seed, 0, 0)
    namespace: dict[str, Any] = {"cupy": cupy, "cupyx": cupyx}
    arrays: dict[str, Any] = {}
    for arg in task.buffers:
        if arg.name in inputs.arrays:
            arrays[arg.name] = cupy.asarray(inputs.arrays[arg.name])
        else:
            arrays[arg.name] = cupy.zeros(task.shape(arg, env), dtype=np.dtype(_storage(arg.dtype)))
    scalars = {name: value.item() for name, value in scalar_args(task, env).items()}
    if task.comparator.library == "torch":
        import torch

        namespace["torch"] = torch
        for arg in task.buffers:
            tensor = torch.from_dlpack(arrays[arg.name])
            namespace[arg.name] = tensor.view(torch.bfloat16) if arg.dtype == "bfloat16" else tensor
    else:
        namespace.update(arrays)
    namespace.update(scalars)
    code = compile(task.comparator.expr, f"<{task.name} comparator>", "exec")
    flush = None
    if flush_l2:
        l2 = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())["l2CacheSize"]
        flush = cupy.empty(max(2 * int(l2), 1 << 20), dtype=cupy.uint8)
    for _ in range(warmup):
        exec(code, namespace)  # noqa: S102 - the task's own comparator statement, as documented
    cupy.cuda.runtime.deviceSynchronize()
    times = []
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    for _ in range(repeats):
        if flush is not None:
            flush.fill(0)
        start.record()
        exec(code, namespace)  # noqa: S102
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return float(np.median(times))


def _storage(dtype: str) -> str:
    return "uint16" if dtype == "bfloat16" else dtype
