"""The search with evaluations in flight, on simulated latencies and a simulated clock (CPU only)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kernelpro.search import Budget, Evaluation, MCTSConfig, StopReason, Variant, read_journal, resume, start
from kernelpro.search.async_eval import Latencies, SerialEvaluator, SimClock, SimulatedEvaluator
from kernelpro.search.journal import JOURNAL_NAME
from kernelpro.search.mcts import _Expansion
from kernelpro.search.parallel import _BLOCKED, ParallelMCTS
from kernelpro.search.records import NodeRecord, ProposalRecord, SubmitRecord
from kernelpro.search.synthetic import (
    DEFAULT_SPACE,
    SyntheticDiagnoser,
    SyntheticEvaluator,
    SyntheticProposer,
    baseline_variant,
    knob_space,
    wide_space,
)

OPTIMUM = {"BLOCK": "256", "UNROLL": "4", "VEC": "4"}
WIDE = wide_space(3)


class Recording(SyntheticEvaluator):
    """The synthetic evaluator, recording every key it evaluates."""

    def __init__(self, space=WIDE) -> None:
        super().__init__(space, noise=0.02, seed=7)
        self.keys: list[str] = []

    def evaluate(self, variant: Variant) -> Evaluation:
        self.keys.append(variant.key)
        return super().evaluate(variant)


def simulated(gpus: int, inner: Recording | None = None) -> tuple[SimulatedEvaluator, SimClock, Recording]:
    clock, inner = SimClock(), inner or Recording()
    return SimulatedEvaluator(inner, clock, gpus=gpus), clock, inner


def records(run_dir: Path) -> tuple:
    return read_journal(run_dir / JOURNAL_NAME)


# -- capacity 1 is the serial search ----------------------------------------------------------------


@pytest.mark.parametrize("knobs", [False, True], ids=["proposer", "proposer+knob-tuner"])
def test_parallel_1_gives_the_serial_tree_and_journal_byte_for_byte(tmp_path: Path, knobs: bool) -> None:
    space = knob_space(WIDE) if knobs else None
    budget = Budget(max_evaluations=45)
    serial = start(tmp_path / "serial", baseline_variant(WIDE), Recording(), SyntheticProposer(WIDE),
                   SyntheticDiagnoser(WIDE), config=MCTSConfig(seed=3), budget=budget, clock=lambda: 0.0,
                   knob_space=space)
    wrapped = SerialEvaluator(Recording(), clock=lambda: 0.0)
    parallel = start(tmp_path / "parallel", baseline_variant(WIDE), wrapped, SyntheticProposer(WIDE),
                     SyntheticDiagnoser(WIDE), config=MCTSConfig(seed=3), budget=budget, clock=lambda: 0.0,
                     knob_space=space)
    assert (tmp_path / "serial" / JOURNAL_NAME).read_bytes() == (tmp_path / "parallel" / JOURNAL_NAME).read_bytes()
    assert json.dumps(serial.tree.to_node_link()) == json.dumps(parallel.tree.to_node_link())
    assert (serial.best, serial.stop_reason, serial.iterations) == (parallel.best, parallel.stop_reason,
                                                                    parallel.iterations)
    assert parallel.evaluations == 45


def test_parallel_1_resumes_a_serial_journal_like_the_serial_search(tmp_path: Path) -> None:
    for name in ("serial", "parallel"):
        start(tmp_path / name, baseline_variant(WIDE), Recording(), SyntheticProposer(WIDE), SyntheticDiagnoser(WIDE),
              config=MCTSConfig(seed=2), budget=Budget(max_evaluations=15), clock=lambda: 0.0)
    a = resume(tmp_path / "serial", Recording(), SyntheticProposer(WIDE), SyntheticDiagnoser(WIDE),
               budget=Budget(max_evaluations=30), clock=lambda: 0.0)
    b = resume(tmp_path / "parallel", SerialEvaluator(Recording()), SyntheticProposer(WIDE), SyntheticDiagnoser(WIDE),
               budget=Budget(max_evaluations=30), clock=lambda: 0.0)
    assert json.dumps(a.tree.to_node_link()) == json.dumps(b.tree.to_node_link())


# -- evaluations in flight ----------------------------------------------------------------------------


def _two_equal_children() -> ParallelMCTS:
    evaluator, _, _ = simulated(2)
    search = ParallelMCTS(baseline_variant(WIDE), evaluator, SyntheticProposer(WIDE),
                          config=MCTSConfig(widen_k=1, widen_alpha=0))  # one open child per node
    root = baseline_variant(WIDE)
    search._add(None, root, Evaluation.passed(600.0), 0)
    a = root.with_knobs({"BLOCK": "64"}, change="a", origin="t")
    b = root.with_knobs({"UNROLL": "2"}, change="b", origin="t")
    search._add(0, a, Evaluation.passed(300.0), 1)
    search._add(0, b, Evaluation.passed(300.0), 1)
    search.tree.record_expansion(0, [1, 2])
    return search


def test_pending_evaluations_steer_selection_away() -> None:
    import random

    search = _two_equal_children()
    picks = {search._select(random.Random(seed)) for seed in range(30)}
    assert picks == {(1, 1), (2, 1)}  # a tie, broken by the seed
    child_of_a = search.tree.node(1).variant.with_knobs({"VEC": "2"}, change="c", origin="t")
    search._enqueue(_Expansion(1, 2, (child_of_a,)), child_of_a)
    assert search._visits(1) == 2 and search._visits(0) == 4  # pending visits up to the root
    assert {search._select(random.Random(seed)) for seed in range(30)} == {(2, 1)}
    child_of_b = search.tree.node(2).variant.with_knobs({"VEC": "2"}, change="d", origin="t")
    search._enqueue(_Expansion(2, 3, (child_of_b,)), child_of_b)
    assert search._select(random.Random(0)) == _BLOCKED  # no room but under evaluations in flight: wait
    assert child_of_a.key in search._seen_keys() and len(search._seen_keys()) == 5


def test_the_parallel_search_finds_the_optimum_and_keeps_every_slot_busy(tmp_path: Path) -> None:
    evaluator, clock, inner = simulated(4, Recording(DEFAULT_SPACE))
    result = start(tmp_path, baseline_variant(), evaluator, SyntheticProposer(), SyntheticDiagnoser(),
                   config=MCTSConfig(seed=0), budget=Budget(max_evaluations=60), clock=clock,
                   knob_space=knob_space())
    assert result.best.variant.knob_values == OPTIMUM
    assert result.evaluations == len(inner.keys) == len(set(inner.keys)) == 60
    assert set(result.gpu_busy_s) == {0, 1, 2, 3}
    assert min(result.gpu_utilisation.values()) > 0.8  # proposals cost no simulated time here
    assert len({r.key for r in records(tmp_path) if isinstance(r, SubmitRecord)}) == 60


def test_more_slots_give_more_evaluations_per_minute(tmp_path: Path) -> None:
    rates = []
    for gpus in (1, 2, 4):
        evaluator, clock, _ = simulated(gpus)
        result = start(tmp_path / str(gpus), baseline_variant(WIDE), evaluator, None, config=MCTSConfig(seed=0),
                       budget=Budget(max_evaluations=40), clock=clock, knob_space=knob_space(WIDE))
        rates.append(result.evaluations_per_minute)
    assert rates[0] < rates[1] < rates[2]
    assert rates[2] > 3 * rates[0]


def test_the_budget_is_charged_at_submit_and_a_stop_drains_what_is_in_flight(tmp_path: Path) -> None:
    evaluator, clock, inner = simulated(3)
    result = start(tmp_path, baseline_variant(WIDE), evaluator, SyntheticProposer(WIDE), config=MCTSConfig(seed=1),
                   budget=Budget(max_evaluations=25), clock=clock)
    journal = records(tmp_path)
    submitted = [r.key for r in journal if isinstance(r, SubmitRecord)]
    nodes = [r.variant.key for r in journal if isinstance(r, NodeRecord)]
    assert result.stop_reason is StopReason.EVALUATIONS
    assert len(submitted) == len(nodes) == len(inner.keys) == 25  # never over, nothing left in flight
    assert set(submitted) == set(nodes)


def test_a_time_budget_stops_submitting_and_drains(tmp_path: Path) -> None:
    evaluator, clock, inner = simulated(4)
    result = start(tmp_path, baseline_variant(WIDE), evaluator, SyntheticProposer(WIDE), config=MCTSConfig(seed=1),
                   budget=Budget(max_evaluations=None, max_seconds=30.0), clock=clock)
    journal = records(tmp_path)
    submits = [r for r in journal if isinstance(r, SubmitRecord)]
    assert result.stop_reason is StopReason.SECONDS
    assert all(s.elapsed_s < 30.0 for s in submits)  # nothing submitted after the limit
    assert {s.key for s in submits} == {r.variant.key for r in journal if isinstance(r, NodeRecord)}
    assert 30.0 <= result.elapsed_s <= 30.0 + 2 * (Latencies().compile_s + Latencies().gpu_s)


class _ScriptedLatency(SimulatedEvaluator):
    """The first child of each proposal is slow, so proposals finish out of order."""

    def submit(self, variant: Variant) -> int:
        self.latencies = Latencies(0.5, 9.0 if self._tickets % 3 == 1 else 1.0)
        return super().submit(variant)


def test_out_of_order_finishes_complete_each_proposal_once(tmp_path: Path) -> None:
    clock = SimClock()
    evaluator = _ScriptedLatency(Recording(), clock, gpus=3)
    result = start(tmp_path, baseline_variant(WIDE), evaluator, SyntheticProposer(WIDE), config=MCTSConfig(seed=4),
                   budget=Budget(max_evaluations=40), clock=clock)
    journal = records(tmp_path)
    node_iterations = [r.iteration for r in journal if isinstance(r, NodeRecord)]
    assert node_iterations != sorted(node_iterations)  # records of proposals interleave
    proposals = [r for r in journal if isinstance(r, ProposalRecord)]
    finished = sum(all(result.tree.find(v.key) is not None for v in p.variants) for p in proposals)
    assert result.iterations == finished


# -- kill -9 with evaluations in flight, then resume -----------------------------------------------


@pytest.mark.parametrize("kill_at_poll", [3, 11])
def test_kill_9_with_evaluations_in_flight_then_resume_loses_nothing_and_repeats_nothing(
        tmp_path: Path, kill_at_poll: int) -> None:
    script = textwrap.dedent(f"""
        import os, signal, sys
        from kernelpro.search import Budget, MCTSConfig, start
        from kernelpro.search.async_eval import SimClock, SimulatedEvaluator
        from kernelpro.search.synthetic import *
        class Killed(SimulatedEvaluator):
            polls = 0
            def poll(self, timeout=None):
                Killed.polls += 1
                if Killed.polls == {kill_at_poll}:
                    assert self._events, "nothing in flight"
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().poll(timeout)
        clock = SimClock()
        space = wide_space(3)
        evaluator = Killed(SyntheticEvaluator(space), clock, gpus=3)
        start(sys.argv[1], baseline_variant(space), evaluator, SyntheticProposer(space), SyntheticDiagnoser(space),
              config=MCTSConfig(seed=1), budget=Budget(max_evaluations=40), clock=clock)
    """)
    run_dir = tmp_path / "killed"
    process = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    before = records(run_dir)
    done = [r.variant.key for r in before if isinstance(r, NodeRecord)]
    lost = [r.key for r in before if isinstance(r, SubmitRecord) and r.key not in set(done)]
    assert lost, "evaluations were in flight at the kill"

    evaluator, clock, inner = simulated(3, Recording())
    result = resume(run_dir, evaluator, SyntheticProposer(WIDE), SyntheticDiagnoser(WIDE), clock=clock)
    assert inner.keys[:len(lost)] == lost  # what was in flight is submitted again, first
    assert not set(inner.keys) & set(done)  # nothing finished is evaluated again
    after = [r.variant.key for r in records(run_dir) if isinstance(r, NodeRecord)]
    assert after[:len(done)] == done and len(after) == len(set(after)) == 40 == result.evaluations


def test_ctrl_c_with_evaluations_in_flight_keeps_every_finished_one(tmp_path: Path) -> None:
    class Interrupted(SimulatedEvaluator):
        polls = 0

        def poll(self, timeout=None):
            Interrupted.polls += 1
            if Interrupted.polls == 6:
                assert self._events, "nothing in flight"
                raise KeyboardInterrupt
            return super().poll(timeout)

    clock = SimClock()
    first = Recording()
    with pytest.raises(KeyboardInterrupt):
        start(tmp_path, baseline_variant(WIDE), Interrupted(first, clock, gpus=2), SyntheticProposer(WIDE),
              config=MCTSConfig(seed=5), budget=Budget(max_evaluations=30), clock=clock)
    journal = records(tmp_path)
    done = [r.variant.key for r in journal if isinstance(r, NodeRecord)]
    in_flight = [r.key for r in journal if isinstance(r, SubmitRecord) and r.key not in set(done)]
    assert done and in_flight
    evaluator, clock, inner = simulated(2, Recording())
    result = resume(tmp_path, evaluator, SyntheticProposer(WIDE), clock=clock)
    assert inner.keys[:len(in_flight)] == in_flight and not set(inner.keys) & set(done)
    assert result.evaluations == 30


# -- the proposer runs beside the evaluations: what finishes meanwhile is journaled at once ---------


def _unjournaled(run_dir: Path) -> list[str]:
    """Keys submitted (journaled as submits) whose node record is not in the journal yet."""
    journal = records(run_dir)
    done = {r.variant.key for r in journal if isinstance(r, NodeRecord)}
    return [r.key for r in journal if isinstance(r, SubmitRecord) and r.key not in done]


class _SlowLLM(SyntheticProposer):
    """Takes 20 simulated seconds per call, then waits (real time) until the journal holds every evaluation
    that finished in those 20 s; records, per call, what was in flight and whether it got journaled."""

    def __init__(self, clock: SimClock, run_dir: Path) -> None:
        super().__init__(WIDE)
        self.clock, self.run_dir = clock, run_dir
        self.calls: list[tuple[int, bool]] = []  # (evaluations in flight at the call, all journaled before return)

    def propose(self, request):
        in_flight = len(_unjournaled(self.run_dir))
        self.clock.advance_to(self.clock.now + 20.0)  # every evaluation in flight finishes within 20 s
        deadline = time.monotonic() + 10.0
        while _unjournaled(self.run_dir) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.calls.append((in_flight, not _unjournaled(self.run_dir)))
        return super().propose(request)


def test_evaluations_finishing_during_a_proposal_are_journaled_before_it_returns(tmp_path: Path) -> None:
    clock = SimClock()
    evaluator = SimulatedEvaluator(Recording(), clock, gpus=3)
    proposer = _SlowLLM(clock, tmp_path)
    result = start(tmp_path, baseline_variant(WIDE), evaluator, proposer, SyntheticDiagnoser(WIDE),
                   config=MCTSConfig(seed=1), budget=Budget(max_evaluations=30), clock=clock)
    assert result.evaluations == 30
    windows = [journaled for in_flight, journaled in proposer.calls if in_flight]
    assert windows, "no proposal was made with evaluations in flight"
    assert all(windows)  # the driver journaled them while the proposer was still running


def test_kill_9_during_a_proposal_loses_no_evaluation_that_finished_in_it(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        from kernelpro.search import Budget, MCTSConfig, read_journal, start
        from kernelpro.search.async_eval import SimClock, SimulatedEvaluator
        from kernelpro.search.journal import JOURNAL_NAME
        from kernelpro.search.records import NodeRecord, SubmitRecord
        from kernelpro.search.synthetic import *
        run_dir = Path(sys.argv[1])
        def unjournaled():
            journal = read_journal(run_dir / JOURNAL_NAME)
            done = {r.variant.key for r in journal if isinstance(r, NodeRecord)}
            return [r.key for r in journal if isinstance(r, SubmitRecord) and r.key not in done]
        class KilledMidProposal(SyntheticProposer):
            def propose(self, request):
                if unjournaled():  # evaluations in flight: finish them all during this "LLM call", then die
                    clock.advance_to(clock.now + 20.0)
                    deadline = time.monotonic() + 10.0
                    while unjournaled() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().propose(request)
        clock = SimClock()
        space = wide_space(3)
        start(run_dir, baseline_variant(space), SimulatedEvaluator(SyntheticEvaluator(space), clock, gpus=3),
              KilledMidProposal(space), SyntheticDiagnoser(space), config=MCTSConfig(seed=1),
              budget=Budget(max_evaluations=40), clock=clock)
    """)
    run_dir = tmp_path / "killed"
    process = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    before = records(run_dir)
    done = [r.variant.key for r in before if isinstance(r, NodeRecord)]
    assert len(done) > 1 and not _unjournaled(run_dir)  # everything that finished during the proposal is kept

    evaluator, clock, inner = simulated(3, Recording())
    result = resume(run_dir, evaluator, SyntheticProposer(WIDE), SyntheticDiagnoser(WIDE), clock=clock)
    assert not set(inner.keys) & set(done)  # nothing evaluated twice
    after = [r.variant.key for r in records(run_dir) if isinstance(r, NodeRecord)]
    assert after[:len(done)] == done and len(after) == len(set(after)) == 40 == result.evaluations
