"""A kernel variant (one complete candidate) and its evaluation.

Both are frozen and convert to and from plain JSON-able dicts, so the journal and ``tree.json``
store exactly what the search saw.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Variant:
    """One complete kernel candidate: device source plus compile-time knobs and flags.

    ``change`` (one line: what the proposer changed) and ``origin`` (which proposer or action made
    it) describe how the variant came about; they are not part of its identity, which is
    :attr:`key`, a hash of ``source``, ``knobs`` and ``flags`` only.
    """

    source: str
    knobs: tuple[tuple[str, str], ...] = ()
    flags: tuple[str, ...] = ()
    change: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        knobs = tuple(sorted((str(name), str(value)) for name, value in self.knobs))
        names = [name for name, _ in knobs]
        if len(set(names)) != len(names):
            raise ValueError(f"a knob is set twice in {knobs}")
        if "\n" in self.change:
            raise ValueError(f"change must be one line, got {self.change!r}")
        object.__setattr__(self, "knobs", knobs)
        object.__setattr__(self, "flags", tuple(self.flags))

    @cached_property
    def key(self) -> str:
        """Content key: sha256 of source, knobs and flags. The tree never holds two variants with one key."""
        payload = json.dumps([self.source, self.knobs, self.flags], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def knob_values(self) -> dict[str, str]:
        return dict(self.knobs)

    def with_knobs(self, updates: Mapping[str, str], *, change: str, origin: str) -> Variant:
        """This variant with some knobs set to new values (same source and flags)."""
        knobs = {**dict(self.knobs), **{str(k): str(v) for k, v in updates.items()}}
        return Variant(self.source, tuple(knobs.items()), self.flags, change, origin)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "knobs": dict(self.knobs),
            "flags": list(self.flags),
            "change": self.change,
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Variant:
        return cls(
            source=data["source"],
            knobs=tuple(data.get("knobs", {}).items()),
            flags=tuple(data.get("flags", ())),
            change=data.get("change", ""),
            origin=data.get("origin", ""),
        )


@dataclass(frozen=True)
class Evaluation:
    """What the evaluator found: passed with a time, or failed at a stage with a message.

    ``failure`` is ``"<stage>: <message>"`` (e.g. ``"wall: output mismatch at index 17"``);
    ``stage_seconds`` is the time spent per stage (compile, wall, timing, profile) and ``summary``
    holds small JSON-able extras. Use :meth:`passed` and :meth:`failed` to build one.
    """

    ok: bool
    time_us: float | None = None
    failure: str | None = None
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    summary: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ok:
            if self.time_us is None or not math.isfinite(self.time_us) or self.time_us <= 0:
                raise ValueError(f"a passing evaluation needs a finite time > 0, got {self.time_us!r}")
            if self.failure is not None:
                raise ValueError("a passing evaluation has no failure text")
        else:
            if not self.failure:
                raise ValueError("a failed evaluation needs a failure text ('stage: message')")
            if self.time_us is not None:
                raise ValueError("a failed evaluation has no time")
        stages = {str(k): float(v) for k, v in self.stage_seconds.items()}
        if any(not math.isfinite(v) or v < 0 for v in stages.values()):
            raise ValueError(f"stage seconds must be finite and >= 0, got {stages}")
        summary = dict(self.summary)
        json.dumps(summary, allow_nan=False)  # fail here, not later in the journal
        # Copies, so the caller's dicts can't change a frozen evaluation behind its back.
        object.__setattr__(self, "stage_seconds", stages)
        object.__setattr__(self, "summary", summary)

    @classmethod
    def passed(
        cls,
        time_us: float,
        *,
        stage_seconds: Mapping[str, float] | None = None,
        summary: Mapping[str, object] | None = None,
    ) -> Evaluation:
        return cls(True, float(time_us), None, stage_seconds or {}, summary or {})

    @classmethod
    def failed(
        cls,
        stage: str,
        message: str,
        *,
        stage_seconds: Mapping[str, float] | None = None,
        summary: Mapping[str, object] | None = None,
    ) -> Evaluation:
        return cls(False, None, f"{stage}: {message}", stage_seconds or {}, summary or {})

    @property
    def failed_stage(self) -> str | None:
        """The stage named before the first colon of ``failure``, or None when it passed."""
        return None if self.failure is None else self.failure.split(":", 1)[0].strip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "time_us": self.time_us,
            "failure": self.failure,
            "stage_seconds": dict(self.stage_seconds),
            "summary": dict(self.summary),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        return cls(
            ok=data["ok"],
            time_us=data.get("time_us"),
            failure=data.get("failure"),
            stage_seconds=data.get("stage_seconds", {}),
            summary=data.get("summary", {}),
        )
