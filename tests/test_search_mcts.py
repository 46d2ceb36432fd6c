"""MCTS on the synthetic evaluator and on small scripted worlds (CPU only)."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import pytest

from kernelpro.search import (
    MCTS,
    Budget,
    Diagnosis,
    Evaluation,
    MCTSConfig,
    Node,
    Proposal,
    ProposalRequest,
    SearchResult,
    SearchTree,
    StopReason,
    Usage,
    Variant,
)
from kernelpro.search.memory import SearchMemory
from kernelpro.search.synthetic import (
    DEFAULT_SPACE,
    Space,
    SyntheticDiagnoser,
    SyntheticEvaluator,
    SyntheticProposer,
    baseline_variant,
    wide_space,
)

OPTIMUM = {"BLOCK": "256", "UNROLL": "4", "VEC": "4"}
WIDE = wide_space(3)  # a space the search doesn't run out of


# -- spies and scripted worlds -------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A snapshot of one proposal request (the live seen_keys view is not kept)."""

    parent: int
    parent_ok: bool
    n: int
    feedback: tuple[str, ...]
    memory: str
    open_children: int
    width_limit: int


class SpyEvaluator:
    def __init__(self, inner, clock: FakeClock | None = None) -> None:
        self.inner = inner
        self.keys: list[str] = []
        self.clock = clock

    def evaluate(self, variant: Variant) -> Evaluation:
        self.keys.append(variant.key)
        if self.clock is not None:
            self.clock.now += 1.0
        return self.inner.evaluate(variant)


