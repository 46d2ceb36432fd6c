"""The suite table and its writers, on CPU with stand-in outcomes (not measurements); comparator timing on a GPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kernelpro.runner.records import DeviceInfo
from kernelpro.suite import (
    SuiteEnvironment,
    TaskOutcome,
    geometric_mean,
    roofline_bound_us,
    run_suite,
    slug,
    suite_paths,
    write_suite,
)
from kernelpro.task_loader import load_task

ROOT = Path(__file__).resolve().parents[1]
# An H100 SXM as the runner reports it: 1980 MHz boost, HBM3 at 2619 MHz on a 5120-bit bus (3.35 TB/s).
H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 132, 1_980_000, 2_619_000, 5120, 50 * 2**20, 80 * 2**30)
ENV = SuiteEnvironment(gpu=H100.name, compute_capability="9.0", driver="550.54.15", sm_clock_mhz=1980,
                       memory_clock_mhz=2619, kernelpro_version="0.1.0", command="kernelpro suite tasks --budget 50",
                       started="2025-01-02T03:04:05+00:00")


@pytest.fixture(scope="module")
def tasks():
    return [load_task(ROOT / "tasks" / f"{name}.cu") for name in ("vector_add", "sgemm", "hgemm", "histogram")]


def stand_in(task, baseline, best, production=None, bound=None, evals=10, minutes=2.0, **kw) -> TaskOutcome:
    """A stand-in outcome: made-up numbers for the arithmetic, labelled as not measured."""
    return TaskOutcome(task.name, baseline, best, production, bound, evals, minutes, stand_in=True, **kw)


def test_rows_and_summary_arithmetic(tasks) -> None:
    vector_add, sgemm, hgemm, histogram = tasks
    outcomes = {
        "vector_add": stand_in(vector_add, 300.0, 250.0, production=240.0, bound=220.0),  # 0.96x prod, 88%
        "sgemm": stand_in(sgemm, 40_000.0, 8_000.0, production=10_000.0, bound=2_000.0),  # 1.25x prod, 25%
        "hgemm": stand_in(hgemm, 80_000.0, 1_000.0, production=1_000.0, bound=900.0),  # 1.00x prod, 90%
        "histogram": stand_in(histogram, 500.0, 100.0),  # no production, bound from the device
    }
    table = run_suite(tasks, lambda t: outcomes[t.name], H100, environment=ENV)
    rows = {r.outcome.task: r for r in table.rows}
    assert rows["vector_add"].speedup == pytest.approx(1.2)
    assert rows["vector_add"].vs_production == pytest.approx(0.96)
    assert rows["vector_add"].roofline_pct == pytest.approx(88.0)
    assert rows["sgemm"].speedup == pytest.approx(5.0) and rows["sgemm"].vs_production == pytest.approx(1.25)
    assert rows["hgemm"].vs_production == pytest.approx(1.0)
    assert rows["histogram"].vs_production is None
    # The missing bound comes from the cost: 64 MiB + 2 KiB at 3.35 TB/s ~ 20 us, so ~20% at 100 us.
    assert rows["histogram"].outcome.roofline_bound_us == pytest.approx(roofline_bound_us(histogram, H100))
    assert 15 < rows["histogram"].roofline_pct < 25
    summary = table.summary()
    assert summary["geomean_speedup"] == pytest.approx((1.2 * 5.0 * 80.0 * 5.0) ** 0.25)
    assert summary["geomean_vs_production"] == pytest.approx((0.96 * 1.25 * 1.0) ** (1 / 3))
    assert summary["at_roofline"] == 2  # vector_add (88%) and hgemm (90%)
    assert summary["at_or_above_production"] == 2 and summary["with_production"] == 3
    assert summary["evaluations"] == 40 and summary["minutes"] == pytest.approx(8.0) and summary["failed"] == 0
    assert table.stand_in


def test_a_failing_task_becomes_a_row_and_the_suite_goes_on(tasks) -> None:
    def run_one(task):
        if task.name == "sgemm":
            raise RuntimeError("worker lost the CUDA context")
        return stand_in(task, 100.0, 50.0)

    seen = []
    table = run_suite(tasks, run_one, H100, environment=ENV, on_outcome=seen.append)
    assert [o.task for o in seen] == [t.name for t in tasks]
    failed = next(r for r in table.rows if r.outcome.task == "sgemm")
    assert not failed.ok and failed.speedup is None and "CUDA context" in failed.outcome.error
    assert table.failed == 1 and table.summary()["geomean_speedup"] == pytest.approx(2.0)


def test_roofline_bound_uses_tensor_cores_for_half_matmul(tasks) -> None:
    _, sgemm, hgemm, _ = tasks
    # Same FLOPs; hgemm's bound is the tensor-core rate, far below sgemm's FP32 bound.
    assert roofline_bound_us(hgemm, H100) < roofline_bound_us(sgemm, H100) / 5
    # vector_add is bandwidth-bound: 768 MiB at ~3.35 TB/s ~ 240 us.
    assert 200 < roofline_bound_us(tasks[0], H100) < 280


def test_geometric_mean_ignores_missing_and_non_positive() -> None:
    assert geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
    assert geometric_mean([2.0, 0.0, math.nan, -1.0]) == pytest.approx(2.0)
    assert geometric_mean([]) is None


def test_writers(tasks, tmp_path: Path) -> None:
    outcomes = [stand_in(t, 100.0, 50.0, production=60.0, bound=45.0) for t in tasks]
    table = run_suite(tasks, lambda t: outcomes[tasks.index(t)], H100, environment=ENV)
    json_path, md_path = write_suite(table, tmp_path / "results")
    assert json_path.name == "suite-nvidia-h100-80gb-hbm3-2025-01-02.json"
    assert md_path == json_path.with_suffix(".md")
    data = json.loads(json_path.read_text())
    assert data["stand_in"] is True
    assert data["environment"]["driver"] == "550.54.15"
    assert data["environment"]["command"] == "kernelpro suite tasks --budget 50"
    assert data["summary"]["at_roofline"] == 4 and data["summary"]["at_or_above_production"] == 4
    assert [r["task"] for r in data["rows"]] == [t.name for t in tasks]
    assert data["rows"][0]["speedup"] == pytest.approx(2.0) and data["rows"][0]["vs_production"] == pytest.approx(1.2)
    md = md_path.read_text()
    assert "Stand-in outcomes, not measurements" in md
    assert "| vector_add (stand-in) | 100.00 | 50.00 | 60.00 | 2.00x | 1.20x | 90.0% | 10 | 2.0 |" in md
    assert "**geometric mean**" in md and "driver: 550.54.15" in md
    assert "`kernelpro suite tasks --budget 50`" in md
    assert "at or above production: 4 of 4" in md


def test_environment_from_device_and_paths() -> None:
    env = SuiteEnvironment.from_device(H100, driver="550", command="kernelpro suite")
    assert env.gpu == H100.name and env.sm_clock_mhz == 1980 and env.memory_clock_mhz == 2619
    assert env.kernelpro_version and env.started
    assert slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    json_path, _ = suite_paths(Path("results"), ENV)
    assert json_path == Path("results/suite-nvidia-h100-80gb-hbm3-2025-01-02.json")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["vector_add", "sgemm", "softmax"])
def test_time_comparator_on_gpu(name: str) -> None:
    from kernelpro.suite import time_comparator

    task = load_task(ROOT / "tasks" / f"{name}.cu")
    seconds = time_comparator(task, sizes={k: min(v, 1024) for k, v in task.params.items()}, repeats=5)
    assert 0 < seconds < 1.0
