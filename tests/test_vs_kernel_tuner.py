"""The peer comparison (benchmarks/vs_kernel_tuner.py): metrics, the Kernel Tuner cache, the replays.

Every table built here is SYNTHETIC (``synthetic=True``, GPU "synthetic"): hand-made times with a known
optimum, never measurements. Kernel Tuner tests skip where ``kernel_tuner`` is not importable; the
sweep needs a GPU.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from peer import metrics  # noqa: E402
from peer.kt import from_kt_cache, strategy_options, to_kt_cache, write_kt_cache  # noqa: E402
from peer.mcts_replay import KnobNeighbourProposer, TableEvaluator, mcts_trace, variant_for  # noqa: E402
from peer.report import compare, render_markdown, score  # noqa: E402
from peer.table import Entry, Table, TableError  # noqa: E402

KNOBS = {"BX": (8, 16, 32, 64), "BY": (1, 2, 4, 8, 16, 32)}


def synthetic_table() -> Table:
    """SYNTHETIC, labelled so: the sgemm-shaped space (64 <= BX*BY <= 1024, 17 configs), optimum BX=32, BY=4
    at 100 us, one wall failure and one compile failure; 2.5 s per evaluation (1.0 s for the compile failure)."""
    entries = []
    for bx, by in itertools.product(*KNOBS.values()):
        if not 64 <= bx * by <= 1024:
            continue
        knobs = {"BX": bx, "BY": by}
        if (bx, by) == (64, 16):
            entries.append(Entry(knobs, None, "wall: output mismatch (synthetic)", 2.0))
        elif (bx, by) == (8, 8):
            entries.append(Entry(knobs, None, "compile: ptxas error (synthetic)", 1.0))
        else:
            time_us = 100 * (1 + 0.3 * (math.log2(bx) - 5) ** 2) * (1 + 0.2 * (math.log2(by) - 2) ** 2)
            entries.append(Entry(knobs, round(time_us, 3), None, 2.5))
    return Table("synthetic_gemm", "k", KNOBS, {"BX": 16, "BY": 16}, tuple(entries),
                 {"gpu": "synthetic", "date": "synthetic", "command": "test"}, synthetic=True)


@pytest.fixture
def table() -> Table:
    return synthetic_table()


# -- the table ------------------------------------------------------------------------------------------


def test_synthetic_table_shape_and_optimum(table: Table, tmp_path: Path) -> None:
    assert len(table.entries) == 17 and table.synthetic and table.gpu == "synthetic"
    assert dict(table.optimum.knobs) == {"BX": 32, "BY": 4} and table.optimum.time_us == 100.0
    table.save(tmp_path / "t.json")
    assert Table.load(tmp_path / "t.json") == table


def test_missing_or_foreign_table_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="not found.*sweep"):
        Table.load(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(TableError, match="not a peer-sweep table"):
        Table.load(tmp_path / "x.json")


# -- metrics on constructed traces ---------------------------------------------------------------------


def test_evaluations_to_within_5pct(table: Table) -> None:
    # 16,16 is 146 us; 32,2 is 120 us; 32,8 is 120 us; 32,4 is the optimum (100 us); 16,4 is 130 us.
    assert metrics.evaluations_to_within(["16,16", "32,2", "32,4"], table) == 3
    assert metrics.evaluations_to_within(["32,4"], table) == 1
    assert metrics.evaluations_to_within(["8,8", "64,16", "16,16"], table) is None  # failures never count
    assert metrics.evaluations_to_within([], table) is None
    # within 5%: a 104 us configuration counts, a 106 us one does not
    near = Table("t", "k", {"A": (1, 2, 3)}, {"A": 1}, (Entry({"A": 1}, 106.0), Entry({"A": 2}, 104.0),
                                                        Entry({"A": 3}, 100.0)), synthetic=True)
    assert metrics.evaluations_to_within(["1", "2"], near) == 2
    assert metrics.evaluations_to_within(["1"], near) is None


def test_best_at_budget_and_seconds(table: Table) -> None:
    trace = ["8,8", "16,16", "32,2", "32,4"]
    assert metrics.best_at_budget(trace, table, 1) == 0.0  # only a failure so far
    assert metrics.best_at_budget(trace, table, 3) == pytest.approx(100 / 120)
    assert metrics.best_at_budget(trace, table, 4) == 1.0
    assert metrics.best_at_budget(trace, table, 20) == 1.0  # a shorter trace is scored on what it did
    assert metrics.seconds_for(trace, table, 4) == pytest.approx(1.0 + 3 * 2.5)


def test_quantiles_treat_not_reached_as_infinite() -> None:
    assert metrics.median_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0, 4.0)
    assert math.isinf(metrics.quantile([1.0, math.inf, math.inf], 0.5))
    med, q1, q3 = metrics.median_iqr([2.0, 4.0, 6.0, math.inf])
    assert med == 5.0 and q1 == 3.5 and math.isinf(q3)


def test_score_and_markdown_label_synthetic(table: Table) -> None:
    row = score(table, "fixed", [["16,16", "32,4"], ["16,16", "32,2"]], at=[1, 2])
    assert row.reached == 1 and row.evaluations == (2.0, math.inf)
    assert row.seconds == (5.0, math.inf)
    text = render_markdown([row], [table], {"gpu": "synthetic", "command": "c", "date": "d", "seeds": 2,
                                            "budget": 2, "kernelpro_version": "x", "kernel_tuner_version": "y"})
    assert "SYNTHETIC tables: not measurements" in text
    assert "| synthetic_gemm | fixed | 2 | 1/2 | not reached |" in text  # median of (2, inf) is inf


# -- Kernel Tuner's cache format -----------------------------------------------------------------------


def test_kt_cache_conversion(table: Table) -> None:
    cache = to_kt_cache(table)
    assert cache["tune_params_keys"] == ["BX", "BY"] and list(cache)[-1] == "cache"
    assert cache["cache"]["32,4"]["time"] == pytest.approx(0.1)  # milliseconds
    assert cache["cache"]["8,8"]["time"] == "CompilationFailedConfig"
    assert cache["cache"]["64,16"]["time"] == "RuntimeFailedConfig"
    assert cache["cache"]["16,16"]["benchmark_time"] == pytest.approx(2500.0)
    back = from_kt_cache(json.loads(json.dumps(cache)), environment=table.environment)
    assert back.by_key.keys() == table.by_key.keys() and back.default == table.default
    for key, entry in table.by_key.items():
        assert back.by_key[key].failure == entry.failure
        assert back.by_key[key].seconds == pytest.approx(entry.seconds)
        assert (back.by_key[key].time_us or 0) == pytest.approx(entry.time_us or 0)


def test_kt_cache_round_trips_through_kernel_tuner(table: Table, tmp_path: Path) -> None:
    pytest.importorskip("kernel_tuner")
    from kernel_tuner.util import read_cache

    path = write_kt_cache(table, tmp_path / "cache.json")
    before = path.read_text()
    data = read_cache(str(path), open_cache=False)
    assert path.read_text() == before  # a complete file: Kernel Tuner appended nothing
    assert "__error__" in data["cache"]["8,8"] and "__error__" not in data["cache"]["32,4"]
    back = from_kt_cache(data)
    assert back.optimum.knobs == table.optimum.knobs
    assert {k for k, e in back.by_key.items() if not e.ok} == {"8,8", "64,16"}


def test_strategy_options() -> None:
    assert strategy_options("random_sample", 20) == {"max_fevals": 20}
    assert strategy_options("bayes_opt", 20) == {"max_fevals": 20, "popsize": 5}
    with pytest.raises(ValueError, match="unknown"):
        strategy_options("brute", 20)


@pytest.mark.parametrize("strategy", ["random_sample", "genetic_algorithm", "bayes_opt"])
def test_kernel_tuner_simulation_on_synthetic_table(table: Table, strategy: str) -> None:
    pytest.importorskip("kernel_tuner")
    from peer.kt import kt_trace

    trace = kt_trace(table, strategy, seed=3, budget=10)
    assert 1 <= len(trace) <= 10 and len(set(trace)) == len(trace)
    assert set(trace) <= set(table.by_key)
    if strategy != "bayes_opt":  # seeded through random and numpy (BO's GP may add its own randomness)
        assert kt_trace(table, strategy, seed=3, budget=10) == trace
    full = kt_trace(table, "random_sample", seed=0, budget=17)
    assert sorted(full) == sorted(table.by_key)  # the whole space, failures included
    assert metrics.evaluations_to_within(full, table) is not None


# -- kernelpro's MCTS on the table ---------------------------------------------------------------------


def test_knob_neighbours_stay_in_the_table(table: Table) -> None:
    proposer = KnobNeighbourProposer(table)
    single, double = proposer.neighbours(variant_for(table, {"BX": 64, "BY": 1}))
    assert [(c["BX"], c["BY"]) for c in single] == [("64", "2")]  # 32,1 has 32 threads: outside the space
    assert [(c["BX"], c["BY"]) for c in double] == [("32", "2")]  # so the two-knob step reaches 32,2


def test_table_evaluator_replays_times_and_failures(table: Table) -> None:
    evaluator = TableEvaluator(table)
    assert evaluator.evaluate(variant_for(table, {"BX": 32, "BY": 4})).time_us == 100.0
    failed = evaluator.evaluate(variant_for(table, {"BX": 8, "BY": 8}))
    assert not failed.ok and failed.failed_stage == "compile"
    assert evaluator.trace == ["32,4", "8,8"]


def test_mcts_finds_the_optimum_of_the_synthetic_table(table: Table) -> None:
    found = [metrics.evaluations_to_within(mcts_trace(table, seed, budget=17), table) for seed in range(5)]
    assert all(n is not None for n in found), found
    trace = mcts_trace(table, 0, budget=17)
    assert trace[0] == "16,16" and len(set(trace)) == len(trace) and len(trace) <= 17
    assert mcts_trace(table, 0, budget=17) == trace  # a seed gives one search


def test_compare_runs_injected_strategies(table: Table) -> None:
    rows = compare([table], {"mcts": mcts_trace}, seeds=3, budget=12, at=[6, 12], progress=lambda _: None)
    assert len(rows) == 1 and len(rows[0].traces) == 3 and set(rows[0].best_at) == {6, 12}


# -- the script ----------------------------------------------------------------------------------------


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vs_kernel_tuner.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_compare_with_a_missing_table_is_one_line(tmp_path: Path) -> None:
    done = _script("compare", "--tables", str(tmp_path / "missing.json"))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "not found" in done.stderr


def test_compare_end_to_end_on_synthetic_table(table: Table, tmp_path: Path) -> None:
    pytest.importorskip("kernel_tuner")
    table.save(tmp_path / "synthetic_gemm-synthetic.json")
    done = _script("compare", "--tables", str(tmp_path / "synthetic_gemm-synthetic.json"), "--seeds", "2",
                   "--budget", "8", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(next(tmp_path.glob("vs_kernel_tuner-synthetic-*.json")).read_text())
    assert report["synthetic"] is True and "compare --tables" in report["command"]
    assert {r["strategy"] for r in report["rows"]} == {"kernel_tuner:random_sample", "kernel_tuner:genetic_algorithm",
                                                        "kernel_tuner:bayes_opt", "kernelpro:mcts"}
    assert "SYNTHETIC" in next(tmp_path.glob("vs_kernel_tuner-synthetic-*.md")).read_text()


@pytest.mark.gpu
def test_sweep_records_every_configuration(tmp_path: Path) -> None:
    done = _script("sweep", "--tasks", "tasks/sgemm.cu", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    table = Table.load(next(tmp_path.glob("sgemm-*.json")))
    assert len(table.entries) == 17 and not table.synthetic and table.gpu != "unknown"
    assert table.environment["command"].startswith("python") and table.optimum.time_us > 0
