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
from peer.cachefile import load_kt_cache  # noqa: E402
from peer.kt import from_kt_cache, strategy_options, to_kt_cache, write_kt_cache  # noqa: E402
from peer.mcts_replay import TableEvaluator, mcts_trace, variant_for  # noqa: E402
from peer.report import compare, render_markdown, score, verdicts  # noqa: E402
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


def test_strategy_options_are_kernel_tuners_defaults_with_two_documented_exceptions() -> None:
    assert strategy_options("random_sample", 20, [16, 16]) == {"max_fevals": 20}
    assert strategy_options("genetic_algorithm", 20, [16, 16]) == {"max_fevals": 20, "x0": [16, 16]}
    assert strategy_options("bayes_opt", 20) == {"max_fevals": 20, "method": "multi-fast"}
    with pytest.raises(ValueError, match="unknown"):
        strategy_options("brute", 20)


@pytest.mark.parametrize("strategy", ["random_sample", "genetic_algorithm", "bayes_opt"])
def test_kernel_tuner_simulation_on_synthetic_table(table: Table, strategy: str) -> None:
    pytest.importorskip("kernel_tuner")
    from peer.kt import kt_trace

    trace = kt_trace(table, strategy, seed=3, budget=10)
    assert 1 <= len(trace) <= 10 and len(set(trace)) == len(trace)
    assert set(trace) <= set(table.by_key) and trace[0] == "16,16"  # every strategy starts at the start
    assert kt_trace(table, strategy, seed=3, budget=10) == trace  # every random source is seeded
    full = kt_trace(table, "random_sample", seed=0, budget=17)
    assert sorted(full) == sorted(table.by_key)  # the whole space, failures included
    assert metrics.evaluations_to_within(full, table) is not None


# -- kernelpro's MCTS on the table ---------------------------------------------------------------------


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
    parallel = compare([table], {"mcts": mcts_trace}, seeds=3, budget=12, at=[6, 12], progress=lambda _: None,
                       workers=2)
    assert parallel == rows  # scheduling does not change the report


def _row(table: Table, strategy: str, evaluations: list[int | None], best: float) -> object:
    """A row whose seeds reach the target at ``evaluations`` (None: never) via constructed traces."""
    others = [k for k, e in table.by_key.items() if e.ok and e.time_us > 1.06 * table.optimum.time_us]
    traces = [others[: n - 1] + ["32,4"] if n else others for n in evaluations]
    row = score(table, strategy, traces, at=[1])
    return type(row)(row.task, row.strategy, row.traces, row.evaluations, row.seconds, {50: (best,) * 3,
                                                                                        200: (best,) * 3})


def test_verdict_follows_the_acceptance_rule(table: Table) -> None:
    kt = _row(table, "kernel_tuner:genetic_algorithm", [12, 12, None], 0.9)
    slower_kt = _row(table, "kernel_tuner:random_sample", [13, 14, None], 0.8)
    half = _row(table, "kernelpro:mcts", [6, 6, 9], 0.95)
    (v,) = verdicts([kt, slower_kt, half])
    assert v.best_kt == "kernel_tuner:genetic_algorithm" and v.kt_median == 12 and v.ok
    (v,) = verdicts([kt, _row(table, "kernelpro:mcts", [7, 7, 7], 0.95)])
    assert not v.evaluations_ok  # 7 > 12 / 2
    (v,) = verdicts([_row(table, "kernel_tuner:bayes_opt", [3, 3, 3], 0.9),
                     _row(table, "kernelpro:mcts", [5, 5, 5], 0.89)])
    assert v.evaluations_ok and not v.best_found_ok  # within 2 of a small median, but worse best found


