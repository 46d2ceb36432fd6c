"""scripts/gpu_acceptance.sh and the smoke stage's steps (scripts/smoke.py), on CPU.

The shell script must give up at once where there is no GPU. The steps' logic runs here against stand-ins:
the wall sequence against a fake evaluator whose worker restarts are counted like the supervisor's,
the probes' verdicts on ncu's and compute-sanitizer's quoted messages, the step protocol (result file,
exit code, SKIP with the reason) and the summary file. Verdicts and times given to the fakes are
SYNTHETIC: they test the bookkeeping, not a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_profile import PERMISSION

from kernelpro.profile import ProfileError, ProfilerUnavailable
from kernelpro.runner.records import CheckFailure, WallVerdict
from kernelpro.task_loader import load_task

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_acceptance.sh"


def _load_smoke():
    spec = importlib.util.spec_from_file_location("smoke", ROOT / "scripts" / "smoke.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


smoke = _load_smoke()


def _gpu_here() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True, timeout=30).returncode == 0


# --- the shell script ------------------------------------------------------------------------------------
@pytest.mark.skipif(_gpu_here(), reason="a GPU is visible here: the script would run the stage")
@pytest.mark.parametrize("stage", ["smoke", "tests-runner"])
def test_without_a_gpu_the_script_exits_2_at_once(tmp_path: Path, stage: str) -> None:
    started = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT), stage, str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    seconds = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert seconds < 10
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert lines == [f"gpu_acceptance {stage}: no NVIDIA GPU here (nvidia-smi is missing or lists none): nothing run"]
    assert not (tmp_path / "out").exists()  # nothing installed, nothing written


def test_unknown_stage_is_refused() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "tests"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "unknown stage tests" in done.stderr


def test_every_stage_in_the_header_has_a_measured_column() -> None:
    text = SCRIPT.read_text()
    stages = text.split('stages="', 1)[1].split('"', 1)[0].split()
    header = [line for line in text.splitlines() if line.startswith("#   ")]
    for stage in stages:
        row = next(line for line in header if line.split()[1] == stage)
        assert row.rstrip().endswith("not yet measured"), row
    assert stages[0] == "smoke" and "Run `smoke` FIRST" in text
    for step in smoke.STEPS:  # the shell runs every step the module has, with a timeout
        assert f" {step}:" in text or f"for spec in {step}:" in text


# --- steps: protocol, skips, summary -----------------------------------------------------------------------
def test_a_step_writes_its_result_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(smoke.STEPS, "env", lambda out: smoke.StepResult(smoke.PASS, "H100\nok"))
    assert smoke.main(["env", str(tmp_path)]) == 0
    assert (tmp_path / "steps" / "env.result").read_text() == "PASS H100 ok\n"

    def broken(out: Path):
        raise RuntimeError("cupy exploded")

    monkeypatch.setitem(smoke.STEPS, "backend", broken)
    assert smoke.main(["backend", str(tmp_path)]) == 1
    assert (tmp_path / "steps" / "backend.result").read_text() == "FAIL RuntimeError: cupy exploded\n"


def test_ncu_steps_skip_with_the_env_steps_reason(tmp_path: Path) -> None:
    assert smoke.main(["analyze", str(tmp_path)]) == 3
    assert "env step left no env.json" in (tmp_path / "steps" / "analyze.result").read_text()
    (tmp_path / "env.json").write_text(json.dumps({"ncu_counters": False, "ncu_reason": "permanent: ERR_NVGPUCTRPERM"}))
    for step in ("analyze", "timing-vs-ncu"):
        assert smoke.main([step, str(tmp_path)]) == 3
        assert (tmp_path / "steps" / f"{step}.result").read_text().startswith(
            "SKIP ncu cannot read counters here: permanent: ERR_NVGPUCTRPERM")


def test_regress_skips_without_a_run(tmp_path: Path) -> None:
    assert smoke.main(["regress", str(tmp_path)]) == 3


def test_summary_has_the_table_environment_and_commit(tmp_path: Path) -> None:
    (tmp_path / "steps.tsv").write_text("PASS env 21s NVIDIA H100 80GB HBM3; ncu counters: yes\n"
                                        "FAIL wall 40s hang: got pass | expected timeout\n"
                                        "SKIP analyze 0s ncu cannot read counters here\n")
    (tmp_path / "env.json").write_text(json.dumps({"gpu": "NVIDIA H100 80GB HBM3, 580.159.04", "cupy": "14.2.0"}))
    text = smoke.write_summary(tmp_path, "abc123", 300)
    assert text == (tmp_path / "smoke-summary.md").read_text()
    assert text.startswith("# kernelpro GPU smoke: 1/3 steps passed")
    assert "commit `abc123`, 300 s in all" in text
    assert "| env | PASS | 21 | NVIDIA H100 80GB HBM3; ncu counters: yes |" in text
    assert "| wall | FAIL | 40 | hang: got pass / expected timeout |" in text  # a '|' cannot break the table
    assert "- gpu: NVIDIA H100 80GB HBM3, 580.159.04" in text and "- cupy: 14.2.0" in text


# --- the env step's probes --------------------------------------------------------------------------------
def test_ncu_probe_verdicts() -> None:
    assert smoke.ncu_verdict(None) == (True, "read gpu__time_duration.sum")
    denied = ProfilerUnavailable("ncu has no permission to read the GPU performance counters (ERR_NVGPUCTRPERM)")
    denied.command = ("ncu", "--metrics", "gpu__time_duration.sum", "python3")
    ok, reason = smoke.ncu_verdict(denied)
    assert not ok and reason.startswith("permanent: ncu has no permission") and "command: ncu --metrics" in reason
    ok, reason = smoke.ncu_verdict(ProfileError("ncu took more than 120 s"))
    assert not ok and not reason.startswith("permanent")
    assert "ERR_NVGPUCTRPERM" in PERMISSION


def test_sanitizer_probe_verdicts() -> None:
    clean = "========= COMPUTE-SANITIZER\n========= ERROR SUMMARY: 0 errors\n"
    assert smoke.sanitizer_verdict(clean, 0) == (True, "memcheck: 0 errors on a correct kernel")
    # Quoted from the device notes: a sandbox where compute-sanitizer refuses the GPU.
    refused = "========= COMPUTE-SANITIZER\n========= Error: Device not supported\n"
    ok, reason = smoke.sanitizer_verdict(refused, 1)
    assert not ok and reason.startswith("device not supported")
    ok, reason = smoke.sanitizer_verdict("Traceback ...\nRuntimeError: cudaErrorUnknown\n", 1)
    assert not ok and "no clean verdict" in reason


# --- the wall sequence: a hang or fault restarts the worker and the next candidate is not blamed -----------
class FakeEvaluator:
    """Answers like Evaluator.check from a script of (reason, restarts) and keeps worker pids like the supervisor."""

    def __init__(self, answers: dict[str, tuple[str, int]]) -> None:
        self.answers = answers
        self.supervisor = SimpleNamespace(restarts=0, worker_pid=100)

    def check(self, task, source, *, options, source_name):
        reason, restarts = self.answers[source_name if source_name != "scale.cu" else f"correct{self.calls()}"]
        self.supervisor.restarts += restarts
        self.supervisor.worker_pid += restarts
        failures = () if reason == "pass" else (CheckFailure(reason, f"synthetic {reason}"),)
        return WallVerdict(task="scale", kernel="scale", seed=1, failures=failures)

    def calls(self) -> int:
        self._calls = getattr(self, "_calls", 0) + 1
        return self._calls


ANSWERS = {"correct1": ("pass", 0), "scale_noop.cu": ("output", 0), "scale_out_of_bounds.cu": ("canary", 0),
           "scale_modifies_input.cu": ("input-modified", 0), "scale_infinite_loop.cu": ("timeout", 1),
           "correct2": ("pass", 0), "scale_illegal_address.cu": ("cuda-error", 1), "correct3": ("pass", 0)}


def _sequence(answers):
    task = load_task(smoke.SCALE)
    return smoke.run_wall_sequence(FakeEvaluator(answers), task, smoke.WALL_SEQUENCE, "quick", "timed")


def test_wall_sequence_as_expected() -> None:
    rows, problems = _sequence(ANSWERS)
    assert problems == [] and len(rows) == 8
    assert rows[4].startswith("hang") and "restarts +1" in rows[4] and "worker 100 -> 101" in rows[4]
    planted = [p for _, p in smoke.WALL_SEQUENCE if p]
    assert len(planted) >= 4 and {"scale_infinite_loop.cu", "scale_illegal_address.cu"} <= set(planted)


def test_wall_sequence_catches_a_blamed_successor_and_a_missing_restart() -> None:
    blamed = {**ANSWERS, "correct2": ("cuda-error", 1)}  # the fault of the hang's context leaked into the next one
    _, problems = _sequence(blamed)
    assert any("after-hang: the correct candidate after the hang was blamed: cuda-error" in p for p in problems)
    no_restart = {**ANSWERS, "scale_illegal_address.cu": ("cuda-error", 0)}
    _, problems = _sequence(no_restart)
    assert problems == ["illegal-address: cuda-error but the worker was restarted 0 times, not once"]
    missed = {**ANSWERS, "scale_infinite_loop.cu": ("pass", 0)}
    _, problems = _sequence(missed)
    assert problems[0].startswith("hang: got pass, expected timeout")


def test_wall_sequence_stops_when_the_correct_candidate_fails() -> None:
    rows, problems = _sequence({**ANSWERS, "correct1": ("worker-error", 0)})
    assert len(rows) == 1 and problems == ["correct: got worker-error, expected pass (worker-error: synthetic "
                                           "worker-error)"]


def test_planted_files_name_their_expected_checks() -> None:
    for _, planted in smoke.WALL_SEQUENCE:
        if planted:
            assert smoke.planted_expectation(smoke.WALL / "planted" / planted), planted


def test_bench_row_puts_the_first_sample_next_to_the_median() -> None:
    data = {"timing": {"median_s": 2.0e-6, "first_sample_s": 3.1e-6, "method": "graph", "launches_per_sample": 500,
                       "l2": "rotated"}}  # SYNTHETIC
    row = smoke.bench_row("scale (us) cold", data)
    assert "median       2.00 us" in row and "first       3.10 us" in row and "1.55x" in row
    assert "graph x500  rotated" in row
    failed = smoke.bench_row("softmax cold", {"timing": None, "failures": [{"message": "output: 3 wrong"}]})
    assert failed.endswith("FAILED: output: 3 wrong")


def test_optimize_step_reads_the_final_check_and_profiling_lines(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_optimize(*args: str, timeout: float) -> subprocess.CompletedProcess:
        run = Path(args[args.index("--out") + 1])
        run.mkdir(parents=True)
        (run / "best.cu").write_text("// winner")
        (run / "report.md").write_text("# kernelpro run: scale\n- GPU: NVIDIA H100\n- profiling: Nsight Compute, "
                                       f"two stages\n- final check: {final}\n")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(smoke, "kernelpro", fake_optimize)
    (tmp_path / "env.json").write_text(json.dumps({"sanitizer": True}))
    final = "node 2: passed the wall again and compute-sanitizer"
    result = smoke.step_optimize(tmp_path)
    assert result.status == smoke.PASS
    assert result.detail == f"final check: {final}; profiling: Nsight Compute, two stages"
    shutil.rmtree(tmp_path / "runs")
    final = "node 2: passed the wall again; compute-sanitizer gave no verdict: timed out"
    result = smoke.step_optimize(tmp_path)
    assert result.status == smoke.FAIL and result.detail.startswith("compute-sanitizer worked in the env step")
