"""Runs every strategy on every table for every seed, scores the traces, renders and writes the report."""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelpro.suite import slug
from peer import metrics
from peer.table import Table

Runner = Callable[[Table, int, int], list[str]]  # (table, seed, budget) -> trace


def default_strategies() -> dict[str, Runner]:
    """Kernel Tuner's random sampling, genetic algorithm and Bayesian optimization, and kernelpro's MCTS."""
    from peer.kt import STRATEGIES, kt_trace, require_kernel_tuner
    from peer.mcts_replay import mcts_trace

    require_kernel_tuner()
    runners: dict[str, Runner] = {
        f"kernel_tuner:{name}": (lambda t, s, b, name=name: kt_trace(t, name, s, b)) for name in STRATEGIES
    }
    runners["kernelpro:mcts"] = mcts_trace
    return runners


@dataclass(frozen=True)
class Row:
    """One task x strategy over all seeds."""

    task: str
    strategy: str
    traces: tuple[tuple[str, ...], ...]  # one per seed
    evaluations: tuple[float, ...]  # to within 5% of the optimum; inf = not reached
    seconds: tuple[float, ...] | None  # GPU seconds of those evaluations; None when the table has none
    best_at: Mapping[int, tuple[float, ...]]  # budget -> fraction of the optimum's performance, per seed

    @property
    def reached(self) -> int:
        return sum(not math.isinf(e) for e in self.evaluations)

    def to_dict(self) -> dict[str, Any]:
        def stats(values: Sequence[float]) -> dict[str, float | None]:
            med, q1, q3 = metrics.median_iqr(values)
            return {"median": _finite(med), "q1": _finite(q1), "q3": _finite(q3)}

        return {"task": self.task, "strategy": self.strategy, "seeds": len(self.traces), "reached": self.reached,
                "evaluations_to_5pct": stats(self.evaluations),
                "evaluations_per_seed": [_finite(e) for e in self.evaluations],
                "gpu_seconds_to_5pct": stats(self.seconds) if self.seconds else None,
                "best_at_budget": {str(b): stats(v) for b, v in self.best_at.items()},
                "traces": [list(t) for t in self.traces]}


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def score(table: Table, strategy: str, traces: Sequence[Sequence[str]], at: Sequence[int]) -> Row:
    """Scores one strategy's traces (one per seed) on one table."""
    evaluations, seconds = [], []
    for trace in traces:
        n = metrics.evaluations_to_within(trace, table)
        evaluations.append(math.inf if n is None else float(n))
        cost = metrics.seconds_for(trace, table, n) if n is not None else math.inf
        seconds.append(cost)
    has_seconds = all(s is not None for s in seconds)
    best_at = {b: tuple(metrics.best_at_budget(t, table, b) for t in traces) for b in at}
    return Row(table.task, strategy, tuple(tuple(t) for t in traces), tuple(evaluations),
               tuple(seconds) if has_seconds else None, best_at)


def compare(tables: Sequence[Table], strategies: Mapping[str, Runner], seeds: int, budget: int,
            at: Sequence[int], progress: Callable[[str], None] = print) -> list[Row]:
    """Every strategy on every table for seeds ``0..seeds-1`` with ``budget`` evaluations each."""
    rows = []
    for table in tables:
        for name, run in strategies.items():
            progress(f"  {table.task}: {name}, {seeds} seeds")
            rows.append(score(table, name, [run(table, seed, budget) for seed in range(seeds)], at))
    return rows


# -- rendering -----------------------------------------------------------------------------------------


def _iqr_text(values: Sequence[float], fmt: str, unit: str = "") -> str:
    med, q1, q3 = metrics.median_iqr(values)
    if math.isinf(med):
        return "not reached"
    upper = ">budget" if math.isinf(q3) else format(q3, fmt)
    return f"{format(med, fmt)}{unit} [{format(q1, fmt)}–{upper}]"


