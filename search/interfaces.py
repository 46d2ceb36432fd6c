"""What plugs into the search: an evaluator, an optional diagnoser and a proposer.

The search sees candidates through :class:`Evaluator` only (a variant in, pass/fail and a time
out); compiling, the correctness wall and timing all happen behind it. Profiling is behind
:class:`Diagnoser`, called only for nodes the search has selected for expansion. New variants come
from :class:`Proposer` (an LLM, or an offline proposer applying the diagnosis' actions).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernelpro.actions import Action
from kernelpro.search.variant import Evaluation, Variant


@dataclass(frozen=True)
class Diagnosis:
    """A diagnosis of one node: ``text`` for prompts and ``actions`` (:mod:`kernelpro.actions`) an offline
    proposer may apply; the search never interprets them.

    ``details`` is opaque to the search (JSON-able; it is journaled as is).
    """

    text: str
    actions: tuple[Action, ...] = ()
    details: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        actions = [a.to_dict() for a in self.actions]
        return {"text": self.text, "actions": actions, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnosis:
        actions = tuple(Action.from_dict(a) for a in data.get("actions", ()))
        return cls(data["text"], actions, data.get("details", {}))


@dataclass(frozen=True)
class Node:
    """An evaluated variant in the tree. ``iteration`` is the expansion that created it (0: the baseline)."""

    id: int
    parent: int | None
    depth: int
    iteration: int
    variant: Variant
    evaluation: Evaluation
    diagnosis: Diagnosis | None = None

    @property
    def key(self) -> str:
        return self.variant.key

    @property
    def ok(self) -> bool:
        return self.evaluation.ok

    @property
    def time_us(self) -> float | None:
        return self.evaluation.time_us


@dataclass(frozen=True)
class Usage:
    """What a proposal cost: model tokens in and out, and dollars."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out,
                     self.cost_usd + other.cost_usd)

    def to_dict(self) -> dict[str, Any]:
        return {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "cost_usd": self.cost_usd}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(int(data["tokens_in"]), int(data["tokens_out"]), float(data["cost_usd"]))


@dataclass(frozen=True)
class ProposalRequest:
    """What a proposer is asked: ``n`` new children of ``parent``.

    ``feedback`` holds ``"'<change>' → <failure>"`` for each failed child of ``parent`` so far;
    ``memory`` is the search memory (what was tried where, and what it did). ``seen_keys`` is a
    live read-only view of the content keys already in the tree: don't propose them (the search
    drops them anyway). Copy it if you keep it past the call.
    """

    parent: Node
    n: int
    feedback: tuple[str, ...]
    memory: str
    seen_keys: Set[str]
    baseline_us: float


@dataclass(frozen=True)
class Proposal:
    """A proposer's answer: new variants (at most ``n`` are used) and what producing them cost."""

    variants: tuple[Variant, ...]
    usage: Usage = Usage()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", tuple(self.variants))


class Evaluator(Protocol):
    def evaluate(self, variant: Variant) -> Evaluation:
        """Compile, check behind the wall and time ``variant``. Failures are returned, not raised."""
        ...


class Diagnoser(Protocol):
    def diagnose(self, node: Node) -> Diagnosis:
        """Profile and diagnose a passing node the search is about to expand."""
        ...


class Proposer(Protocol):
    def propose(self, request: ProposalRequest) -> Proposal:
        """Propose up to ``request.n`` new children of ``request.parent``."""
        ...
