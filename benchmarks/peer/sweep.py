"""The GPU sweep: every constrained configuration of a task through kernelpro's real runner, once.

Each configuration is checked behind the correctness wall and timed by
``kernelpro.runner.evaluate.Evaluator.bench`` (the same path as ``kernelpro bench --knob ...``); the
table keeps the median time (or the first failure, ``"<check>: <message>"``) and the wall-clock seconds
the whole evaluation took, which is what a tuner pays for trying that configuration.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path

from kernelpro import __version__
from kernelpro.runner.device import require_gpu
from kernelpro.runner.evaluate import Evaluator
from kernelpro.runner.nvml import driver_version
from kernelpro.suite import slug
from kernelpro.task_loader import load_task
from peer.table import Entry, Table


def sweep_task(task_path: str | Path, evaluator: Evaluator, command: str,
               progress: Callable[[str], None] = print) -> Table:
    """Measure every configuration of ``task.knob_space()`` (needs a GPU)."""
    task = load_task(task_path)
    entries, device = [], None
    started = _dt.datetime.now(_dt.timezone.utc)
    configs = list(task.knob_space())
    for i, config in enumerate(configs, 1):
        verdict = evaluator.bench(task, knobs=config)
        device = device or verdict.device
        if verdict.ok and verdict.timing is not None:
            entry = Entry(config, verdict.timing.median_s * 1e6, None, verdict.seconds)
        else:
            failure = verdict.failures[0] if verdict.failures else None
            text = f"{failure.check}: {failure.message}" if failure else "timing: no timing recorded"
            entry = Entry(config, None, text.splitlines()[0][:500], verdict.seconds)
        entries.append(entry)
        result = f"{entry.time_us:.3f} us" if entry.ok else f"FAIL {entry.failure}"
        progress(f"  {task.name} [{i}/{len(configs)}] {config}: {result[:120]} ({verdict.seconds:.1f} s)")
    environment = {
        "gpu": device.name if device else "unknown",
        "compute_capability": device.compute_capability if device else None,
        "driver": driver_version(),
        "date": started.isoformat(timespec="seconds"),
        "command": command,
        "kernelpro_version": __version__,
        "task_path": str(task_path),
        "measurement": "kernelpro Evaluator.bench: correctness wall then timing; time_us is the median "
                       "(cold L2); seconds is the whole evaluation's wall-clock time",
    }
    return Table(task.name, task.kernel, {n: k.values for n, k in task.knobs.items()}, task.default_knobs(),
                 tuple(entries), environment)


def table_path(out: Path, table: Table) -> Path:
    """``<out>/<task>-<gpu>.json``."""
    return out / f"{table.task}-{slug(table.gpu)}.json"


def sweep(task_paths: list[str], out: Path, command: str, progress: Callable[[str], None] = print) -> list[Path]:
    """Sweep each task and write its table; raises ``KernelproError`` (one line) when no GPU is visible."""
    require_gpu()
    written = []
    with Evaluator() as evaluator:
        for task_path in task_paths:
            progress(f"sweeping {task_path}")
            table = sweep_task(task_path, evaluator, command, progress)
            path = table_path(out, table)
            table.save(path)
            progress(f"wrote {path} (optimum {table.optimum.time_us:.3f} us at {dict(table.optimum.knobs)})")
            written.append(path)
    return written
