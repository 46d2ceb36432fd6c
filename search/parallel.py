"""The search with several evaluations in flight, on an :class:`~kernelpro.search.async_eval.AsyncEvaluator`.

Same tree, same selection rules, same journal as :class:`~kernelpro.search.mcts.MCTS`, with these changes:

- **Pending visits** (WU-UCT, virtual loss): a variant proposed but not finished counts as a visit of its
  parent and every ancestor, and occupies a widening slot of its parent, so selection does not pile the
  next proposal onto the subtree already being evaluated. Backup happens when each evaluation finishes.
- **Filling**: while the evaluator has free capacity, the driver proposes and submits. When every slot is
  busy it may make *one* proposal ahead (its variants wait in the queue), so a slot that frees finds work
  instead of waiting for the proposer; at capacity 1 it never proposes ahead, so the calls, their order
  and the journal are exactly the serial search's (``tests/test_search_parallel.py``).
- **Proposals run beside the evaluations** (capacity > 1): the proposer, and the diagnosis it needs, run in
  one worker thread while the driver keeps polling, journaling and backing up each evaluation the moment it
  finishes, so a kill -9 during a minute-long LLM call loses no finished evaluation. One proposal at a time;
  the proposer thread sees only a snapshot (see :meth:`ParallelMCTS._start_proposal`) and writes nothing.
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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace

from kernelpro.search.async_eval import AsyncEvaluator, Finished
from kernelpro.search.budget import Spent, StopReason
from kernelpro.search.interfaces import Diagnoser, Diagnosis, Proposal, ProposalRequest, Proposer, Usage
from kernelpro.search.mcts import MCTS, SearchResult, _Expansion
from kernelpro.search.records import DiagnosisRecord, NodeRecord, ProposalRecord, Record, StartRecord, SubmitRecord
from kernelpro.search.tree import ROOT
from kernelpro.search.variant import Variant

_BLOCKED = (-1, 0)  # selection found no room anywhere but under evaluations in flight: wait for one
_POLL_S = 0.05  # while a proposal runs, how long the driver waits for an evaluation before looking at it again


@dataclass(frozen=True)
class _Consulted:
    """What the proposer thread brings back: the parent's diagnosis (None: it had one), the proposal, seconds."""

    diagnosis: Diagnosis | None
    diagnose_s: float
    proposal: Proposal
    propose_s: float


