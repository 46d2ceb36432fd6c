"""kernelpro's side: the offline MCTS replayed on a recorded table, moving through knobs only.

:class:`TableEvaluator` answers a variant from the table (a failure stays a failure);
:class:`KnobNeighbourProposer` proposes the parent's knob neighbours: every configuration in the table
whose knobs each differ by at most one step in the knob's declared values, single-knob moves first
(the offline proposer's knob ladder), then moves of two knobs at once (which reach configurations a
constraint such as a threads-per-block range cuts off from single steps), and so on. Within a tier the
order is shuffled by a generator seeded from the seed, the parent and the tree size, so a seed gives
one search and the proposer keeps no state. The baseline is the task's default configuration and is
the first evaluation, as in a real ``kernelpro optimize`` run.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping

from kernelpro.search import MCTS, Budget, Evaluation, MCTSConfig, Proposal, ProposalRequest, Variant
from peer.table import KnobValue, Table

ORIGIN = "peer:knob-neighbour"


def _source(table: Table) -> str:
    return f"// recorded table of {table.task}: the knobs are the whole variant\n"


def variant_for(table: Table, config: Mapping[str, KnobValue], change: str = "baseline") -> Variant:
    """The variant that stands for one configuration of the table."""
    return Variant(_source(table), tuple((n, str(config[n])) for n in table.knobs), (), change, ORIGIN)


class TableEvaluator:
    """Looks each variant's configuration up in the table; ``seconds`` is the recorded cost (0 if none)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._entries = {self._text_key(e.knobs): e for e in table.entries}
        self.trace: list[str] = []  # table keys in evaluation order

    def _text_key(self, knobs: Mapping[str, object]) -> tuple[str, ...]:
        return tuple(str(knobs[n]) for n in self.table.knobs)

    def evaluate(self, variant: Variant) -> Evaluation:
        entry = self._entries.get(self._text_key(variant.knob_values))
        if entry is None:
            return Evaluation.failed("table", f"configuration {variant.knob_values} is not in the recorded table")
        self.trace.append(self.table.key(entry.knobs))
        stages = {"recorded": entry.seconds or 0.0}
        if not entry.ok:
            stage, _, message = (entry.failure or "failed: unknown").partition(":")
            return Evaluation.failed(stage.strip() or "failed", message.strip() or "failed", stage_seconds=stages)
        return Evaluation.passed(entry.time_us, stage_seconds=stages)


class KnobNeighbourProposer:
    """Proposes the parent's knob neighbours in the table (see the module docstring)."""

    def __init__(self, table: Table, *, seed: int = 0) -> None:
        self.table = table
        self.seed = seed
        self._valid = {tuple(str(e.knobs[n]) for n in table.knobs) for e in table.entries}

    def neighbours(self, parent: Variant) -> list[list[dict[str, str]]]:
        """The parent's neighbour configurations (knob name → value text), grouped by knobs changed."""
        names = list(self.table.knobs)
        texts = {n: [str(v) for v in self.table.knobs[n]] for n in names}
        current = parent.knob_values
        index = {n: texts[n].index(current[n]) for n in names}
        tiers: list[list[dict[str, str]]] = [[] for _ in names]
        for steps in itertools.product((-1, 0, 1), repeat=len(names)):
            changed = sum(s != 0 for s in steps)
            moved = [index[n] + s for n, s in zip(names, steps, strict=True)]
            if changed == 0 or any(not 0 <= i < len(texts[n]) for n, i in zip(names, moved, strict=True)):
                continue
            config = tuple(texts[n][i] for n, i in zip(names, moved, strict=True))
            if config in self._valid:
                tiers[changed - 1].append(dict(zip(names, config, strict=True)))
        return tiers

    def propose(self, request: ProposalRequest) -> Proposal:
        parent = request.parent.variant
        rng = random.Random(f"{self.seed}/{parent.key}/{len(request.seen_keys)}")
        chosen: list[Variant] = []
        for tier in self.neighbours(parent):
            rng.shuffle(tier)
            for config in tier:
                change = ", ".join(f"{n} {parent.knob_values[n]}→{v}" for n, v in config.items()
                                   if parent.knob_values[n] != v)
                variant = parent.with_knobs(config, change=change, origin=ORIGIN)
                if variant.key not in request.seen_keys and len(chosen) < request.n:
                    chosen.append(variant)
        return Proposal(tuple(chosen))


def mcts_trace(table: Table, seed: int, budget: int, config: MCTSConfig | None = None) -> list[str]:
    """The configurations kernelpro's MCTS evaluates on the table (baseline first), at most ``budget``.

    The search may stop before the budget when nothing is left to expand (every subtree dead or
    saturated); the trace is then shorter.
    """
    evaluator = TableEvaluator(table)
    search = MCTS(variant_for(table, table.default), evaluator, KnobNeighbourProposer(table, seed=seed),
                  config=config or MCTSConfig(seed=seed), budget=Budget(max_evaluations=budget))
    search.run()
    return evaluator.trace[:budget]
