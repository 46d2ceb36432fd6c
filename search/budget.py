"""Search budgets and why a search stopped."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from kernelpro.search.interfaces import Usage


class StopReason(str, Enum):
    """Why a search stopped: a budget ran out, nothing was left to expand, or the baseline failed."""

    EVALUATIONS = "evaluations"
    SECONDS = "seconds"
    TOKENS = "tokens"
    DOLLARS = "dollars"
    ITERATIONS = "iterations"
    EXHAUSTED = "exhausted"
    BASELINE_FAILED = "baseline_failed"


@dataclass(frozen=True)
class Spent:
    """What a search has used so far (``evaluations`` includes the baseline)."""

    evaluations: int
    seconds: float
    usage: Usage
    iterations: int


@dataclass(frozen=True)
class Budget:
    """Limits on a search; None means no limit. The first one reached stops the search.

    Each limit is checked before the call that spends it, so one proposal can overshoot the token
    and dollar limits by its own cost; the variants it returned are still evaluated, since they are
    paid for. ``max_evaluations`` counts the baseline; ``max_iterations`` counts expansions
    (proposer calls); ``max_seconds`` is the search's own running time, summed over resumes.
    """

    max_evaluations: int | None = 100
    max_seconds: float | None = None
    max_tokens: int | None = None
    max_dollars: float | None = None
    max_iterations: int | None = None

    def __post_init__(self) -> None:
        for name, limit in asdict(self).items():
            if limit is not None and not limit > 0:
                raise ValueError(f"{name} must be > 0 or None, got {limit!r}")

    def stop_reason(self, spent: Spent, *, evaluating: bool = False) -> StopReason | None:
        """The first limit ``spent`` has reached, or None.

        With ``evaluating`` (before evaluating an already-proposed variant) only the evaluation and
        time limits apply.
        """
        if self.max_evaluations is not None and spent.evaluations >= self.max_evaluations:
            return StopReason.EVALUATIONS
        if self.max_seconds is not None and spent.seconds >= self.max_seconds:
            return StopReason.SECONDS
        if evaluating:
            return None
        if self.max_tokens is not None and spent.usage.tokens >= self.max_tokens:
            return StopReason.TOKENS
        if self.max_dollars is not None and spent.usage.cost_usd >= self.max_dollars:
            return StopReason.DOLLARS
        if self.max_iterations is not None and spent.iterations >= self.max_iterations:
            return StopReason.ITERATIONS
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        return cls(**data)
