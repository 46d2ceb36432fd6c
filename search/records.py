"""The journal's records: one JSON object per line, tagged by ``type``.

A run's journal is a ``start`` record, then the baseline's ``node`` record, then per iteration an
optional ``diagnosis`` of the selected node, a ``proposal`` (the new variants the proposer
returned, after duplicates were dropped) and one ``node`` record per evaluated child (a search with
several evaluations in flight also writes a ``submit`` record as each child starts, and its records of
different proposals interleave). A
``proposal`` whose children are not all journaled is finished on resume without asking the
proposer again. ``elapsed_s`` is the search's running time when the record was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernelpro.search.interfaces import Diagnosis, Usage
from kernelpro.search.variant import Evaluation, Variant


@dataclass(frozen=True)
class StartRecord:
    """How the run was configured: the baseline, the MCTS config and the budget (as dicts)."""

    baseline: Variant
    config: Mapping[str, Any]
    budget: Mapping[str, Any]


@dataclass(frozen=True)
class NodeRecord:
    """An evaluated variant; ``usage`` is the run's cumulative proposer usage at that moment."""

    id: int
    parent: int | None
    iteration: int
    variant: Variant
    evaluation: Evaluation
    usage: Usage
    elapsed_s: float


@dataclass(frozen=True)
class DiagnosisRecord:
    id: int
    diagnosis: Diagnosis
    seconds: float
    elapsed_s: float


@dataclass(frozen=True)
class ProposalRecord:
    """What one expansion of ``parent`` asked to evaluate; ``usage`` is this proposal's cost."""

    iteration: int
    parent: int
    variants: tuple[Variant, ...]
    usage: Usage
    seconds: float
    elapsed_s: float


@dataclass(frozen=True)
class SubmitRecord:
    """A variant of proposal ``iteration`` handed to the asynchronous evaluator (searches of capacity > 1).

    Its ``node`` record follows when it finishes; on resume, a submitted variant without one is submitted
    again (its evaluation was lost with the process), one with a node record never is.
    """

    iteration: int
    key: str
    elapsed_s: float


Record = StartRecord | NodeRecord | DiagnosisRecord | ProposalRecord | SubmitRecord


def to_json(record: Record) -> dict[str, Any]:
    """The record as a JSON-able dict with a ``type`` tag."""
    match record:
        case StartRecord():
            return {"type": "start", "baseline": record.baseline.to_dict(), "config": dict(record.config),
                    "budget": dict(record.budget)}
        case NodeRecord():
            return {"type": "node", "id": record.id, "parent": record.parent, "iteration": record.iteration,
                    "variant": record.variant.to_dict(), "evaluation": record.evaluation.to_dict(),
                    "usage": record.usage.to_dict(), "elapsed_s": record.elapsed_s}
        case DiagnosisRecord():
            return {"type": "diagnosis", "id": record.id, "diagnosis": record.diagnosis.to_dict(),
                    "seconds": record.seconds, "elapsed_s": record.elapsed_s}
        case ProposalRecord():
            return {"type": "proposal", "iteration": record.iteration, "parent": record.parent,
                    "variants": [v.to_dict() for v in record.variants], "usage": record.usage.to_dict(),
                    "seconds": record.seconds, "elapsed_s": record.elapsed_s}
        case SubmitRecord():
            return {"type": "submit", "iteration": record.iteration, "key": record.key, "elapsed_s": record.elapsed_s}
    raise TypeError(f"not a journal record: {record!r}")


def from_json(data: Mapping[str, Any]) -> Record:
    """Parse one journal line's object; raises KeyError or ValueError when it is not a record."""
    kind = data["type"]
    if kind == "start":
        return StartRecord(Variant.from_dict(data["baseline"]), data["config"], data["budget"])
    if kind == "node":
        return NodeRecord(data["id"], data["parent"], data["iteration"], Variant.from_dict(data["variant"]),
                          Evaluation.from_dict(data["evaluation"]), Usage.from_dict(data["usage"]),
                          data["elapsed_s"])
    if kind == "diagnosis":
        return DiagnosisRecord(data["id"], Diagnosis.from_dict(data["diagnosis"]), data["seconds"],
                               data["elapsed_s"])
    if kind == "proposal":
        return ProposalRecord(data["iteration"], data["parent"],
                              tuple(Variant.from_dict(v) for v in data["variants"]),
                              Usage.from_dict(data["usage"]), data["seconds"], data["elapsed_s"])
    if kind == "submit":
        return SubmitRecord(data["iteration"], data["key"], data["elapsed_s"])
    raise ValueError(f"unknown journal record type {kind!r}")
