"""The optimize orchestration on CPU: journaled search into a run folder, interruption and resume,
winner verification and run settings. The evaluator is the synthetic analytic model (not a measurement)
over a real task file; the GPU pieces (WallEvaluator, ProfilingDiagnoser) run on the device."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from test_report import TASK

from kernelpro.cli import parse_duration
from kernelpro.optimize import RunSettings, baseline_variant, finish_run, roofline_pct, run_search, verify_winner
from kernelpro.search import Budget, read_journal
from kernelpro.search.synthetic import SyntheticEvaluator, SyntheticProposer
from kernelpro.task_loader import load_task


class Interrupting(SyntheticEvaluator):
    """Raises KeyboardInterrupt (Ctrl-C) on call number ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def evaluate(self, variant):
        if self.calls + 1 == self.at:
            self.calls += 1
            raise KeyboardInterrupt
        return super().evaluate(variant)


def settings(path: Path) -> RunSettings:
    return RunSettings(str(path), "offline", None, "sm_90", 7, False, False, "kernelpro optimize scale.cu")


@pytest.fixture
def task(tmp_path: Path):
    path = tmp_path / "scale.cu"
    path.write_text(TASK)
    return load_task(path)


def test_baseline_is_the_task_as_written(task) -> None:
    base = baseline_variant(task)
    assert base.source == task.source and base.knob_values == {"BLOCK": "32", "UNROLL": "1", "VEC": "1"}


def test_interrupted_run_resumes_without_losing_or_repeating_work(task, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    settings(task.path).save(run_dir)
    with pytest.raises(KeyboardInterrupt):
        run_search(run_dir, task, evaluator=Interrupting(at=15), proposer=SyntheticProposer(), diagnoser=None,
                   budget=Budget(max_evaluations=30), seed=7, resume=False)
    journaled = [r for r in read_journal(run_dir / "journal.jsonl") if type(r).__name__ == "NodeRecord"]
    assert len(journaled) == 14  # every evaluation before Ctrl-C is on disk

    again = SyntheticEvaluator()
    resumed = run_search(run_dir, task, evaluator=again, proposer=SyntheticProposer(), diagnoser=None,
                         budget=Budget(max_evaluations=30), seed=7, resume=True)
    assert resumed.evaluations == 30 and again.calls == 30 - 14  # nothing evaluated twice

    fresh = run_search(tmp_path / "fresh", task, evaluator=SyntheticEvaluator(), proposer=SyntheticProposer(),
                       diagnoser=None, budget=Budget(max_evaluations=30), seed=7, resume=False)
    assert resumed.best.variant.key == fresh.best.variant.key  # same search as an uninterrupted one

    files, best, notes = finish_run(run_dir, task, resumed, RunSettings.load(run_dir))
    assert best.id == resumed.best.id and notes == []
    assert "command: `kernelpro optimize scale.cu`" in files.report.read_text()


def test_resume_continues_the_knob_tuner_with_the_same_evaluations(task, tmp_path: Path) -> None:
    """``kernelpro optimize`` tunes the task's knobs with the knob tuner; interrupted and resumed, it makes
    the same evaluations in the same order as an uninterrupted run."""
    def evaluated(run_dir: Path) -> list[tuple[str, str]]:
        return [(r.variant.key, r.variant.origin) for r in read_journal(run_dir / "journal.jsonl")
                if type(r).__name__ == "NodeRecord"]

    run = dict(proposer=SyntheticProposer(), diagnoser=None, budget=Budget(max_evaluations=30), seed=3)
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path / "cut", task, evaluator=Interrupting(at=12), resume=False, **run)
    run_search(tmp_path / "cut", task, evaluator=SyntheticEvaluator(), resume=True, **run)
    run_search(tmp_path / "whole", task, evaluator=SyntheticEvaluator(), resume=False, **run)
    assert evaluated(tmp_path / "cut") == evaluated(tmp_path / "whole")
    assert sum(origin == "knob-tune" for _, origin in evaluated(tmp_path / "whole")) >= 10


