"""Journal and resume: fsynced records, torn last lines, and resuming without re-evaluating (CPU only)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from kernelpro.search import (
    Budget,
    Evaluation,
    JournalError,
    MCTSConfig,
    Proposal,
    ProposalRequest,
    SearchResult,
    StopReason,
    Variant,
    read_journal,
    resume,
    start,
)
from kernelpro.search.journal import JOURNAL_NAME, Journal
from kernelpro.search.records import DiagnosisRecord, NodeRecord, ProposalRecord, StartRecord
from kernelpro.search.synthetic import (
    SyntheticDiagnoser,
    SyntheticEvaluator,
    SyntheticProposer,
    baseline_variant,
)

CONFIG = MCTSConfig(seed=1)
BUDGET = Budget(max_evaluations=40)


class CountingEvaluator:
    """Synthetic evaluation (with noise) that records every key it is asked to evaluate."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.inner = SyntheticEvaluator(noise=0.02, seed=7)
        self.keys: list[str] = []
        self.crash_after = crash_after

    def evaluate(self, variant: Variant) -> Evaluation:
        if self.crash_after is not None and len(self.keys) == self.crash_after:
            raise Crash
        self.keys.append(variant.key)
        return self.inner.evaluate(variant)


class Crash(Exception):
    """Stands in for the process dying."""


class CountingProposer:
    def __init__(self) -> None:
        self.inner = SyntheticProposer()
        self.calls = 0

    def propose(self, request: ProposalRequest) -> Proposal:
        self.calls += 1
        return self.inner.propose(request)


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


Run = tuple[SearchResult, CountingEvaluator, CountingProposer]


def fresh_run(run_dir: Path, budget: Budget = BUDGET) -> Run:
    evaluator, proposer = CountingEvaluator(), CountingProposer()
    result = start(run_dir, baseline_variant(), evaluator, proposer, SyntheticDiagnoser(), config=CONFIG,
                   budget=budget)
    return result, evaluator, proposer


def tree_json(result: SearchResult) -> str:
    return json.dumps(result.tree.to_node_link(), sort_keys=True)


def journaled_keys(run_dir: Path) -> set[str]:
    return {r.variant.key for r in read_journal(run_dir / JOURNAL_NAME) if isinstance(r, NodeRecord)}


