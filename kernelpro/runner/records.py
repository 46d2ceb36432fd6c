"""What the runner reports: check failures, GPU state, timings and the wall's verdict.

Every record is a frozen dataclass with ``to_dict``/``from_dict`` that round-trips through strict
JSON (no NaN): the worker sends them over a pipe and the search journals them. Values that JSON
cannot hold are normalized on construction (numpy scalars become Python numbers, tuples become
lists, non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"``), so a record read back
compares equal to the one written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kernelpro.runner.checks import REGISTRY

# Check names, in the order the wall runs them, and names of non-fatal findings (``WallVerdict.flags``): both from
# the registry in :mod:`kernelpro.runner.checks`.
CHECKS: tuple[str, ...] = tuple(c.name for c in REGISTRY if c.fatal)
FLAGS: tuple[str, ...] = tuple(c.name for c in REGISTRY if not c.fatal)


def jsonable(value: Any) -> Any:
    """``value`` as strict-JSON data: Python numbers, strings, lists and string-keyed dicts."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _float(value: Any) -> float:
    """Inverse of :func:`jsonable` for one float."""
    return float(value)  # float("nan") / float("inf") / float("-inf") parse the normalized strings


@dataclass(frozen=True)
class CheckFailure:
    """One failed check: which check, a one-line message saying what and where, and the details.

    ``where`` holds the place as data: argument name, problem size, input set and seed, the first
    bad index, expected and got values, error measures, ... (see :mod:`kernelpro.runner.wall`).
    """

    check: str
    message: str
    where: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "where", jsonable(dict(self.where)))

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "where": dict(self.where)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckFailure:
        return cls(data["check"], data["message"], data.get("where", {}))


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU a measurement ran on, with what the peak rates are computed from."""

    name: str
    compute_capability: str  # "9.0"
    sm_count: int
    sm_clock_khz: int | None  # maximum (boost) SM clock
    memory_clock_khz: int | None  # peak memory clock
    memory_bus_bits: int | None
    l2_bytes: int
    total_memory_bytes: int
    pci_bus_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceInfo:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class GpuState:
    """One NVML reading: clocks, temperature and the clock event (throttle) reasons bit mask."""

    sm_clock_mhz: int | None
    memory_clock_mhz: int | None
    temperature_c: int | None
    reasons: int  # nvmlClocksEventReason* bits
    throttled: bool  # one of the reasons that slow the clocks down is active (see nvml.THROTTLE_MASK)


@dataclass(frozen=True)
class ClockSummary:
    """NVML readings over one measurement (one per sample)."""

    readings: int
    sm_clock_mhz_min: int | None
    sm_clock_mhz_median: float | None
    sm_clock_mhz_max: int | None
    memory_clock_mhz: int | None
    temperature_c_max: int | None
    reasons: tuple[str, ...]  # every reason seen, by name ("sw_power_cap", ...); idle is left out

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", tuple(self.reasons))

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClockSummary:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Timing:
    """A kernel's time: statistics of the per-launch samples and how they were taken.

    ``method``: ``events`` (a CUDA event pair around each launch), ``graph`` (a CUDA graph of
    ``launches_per_sample`` launches between one event pair, for µs-scale kernels) or ``batch``
    (the same launches issued one by one, where graph capture failed). ``l2``: ``flushed`` (L2
    overwritten before each sample), ``rotated`` (flushed, and the launches of one sample use
    different copies of the buffers, so each starts with cold data), ``partly-warm`` (too few
    copies fitted in memory for that) or ``warm`` (no flush: the data may sit in L2).
    """

    median_s: float
    p20_s: float
    p80_s: float
    std_s: float
    mean_s: float
    n: int
    method: str
    launches_per_sample: int
    l2: str
    buffer_copies: int
    converged: bool  # the relative std reached the target
    stop_reason: str
    dropped_throttled: int  # samples left out because NVML reported throttling
    throttled: bool  # throttling was seen (and, if too much of it, the throttled samples were kept)
    elapsed_s: float
    clocks: ClockSummary | None = None
    samples_s: tuple[float, ...] = ()
    first_sample_s: float | None = None  # the first timed sample (per launch), before any was dropped

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples_s", tuple(float(s) for s in self.samples_s))
        if self.first_sample_s is not None:
            object.__setattr__(self, "first_sample_s", float(self.first_sample_s))

    @property
    def warm(self) -> bool:
        return self.l2 == "warm"

    @property
    def rel_std(self) -> float:
        return self.std_s / self.mean_s if self.mean_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "clocks"}
        data["clocks"] = self.clocks.to_dict() if self.clocks else None
        return jsonable(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timing:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name in ("median_s", "p20_s", "p80_s", "std_s", "mean_s", "elapsed_s"):
            values[name] = _float(values[name])
        values["clocks"] = ClockSummary.from_dict(data["clocks"]) if data.get("clocks") else None
        values["samples_s"] = tuple(_float(s) for s in data.get("samples_s", ()))
        if data.get("first_sample_s") is not None:
            values["first_sample_s"] = _float(data["first_sample_s"])
        return cls(**values)


@dataclass(frozen=True)
class WallVerdict:
    """The correctness wall's answer for one candidate (and its timing when it passed).

    ``ok`` is True only when ``failures`` is empty. ``flags`` are findings that do not reject the
    candidate (lower-precision SASS, throttling, an inconclusive sanitizer run); ``notes`` say what
    could not be checked. ``checked`` records what was run: sizes, input sets, distributions.
    """

    task: str
    kernel: str
    seed: int
    failures: tuple[CheckFailure, ...] = ()
    flags: tuple[CheckFailure, ...] = ()
    notes: tuple[str, ...] = ()
    checked: Mapping[str, Any] = field(default_factory=dict)
    timing: Timing | None = None
    device: DeviceInfo | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)  # worker GPU memory after the job
    seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "failures", tuple(self.failures))
        object.__setattr__(self, "flags", tuple(self.flags))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "checked", jsonable(dict(self.checked)))
        object.__setattr__(self, "memory", jsonable(dict(self.memory)))

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str | None:
        """The name of the first failed check, None when the candidate passed."""
        return self.failures[0].check if self.failures else None

    def failed(self, check: str) -> CheckFailure | None:
        """The first failure of ``check``, if any."""
        return next((f for f in self.failures if f.check == check), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "task": self.task,
            "kernel": self.kernel,
            "seed": self.seed,
            "failures": [f.to_dict() for f in self.failures],
            "flags": [f.to_dict() for f in self.flags],
            "notes": list(self.notes),
            "checked": dict(self.checked),
            "timing": self.timing.to_dict() if self.timing else None,
            "device": self.device.to_dict() if self.device else None,
            "memory": dict(self.memory),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WallVerdict:
        return cls(
            task=data["task"],
            kernel=data["kernel"],
            seed=int(data["seed"]),
            failures=tuple(CheckFailure.from_dict(f) for f in data.get("failures", ())),
            flags=tuple(CheckFailure.from_dict(f) for f in data.get("flags", ())),
            notes=tuple(data.get("notes", ())),
            checked=data.get("checked", {}),
            timing=Timing.from_dict(data["timing"]) if data.get("timing") else None,
            device=DeviceInfo.from_dict(data["device"]) if data.get("device") else None,
            memory=data.get("memory", {}),
            seconds=float(data.get("seconds", 0.0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> WallVerdict:
        return cls.from_dict(json.loads(text))
