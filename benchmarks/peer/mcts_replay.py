"""kernelpro's side: the MCTS replayed on a recorded table, its knob tuner doing every expansion.

:class:`TableEvaluator` answers a variant from the table (a failure stays a failure). The search is the
one ``kernelpro optimize`` runs (:class:`kernelpro.search.MCTS` with a knob space, see
:mod:`kernelpro.search.knob_expansion`); the table's configurations are the knob space. The baseline is
the seed's starting configuration (:meth:`peer.table.Table.start`) and is the first evaluation, as in a
real ``kernelpro optimize`` run.
"""

from __future__ import annotations

from collections.abc import Mapping

from kernelpro.search import MCTS, Budget, Evaluation, MCTSConfig, Variant
from kernelpro.search.knobtune import KnobSpace
from peer.table import KnobValue, Table

ORIGIN = "peer:table"


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


def knob_space(table: Table) -> KnobSpace:
    """The table's configurations as the knob tuner's space (every recorded one, failures included: like a
    task's constrained space, failing configurations are only found by evaluating them)."""
    return KnobSpace.from_configs(table.knobs, [e.knobs for e in table.entries])


def mcts_trace(table: Table, seed: int, budget: int, config: MCTSConfig | None = None) -> list[str]:
    """The configurations kernelpro's MCTS evaluates on the table (the seed's start first), at most ``budget``.

    The knobs are the only freedom, so there is no source-level proposer and every expansion goes to the
    knob tuner, as in ``kernelpro optimize`` on a task whose source proposer has nothing left.
    """
    evaluator = TableEvaluator(table)
    search = MCTS(variant_for(table, table.start(seed)), evaluator, None, config=config or MCTSConfig(seed=seed),
                  budget=Budget(max_evaluations=budget), knob_space=knob_space(table))
    search.run()
    return evaluator.trace[:budget]