def render_markdown(rows: Sequence[Row], tables: Sequence[Table], header: Mapping[str, Any]) -> str:
    """The report: provenance, one line per table, then the task x strategy table."""
    at = sorted({b for r in rows for b in r.best_at})
    lines = [f"# kernelpro vs Kernel Tuner on recorded knob spaces ({header['gpu']})", ""]
    if any(t.synthetic for t in tables):
        lines += ["**SYNTHETIC tables: not measurements.**", ""]
    lines += [f"- command: `{header['command']}`", f"- date: {header['date']}",
              f"- kernelpro {header['kernelpro_version']}, Kernel Tuner {header['kernel_tuner_version']}",
              f"- seeds: {header['seeds']}, budget: {header['budget']} evaluations per run",
              "- target: a configuration within 5% of the table's optimum (every configuration was measured, so "
              "the optimum is exhaustive)",
              "- GPU seconds: the sum of the recorded seconds of the configurations evaluated up to the target "
              "(each configuration's own kernelpro evaluation: compile, correctness wall, timing)",
              "- evals used: median evaluations a run made (a strategy may stop before the budget by its own rule, "
              "e.g. Kernel Tuner's genetic algorithm on a small space, or MCTS with nothing left to expand)",
              "- medians over seeds, [IQR]; a seed that never reached the target counts as infinitely many "
              "evaluations", ""]
    lines += ["| task | GPU | configs | failed | optimum | µs | recorded |", "|---|---|---|---|---|---|---|"]
    for t in tables:
        opt = t.optimum
        config = ", ".join(f"{k}={v}" for k, v in opt.knobs.items())
        lines.append(f"| {t.task} | {t.gpu} | {len(t.entries)} | {sum(not e.ok for e in t.entries)} | {config} | "
                     f"{opt.time_us:.3f} | {t.environment.get('date', '')[:10]}{' (synthetic)' * t.synthetic} |")
    lines += ["", "| task | strategy | evals used | reached | evaluations to 5% | GPU s to 5% | "
              + " | ".join(f"best @{b} (% of opt)" for b in at) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(at)]
    for r in rows:
        seconds = _iqr_text(r.seconds, ".1f") if r.seconds else "n/a"
        best = " | ".join(_iqr_text([100 * v for v in r.best_at[b]], ".1f") for b in at)
        used = metrics.quantile([float(len(t)) for t in r.traces], 0.5)
        lines.append(f"| {r.task} | {r.strategy} | {used:.0f} | {r.reached}/{len(r.traces)} | "
                     f"{_iqr_text(r.evaluations, '.0f')} | {seconds} | {best} |")
    return "\n".join(lines) + "\n"


def header_for(tables: Sequence[Table], command: str, seeds: int, budget: int, kt_version: str) -> dict[str, Any]:
    from kernelpro import __version__

    gpus = sorted({t.gpu for t in tables})
    if len(gpus) > 1:
        raise ValueError(f"tables from different GPUs ({', '.join(gpus)}): compare one GPU at a time")
    return {"gpu": gpus[0], "date": _dt.date.today().isoformat(), "command": command, "seeds": seeds,
            "budget": budget, "kernelpro_version": __version__, "kernel_tuner_version": kt_version,
            "synthetic": any(t.synthetic for t in tables),
            "tables": {t.task: dict(t.environment) for t in tables}}


def write(rows: Sequence[Row], tables: Sequence[Table], header: Mapping[str, Any], out: Path) -> tuple[Path, Path]:
    """``<out>/vs_kernel_tuner-<gpu>-<date>.md`` and ``.json``."""
    stem = out / f"vs_kernel_tuner-{slug(header['gpu'])}-{header['date']}"
    out.mkdir(parents=True, exist_ok=True)
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    md.write_text(render_markdown(rows, tables, header))
    js.write_text(json.dumps({**header, "rows": [r.to_dict() for r in rows]}, indent=1) + "\n")
    return md, js