def test_winner_that_fails_the_final_check_is_replaced(task, tmp_path: Path) -> None:
    result = run_search(tmp_path / "run", task, evaluator=SyntheticEvaluator(), proposer=SyntheticProposer(),
                        diagnoser=None, budget=Budget(max_evaluations=25), seed=1, resume=False)
    ranked = sorted((n for n in result.tree if n.ok), key=lambda n: n.time_us)
    best, notes = verify_winner(task, result, lambda n: (n.id != ranked[0].id, "memcheck: 1 error"))
    assert best.id == ranked[1].id and len(notes) == 2
    best, notes = verify_winner(task, result, lambda n: (False, "memcheck: 1 error"), tries=2)
    assert best.id == result.baseline.id and "baseline is reported" in notes[-1]
    files, chosen, _ = finish_run(tmp_path / "run", task, result, settings(task.path),
                                  check=lambda n: (n.id != ranked[0].id, "sanitizer"))
    assert chosen.id == ranked[1].id
    assert f"node {ranked[0].id}: sanitizer" in files.report.read_text()


def test_run_settings_round_trip_and_bad_folder(tmp_path: Path) -> None:
    s = settings(tmp_path / "t.cu")
    s.save(tmp_path / "run")
    assert RunSettings.load(tmp_path / "run") == s
    assert json.loads((tmp_path / "run" / "run.json").read_text())["proposer"] == "offline"
    with pytest.raises(Exception, match="not a kernelpro run directory"):
        RunSettings.load(tmp_path / "nothing-here")


def test_roofline_pct(task) -> None:
    assert roofline_pct(task, task.default_knobs(), 1.0, None, None) is None  # the task has no [cost]
    vector = load_task(Path(__file__).resolve().parents[1] / "tasks" / "vector_add.cu")
    moved = 12 * 67108864
    # At exactly the peak bandwidth the kernel is at 100% of its roofline bound; twice as slow, 50%.
    assert roofline_pct(vector, vector.default_knobs(), moved / 3.0e12, 3.0e12, 60e12) == pytest.approx(100.0)
    assert roofline_pct(vector, vector.default_knobs(), 2 * moved / 3.0e12, 3.0e12, 60e12) == pytest.approx(50.0)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("1h30m", 5400), ("45", 45), (None, None)])
def test_parse_duration(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m"])
def test_parse_duration_rejects(text) -> None:
    with pytest.raises(click.BadParameter):
        parse_duration(text)


def test_final_check_line_claims_only_what_ran() -> None:
    from kernelpro.optimize import final_check_outcome
    from kernelpro.runner.records import CheckFailure, WallVerdict

    def verdict(**fields) -> WallVerdict:
        return WallVerdict(task="scale", kernel="scale", seed=1, **fields)

    assert final_check_outcome(verdict()) == (True, "passed the wall again and compute-sanitizer (memcheck, "
                                                    "racecheck, synccheck)")
    ok, line = final_check_outcome(verdict(flags=(CheckFailure("sanitizer", "not sanitized: compute-sanitizer "
                                                                            "memcheck timed out: inconclusive"),)))
    assert ok and line == "passed the wall again; NOT SANITIZED: not sanitized: compute-sanitizer memcheck " \
                          "timed out: inconclusive"
    ok, line = final_check_outcome(verdict(flags=(CheckFailure("not-sanitized", "not sanitized: compute-sanitizer "
                                                                                "could not run: not found"),)))
    assert ok and "NOT SANITIZED" in line and "could not run" in line
    ok, line = final_check_outcome(verdict(failures=(CheckFailure("memcheck", "found 1 error(s)"),)))
    assert not ok and line.startswith("failed the final check:")


def test_journal_summary_keeps_the_drawn_size_and_timed_launches() -> None:
    from kernelpro.optimize import wall_evidence
    from kernelpro.runner.records import WallVerdict

    verdict = WallVerdict(task="scale", kernel="scale", seed=7, checked={
        "drawn_size": {"N": 897}, "timed_launches": {"launches": 3000, "worked": 3000}, "sizes": ["N=4096"]})
    assert wall_evidence(verdict) == {"drawn_size": {"N": 897}, "timed_launches": {"launches": 3000, "worked": 3000}}
    assert wall_evidence(WallVerdict(task="scale", kernel="scale", seed=7)) == {}
