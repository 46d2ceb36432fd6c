"""The launch-once program (kernelpro/runner/profiled_program.py) and benchmarks/timing_vs_ncu.py, on CPU.

The job file the program writes is run through the real worker entry point with a numpy stand-in for
the CuPy backend. ncu reports are built from the REAL H100 capture in tests/fixtures/ncu-h100/planted_raw.csv
(its header, units and data rows, unchanged); a fake `ncu` on PATH replays it. kernelpro times given to the
table helpers are SYNTHETIC, labelled so: they test the arithmetic and formatting, not a measurement.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fake_programs import install_program

from kernelpro.runner import jobs, worker
from kernelpro.runner.profiled_program import launch_once_program, make_launch_once_job
from kernelpro.runner.records import DeviceInfo
from kernelpro.task_loader import load_task, parse_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "ncu-h100" / "planted_raw.csv"
SCALE = ROOT / "tests" / "kernels" / "wall" / "scale.cu"
# gpu__time_duration.sum of each kernel in the capture, in ns (its "ns" column, thousands separators removed).
CAPTURED_NS = {"k_copy_ok": 57728, "k_uncoalesced": 407264, "k_bank_conflict": 2699168, "k_spill": 1923232,
               "k_tiny_grid": 6450976}


def _load_benchmark() -> Any:
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))  # as when run as a script: its sibling gpu_check
    spec = importlib.util.spec_from_file_location("timing_vs_ncu", ROOT / "benchmarks" / "timing_vs_ncu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def capture(*kernels: str) -> str:
    """The capture's header and units rows, then the data rows of ``kernels`` (all when none), as ncu printed."""
    lines = FIXTURE.read_text().splitlines(keepends=True)
    header, units, rows = lines[0], lines[1], lines[2:]
    if kernels:
        rows = [row for row in rows if row.split(",")[4].strip('"') in kernels]
        assert len(rows) == len(kernels)
    return header + units + "".join(rows)


# --- the launch-once program ---------------------------------------------------------------------
class FakeCupyBackend:
    """numpy in place of CuPy: records what the launch-once job loads and launches."""

    made: list[FakeCupyBackend] = []
    xp = np

    def __init__(self, device: int = 0, use_pool: bool = True) -> None:
        self.device, self.use_pool = device, use_pool
        self.loaded: tuple[str, str] | None = None
        self.launches: list[Any] = []
        self.closed = False
        FakeCupyBackend.made.append(self)

    def load_kernel(self, cubin: str, symbol: str) -> str:
        self.loaded = (cubin, symbol)
        return symbol

    def launch(self, kernel: str, geometry: Any, args: Any) -> None:
        self.launches.append((kernel, geometry, args))

    def synchronize(self) -> None:
        pass

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return np.array(array)

    def device_info(self) -> DeviceInfo:
        return DeviceInfo(name="H100", compute_capability="9.0", sm_count=132, sm_clock_khz=None,
                          memory_clock_khz=None, memory_bus_bits=None, l2_bytes=50 << 20,
                          total_memory_bytes=80 << 30)

    def close(self) -> None:
        self.closed = True


def test_program_writes_a_launch_once_job_and_removes_it() -> None:
    task = load_task(SCALE)
    knobs = {**task.default_knobs(), "BLOCK": 128}
    with launch_once_program(task, "/cache/k.cubin", "scale", knobs, 5) as argv:
        assert argv[:4] == [sys.executable, "-m", "kernelpro.runner.worker", "--job"]
        path = Path(argv[4])
        assert path.is_file() and path.suffix == ".json"
        job = json.loads(path.read_text())
    assert not path.exists()
    assert worker.handler_for(job["kind"]) is jobs.launch_once_job
    assert job == make_launch_once_job(task, "/cache/k.cubin", "scale", knobs, 5)
    params = job["params"]
    assert set(params) == {"task_source", "task_path", "knobs", "candidate_cubin", "candidate_symbol", "seed",
                           "size_index", "launches"}
    assert params["knobs"] == {"BLOCK": 128} and params["launches"] == 5 and params["size_index"] == 0
    assert params["candidate_cubin"] == "/cache/k.cubin" and params["candidate_symbol"] == "scale"
    assert parse_task(params["task_source"], params["task_path"]).name == task.name


def test_program_removes_its_file_when_the_block_raises() -> None:
    task = load_task(SCALE)
    with pytest.raises(RuntimeError, match="ncu died"), launch_once_program(task, "k.cubin", "scale", {}, 1) as argv:
        path = Path(argv[-1])
        assert path.is_file()
        raise RuntimeError("ncu died")
    assert not path.exists()


def test_program_rejects_zero_launches() -> None:
    with pytest.raises(ValueError, match="at least 1"), launch_once_program(load_task(SCALE), "k", "scale", {}, 0):
        pass


