"""The search with several evaluations in flight, on an :class:`~kernelpro.search.async_eval.AsyncEvaluator`.

Same tree, same selection rules, same journal as :class:`~kernelpro.search.mcts.MCTS`, with these changes:

- **Pending visits** (WU-UCT, virtual loss): a variant proposed but not finished counts as a visit of its
  parent and every ancestor, and occupies a widening slot of its parent, so selection does not pile the
  next proposal onto the subtree already being evaluated. Backup happens when each evaluation finishes.
- **Filling**: while the evaluator has free capacity, the driver proposes and submits. When every slot is
  busy it may make *one* proposal ahead (its variants wait in the queue), so a slot that frees finds work
  instead of waiting for the proposer; at capacity 1 it never proposes ahead, so the calls, their order
  and the journal are exactly the serial search's (``tests/test_search_parallel.py``).
- **Budgets are charged at submit** (evaluations in flight count as evaluations, proposals made as
  iterations); when one runs out, nothing more is submitted and what is in flight is drained (journaled).
- **Journal**: written only by this driver's thread; with capacity > 1 each submission is journaled
  (:class:`~kernelpro.search.records.SubmitRecord`) before the evaluator sees it. :meth:`replay` rebuilds the
  open proposals and :meth:`run` submits again every proposed variant without a node record (what was in
  flight when the process died, or never submitted), so nothing finished is evaluated twice.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Set
from dataclasses import asdict, replace

from kernelpro.search.async_eval import AsyncEvaluator, Finished
from kernelpro.search.budget import Spent, StopReason
from kernelpro.search.interfaces import Diagnoser, Proposer
from kernelpro.search.mcts import MCTS, SearchResult, _Expansion
from kernelpro.search.records import DiagnosisRecord, NodeRecord, ProposalRecord, Record, StartRecord, SubmitRecord
from kernelpro.search.tree import ROOT
from kernelpro.search.variant import Variant

_BLOCKED = (-1, 0)  # selection found no room anywhere but under evaluations in flight: wait for one


class _Keys(Set[str]):
    """The tree's keys and the keys in flight, as one read-only set (what a proposer must not propose)."""

    def __init__(self, tree_keys: Set[str], pending: Set[str]) -> None:
        self._tree, self._pending = tree_keys, pending

    def __contains__(self, key: object) -> bool:
        return key in self._tree or key in self._pending

    def __iter__(self) -> Iterator[str]:
        yield from self._tree
        yield from (k for k in self._pending if k not in self._tree)

    def __len__(self) -> int:
        return len(self._tree) + sum(k not in self._tree for k in self._pending)


class _NoSyncEvaluation:
    def evaluate(self, variant: Variant) -> None:
        raise AssertionError("the parallel search evaluates through its asynchronous evaluator only")