class SpyProposer:
    """Records each request; ``mcts`` (set after construction) lets it check the tree at call time."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.requests: list[Seen] = []
        self.mcts: MCTS | None = None

    def propose(self, request: ProposalRequest) -> Proposal:
        tree = self.mcts.tree
        parent = request.parent.id
        self.requests.append(Seen(
            parent, request.parent.ok, request.n, request.feedback, request.memory,
            len(tree.open_children(parent)), self.mcts.config.width_limit(tree.visits(parent)),
        ))
        return self.inner.propose(request)


class SpyDiagnoser:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.nodes: list[Node] = []

    def diagnose(self, node: Node) -> Diagnosis:
        self.nodes.append(node)
        return self.inner.diagnose(node)


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def named(name: str) -> Variant:
    return Variant("__global__ void k() {}", (("name", name),), change=f"make {name}", origin="test")


def name_of(variant: Variant) -> str:
    return variant.knob_values["name"]


@dataclass
class ScriptedEvaluator:
    """Times (or fails) variants by name with ``fn(name) -> Evaluation``."""

    fn: Callable[[str], Evaluation]
    names: list[str] = field(default_factory=list)

    def evaluate(self, variant: Variant) -> Evaluation:
        self.names.append(name_of(variant))
        return self.fn(name_of(variant))


@dataclass
class ScriptedProposer:
    """Proposes ``fn(parent_name, call_index) -> names``."""

    fn: Callable[[str, int], list[str]]
    calls: int = 0

    def propose(self, request: ProposalRequest) -> Proposal:
        self.calls += 1
        names = self.fn(name_of(request.parent.variant), self.calls)
        return Proposal(tuple(named(n) for n in names), Usage(10, 5, 0.001))


def search(
    evaluator=None, proposer=None, *, diagnoser=None, config: MCTSConfig | None = None,
    budget: Budget | None = None, baseline: Variant | None = None, clock=None, space: Space = DEFAULT_SPACE,
) -> tuple[SearchResult, MCTS]:
    """Run one search; evaluator, proposer and baseline default to the synthetic ones for ``space``."""
    proposer = proposer or SpyProposer(SyntheticProposer(space))
    extra = {} if clock is None else {"clock": clock}
    mcts = MCTS(baseline or baseline_variant(space), evaluator or SyntheticEvaluator(space), proposer,
                diagnoser=diagnoser, config=config, budget=budget, **extra)
    if isinstance(proposer, SpyProposer):
        proposer.mcts = mcts
    return mcts.run(), mcts


# -- finding the optimum ---------------------------------------------------------------------------


def test_synthetic_optimum_is_the_documented_one() -> None:
    assert SyntheticEvaluator().optimum() == OPTIMUM
    best = baseline_variant().with_knobs(OPTIMUM, change="", origin="")
    assert SyntheticEvaluator().evaluate(best).time_us == 100.0


@pytest.mark.parametrize("seed", range(5))
def test_finds_the_known_optimum_within_the_budget(seed: int) -> None:
    result, _ = search(SyntheticEvaluator(noise=0.02, seed=seed), SyntheticProposer(seed=seed),
                       config=MCTSConfig(seed=seed), budget=Budget(max_evaluations=60))
    assert result.best.variant.knob_values == OPTIMUM
    assert result.evaluations <= 60
    assert result.speedup == pytest.approx(6.016, rel=0.05)
    assert result.baseline.variant == baseline_variant()


def test_reward_is_the_natural_log_of_the_speedup() -> None:
    result, mcts = search(budget=Budget(max_evaluations=20))
    for node in result.tree:
        reward = mcts.tree.attrs(node.id)["reward"]
        if node.ok:
            assert reward == pytest.approx(math.log(result.baseline.time_us / node.time_us))
        else:
            assert reward is None


def test_value_is_the_max_reward_in_the_subtree() -> None:
    result, mcts = search(SyntheticEvaluator(noise=0.02), budget=Budget(max_evaluations=50))
    tree = mcts.tree
    for node in result.tree:
        if not node.ok:
            continue
        subtree = nx.descendants(tree.graph, node.id) | {node.id}
        rewards = [tree.attrs(n)["reward"] for n in subtree if tree.attrs(n)["reward"] is not None]
        assert tree.value(node.id) == max(rewards)
        assert tree.visits(node.id) == len(subtree)


# -- failures ------------------------------------------------------------------------------------


def test_failed_nodes_are_never_expanded_selected_or_diagnosed() -> None:
    proposer = SpyProposer(SyntheticProposer())
    diagnoser = SpyDiagnoser(SyntheticDiagnoser())
    result, mcts = search(proposer=proposer, diagnoser=diagnoser, budget=Budget(max_evaluations=72))
    failed = [n for n in result.tree if not n.ok]
    assert len(failed) >= 2, "the fixture should have produced failures"
    assert {n.evaluation.failed_stage for n in failed} == {"wall", "compile"}
    assert all(r.parent_ok for r in proposer.requests)
    assert all(n.ok for n in diagnoser.nodes)
    assert all(not mcts.tree.children(n.id) for n in failed)
    # Diagnosed once per expanded node, and only expanded nodes.
    assert [n.id for n in diagnoser.nodes] == list(dict.fromkeys(r.parent for r in proposer.requests))


def test_feedback_lists_the_parents_failed_children_so_far() -> None:
    proposer = SpyProposer(SyntheticProposer())
    result, mcts = search(SyntheticEvaluator(), proposer, budget=Budget(max_evaluations=72))
    with_feedback = 0
    for iteration, request in enumerate(proposer.requests, 1):
        failed_before = [mcts.tree.node(c) for c in mcts.tree.children(request.parent)
                         if mcts.tree.node(c).iteration < iteration and not mcts.tree.node(c).ok]
        expected = tuple(f"'{c.variant.change}' → {c.evaluation.failure}" for c in failed_before)
        assert request.feedback == expected
        with_feedback += bool(request.feedback)
    assert with_feedback >= 1


def test_failure_feedback_reaches_the_proposer_on_the_parents_next_expansion() -> None:
    def evaluate(name: str) -> Evaluation:
        if name == "bad":
            return Evaluation.failed("wall", "output mismatch at index 17")
        return Evaluation.passed({"base": 100.0, "good": 90.0}.get(name, 80.0))

    proposer = SpyProposer(ScriptedProposer(lambda parent, call: ["bad"] if call == 1 else [f"x{call}"]))
    search(ScriptedEvaluator(evaluate), proposer, baseline=named("base"),
           config=MCTSConfig(widen_k=10, children_per_expansion=1), budget=Budget(max_evaluations=3))
    first, second = proposer.requests[:2]
    assert first.parent == second.parent == 0
    assert first.feedback == ()
    assert second.feedback == ("'make bad' → wall: output mismatch at index 17",)


# -- progressive widening ------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "alpha"), [(1.0, 0.5), (2.0, 0.5), (1.0, 0.0), (3.0, 0.3)])
def test_progressive_widening_limits_open_children(k: float, alpha: float) -> None:
    proposer = SpyProposer(SyntheticProposer(WIDE))
    config = MCTSConfig(widen_k=k, widen_alpha=alpha)
    result, mcts = search(SyntheticEvaluator(WIDE), proposer, config=config,
                          budget=Budget(max_evaluations=80), space=WIDE)
    assert proposer.requests
    for request in proposer.requests:  # expansions only happen below the limit, and never past it
        assert request.open_children + request.n <= request.width_limit
    for node in result.tree:
        if node.ok:
            assert len(mcts.tree.open_children(node.id)) <= config.width_limit(mcts.tree.visits(node.id))


def test_a_node_at_its_limit_is_descended_through() -> None:
    # k=1, alpha=0: one open child per node, so the search must go deep instead of wide.
    proposer = SpyProposer(SyntheticProposer(WIDE))
    result, mcts = search(SyntheticEvaluator(WIDE), proposer, config=MCTSConfig(widen_k=1, widen_alpha=0),
                          budget=Budget(max_evaluations=30), space=WIDE)
    assert all(len(mcts.tree.open_children(n.id)) <= 1 for n in result.tree if n.ok)
    assert max(n.depth for n in result.tree) >= 8
    assert any(r.parent != 0 for r in proposer.requests)


# -- dead ends -------------------------------------------------------------------------------------


def test_dead_end_pruning_stops_selecting_a_failing_subtree() -> None:
    """A very fast node whose children all fail would win UCT forever under max backup."""

    def evaluate(name: str) -> Evaluation:
        if name == "trap":
            return Evaluation.passed(10.0)
        if name.startswith("trap."):
            return Evaluation.failed("wall", f"mismatch in {name}")
        return Evaluation.passed(100.0 * 0.99 ** name.count("."))

    def propose(parent: str, call: int) -> list[str]:
        return ["trap", "base.1"] if call == 1 else [f"{parent}.{call}"]

    proposer = SpyProposer(ScriptedProposer(propose))
    config = MCTSConfig(dead_end_m=3, children_per_expansion=1)
    result, mcts = search(ScriptedEvaluator(evaluate), proposer, baseline=named("base"), config=config,
                          budget=Budget(max_evaluations=40))
    trap = mcts.tree.find(named("trap").key)
    trap_expansions = [i for i, r in enumerate(proposer.requests) if r.parent == trap]
    assert len(trap_expansions) == 3
    assert mcts.tree.is_dead(trap)
    assert len(proposer.requests) > trap_expansions[-1] + 5, "the search went on elsewhere"
    assert result.best.id == trap  # still the best result: pruning stops searching it, not reporting it


def test_a_subtree_that_keeps_improving_is_not_pruned() -> None:
    result, mcts = search(ScriptedEvaluator(lambda name: Evaluation.passed(100.0 * 0.9 ** name.count("."))),
                          ScriptedProposer(lambda parent, call: [f"{parent}.{call}"]), baseline=named("base"),
                          config=MCTSConfig(dead_end_m=2), budget=Budget(max_evaluations=30))
    assert not any(mcts.tree.is_dead(n.id) for n in result.tree)
    assert result.stop_reason is StopReason.EVALUATIONS


def test_the_search_stops_exhausted_when_nothing_is_left() -> None:
    proposer = SpyProposer(SyntheticProposer())
    result, mcts = search(SyntheticEvaluator(), proposer, budget=Budget(max_evaluations=1000))
    assert result.stop_reason is StopReason.EXHAUSTED
    assert result.evaluations <= 72
    assert mcts.tree.is_dead(0)
    assert result.best.variant.knob_values == OPTIMUM


# -- duplicates ----------------------------------------------------------------------------------


class RepeatingProposer:
    """Ignores seen_keys and repeats itself: the parent, the baseline, and every neighbour twice."""

    def __init__(self) -> None:
        self.inner = SyntheticProposer()
        self.proposed: list[str] = []

    def propose(self, request: ProposalRequest) -> Proposal:
        blind = ProposalRequest(request.parent, request.n + 2, (), "", frozenset(), request.baseline_us)
        variants = [request.parent.variant, baseline_variant(), *self.inner.propose(blind).variants]
        variants += variants
        self.proposed += [v.key for v in variants]
        return Proposal(tuple(variants))


def test_duplicates_are_never_evaluated_twice() -> None:
    evaluator = SpyEvaluator(SyntheticEvaluator())
    proposer = RepeatingProposer()
    result, mcts = search(evaluator, proposer, budget=Budget(max_evaluations=60))
    assert len(evaluator.keys) == len(set(evaluator.keys)) == result.evaluations == len(mcts.tree)
    assert len(proposer.proposed) > 2 * len(set(proposer.proposed)), "the proposer did repeat itself"
    assert len({n.key for n in result.tree}) == len(mcts.tree)


def test_at_most_n_variants_of_a_proposal_are_used() -> None:
    proposer = ScriptedProposer(lambda parent, call: [f"{parent}.{call}.{i}" for i in range(10)])
    result, _ = search(ScriptedEvaluator(lambda name: Evaluation.passed(100.0 - len(name))), proposer,
                       baseline=named("base"), config=MCTSConfig(children_per_expansion=2),
                       budget=Budget(max_evaluations=30))
    per_expansion = Counter(n.iteration for n in result.tree if n.parent is not None)
    assert max(per_expansion.values()) == 2
    assert result.evaluations == 30


# -- budgets -------------------------------------------------------------------------------------


def test_evaluation_budget() -> None:
    evaluator = SpyEvaluator(SyntheticEvaluator(WIDE))
    result, _ = search(evaluator, SyntheticProposer(WIDE), budget=Budget(max_evaluations=10), space=WIDE)
    assert result.stop_reason is StopReason.EVALUATIONS
    assert result.evaluations == len(evaluator.keys) == 10


def test_wall_clock_budget_with_an_injected_clock() -> None:
    clock = FakeClock()
    evaluator = SpyEvaluator(SyntheticEvaluator(WIDE), clock)
    result, _ = search(evaluator, SyntheticProposer(WIDE), clock=clock,
                       budget=Budget(max_evaluations=None, max_seconds=7.5), space=WIDE)
    assert result.stop_reason is StopReason.SECONDS
    assert len(evaluator.keys) == 8  # checked before each evaluation: 7 s < 7.5 s, 8 s is not
    assert result.elapsed_s == 8.0
    assert result.evaluations_per_minute == pytest.approx(60.0)


def test_token_budget() -> None:
    proposer = ScriptedProposer(lambda parent, call: [f"{parent}.{call}"])  # 15 tokens a call
    budget = Budget(max_evaluations=None, max_tokens=100, max_iterations=50)  # iterations: a safety net
    result, _ = search(ScriptedEvaluator(lambda name: Evaluation.passed(100.0)), proposer,
                       baseline=named("base"), budget=budget)
    assert result.stop_reason is StopReason.TOKENS
    assert proposer.calls == 7  # 6 calls = 90 tokens < 100; the 7th makes 105
    assert result.usage == Usage(70, 35, pytest.approx(0.007))


def test_dollar_budget() -> None:
    proposer = SyntheticProposer(WIDE, usage_per_call=Usage(1000, 250, 0.25))
    spy = SpyProposer(proposer)
    budget = Budget(max_evaluations=None, max_dollars=1.0, max_iterations=50)
    result, _ = search(proposer=spy, budget=budget, space=WIDE)
    assert result.stop_reason is StopReason.DOLLARS
    assert len(spy.requests) == 4
    assert result.usage.cost_usd == pytest.approx(1.0)


def test_iteration_budget() -> None:
    proposer = SpyProposer(SyntheticProposer(WIDE))
    result, _ = search(SyntheticEvaluator(WIDE), proposer,
                       budget=Budget(max_evaluations=None, max_iterations=5), space=WIDE)
    assert result.stop_reason is StopReason.ITERATIONS
    assert result.iterations == len(proposer.requests) == 5


def test_the_first_budget_reached_wins() -> None:
    clock = FakeClock()
    evaluator = SpyEvaluator(SyntheticEvaluator(WIDE), clock)
    result, _ = search(evaluator, SyntheticProposer(WIDE), clock=clock,
                       budget=Budget(max_evaluations=5, max_seconds=100.0, max_tokens=10**6), space=WIDE)
    assert result.stop_reason is StopReason.EVALUATIONS


def test_a_failing_baseline_stops_the_search() -> None:
    proposer = SpyProposer(SyntheticProposer())
    result, _ = search(ScriptedEvaluator(lambda name: Evaluation.failed("compile", "syntax error")), proposer,
                       baseline=named("base"))
    assert result.stop_reason is StopReason.BASELINE_FAILED
    assert result.speedup is None
    assert proposer.requests == []


def test_stage_seconds_are_totalled() -> None:
    clock = FakeClock()
    result, _ = search(SpyEvaluator(SyntheticEvaluator(), clock), diagnoser=SyntheticDiagnoser(),
                       budget=Budget(max_evaluations=20), clock=clock)
    compiled = sum(1 for n in result.tree)  # every synthetic evaluation compiles (0.5 s)
    walled = sum(1 for n in result.tree if n.evaluation.failed_stage != "compile")
    assert result.stage_seconds["compile"] == pytest.approx(0.5 * compiled)
    assert result.stage_seconds["wall"] == pytest.approx(0.2 * walled)
    assert result.stage_seconds["timing"] == pytest.approx(0.1 * sum(n.ok for n in result.tree))
    assert {"propose", "diagnose"} <= set(result.stage_seconds)


# -- determinism ---------------------------------------------------------------------------------


def _tree_json(seed: int, diagnoser: SyntheticDiagnoser | None = None) -> str:
    result, _ = search(SyntheticEvaluator(), SyntheticProposer(), diagnoser=diagnoser,
                       config=MCTSConfig(seed=seed), budget=Budget(max_evaluations=40))
    return json.dumps(result.tree.to_node_link(), sort_keys=True)


def test_same_seed_gives_an_identical_tree() -> None:
    assert _tree_json(3, SyntheticDiagnoser()) == _tree_json(3, SyntheticDiagnoser())
    assert _tree_json(3) == _tree_json(3)


def test_the_seed_breaks_ties() -> None:
    # Without noise, symmetric moves tie (time and visits); another seed must break them differently.
    assert _tree_json(0) != _tree_json(1)


# -- memory --------------------------------------------------------------------------------------


def test_memory_is_bounded_and_leads_with_the_best_result() -> None:
    proposer = SpyProposer(SyntheticProposer(WIDE))
    result, mcts = search(SyntheticEvaluator(WIDE, noise=0.02), proposer,
                          budget=Budget(max_evaluations=300), space=WIDE)
    text = mcts.memory.text()
    assert 1000 < len(text) <= 1500
    assert text.splitlines()[0].startswith(f"node {result.best.parent} (")
    assert f": '{result.best.variant.change}' → {result.speedup:.2f}x" in text.splitlines()[0]
    assert proposer.requests[0].memory == ""
    assert proposer.requests[-1].memory == text or len(proposer.requests[-1].memory) <= 1500
    assert all(len(r.memory) <= 1500 for r in proposer.requests)


def _node(node_id: int, parent: int | None, time_us: float | None, change: str, failure: str = "") -> Node:
    evaluation = Evaluation.passed(time_us) if time_us else Evaluation.failed("wall", failure)
    variant = Variant("src", (("id", str(node_id)),), change=change)
    return Node(node_id, parent, 0 if parent is None else 1, 0, variant, evaluation)


def test_memory_ranks_by_the_best_kernel_involved() -> None:
    memory = SearchMemory(max_chars=1500)
    root = _node(0, None, 100.0, "baseline")
    fast = _node(1, 0, 50.0, "unroll 4")
    memory.add(root, fast, 100.0)
    memory.add(root, _node(2, 0, 80.0, "BLOCK 128"), 100.0)
    memory.add(fast, _node(3, 1, None, "float4 loads", "output mismatch at index 17"), 100.0)
    memory.add(fast, _node(4, 1, 40.0, "vectorize"), 100.0)
    memory.add(fast, _node(5, 1, 70.0, "more registers"), 100.0)
    assert memory.text().splitlines() == [
        "node 1 (id=1, 2.00x): 'vectorize' → 2.50x; 'more registers' → 1.43x; "
        "'float4 loads' → wall: output mismatch at index 17",
        "node 0 (id=0, 1.00x): 'unroll 4' → 2.00x; 'BLOCK 128' → 1.25x",
    ]


def test_memory_keeps_the_most_informative_within_its_bounds() -> None:
    memory = SearchMemory(max_chars=300, keep=8)
    root = _node(0, None, 100.0, "baseline")
    for i in range(1, 200):
        memory.add(root, _node(i, 0, 100.0 - i * 0.4, f"step {i}"), 100.0)
    text = memory.text()
    assert len(text) <= 300
    assert text.startswith("node 0 (id=0, 1.00x): 'step 199' → ")
    assert "'step 100'" not in text  # only the top 8 are kept
    assert len(memory._heap) == 8


# -- tree.json -----------------------------------------------------------------------------------


def test_tree_json_round_trips_through_networkx(tmp_path) -> None:
    result, mcts = search(SyntheticEvaluator(noise=0.02), diagnoser=SyntheticDiagnoser(),
                          budget=Budget(max_evaluations=40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FutureWarning about the edges key
        data = mcts.tree.to_node_link()
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(data))
    loaded = json.loads(path.read_text())
    assert "edges" in loaded
    graph = nx.node_link_graph(loaded, edges="edges")
    assert dict(graph.nodes(data=True)) == dict(mcts.tree.graph.nodes(data=True))
    assert set(graph.edges) == set(mcts.tree.graph.edges)
    assert graph.graph == mcts.tree.graph.graph
    rebuilt = SearchTree.from_node_link(loaded)
    assert rebuilt.best == result.best
    assert rebuilt.reward_range == mcts.tree.reward_range
    assert [rebuilt.node(n.id) for n in result.tree] == list(result.tree)
    assert any(n.diagnosis is not None for n in rebuilt)


@pytest.mark.parametrize("limits", [{"max_evaluations": 0}, {"max_seconds": -1.0}, {"max_tokens": 0}])
def test_budget_limits_must_be_positive(limits: dict) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Budget(**limits)