@dataclass(frozen=True)
class _Proposing:
    """A proposal in progress in the proposer thread."""

    iteration: int
    parent: int
    n: int
    knobs_first: bool
    started: float
    future: Future[_Consulted]


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
        self._proposing: _Proposing | None = None  # the proposal running in the proposer thread (capacity > 1)
        self._thread: ThreadPoolExecutor | None = None

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
        if self.async_evaluator.capacity > 1 and self.proposer is not None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernelpro-proposer")
        try:
            while True:
                if reason is None:
                    reason = self._fill()
                if self._proposing is not None:
                    self._await_proposal()
                elif self._in_flight:
                    self._collect(self.async_evaluator.poll())
                else:
                    break
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=False, cancel_futures=True)
        return self._result(reason or StopReason.EXHAUSTED)

    def _fill(self) -> StopReason | None:
        """Submit and propose until the evaluator is full (one proposal ahead at most); a reason to stop, or None."""
        capacity = self.async_evaluator.capacity
        while True:
            reason = self._submit_queued()
            if reason is not None or self._queue:
                return reason
            if self._proposing is not None or (len(self._in_flight) >= capacity and capacity == 1):
                return None
            reason = self.budget.stop_reason(self._spent())
            if reason is not None:
                return reason
            iteration = self._proposals + 1
            picked = self._select(random.Random(f"{self.config.seed}/{iteration}"))
            if picked is None or picked == _BLOCKED:
                return None if self._in_flight else StopReason.EXHAUSTED
            expansion = self._expand(iteration, *picked) if self._thread is None else self._start(iteration, *picked)
            if expansion is None:
                return None  # the proposer thread has it; the driver journals evaluations meanwhile
            if self._take(expansion):
                return None  # the one proposal ahead waits in the queue

    def _take(self, expansion: _Expansion) -> bool:
        """Count a journaled proposal and queue its children; True when the evaluator is full (stop filling)."""
        self._proposals = expansion.iteration
        if not expansion.variants:
            self._complete(expansion)
            return False
        self._open[expansion.iteration] = expansion
        for variant in expansion.variants:
            self._enqueue(expansion, variant)
        return len(self._in_flight) >= self.async_evaluator.capacity

    # -- proposals in the proposer thread (capacity > 1) ----------------------------------------

    def _start(self, iteration: int, parent_id: int, n: int) -> _Expansion | None:
        """Expand as :meth:`MCTS._expand` does, the proposer's part in the proposer thread (then None).

        Thread safety: the thread gets a snapshot and returns values; it touches no search state. The parent
        is a frozen :class:`Node`, feedback a tuple, the memory a string, the seen keys a frozenset copied now
        (keys that finish later are dropped by :meth:`_fresh` when the proposal is taken). The diagnosis is
        made in the thread but set on the tree and journaled by the driver in :meth:`_finish_proposal`, like
        everything else the journal holds, so the journal keeps one writer. The knob tuner is asked here, in
        the driver, and the selection's random draw happened before: given the order in which evaluations and
        the proposal finish, the tree is the same every run.
        """
        started = self._clock()
        knobs_first = self.knobs is not None and self.knobs.first(self.tree.node(parent_id), True)
        variants = self._knob_children(parent_id, n)[0] if knobs_first else ()
        if variants:
            return self._journal_proposal(iteration, parent_id, variants, Usage(), self._clock() - started)
        assert self._thread is not None and self.proposer is not None
        parent = self.tree.node(parent_id)
        request = ProposalRequest(parent=parent, n=n, feedback=self.tree.failures(parent_id),
                                  memory=self.memory.text(), seen_keys=frozenset(self._seen_keys()),
                                  baseline_us=self.tree.root.time_us)
        future = self._thread.submit(self._consult, request, self.proposer, self.diagnoser)
        self._proposing = _Proposing(iteration, parent_id, n, knobs_first, started, future)
        return None

    def _consult(self, request: ProposalRequest, proposer: Proposer, diagnoser: Diagnoser | None) -> _Consulted:
        """In the proposer thread: diagnose the parent if it has no diagnosis yet, then propose."""
        diagnosis, diagnose_s = None, 0.0
        if diagnoser is not None and request.parent.diagnosis is None:
            started = self._clock()
            diagnosis = diagnoser.diagnose(request.parent)
            diagnose_s = self._clock() - started
            request = replace(request, parent=replace(request.parent, diagnosis=diagnosis))
        started = self._clock()
        proposal = proposer.propose(request)
        return _Consulted(diagnosis, diagnose_s, proposal, self._clock() - started)

    def _await_proposal(self) -> None:
        """Journal and back up evaluations as they finish until the proposal is done, then take it."""
        proposing = self._proposing
        assert proposing is not None
        while not proposing.future.done():
            if not self._in_flight:
                wait([proposing.future])
                break
            finished = self.async_evaluator.poll(timeout=_POLL_S)
            if finished:
                self._collect(finished)
            else:
                wait([proposing.future], timeout=_POLL_S)
        consulted = proposing.future.result()  # the proposer's or diagnoser's exception propagates here
        self._collect(self.async_evaluator.poll(timeout=0))  # what finished with it goes first
        self._proposing = None
        self._take(self._finish_proposal(proposing, consulted))

    def _finish_proposal(self, proposing: _Proposing, consulted: _Consulted) -> _Expansion:
        """In the driver: journal the diagnosis and the proposal, as :meth:`MCTS._expand` does."""
        parent_id, n = proposing.parent, proposing.n
        if consulted.diagnosis is not None and self.tree.node(parent_id).diagnosis is None:
            self._stage_seconds["diagnose"] += consulted.diagnose_s
            self._write(DiagnosisRecord(parent_id, consulted.diagnosis, consulted.diagnose_s, self._elapsed()))
            self.tree.set_diagnosis(parent_id, consulted.diagnosis)
        variants = self._fresh(consulted.proposal.variants, n)
        if not variants and not proposing.knobs_first:
            variants = self._knob_children(parent_id, n)[0]
        seconds = self._clock() - proposing.started - consulted.diagnose_s
        return self._journal_proposal(proposing.iteration, parent_id, variants, consulted.proposal.usage, seconds)

    def _journal_proposal(self, iteration: int, parent_id: int, variants: tuple[Variant, ...], usage: Usage,
                          seconds: float) -> _Expansion:
        self.usage += usage
        self._stage_seconds["propose"] += seconds
        self._write(ProposalRecord(iteration, parent_id, variants, usage, seconds, self._elapsed()))
        return _Expansion(parent_id, iteration, variants)

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