class ParallelMCTS(MCTS):
    """MCTS keeping up to ``evaluator.capacity`` evaluations in flight (see the module docstring)."""

    def __init__(self, baseline: Variant, evaluator: AsyncEvaluator, proposer: Proposer | None, *,
                 diagnoser: Diagnoser | None = None, **kwargs: object) -> None:
        super().__init__(baseline, _NoSyncEvaluation(), proposer, diagnoser=diagnoser, **kwargs)  # type: ignore[arg-type]
        self.async_evaluator = evaluator
        self._open: dict[int, _Expansion] = {}  # proposals whose children are not all evaluated
        self._queue: deque[tuple[_Expansion | None, Variant]] = deque()  # proposed, not submitted yet
        self._in_flight: dict[int, tuple[_Expansion | None, Variant]] = {}  # by ticket
        self._pending_keys: dict[str, None] = {}  # queued or in flight
        self._pending_visits: Counter[int] = Counter()
        self._children_pending: Counter[int] = Counter()
        self._proposals = 0  # proposals made (journaled), finished or not
        self._busy: Counter[int] = Counter()

    # -- running -------------------------------------------------------------------------------

    def run(self) -> SearchResult:
        """Search until a budget runs out or nothing is left to expand, then drain what is in flight."""
        self._started = self._clock()
        if not self._replayed:
            self._write(StartRecord(self.baseline, asdict(self.config), self.budget.to_dict()))
        if len(self.tree) == 0:
            self._enqueue(None, self.baseline)
            self._submit_queued()
            while self._in_flight:
                self._collect(self.async_evaluator.poll())
        if not self.tree.root.ok:
            return self._result(StopReason.BASELINE_FAILED)
        for expansion in sorted(self._open.values(), key=lambda e: e.iteration):
            for variant in expansion.variants:
                if self.tree.find(variant.key) is None:
                    self._enqueue(expansion, variant)
        reason: StopReason | None = None
        while True:
            if reason is None:
                reason = self._fill()
            if not self._in_flight:
                break
            self._collect(self.async_evaluator.poll())
        return self._result(reason or StopReason.EXHAUSTED)

    def _fill(self) -> StopReason | None:
        """Submit and propose until the evaluator is full (one proposal ahead at most); a reason to stop, or None."""
        capacity = self.async_evaluator.capacity
        while True:
            reason = self._submit_queued()
            if reason is not None or self._queue:
                return reason
            if len(self._in_flight) >= capacity and capacity == 1:
                return None
            reason = self.budget.stop_reason(self._spent())
            if reason is not None:
                return reason
            iteration = self._proposals + 1
            picked = self._select(random.Random(f"{self.config.seed}/{iteration}"))
            if picked is None or picked == _BLOCKED:
                return None if self._in_flight else StopReason.EXHAUSTED
            expansion = self._expand(iteration, *picked)
            self._proposals = iteration
            if not expansion.variants:
                self._complete(expansion)
                continue
            self._open[iteration] = expansion
            for variant in expansion.variants:
                self._enqueue(expansion, variant)
            if len(self._in_flight) >= capacity:
                return None  # the one proposal ahead waits in the queue

    def _submit_queued(self) -> StopReason | None:
        while self._queue and len(self._in_flight) < self.async_evaluator.capacity:
            reason = self.budget.stop_reason(self._spent(), evaluating=True)
            if reason is not None:
                return reason
            expansion, variant = self._queue.popleft()
            if self.async_evaluator.capacity > 1:
                self._write(SubmitRecord(0 if expansion is None else expansion.iteration, variant.key,
                                         self._elapsed()))
            self._in_flight[self.async_evaluator.submit(variant)] = (expansion, variant)
        return None

    def _enqueue(self, expansion: _Expansion | None, variant: Variant) -> None:
        self._queue.append((expansion, variant))
        self._pending_keys[variant.key] = None
        if expansion is not None:
            self._children_pending[expansion.parent] += 1
            for ancestor in self.tree.path_to_root(expansion.parent):
                self._pending_visits[ancestor] += 1

    def _collect(self, finished: Iterable[Finished]) -> None:
        """Journal and back up each finished evaluation; complete the proposals it finishes."""
        for done in sorted(finished, key=lambda f: f.ticket):
            expansion, variant = self._in_flight.pop(done.ticket)
            parent = None if expansion is None else expansion.parent
            iteration = 0 if expansion is None else expansion.iteration
            # Journal before anything else can go wrong: the evaluation is the expensive part.
            self._write(NodeRecord(len(self.tree), parent, iteration, variant, done.evaluation, self.usage,
                                   self._elapsed()))
            del self._pending_keys[variant.key]
            if expansion is not None:
                self._children_pending[expansion.parent] -= 1
                for ancestor in self.tree.path_to_root(expansion.parent):
                    self._pending_visits[ancestor] -= 1
            self._add(parent, variant, done.evaluation, iteration)
            self._busy[done.slot] += done.busy_s
            if expansion is not None and self._finished(expansion):
                self._complete(expansion)

    def _finished(self, expansion: _Expansion) -> bool:
        return all(self._evaluated_in(expansion, v) for v in expansion.variants)

    def _complete(self, expansion: _Expansion) -> None:
        children = [self.tree.find(v.key) for v in expansion.variants]
        self.tree.record_expansion(expansion.parent, children)
        self.iterations += 1
        self._open.pop(expansion.iteration, None)

    # -- selection with evaluations in flight ---------------------------------------------------

    def _select(self, rng: random.Random) -> tuple[int, int] | None:
        tree = self.tree
        if tree.is_dead(ROOT):
            return None
        node = ROOT
        while True:
            open_children = tree.open_children(node)
            room = self.config.width_limit(self._visits(node)) - len(open_children) - self._children_pending[node]
            if room > 0 and not tree.is_saturated(node):
                return node, min(room, self.config.children_per_expansion)
            if not open_children:
                return _BLOCKED
            node = self._uct_child(node, open_children, rng)

    def _visits(self, node_id: int) -> int:
        return self.tree.visits(node_id) + self._pending_visits[node_id]

    def _seen_keys(self) -> Set[str]:
        return _Keys(self.tree.keys, self._pending_keys.keys())

    def _fresh(self, variants: Iterable[Variant], n: int) -> tuple[Variant, ...]:
        return super()._fresh((v for v in variants if v.key not in self._pending_keys), n)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _spent(self) -> Spent:
        return Spent(len(self.tree) + len(self._in_flight), self._elapsed(), self.usage, self._proposals)

    def _result(self, reason: StopReason) -> SearchResult:
        return replace(super()._result(reason), gpu_busy_s=dict(self._busy))

    # -- resume --------------------------------------------------------------------------------

    def replay(self, records: Iterable[Record]) -> None:
        """Rebuild the search from journal records (serial or parallel); :meth:`run` resubmits what never finished."""
        if self._replayed or len(self.tree):
            raise ValueError("replay() must be called once, before run()")
        for record in records:
            match record:
                case NodeRecord():
                    if record.id != len(self.tree):
                        raise ValueError(f"node record {record.id} out of order (expected {len(self.tree)})")
                    self._add(record.parent, record.variant, record.evaluation, record.iteration)
                    expansion = self._open.get(record.iteration)
                    if expansion is not None and self._finished(expansion):
                        self._complete(expansion)
                case DiagnosisRecord():
                    self.tree.set_diagnosis(record.id, record.diagnosis)
                    self._stage_seconds["diagnose"] += record.seconds
                case ProposalRecord():
                    self.usage += record.usage
                    self._stage_seconds["propose"] += record.seconds
                    if self.knobs is not None:
                        self.knobs.asked(record.variants)
                    self._proposals = max(self._proposals, record.iteration)
                    expansion = _Expansion(record.parent, record.iteration, record.variants)
                    self._open[record.iteration] = expansion
                    if self._finished(expansion):
                        self._complete(expansion)
                case SubmitRecord():
                    pass  # a submission without a node record is submitted again by run()
                case StartRecord():
                    raise ValueError("a second start record")
            self._elapsed_before = max(self._elapsed_before, getattr(record, "elapsed_s", 0.0))
        self._replayed = True