def test_worker_runs_the_job_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's own ``--job`` entry point accepts the file and launches the kernel as asked."""
    FakeCupyBackend.made.clear()
    monkeypatch.setattr(jobs, "CupyBackend", FakeCupyBackend)
    task = load_task(SCALE)
    with launch_once_program(task, "/cache/k.cubin", "scale", {"BLOCK": 128}, 4) as argv:
        assert worker.main(argv[3:]) == 0
    (backend,) = FakeCupyBackend.made
    assert backend.loaded == ("/cache/k.cubin", "scale") and backend.closed and not backend.use_pool
    assert len(backend.launches) == 4
    n = task.params["N"]  # the benchmark size
    geometry = backend.launches[0][1]
    assert geometry.grid == (math.ceil(n / 128), 1, 1) and geometry.block == (128, 1, 1)
    x, y, a, count = backend.launches[0][2]
    assert x.shape == (n,) and y.shape == (n,) and count == n


# --- the benchmark's helpers ---------------------------------------------------------------------
def test_durations_of_every_row_and_their_median() -> None:
    assert bench.durations_ns(capture()) == list(CAPTURED_NS.values())
    assert bench.median_duration_ns(capture()) == CAPTURED_NS["k_spill"]  # the middle of five
    two = capture("k_copy_ok", "k_uncoalesced")
    assert bench.median_duration_ns(two) == (CAPTURED_NS["k_copy_ok"] + CAPTURED_NS["k_uncoalesced"]) / 2


def test_durations_keep_only_the_named_kernel() -> None:
    assert bench.durations_ns(capture(), "k_tiny_grid") == [CAPTURED_NS["k_tiny_grid"]]
    assert bench.median_duration_ns(capture("k_copy_ok", "k_spill"), "k_copy_ok") == CAPTURED_NS["k_copy_ok"]
    with pytest.raises(ValueError, match="no launch of k_spill"):
        bench.durations_ns(capture("k_copy_ok"), "k_spill")


def test_durations_convert_ncu_time_units() -> None:
    """ncu without --print-units base writes usecond/msecond: the same capture, its unit cell renamed."""
    text = capture("k_copy_ok")
    header = next(csv.reader([text.splitlines()[0]]))
    column = header.index(bench.DURATION)
    lines = text.splitlines(keepends=True)
    units = lines[1].split(",")
    assert units[column] == '"ns"'
    for unit, scale in (("usecond", 1e3), ("msecond", 1e6)):
        units[column] = f'"{unit}"'
        assert bench.durations_ns(lines[0] + ",".join(units) + "".join(lines[2:])) == [CAPTURED_NS["k_copy_ok"] * scale]
    units[column] = '"byte"'
    with pytest.raises(ValueError, match="not a unit of time"):
        bench.durations_ns(lines[0] + ",".join(units) + "".join(lines[2:]))


def test_ratio_and_verdict() -> None:
    assert bench.ratio(110e-6, 100e-6) == pytest.approx(1.1)
    assert bench.within(1.0, 0.10) and bench.within(1.0999, 0.10) and bench.within(0.9001, 0.10)
    assert not bench.within(1.1001, 0.10) and not bench.within(0.8999, 0.10)
    assert bench.within(1.04, 0.05) and not bench.within(1.06, 0.05)
    with pytest.raises(ValueError):
        bench.ratio(1e-3, 0.0)


def test_rows() -> None:
    ncu_s = tuple(CAPTURED_NS[k] * 1e-9 for k in ("k_uncoalesced", "k_uncoalesced", "k_copy_ok"))
    close = bench.Comparison("vector_add", 420e-6, 415e-6, 430e-6, ncu_s)  # SYNTHETIC kernelpro times
    assert close.ncu_median_s == pytest.approx(407.264e-6)
    assert close.ratio == pytest.approx(420 / 407.264)
    row = bench.format_row(close, 0.10)
    assert row.startswith("vector_add") and row.endswith("PASS")
    for text in ("420.00 (415.00-430.00)", "407.26 (3)", f"{420 / 407.264:.3f}"):
        assert text in row
    far = bench.Comparison("sgemm", 500e-6, 490e-6, 510e-6, ncu_s)  # SYNTHETIC
    assert bench.format_row(far, 0.10).endswith(f"FAIL (off by {500 / 407.264 - 1:.1%} > 10%)")
    assert bench.format_row(far, 0.25).endswith("PASS")
    assert bench.format_error("softmax", "line one\nline two") == f"{'softmax':<16} ERROR: line one | line two"
    assert bench.percent(0.1) == "10%" and bench.percent(0.125) == "12.5%"


def test_rows_compare_the_dirty_flush_with_the_clean_one() -> None:
    ncu_s = (CAPTURED_NS["k_copy_ok"] * 1e-9,) * 3
    row = bench.Comparison("softmax", 60e-6, 59e-6, 61e-6, ncu_s, dirty_median_s=75e-6)  # SYNTHETIC times
    text = bench.format_row(row, 0.10)
    assert text.endswith("75.00 (+15.00 us, +25.0%)") and "PASS" in text  # the verdict is the clean flush's
    assert bench.header(True).endswith("verdict  dirty-flush median us (vs clean)")
    assert bench.header(False) == bench.HEADER
    only_dirty = bench.Comparison("softmax", 75e-6, 74e-6, 76e-6, ncu_s, flush="dirty")
    assert "[dirty] 75.00 (74.00-76.00)" in bench.format_row(only_dirty, 0.10)
    assert bench.FLUSHES == {"clean": ("clean",), "dirty": ("dirty",), "both": ("clean", "dirty")}