def chop_last_line(path: Path) -> bytes:
    """Cut the last line in half, as a kill -9 during its write would; returns the lost line."""
    data = path.read_bytes()
    start_of_last = data.rstrip(b"\n").rfind(b"\n") + 1
    last = data[start_of_last:]
    path.write_bytes(data[: start_of_last + len(last) // 2])
    return last


# -- the journal itself --------------------------------------------------------------------------


def test_every_evaluation_is_journaled_before_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    on_disk: list[int] = []

    class Watching(CountingEvaluator):
        def evaluate(self, variant: Variant) -> Evaluation:
            on_disk.append(sum(isinstance(r, NodeRecord) for r in read_journal(path)))
            return super().evaluate(variant)

    evaluator = Watching()
    start(tmp_path, baseline_variant(), evaluator, SyntheticProposer(), budget=Budget(max_evaluations=15))
    assert on_disk == list(range(15))  # at each evaluation, all earlier ones are already on disk
    assert sum(isinstance(r, NodeRecord) for r in read_journal(path)) == 15


def test_journal_records(tmp_path: Path) -> None:
    result, _, proposer = fresh_run(tmp_path, Budget(max_evaluations=20))
    lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()
    objects = [json.loads(line) for line in lines]
    assert objects[0]["type"] == "start"
    nodes = [o for o in objects if o["type"] == "node"]
    assert [o["id"] for o in nodes] == list(range(20))
    assert nodes[0]["parent"] is None
    assert nodes[0]["variant"]["knobs"] == {"BLOCK": "32", "UNROLL": "1", "VEC": "1"}
    assert set(nodes[-1]) >= {"id", "parent", "variant", "evaluation", "usage", "elapsed_s"}
    assert nodes[-1]["usage"]["tokens_in"] == 1000 * proposer.calls
    diagnoses = [o for o in objects if o["type"] == "diagnosis"]
    proposals = [o for o in objects if o["type"] == "proposal"]
    assert len(proposals) == proposer.calls
    journaled = {o["variant"]["source"] + json.dumps(o["variant"]["knobs"]) for o in nodes}
    last_done = all(v["source"] + json.dumps(v["knobs"]) in journaled for v in proposals[-1]["variants"])
    assert result.iterations == proposer.calls - (0 if last_done else 1)  # only finished expansions count
    assert {d["id"] for d in diagnoses} == {p["parent"] for p in proposals}
    assert all(d["diagnosis"]["text"].startswith("synthetic:") for d in diagnoses)


def test_reading_ignores_a_torn_last_line_and_opening_cuts_it_off(tmp_path: Path) -> None:
    fresh_run(tmp_path, Budget(max_evaluations=10))
    path = tmp_path / JOURNAL_NAME
    complete = read_journal(path)
    lost = chop_last_line(path)
    assert read_journal(path) == complete[:-1]
    assert not path.read_bytes().endswith(b"\n")
    Journal(tmp_path).close()
    assert path.read_bytes().endswith(b"\n")
    assert len(path.read_text().splitlines()) == len(complete) - 1
    assert lost.endswith(b"\n")


def test_a_complete_last_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    fresh_run(tmp_path, Budget(max_evaluations=5))
    path = tmp_path / JOURNAL_NAME
    complete = read_journal(path)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert read_journal(path) == complete
    Journal(tmp_path).close()
    assert read_journal(path) == complete and path.read_bytes().endswith(b"}\n")


def test_a_damaged_line_before_the_last_is_an_error(tmp_path: Path) -> None:
    fresh_run(tmp_path, Budget(max_evaluations=5))
    path = tmp_path / JOURNAL_NAME
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:10] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(JournalError) as info:
        read_journal(path)
    assert info.value.line == 3 and "line 3" in str(info.value)


def test_starting_over_an_existing_run_is_refused(tmp_path: Path) -> None:
    fresh_run(tmp_path, Budget(max_evaluations=5))
    with pytest.raises(JournalError, match="already holds a search"):
        fresh_run(tmp_path, Budget(max_evaluations=5))


def test_resuming_an_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no search to resume"):
        resume(tmp_path, CountingEvaluator(), CountingProposer())


# -- resume --------------------------------------------------------------------------------------


def test_resume_after_a_crash_and_a_torn_line_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    reference, ref_evaluator, ref_proposer = fresh_run(tmp_path / "reference")

    run_dir = tmp_path / "interrupted"
    crashing = CountingEvaluator(crash_after=23)
    with pytest.raises(Crash):
        start(run_dir, baseline_variant(), crashing, CountingProposer(), SyntheticDiagnoser(), config=CONFIG,
              budget=BUDGET)
    chop_last_line(run_dir / JOURNAL_NAME)
    on_disk = journaled_keys(run_dir)
    assert 0 < len(on_disk) <= 23

    evaluator, proposer = CountingEvaluator(), CountingProposer()
    resumed = resume(run_dir, evaluator, proposer, SyntheticDiagnoser())

    assert resumed.best == reference.best
    assert tree_json(resumed) == tree_json(reference)
    assert not set(evaluator.keys) & on_disk, "a journaled variant was evaluated again"
    assert len(evaluator.keys) == len(ref_evaluator.keys) - len(on_disk) == 40 - len(on_disk)
    assert resumed.stop_reason is reference.stop_reason
    assert (resumed.evaluations, resumed.iterations) == (reference.evaluations, reference.iterations)
    assert resumed.usage == reference.usage
    assert all(line for line in (run_dir / JOURNAL_NAME).read_text().splitlines())
    assert [type(r) for r in read_journal(run_dir / JOURNAL_NAME)].count(StartRecord) == 1


@pytest.mark.parametrize("kill_at", [1, 9, 30])
def test_resume_after_kill_9(tmp_path: Path, kill_at: int) -> None:
    """A real SIGKILL of the searching process, at an evaluation; then the last line is torn too."""
    reference, _, _ = fresh_run(tmp_path / "reference")
    run_dir = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from kernelpro.search import Budget, MCTSConfig, start
        from kernelpro.search.synthetic import *
        class Killed(SyntheticEvaluator):
            def evaluate(self, variant):
                if self.calls == {kill_at}:
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().evaluate(variant)
        start(sys.argv[1], baseline_variant(), Killed(noise=0.02, seed=7), SyntheticProposer(),
              SyntheticDiagnoser(), config=MCTSConfig(seed=1), budget=Budget(max_evaluations=40))
    """)
    process = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert len(journaled_keys(run_dir)) == kill_at
    chop_last_line(run_dir / JOURNAL_NAME)
    on_disk = journaled_keys(run_dir)

    evaluator = CountingEvaluator()
    resumed = resume(run_dir, evaluator, CountingProposer(), SyntheticDiagnoser())
    assert tree_json(resumed) == tree_json(reference)
    assert not set(evaluator.keys) & on_disk
    assert len(evaluator.keys) == 40 - len(on_disk)


def test_resume_with_a_bigger_budget_finishes_the_interrupted_proposal(tmp_path: Path) -> None:
    reference, _, ref_proposer = fresh_run(tmp_path / "reference", Budget(max_evaluations=40))
    # A budget that runs out between the two children of a proposal.
    journal = read_journal(tmp_path / "reference" / JOURNAL_NAME)
    ids = {r.variant.key: r.id for r in journal if isinstance(r, NodeRecord)}
    pairs = [r.variants for r in journal if isinstance(r, ProposalRecord) and len(r.variants) == 2]
    cut = next(ids[pair[0].key] + 1 for pair in pairs if ids[pair[0].key] > 10)
    first, first_evaluator, first_proposer = fresh_run(tmp_path / "run", Budget(max_evaluations=cut))
    assert first.stop_reason is StopReason.EVALUATIONS
    records = read_journal(tmp_path / "run" / JOURNAL_NAME)
    last_proposal = [r for r in records if isinstance(r, ProposalRecord)][-1]
    evaluated = journaled_keys(tmp_path / "run")
    assert any(v.key not in evaluated for v in last_proposal.variants), "the budget should stop mid-proposal"

    evaluator, proposer = CountingEvaluator(), CountingProposer()
    resumed = resume(tmp_path / "run", evaluator, proposer, SyntheticDiagnoser(),
                     budget=Budget(max_evaluations=40))
    assert tree_json(resumed) == tree_json(reference)
    assert evaluator.keys[0] in {v.key for v in last_proposal.variants}
    assert first_proposer.calls + proposer.calls == ref_proposer.calls
    assert len(first_evaluator.keys) + len(evaluator.keys) == 40
    assert resumed.usage == reference.usage


def test_resume_of_a_finished_run_evaluates_nothing(tmp_path: Path) -> None:
    first, _, _ = fresh_run(tmp_path)
    evaluator, proposer = CountingEvaluator(), CountingProposer()
    again = resume(tmp_path, evaluator, proposer, SyntheticDiagnoser())
    assert evaluator.keys == [] and proposer.calls == 0
    assert again.stop_reason is StopReason.EVALUATIONS
    assert tree_json(again) == tree_json(first)


def test_diagnoses_are_restored_not_redone(tmp_path: Path) -> None:
    fresh_run(tmp_path, Budget(max_evaluations=20))
    diagnosed = [r.id for r in read_journal(tmp_path / JOURNAL_NAME) if isinstance(r, DiagnosisRecord)]

    class Counting(SyntheticDiagnoser):
        def __init__(self) -> None:
            super().__init__()
            self.ids: list[int] = []

        def diagnose(self, node):
            self.ids.append(node.id)
            return super().diagnose(node)

    diagnoser = Counting()
    resumed = resume(tmp_path, CountingEvaluator(), CountingProposer(), diagnoser,
                     budget=Budget(max_evaluations=30))
    assert not set(diagnoser.ids) & set(diagnosed)
    assert all(resumed.tree.node(i).diagnosis is not None for i in diagnosed)


def test_a_journal_with_only_its_start_record_starts_from_the_baseline(tmp_path: Path) -> None:
    reference, _, _ = fresh_run(tmp_path / "reference", Budget(max_evaluations=10))
    run_dir = tmp_path / "run"
    with Journal(run_dir) as journal:
        journal.append(StartRecord(baseline_variant(), asdict(CONFIG), Budget(max_evaluations=10).to_dict()))
    resumed = resume(run_dir, CountingEvaluator(), CountingProposer(), SyntheticDiagnoser())
    assert tree_json(resumed) == tree_json(reference)


def test_the_wall_clock_budget_counts_earlier_sessions(tmp_path: Path) -> None:
    clock = FakeClock()

    class Ticking(CountingEvaluator):
        def evaluate(self, variant: Variant) -> Evaluation:
            clock.now += 1.0
            return super().evaluate(variant)

    first = start(tmp_path, baseline_variant(), Ticking(), SyntheticProposer(), config=CONFIG,
                  budget=Budget(max_evaluations=None, max_seconds=10), clock=clock)
    assert first.stop_reason is StopReason.SECONDS and first.evaluations == 10
    clock.now = 1000.0  # time between sessions doesn't count
    evaluator = Ticking()
    second = resume(tmp_path, evaluator, SyntheticProposer(),
                    budget=Budget(max_evaluations=None, max_seconds=20), clock=clock)
    assert second.stop_reason is StopReason.SECONDS
    assert len(evaluator.keys) == 10 and second.evaluations == 20
    assert second.elapsed_s == 20.0


def test_the_token_budget_counts_earlier_sessions(tmp_path: Path) -> None:
    start(tmp_path, baseline_variant(), CountingEvaluator(), SyntheticProposer(), config=CONFIG,
          budget=Budget(max_evaluations=200, max_tokens=5000))  # 1250 tokens a proposal: stops after 4
    proposer = CountingProposer()
    result = resume(tmp_path, CountingEvaluator(), proposer,
                    budget=Budget(max_evaluations=200, max_tokens=10000))
    assert result.stop_reason is StopReason.TOKENS
    assert proposer.calls == 4 and result.usage.tokens == 10000
