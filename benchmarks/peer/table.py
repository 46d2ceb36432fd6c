"""A recorded knob-space table: every constrained configuration of one task, measured once.

The sweep writes one table per task and GPU (``results/peer/<task>-<gpu>.json``); every strategy is then
replayed on it, so all of them see the same measurements and the exhaustive optimum is known. A table
made by hand for tests says ``"synthetic": true`` and its GPU is ``"synthetic"``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "kernelpro-peer-sweep/1"
KnobValue = int | float | str


class TableError(Exception):
    """A table file that is missing or not a peer-sweep table (the message is one line)."""


def config_key(values: Iterable[KnobValue]) -> str:
    """The key of a configuration: its knob values in knob order joined by commas (Kernel Tuner's cache key)."""
    return ",".join(str(v) for v in values)


@dataclass(frozen=True)
class Entry:
    """One measured configuration: the median time when it passed, else the failure; ``seconds`` it cost."""

    knobs: Mapping[str, KnobValue]
    time_us: float | None
    failure: str | None = None
    seconds: float | None = None  # wall-clock seconds of the whole evaluation (compile, wall, timing)

    def __post_init__(self) -> None:
        if (self.time_us is None) == (self.failure is None):
            raise ValueError(f"an entry has a time or a failure, not both or neither: {dict(self.knobs)}")
        if self.time_us is not None and not (math.isfinite(self.time_us) and self.time_us > 0):
            raise ValueError(f"time must be finite and > 0, got {self.time_us!r}")

    @property
    def ok(self) -> bool:
        return self.time_us is not None

    def to_dict(self) -> dict[str, Any]:
        return {"knobs": dict(self.knobs), "ok": self.ok, "time_us": self.time_us, "failure": self.failure,
                "seconds": self.seconds}


@dataclass(frozen=True)
class Table:
    """All configurations of one task on one GPU. ``knobs`` maps each knob to its values in declared order
    (a knob with one value is a constant the kernel was compiled with). ``default`` is the task's default
    configuration; None for a table read from a Kernel Tuner cache, which records none (each seed then
    starts from :meth:`start`)."""

    task: str
    kernel: str
    knobs: Mapping[str, tuple[KnobValue, ...]]
    default: Mapping[str, KnobValue] | None
    entries: tuple[Entry, ...]
    environment: Mapping[str, Any] = field(default_factory=dict)  # gpu, driver, date, command, ...
    synthetic: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "knobs", {n: tuple(v) for n, v in self.knobs.items()})
        object.__setattr__(self, "entries", tuple(self.entries))
        keys = [self.key(e.knobs) for e in self.entries]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.task}: a configuration is recorded twice")
        if self.default is not None and self.key(self.default) not in set(keys):
            raise ValueError(f"{self.task}: the default configuration {dict(self.default)} is not in the table")
        if not any(e.ok for e in self.entries):
            raise ValueError(f"{self.task}: no configuration passed, so there is no optimum")

    # -- lookups ---------------------------------------------------------------------------------------

    def key(self, config: Mapping[str, KnobValue]) -> str:
        return config_key(config[name] for name in self.knobs)

    @property
    def by_key(self) -> dict[str, Entry]:
        return {self.key(e.knobs): e for e in self.entries}

    @property
    def gpu(self) -> str:
        return str(self.environment.get("gpu", "synthetic" if self.synthetic else "unknown"))

    @property
    def optimum(self) -> Entry:
        """The fastest passing configuration: the best configuration known (the table is exhaustive)."""
        return min((e for e in self.entries if e.ok), key=lambda e: e.time_us or math.inf)

    def start(self, seed: int) -> Mapping[str, KnobValue]:
        """Where every strategy starts for ``seed``: the default configuration, or where the table has none
        a passing configuration drawn by a generator seeded with ``seed`` (the same for every strategy)."""
        if self.default is not None:
            return self.default
        passing = sorted((e for e in self.entries if e.ok), key=lambda e: self.key(e.knobs))
        return random.Random(f"start/{seed}").choice(passing).knobs

    def mean_seconds(self) -> float | None:
        """Mean recorded seconds per evaluation, None when the table recorded none."""
        seconds = [e.seconds for e in self.entries if e.seconds is not None]
        return sum(seconds) / len(seconds) if seconds else None

    def seconds_of(self, key: str) -> float | None:
        """The recorded seconds of one configuration, else the table's mean (None when neither exists)."""
        entry = self.by_key[key]
        return entry.seconds if entry.seconds is not None else self.mean_seconds()

    # -- JSON ------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "task": self.task, "kernel": self.kernel, "synthetic": self.synthetic,
                "knobs": {n: list(v) for n, v in self.knobs.items()}, "default": self.default and dict(self.default),
                "environment": dict(self.environment), "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Table:
        if data.get("schema") != SCHEMA:
            raise TableError(f"not a peer-sweep table (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        entries = tuple(Entry(e["knobs"], e.get("time_us"), e.get("failure"), e.get("seconds"))
                        for e in data["entries"])
        return cls(data["task"], data["kernel"], data["knobs"], data["default"], entries,
                   data.get("environment", {}), bool(data.get("synthetic", False)))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Table:
        """A peer-sweep table, or a Kernel Tuner cache file (``.json`` or ``.json.gz``) read as one."""
        from peer.cachefile import is_kt_cache, load_kt_cache

        path = Path(path)
        if path.is_file() and is_kt_cache(path):
            return load_kt_cache(path)
        if not path.is_file():
            raise TableError(f"table {path} not found: record it on the GPU first with "
                             f"`python benchmarks/vs_kernel_tuner.py sweep --out {path.parent}`")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise TableError(f"table {path} is not a peer-sweep table: {exc}") from None
