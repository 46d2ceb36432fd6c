"""What happens when Nsight Compute fails, on CPU with a fake `ncu` (a real executable on PATH).

* the error names its cause and the ncu command that failed; a cause that no retry can fix (no permission,
  a profiler that cannot start here) is a :class:`ProfilerUnavailable`;
* an ncu that outlives its timeout is stopped with the program it profiles (its whole process group);
* ``optimize``'s diagnoser switches ncu off for the run only for a permanent cause, says so once and puts
  it in ``report.md``; any other error (MetricError from the roofline or device peaks included) fails that
  node's profile only;
* ``kernelpro analyze`` prints the real reason and the command instead of "could not profile".
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_programs import install_program
from test_profile import NO_KERNEL, PERMISSION, fake_ncu  # noqa: F401 - the fixture is used by name

from kernelpro.errors import ToolchainError
from kernelpro.ncu import MetricError
from kernelpro.profile import NcuOptions, ProfileError, ProfilerUnavailable, collect, subprocess_runner
from kernelpro.roofline import STAGE1_METRICS
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
SCALE = ROOT / "tests" / "kernels" / "wall" / "scale.cu"
# Quoted from ncu's output in a sandbox that refuses the profiler (see the device notes of this project).
LIBRARY_NOT_LOADED = "==ERROR== Failed to initialize the profiler: LibraryNotLoaded\n==WARNING== No kernels were " \
                     "profiled.\n"
needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")


# --- the error and its command -----------------------------------------------------------------------
@pytest.mark.parametrize(("message", "permanent"), [(PERMISSION, True), (LIBRARY_NOT_LOADED, True),
                                                    (NO_KERNEL, False)])
def test_errors_carry_the_command_and_say_if_permanent(fake_ncu, message: str,  # noqa: F811
                                                       permanent: bool) -> None:
    set_mode, _ = fake_ncu
    set_mode("error", message)
    with pytest.raises(ProfileError) as raised:
        collect(["./planted", "--size", "16M"], STAGE1_METRICS, NcuOptions(kernel="k_spill"))
    error = raised.value
    assert isinstance(error, ProfilerUnavailable) == permanent
    assert error.command[-3:] == ("./planted", "--size", "16M") and "--metrics" in error.command
    assert "command: " in error.with_command() and "--kernel-name k_spill" in error.with_command()
    if message is LIBRARY_NOT_LOADED:
        assert "LibraryNotLoaded" in str(error)


# --- a timeout stops ncu and the program it profiles ---------------------------------------------------
HANGING_NCU = '''#!{python}
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(os.environ["FAKE_NCU_PIDS"], "w").write(f"{{os.getpid()}} {{child.pid}}")
time.sleep(600)
'''


def _alive(pid: int) -> bool:
    """Running, or stopped but not yet exited (a zombie has exited: it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_timeout_stops_ncu_and_the_profiled_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ncu = install_program(tmp_path, monkeypatch, "ncu", HANGING_NCU)
    pids = tmp_path / "pids"
    monkeypatch.setenv("FAKE_NCU_PIDS", str(pids))
    started = time.monotonic()
    with pytest.raises(ProfileError, match="ncu and the profiled program were stopped"):
        subprocess_runner([str(ncu)], timeout=2.0)
    assert time.monotonic() - started < 30
    ncu_pid, child_pid = map(int, pids.read_text().split())
    deadline = time.monotonic() + 10
    while (_alive(ncu_pid) or _alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(ncu_pid), "ncu was left running"
    assert not _alive(child_pid), "the profiled program was orphaned"


# --- optimize's diagnoser: permanent causes switch ncu off, the rest fail one node ------------------------
@pytest.fixture
def diagnoser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A ProfilingDiagnoser on scale.cu whose profiler raises what ``raising`` holds (one error per call)."""
    from kernelpro import profile
    from kernelpro.compiler import Compiler
    from kernelpro.optimize import ProfilingDiagnoser

    calls: list[int] = []
    raising: list[Exception] = []

    def fake_profile(program, options):
        calls.append(1)
        raise raising.pop(0)

    monkeypatch.setattr(profile, "profile_two_stage", fake_profile)
    warnings: list[str] = []
    task = load_task(SCALE)
    diag = ProfilingDiagnoser(task, Compiler(cache_dir=tmp_path / "cache"), "sm_90", warn=warnings.append)
    return SimpleNamespace(diag=diag, calls=calls, raising=raising, warnings=warnings, task=task)


def _node(task, node_id: int):
    from kernelpro.optimize import baseline_variant

    return SimpleNamespace(id=node_id, variant=baseline_variant(task))


PERMANENT = [ToolchainError("`ncu` (Nsight Compute) not found on PATH or in the CUDA folders"),
             ProfilerUnavailable("ncu has no permission to read the GPU performance counters (ERR_NVGPUCTRPERM)")]
TRANSIENT = [ProfileError("ncu took more than 600 s; ncu and the profiled program were stopped"),
             ProfileError("ncu profiled no kernel: kernel 'scale' was not launched"),
             MetricError("metric 'dram__bytes.sum.peak_sustained' is missing from the capture (needed for the "
                         "roofline)", "dram__bytes.sum.peak_sustained"),
             OSError("[Errno 24] Too many open files")]


@needs_nvcc
@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_a_permanent_cause_switches_ncu_off_once(diagnoser, error: Exception) -> None:
    d = diagnoser
    d.raising.append(error)
    first = d.diag.diagnose(_node(d.task, 0))
    second = d.diag.diagnose(_node(d.task, 1))
    assert len(d.calls) == 1 and not d.diag.use_ncu  # never tried again
    assert len(d.warnings) == 1 and "disabled for the rest of the run" in d.warnings[0]
    assert "profile_error" not in first.details and "profile_error" not in second.details
    assert first.text.startswith("Roofline: not profiled.")  # static analysis still diagnoses
    assert d.diag.report_line().startswith("Nsight Compute disabled for the rest of the run:")
    assert str(error).split(" (")[0][:40] in d.diag.report_line()


@needs_nvcc
@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__ + ":" + str(e)[:12])
def test_other_errors_fail_that_node_only(diagnoser, error: Exception) -> None:
    d = diagnoser
    d.raising += [error, error]
    failed = d.diag.diagnose(_node(d.task, 3))
    assert d.diag.use_ncu and failed.details["profile_error"]
    assert "Nsight Compute failed on this kernel" in failed.text
    d.diag.diagnose(_node(d.task, 5))
    assert len(d.calls) == 2  # the next node was profiled again
    assert sorted(d.diag.node_failures) == [3, 5]
    assert "failed on node(s) 3, 5" in d.diag.report_line()
    assert d.diag.report_line().startswith("Nsight Compute, two stages")
    assert len(d.warnings) == 2 and "node 3" in d.warnings[0]


@needs_nvcc
def test_a_search_survives_a_metric_error(diagnoser, tmp_path: Path) -> None:
    """Before, a MetricError from the roofline escaped the diagnoser and ended the whole run."""
    from test_report import TASK

    from kernelpro.optimize import ProfilingDiagnoser, run_search
    from kernelpro.search import Budget
    from kernelpro.search.synthetic import SyntheticEvaluator, SyntheticProposer

    d = diagnoser
    d.raising += [MetricError("metric 'x' is missing from the capture (needed for the roofline)", "x")] * 50
    (tmp_path / "scale.cu").write_text(TASK)  # the knobs the synthetic evaluator models
    task = load_task(tmp_path / "scale.cu")
    diag = ProfilingDiagnoser(task, d.diag.compiler, "sm_90", warn=d.warnings.append)
    result = run_search(tmp_path / "run", task, evaluator=SyntheticEvaluator(), proposer=SyntheticProposer(),
                        diagnoser=diag, budget=Budget(max_evaluations=6), seed=1, resume=False)
    assert result.evaluations == 6 and diag.node_failures and diag.use_ncu and d.calls


def test_report_line_when_off() -> None:
    from kernelpro.optimize import ProfilingDiagnoser

    diag = ProfilingDiagnoser(load_task(SCALE), None, "sm_90", use_ncu=False)
    assert diag.report_line() == "off: static analysis only"


# --- kernelpro analyze --------------------------------------------------------------------------------
class _Evaluator:
    """Stands in for the runner's Evaluator: a passing wall, the real compiler."""

    def __init__(self, compiler) -> None:
        from kernelpro.runner.records import WallVerdict

        self.compiler, self.arch = compiler, "sm_90"
        self.verdict = WallVerdict(task="scale", kernel="scale", seed=1)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def check(self, *args, **kwargs):
        return self.verdict


@needs_nvcc
@pytest.mark.parametrize(("mode", "message", "expected"), [
    ("error", PERMISSION, ["ERR_NVGPUCTRPERM", "NVreg_RestrictProfilingToAdminUsers=0"]),
    ("ok", NO_KERNEL, ["profiled no kernel: kernel 'scale' was not launched"]),
    ("csv", "", ["but not 'scale'"]),  # the capture holds other kernels only: a name mismatch
])
def test_analyze_prints_ncus_reason_and_command(fake_ncu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                capsys: pytest.CaptureFixture, mode: str, message: str,
                                                expected: list[str]) -> None:
    from kernelpro import cli
    from kernelpro.compiler import Compiler
    from kernelpro.runner import device, evaluate

    set_mode, _ = fake_ncu
    set_mode(mode, message)
    compiler = Compiler(cache_dir=tmp_path / "cache")
    monkeypatch.setattr(device, "require_gpu", lambda: None)
    monkeypatch.setattr(evaluate, "Evaluator", lambda arch=None: _Evaluator(compiler))
    monkeypatch.setattr(sys, "argv", ["kernelpro", "analyze", str(SCALE)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("error: Nsight Compute could not profile scale: ")
    for text in expected:
        assert text in line
    assert "command: " in line and os.sep + "ncu --csv --page raw" in line and "kernelpro.runner.worker --job" in line


def test_the_live_display_shows_a_note_once() -> None:
    import io

    from rich.console import Console

    from kernelpro.live import LiveStatus

    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    with LiveStatus(console, "scale") as status:
        for _ in range(3):
            status.note("Nsight Compute disabled for the rest of the run: no permission")
    assert status.notes == ["Nsight Compute disabled for the rest of the run: no permission"]
    assert console.file.getvalue().count("note: Nsight Compute disabled") >= 1