def test_no_recorded_seconds_is_n_a_and_a_median_seed_short_of_the_target_is_not_reached(table: Table) -> None:
    bare = Table(table.task, table.kernel, table.knobs, table.default,
                 tuple(type(e)(e.knobs, e.time_us, e.failure, None) for e in table.entries), table.environment,
                 synthetic=True)
    header = {"gpu": "synthetic", "command": "c", "date": "d", "seeds": 3, "budget": 2, "kernelpro_version": "x",
              "kernel_tuner_version": "y"}
    row = score(bare, "fixed", [["16,16", "32,4"], ["16,16"], ["16,16"]], at=[2])
    assert "| synthetic_gemm | fixed | 1 | 1/3 | not reached | n/a |" in render_markdown([row], [bare], header)
    never = score(bare, "fixed", [["16,16"], ["16,16"]], at=[1])
    assert "| synthetic_gemm | fixed | 1 | 0/2 | not reached | n/a |" in render_markdown([never], [bare], header)
    timed = score(table, "fixed", [["16,16"], ["16,16"]], at=[1])
    assert "| 0/2 | not reached | not reached |" in render_markdown([timed], [table], header)


# -- Kernel Tuner cache files read directly ------------------------------------------------------------


def _cache(tmp_path: Path, name: str = "c.json.gz", **changes: object) -> Path:
    import gzip

    data = {"device_name": "NVIDIA Test", "kernel_name": "k", "problem_size": [64],
            "tune_params_keys": ["bx", "flag", "const"], "tune_params": {"bx": [16, 32, 64], "flag": [0, 1],
                                                                        "const": [15]},
            "objective": "time",
            "cache": {f"{bx},{f},15": {"bx": bx, "flag": f, "const": 15,
                                       "time": "CompilationFailedConfig" if (bx, f) == (64, 1) else bx / 16 + f,
                                       "compile_time": 800.0, "verification_time": 0, "benchmark_time": 200.0}
                      for bx in (16, 32, 64) for f in (0, 1)}}
    data.update(changes)
    path = tmp_path / name
    raw = json.dumps(data).encode()
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    return path


def test_a_kernel_tuner_cache_is_read_as_a_table(tmp_path: Path) -> None:
    table = Table.load(_cache(tmp_path))
    assert table.gpu == "NVIDIA Test" and table.environment["source"].endswith("c.json.gz")
    assert table.knobs["const"] == (15,) and len(table.entries) == 6 and table.default is None
    failed = [e for e in table.entries if not e.ok]
    assert [e.failure for e in failed] == ["CompilationFailedConfig"] and failed[0].seconds == 1.0
    assert table.optimum.time_us == 1000.0 and dict(table.optimum.knobs) == {"bx": 16, "flag": 0, "const": 15}
    assert table.start(0) == table.start(0) and table.by_key[table.key(table.start(0))].ok
    assert len({table.key(table.start(s)) for s in range(20)}) > 1  # drawn per seed
    assert to_kt_cache(table)["cache"]["64,1,15"]["time"] == "CompilationFailedConfig"  # the kind survives
    assert Table.load(_cache(tmp_path, "plain.json")) .optimum == table.optimum


@pytest.mark.parametrize("damage", ["not json", "gzip", "no cache", "bad time"])
def test_a_malformed_cache_is_a_one_line_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    import gzip

    path = tmp_path / "bad.json.gz"
    if damage == "not json":
        path.write_bytes(gzip.compress(b"{not json"))
    elif damage == "gzip":
        path.write_bytes(b"\x1f\x8b truncated")
    elif damage == "no cache":
        path = _cache(tmp_path, "bad.json.gz", cache=None)
    else:
        path = _cache(tmp_path, "bad.json.gz", cache={"16,0,15": {"bx": 16, "flag": 0, "const": 15, "time": -1}})
    with pytest.raises(TableError) as info:
        load_kt_cache(path)
    assert "bad.json.gz" in str(info.value) and "\n" not in str(info.value)
    done = _script("compare", "--tables", str(path))
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "bad.json.gz" in done.stderr


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
                   "--budget", "8", "--out", str(tmp_path), "--workers", "2")
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