def test_default_tasks_exist() -> None:
    for name in bench.DEFAULT_TASKS:
        path = bench.resolve_task(name)
        assert load_task(path).name == name
    assert bench.resolve_task(str(SCALE)) == SCALE


# --- ncu, faked ------------------------------------------------------------------------------------
FAKE_NCU = '''#!{python}
import json, os, sys
argv = sys.argv[1:]
job = json.load(open(argv[-1])) if len(argv) > 1 and argv[-2] == "--job" else None
with open(os.environ["FAKE_NCU_LOG"], "a") as log:
    log.write(json.dumps({{"argv": argv, "job": job}}) + "\\n")
sys.stderr.write("==PROF== Connected to process 4242\\n")
sys.stdout.write(open(os.environ["FAKE_NCU_CSV"]).read())
'''


@pytest.fixture
def fake_ncu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `ncu` first on PATH that prints the whole capture; returns the log of its command lines (and of
    the worker's job file, read while ncu runs)."""
    install_program(tmp_path, monkeypatch, "ncu", FAKE_NCU)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_NCU_LOG", str(log))
    monkeypatch.setenv("FAKE_NCU_CSV", str(FIXTURE))
    return log


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_ncu_durations_asks_for_boost_clocks_and_flushed_caches(fake_ncu: Path) -> None:
    assert bench.ncu_durations_s(["./planted"], "k_spill", 3, 5) == (CAPTURED_NS["k_spill"] * 1e-9,)
    (call,) = _calls(fake_ncu)
    argv = call["argv"]
    options = dict(zip(argv[:-1], argv[1:], strict=True))
    assert options["--metrics"] == "gpu__time_duration.sum"
    assert options["--clock-control"] == "none" and options["--cache-control"] == "all"
    assert options["--launch-skip"] == "3" and options["--launch-count"] == "5"
    assert options["--kernel-name"] == "k_spill" and argv[-1] == "./planted"


def test_ncu_durations_reports_a_kernel_ncu_did_not_profile(fake_ncu: Path) -> None:
    from kernelpro.profile import ProfileError

    with pytest.raises(ProfileError, match="not 'scale'"):
        bench.ncu_durations_s(["./planted"], "scale", 3, 5)


@pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")
def test_profiling_diagnoser_profiles_the_program(fake_ncu: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ProfilingDiagnoser._profile hands ncu the launch-once worker (warm-up skipped) and removes the job file.

    The fake prints the capture with k_copy_ok's row named ``scale`` (the kernel ncu is asked for)."""
    from kernelpro.compiler import Compiler
    from kernelpro.optimize import PROFILE_WARMUP_LAUNCHES, ProfilingDiagnoser
    from kernelpro.search import Variant

    renamed = tmp_path / "renamed.csv"
    renamed.write_text(capture("k_copy_ok").replace('"k_copy_ok"', '"scale"'))
    monkeypatch.setenv("FAKE_NCU_CSV", str(renamed))
    task = load_task(SCALE)
    warnings: list[str] = []
    diagnoser = ProfilingDiagnoser(task, Compiler(cache_dir=tmp_path / "cache"), "sm_90", warn=warnings.append)
    variant = Variant(source=task.source)
    static = SimpleNamespace(entry=SimpleNamespace(symbol="scale"), compiled=True)
    profile = diagnoser._profile(variant, task.default_knobs(), static)
    assert not warnings and diagnoser.use_ncu
    assert profile is not None and profile.kernel == "scale"
    assert profile.number("gpu__time_duration.sum") == CAPTURED_NS["k_copy_ok"]
    calls = _calls(fake_ncu)
    assert len(calls) == 2  # stage 1, then stage 2
    for call in calls:
        argv = call["argv"]
        assert argv[argv.index("--launch-skip") + 1] == str(PROFILE_WARMUP_LAUNCHES)
        assert argv[argv.index("--clock-control") + 1] == "base"
        assert argv[-5:-1] == [sys.executable, "-m", "kernelpro.runner.worker", "--job"]
        params = call["job"]["params"]
        assert call["job"]["kind"] == "launch-once" and params["launches"] == PROFILE_WARMUP_LAUNCHES + 1
        assert params["size_index"] == 0 and params["seed"] == 0 and params["candidate_symbol"] == "scale"
        assert params["knobs"] == task.default_knobs() and Path(params["candidate_cubin"]).is_file()
        assert not Path(argv[-1]).exists()


# --- the script ------------------------------------------------------------------------------------
def test_script_exits_2_without_ncu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    if find_tool("ncu", required=False) is not None:
        pytest.skip("an ncu outside PATH is installed here")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "timing_vs_ncu.py"), "vector_add"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "`ncu` not found" in lines[0]
