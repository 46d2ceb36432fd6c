"""Monte Carlo Tree Search over kernel variants.

Every node is a complete candidate, evaluated the moment it is created. One iteration:

1. **Select.** From the root, descend by UCT through *open* children (children that passed and
   are not dead ends) until reaching a node that may still widen. Progressive widening: a node
   may have at most ``ceil(k * visits**alpha)`` open children; a node at its limit is descended
   through instead of expanded. Failed children occupy no slot (they are bounded by dead-end
   pruning instead), and neither do dead ones, so a parent whose alternatives died tries a new one.
   A node for which the proposer had nothing new is *saturated*: descended through, never expanded
   again.
2. **Diagnose** the selected node, once per node: profiling is expensive, so only nodes selected
   for expansion are ever diagnosed. Failed nodes are never selected, so never diagnosed.
3. **Expand.** Ask the proposer for up to ``children_per_expansion`` children (fewer when the
   widening limit leaves less room), with the parent's failed children as feedback and the search
   memory; drop variants already in the tree.
4. **Evaluate** each child immediately and **back up** along the path to the root.

**Knobs.** With a knob space, the children of an expansion come either from the proposer or from the
knob tuner of the selected node's source and flags (:mod:`kernelpro.search.knob_expansion`): the tuner
when that source has untried knob configurations and knob-tuned evaluations are below ``knob_share`` of
all evaluations (always, when there is no proposer), else the proposer; the other one when the first has
nothing. Only the proposer's expansions diagnose the node (the tuner needs no profile).

**Reward** is ``ln(baseline_us / time_us)`` (natural log): 0 for the baseline, ln 2 ≈ 0.69 for
a 2x speedup, ≈ -0.69 for a 2x slowdown. A failed node has no reward; it is never selected or
expanded, and its failure text goes to the proposer the next time its parent is expanded.

**Backup is max**: a node's value is the best reward anywhere in its subtree. We keep one kernel,
the fastest, so what a subtree is worth is the best kernel reachable through it, not the average
of the attempts made there. Most edits to a good kernel regress or fail, so a mean would punish
exactly the subtrees searched hardest around the best kernel and steer the search away from them.
Max's weakness, over-committing to a subtree that got one lucky result, is handled by the
evaluator's noise-aware timing, the exploration term, and dead-end pruning.

**UCT normalization.** Rewards are not in [0, 1], so values are min-max normalized over the tree:
``q = (value - r_lo) / (r_hi - r_lo)`` with ``r_lo``/``r_hi`` the lowest and highest reward of any
passing node (kept incrementally; MuZero normalizes its Q values the same way). The score is
``q + c * sqrt(ln N_parent / N_child)`` with ``c = sqrt(2)`` by default, the textbook constant for
rewards in [0, 1]; in raw reward units that is ``c = sqrt(2) * (r_hi - r_lo)``: the scale is the
spread of results seen so far, so how much the search explores does not depend on how much faster
a kernel can get. Until there is a spread, q is 0 and exploration alone decides. ``N`` is a node's
visit count: the evaluations in its subtree, itself included. Exact ties are broken by a
``random.Random`` seeded from ``(seed, iteration)``.

**Dead ends.** Whether each expansion improved (some new child beat the node that was expanded)
goes into a window of the last ``m`` outcomes kept at the expanded node and at every ancestor. A
subtree whose full window holds no improvement is dead: it is never selected again. Default
``m = 4``: with two children per expansion, about eight evaluations in a row that improve on
nothing anywhere below a node. Smaller is cheaper (fewer expensive evaluations spent on a stagnant
subtree) but riskier: on the synthetic fixture with 60 evaluations, m = 3 missed the optimum for 1
seed of 40, while m = 4, 6 and 8 all found it for 40 of 40; 4 is the smallest that did.
A saturated node with no open child left is dead too. The root is exempt from the window (that
would end the search with budget left); it dies only when nothing is left to try anywhere, and then
the search stops with :attr:`StopReason.EXHAUSTED`.

**Cost per iteration** is O(depth x branching): selection walks one path, backup walks it back,
the memory is a bounded heap and ``seen_keys`` is a live view; nothing is recomputed per tree.

**Determinism.** Given a deterministic evaluator, proposer and diagnoser, a seed gives one tree:
the only randomness is tie-breaking, seeded per iteration, so a resumed search draws exactly what
the uninterrupted one would have. See :mod:`kernelpro.search.journal` for journaling and resume.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import asdict, dataclass, field
from typing import Protocol

from kernelpro.search.budget import Budget, Spent, StopReason
from kernelpro.search.interfaces import Diagnoser, Evaluator, Node, ProposalRequest, Proposer, Usage
from kernelpro.search.knob_expansion import KnobExpansion
from kernelpro.search.knobtune import KnobSpace
from kernelpro.search.memory import SearchMemory
from kernelpro.search.records import DiagnosisRecord, NodeRecord, ProposalRecord, Record, StartRecord
from kernelpro.search.tree import ROOT, SearchTree
from kernelpro.search.variant import Evaluation, Variant


@dataclass(frozen=True)
class MCTSConfig:
    """Search parameters (see the module docstring for what each does)."""

    seed: int = 0
    exploration: float = math.sqrt(2)  # c, on min-max normalized values
    widen_k: float = 2.0
    widen_alpha: float = 0.5
    children_per_expansion: int = 2
    dead_end_m: int = 4
    memory_chars: int = 1500
    knob_share: float = 0.5  # most evaluations the knob tuner gets while a source proposer has ideas

    def __post_init__(self) -> None:
        if self.widen_k <= 0 or not 0 <= self.widen_alpha <= 1:
            raise ValueError(f"need widen_k > 0, 0 <= widen_alpha <= 1: {self.widen_k}, {self.widen_alpha}")
        if self.children_per_expansion < 1 or self.dead_end_m < 1:
            raise ValueError("children_per_expansion and dead_end_m must be >= 1")
        if not 0 < self.knob_share <= 1:
            raise ValueError(f"knob_share must be in (0, 1], got {self.knob_share}")

    def width_limit(self, visits: int) -> int:
        """How many open children a node with ``visits`` visits may have."""
        # The epsilon keeps float error from adding a slot: 1 * 4**0.5 must give 2, never 3.
        return math.ceil(self.widen_k * visits**self.widen_alpha - 1e-9)


@dataclass(frozen=True)
class SearchResult:
    """How a search ended. ``best`` is the baseline when nothing beat it (or it failed)."""

    best: Node
    baseline: Node
    stop_reason: StopReason
    evaluations: int
    iterations: int
    elapsed_s: float
    stage_seconds: Mapping[str, float]
    usage: Usage
    tree: SearchTree
    gpu_busy_s: Mapping[int, float] = field(default_factory=dict)  # per slot (GPU), this session only

    @property
    def speedup(self) -> float | None:
        """Baseline time over best time; None when the baseline failed."""
        if not self.baseline.ok:
            return None
        return self.baseline.time_us / self.best.time_us

    @property
    def evaluations_per_minute(self) -> float:
        return 60.0 * self.evaluations / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def gpu_utilisation(self) -> dict[int, float]:
        """Busy time over wall time per slot (GPU); empty when the search did not measure it."""
        if self.elapsed_s <= 0:
            return {}
        return {slot: min(busy / self.elapsed_s, 1.0) for slot, busy in sorted(self.gpu_busy_s.items())}


class RecordSink(Protocol):
    """Where the search writes its journal records (:class:`kernelpro.search.journal.Journal`)."""

    def append(self, record: Record) -> None: ...


@dataclass(frozen=True)
class _Expansion:
    parent: int
    iteration: int
    variants: tuple[Variant, ...]


class MCTS:
    """One search from a baseline variant. Call :meth:`run` once (after :meth:`replay` to resume)."""

    def __init__(
        self,
        baseline: Variant,
        evaluator: Evaluator,
        proposer: Proposer | None,
        *,
        diagnoser: Diagnoser | None = None,
        config: MCTSConfig | None = None,
        budget: Budget | None = None,
        journal: RecordSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        knob_space: KnobSpace | None = None,
    ) -> None:
        if proposer is None and knob_space is None:
            raise ValueError("a search needs a proposer, a knob space, or both")
        self.baseline = baseline
        self.evaluator = evaluator
        self.proposer = proposer
        self.diagnoser = diagnoser
        self.config = config or MCTSConfig()
        self.knobs = None if knob_space is None else KnobExpansion(knob_space, seed=self.config.seed,
                                                                   share=self.config.knob_share)
        self.budget = budget or Budget()
        self.tree = SearchTree(self.config.dead_end_m)
        self.memory = SearchMemory(self.config.memory_chars)
        self.usage = Usage()
        self.iterations = 0  # completed expansions
        self._journal = journal
        self._clock = clock
        self._stage_seconds: defaultdict[str, float] = defaultdict(float)
        self._pending: _Expansion | None = None  # a proposal whose children are not all evaluated
        self._elapsed_before = 0.0  # running time of earlier sessions of this search
        self._started: float | None = None
        self._replayed = False

    # -- running -------------------------------------------------------------------------------

    def run(self) -> SearchResult:
        """Search until a budget runs out or nothing is left to expand.

        Exceptions from the evaluator, proposer or diagnoser propagate (failures of a variant are
        returned by the evaluator, not raised); everything evaluated before is journaled, so
        ``resume()`` continues from there.
        """
        self._started = self._clock()
        if not self._replayed:
            self._write(StartRecord(self.baseline, asdict(self.config), self.budget.to_dict()))
        if len(self.tree) == 0:
            self._evaluate(None, self.baseline, 0)
        if not self.tree.root.ok:
            return self._result(StopReason.BASELINE_FAILED)
        reason = None if self._pending is None else self._finish(self._pending)
        while reason is None:
            reason = self.budget.stop_reason(self._spent()) or self._iterate()
        return self._result(reason)

    def _iterate(self) -> StopReason | None:
        iteration = self.iterations + 1
        picked = self._select(random.Random(f"{self.config.seed}/{iteration}"))
        if picked is None:
            return StopReason.EXHAUSTED
        return self._finish(self._expand(iteration, *picked))

    def _expand(self, iteration: int, parent_id: int, n: int) -> _Expansion:
        """Ask the knob tuner and the proposer for up to ``n`` children of ``parent_id``; journal the proposal."""
        started, diagnosing = self._clock(), self._stage_seconds["diagnose"]
        knobs_first = self.knobs is not None and self.knobs.first(self.tree.node(parent_id), self.proposer is not None)
        variants, usage = self._knob_children(parent_id, n) if knobs_first else ((), Usage())
        if not variants and self.proposer is not None:
            variants, usage = self._proposed_children(parent_id, n)
        if not variants and not knobs_first:
            variants = self._knob_children(parent_id, n)[0]
        seconds = self._clock() - started - (self._stage_seconds["diagnose"] - diagnosing)  # diagnosis has its own
        self.usage += usage
        self._stage_seconds["propose"] += seconds
        self._write(ProposalRecord(iteration, parent_id, variants, usage, seconds, self._elapsed()))
        return _Expansion(parent_id, iteration, variants)

    def _knob_children(self, parent_id: int, n: int) -> tuple[tuple[Variant, ...], Usage]:
        if self.knobs is None:
            return (), Usage()
        return self._fresh(self.knobs.propose(self.tree.node(parent_id), n), n), Usage()

    def _proposed_children(self, parent_id: int, n: int) -> tuple[tuple[Variant, ...], Usage]:
        assert self.proposer is not None
        parent = self._diagnosed(parent_id)
        request = ProposalRequest(
            parent=parent, n=n, feedback=self.tree.failures(parent_id), memory=self.memory.text(),
            seen_keys=self._seen_keys(), baseline_us=self.tree.root.time_us,
        )
        proposal = self.proposer.propose(request)
        return self._fresh(proposal.variants, n), proposal.usage

    def _select(self, rng: random.Random) -> tuple[int, int] | None:
        """The node to expand and how many children to ask for; None when the root is a dead end."""
        tree = self.tree
        if tree.is_dead(ROOT):
            return None
        node = ROOT
        while True:
            open_children = tree.open_children(node)
            room = self.config.width_limit(tree.visits(node)) - len(open_children)
            if room > 0 and not tree.is_saturated(node):
                return node, min(room, self.config.children_per_expansion)
            # open_children is not empty here: a full node has some, and a saturated node without
            # any is dead, so it was never descended into.
            node = self._uct_child(node, open_children, rng)

    def _uct_child(self, parent: int, children: list[int], rng: random.Random) -> int:
        tree = self.tree
        lo, hi = tree.reward_range
        spread = hi - lo
        log_n = math.log(self._visits(parent))
        best_score, best = -math.inf, []
        for child in children:
            q = (tree.value(child) - lo) / spread if spread > 0 else 0.0
            score = q + self.config.exploration * math.sqrt(log_n / self._visits(child))
            if score > best_score:
                best_score, best = score, [child]
            elif score == best_score:
                best.append(child)
        return best[0] if len(best) == 1 else rng.choice(best)

    def _visits(self, node_id: int) -> int:
        """Visits as selection counts them (the parallel search adds evaluations in flight)."""
        return self.tree.visits(node_id)

    def _seen_keys(self) -> Set[str]:
        """Keys a proposer should not propose (the parallel search adds those in flight)."""
        return self.tree.keys

    def _diagnosed(self, node_id: int) -> Node:
        node = self.tree.node(node_id)
        if self.diagnoser is None or node.diagnosis is not None:
            return node
        started = self._clock()
        diagnosis = self.diagnoser.diagnose(node)
        seconds = self._clock() - started
        self._stage_seconds["diagnose"] += seconds
        self._write(DiagnosisRecord(node_id, diagnosis, seconds, self._elapsed()))
        return self.tree.set_diagnosis(node_id, diagnosis)

    def _fresh(self, variants: Iterable[Variant], n: int) -> tuple[Variant, ...]:
        """The first ``n`` proposed variants that are neither in the tree nor repeated."""
        fresh: dict[str, Variant] = {}
        for variant in variants:
            if len(fresh) == n:
                break
            if variant.key not in self.tree.keys:
                fresh.setdefault(variant.key, variant)
        return tuple(fresh.values())

    def _finish(self, expansion: _Expansion) -> StopReason | None:
        """Evaluate the expansion's children not evaluated yet, then record its outcome."""
        for variant in expansion.variants:
            if self._evaluated_in(expansion, variant):
                continue  # evaluated before the search was interrupted
            reason = self.budget.stop_reason(self._spent(), evaluating=True)
            if reason is not None:
                self._pending = expansion
                return reason
            self._evaluate(expansion.parent, variant, expansion.iteration)
        self._complete(expansion)
        return None

    def _evaluated_in(self, expansion: _Expansion, variant: Variant) -> bool:
        node_id = self.tree.find(variant.key)
        return node_id is not None and self.tree.node(node_id).iteration == expansion.iteration

    def _complete(self, expansion: _Expansion) -> None:
        children = [self.tree.find(v.key) for v in expansion.variants]
        self.tree.record_expansion(expansion.parent, children)
        self.iterations = expansion.iteration
        self._pending = None

    def _evaluate(self, parent: int | None, variant: Variant, iteration: int) -> Node:
        evaluation = self.evaluator.evaluate(variant)
        # Journal before anything else can go wrong: the evaluation is the expensive part.
        node_id = len(self.tree)
        self._write(NodeRecord(node_id, parent, iteration, variant, evaluation, self.usage, self._elapsed()))
        return self._add(parent, variant, evaluation, iteration)

    def _add(self, parent: int | None, variant: Variant, evaluation: Evaluation, iteration: int) -> Node:
        node = self.tree.add(parent, variant, evaluation, iteration)
        if self.knobs is not None:
            self.knobs.observe(node)
        for stage, seconds in evaluation.stage_seconds.items():
            self._stage_seconds[stage] += seconds
        if parent is not None:
            self.memory.add(self.tree.node(parent), node, self.tree.root.time_us)
        return node

    # -- bookkeeping ---------------------------------------------------------------------------

    def _elapsed(self) -> float:
        if self._started is None:
            return self._elapsed_before
        return self._elapsed_before + (self._clock() - self._started)

    def _spent(self) -> Spent:
        return Spent(len(self.tree), self._elapsed(), self.usage, self.iterations)

    def _write(self, record: Record) -> None:
        if self._journal is not None:
            self._journal.append(record)

    def _result(self, reason: StopReason) -> SearchResult:
        return SearchResult(
            best=self.tree.best, baseline=self.tree.root, stop_reason=reason, evaluations=len(self.tree),
            iterations=self.iterations, elapsed_s=self._elapsed(), stage_seconds=dict(self._stage_seconds),
            usage=self.usage, tree=self.tree,
        )

    # -- resume --------------------------------------------------------------------------------

    def replay(self, records: Iterable[Record]) -> None:
        """Rebuild the search from journal records (those after the start record).

        Calls no evaluator, proposer or diagnoser: nodes, diagnoses and proposals come from the
        records, and go through the same updates as in a live search, so the rebuilt tree and
        statistics are the ones the interrupted search had. A last proposal whose children are
        not all journaled is finished by :meth:`run`. Raises ValueError on an inconsistent journal.
        """
        if self._replayed or len(self.tree):
            raise ValueError("replay() must be called once, before run()")
        for record in records:
            match record:
                case NodeRecord():
                    if record.id != len(self.tree):
                        raise ValueError(f"node record {record.id} out of order (expected {len(self.tree)})")
                    self._add(record.parent, record.variant, record.evaluation, record.iteration)
                    pending = self._pending
                    if pending is not None and all(self._evaluated_in(pending, v) for v in pending.variants):
                        self._complete(pending)
                case DiagnosisRecord():
                    self.tree.set_diagnosis(record.id, record.diagnosis)
                    self._stage_seconds["diagnose"] += record.seconds
                case ProposalRecord():
                    if self._pending is not None:
                        raise ValueError(f"proposal {record.iteration} starts before proposal "
                                         f"{self._pending.iteration} finished")
                    self.usage += record.usage
                    self._stage_seconds["propose"] += record.seconds
                    if self.knobs is not None:
                        self.knobs.asked(record.variants)
                    self._pending = _Expansion(record.parent, record.iteration, record.variants)
                    if not record.variants:
                        self._complete(self._pending)
                case StartRecord():
                    raise ValueError("a second start record")
            self._elapsed_before = max(self._elapsed_before, getattr(record, "elapsed_s", 0.0))
        self._replayed = True
