"""A Kernel Tuner cache file (JSON, or gzipped JSON) read directly as a recorded table.

Public brute-force caches (e.g. the AutoTuningAssociation's benchmark_hub) hold, per configuration
(key ``"v1,v2,..."`` in ``tune_params_keys`` order), ``time`` in milliseconds or a failure kind
(``CompilationFailedConfig``, ``RuntimeFailedConfig``, ...), and the ``compile_time``,
``verification_time`` and ``benchmark_time`` in milliseconds that evaluating it cost. The table keeps
every knob, constant ones included (``tune_params`` with one value: the kernel was compiled with it), the
failure kind as the entry's failure, the cost as its seconds, and the GPU (``device_name``) and the file it
came from in its environment. A cache records no default configuration: each seed starts from
:meth:`peer.table.Table.start`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from peer.table import Entry, Table, TableError

_COST_FIELDS = ("compile_time", "verification_time", "benchmark_time")
_FIX = "pass a Kernel Tuner cache (JSON with tune_params and cache) or a table from `vs_kernel_tuner.py sweep`"


def _read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except (OSError, EOFError, ValueError) as exc:
        raise TableError(f"{path} is not readable JSON ({str(exc).splitlines()[0]}): {_FIX}") from None


def is_kt_cache(path: Path) -> bool:
    """Whether ``path`` looks like a Kernel Tuner cache (gzipped, or JSON naming ``tune_params_keys``)."""
    if path.name.endswith(".gz"):
        return True
    with path.open("rb") as f:
        return b'"tune_params_keys"' in f.read(4096)


def load_kt_cache(path: str | Path) -> Table:
    """The cache at ``path`` as a table; a malformed file is a one-line :class:`TableError`."""
    path = Path(path)
    data = _read_json(path)
    try:
        names = list(data["tune_params_keys"])
        values = {n: tuple(data["tune_params"][n]) for n in names}
        entries = tuple(_entry(result, names) for result in data["cache"].values())
        gpu = str(data.get("device_name") or "unknown")
        kernel = str(data.get("kernel_name") or path.name)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TableError(f"{path} is not a Kernel Tuner cache ({type(exc).__name__}: {exc}): {_FIX}") from None
    if not entries or not any(e.ok for e in entries):
        raise TableError(f"{path} holds no passing configuration, so it has no optimum: {_FIX}")
    task = path.name.removesuffix(".gz").removesuffix(".json")
    environment = {"gpu": gpu, "source": str(path), "problem_size": data.get("problem_size"),
                   "objective": data.get("objective", "time"),
                   "measurement": "Kernel Tuner cache: time is the recorded mean in ms; seconds is "
                                  "compile + verification + benchmark time"}
    try:
        return Table(task, kernel, values, None, entries, environment)
    except ValueError as exc:
        raise TableError(f"{path} is not a usable cache ({exc}): {_FIX}") from None


def _entry(result: dict[str, Any], names: list[str]) -> Entry:
    knobs = {n: result[n] for n in names}
    costs = [result.get(f) for f in _COST_FIELDS]
    seconds = sum(float(c) for c in costs if isinstance(c, int | float)) / 1e3 if any(
        isinstance(c, int | float) for c in costs) else None
    time = result["time"]
    if isinstance(time, str):
        return Entry(knobs, None, time, seconds)
    if isinstance(time, int | float) and time > 0:
        return Entry(knobs, float(time) * 1e3, None, seconds)
    raise ValueError(f"configuration {knobs} has time {time!r}")
