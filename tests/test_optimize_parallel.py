"""``optimize_task`` with ``--gpus`` on CPU: the per-GPU workers are wired into the real orchestration.

The GPU pieces are replaced: the wall by the synthetic model run after a self-test job in the slot's own
supervised worker (so each node records the ``CUDA_VISIBLE_DEVICES`` its worker saw), the profiler by a
stub, nvidia-smi by a two-GPU stand-in. Everything else (devices, pool, driver, journal, report) is real.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fake_programs import install_program
from rich.console import Console
from test_report import TASK

from kernelpro import optimize as opt
from kernelpro.parallel_run import Devices
from kernelpro.runner import device
from kernelpro.runner.evaluate import Evaluator
from kernelpro.runner.records import WallVerdict
from kernelpro.search import Budget, Diagnosis, Evaluation, read_journal
from kernelpro.search.records import NodeRecord, SubmitRecord
from kernelpro.search.synthetic import SyntheticEvaluator, SyntheticProposer
from kernelpro.task_loader import load_task


class WorkerWall:
    """Stands in for WallEvaluator: a job in the slot's worker, then the synthetic model."""

    def __init__(self, task, runner, *, warm: bool = False, observer=None) -> None:
        self.runner = runner

    def evaluate(self, variant):
        echo = self.runner.supervisor.run("selftest.echo", {}, timeout=30.0)
        model = SyntheticEvaluator().evaluate(variant)
        return Evaluation.passed(model.time_us, summary={"devices": echo.value["devices"]}) if model.ok else model


class StubDiagnoser:
    disabled = ""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def diagnose(self, node):
        return Diagnosis("stub")

    def report_line(self) -> str:
        return "stub"


@pytest.mark.parametrize("devices", [Devices(gpus="all"), Devices(gpus="1", parallel=3)])
def test_optimize_on_two_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devices: Devices) -> None:
    install_program(tmp_path, monkeypatch, "nvidia-smi", "#!{python}\nprint('0, NVIDIA H100\\n1, NVIDIA H100')\n")
    monkeypatch.setattr(device, "require_gpu", lambda: None)
    monkeypatch.setattr(opt, "WallEvaluator", WorkerWall)
    monkeypatch.setattr(opt, "ProfilingDiagnoser", StubDiagnoser)
    monkeypatch.setattr(opt, "make_proposer", lambda *a, **k: SyntheticProposer())
    monkeypatch.setattr(opt, "compile_to_files", lambda task, arch, variant: {})
    monkeypatch.setattr(Evaluator, "check", lambda self, task, source, **kw: WallVerdict(task.name, task.kernel, 1))
    path = tmp_path / "scale.cu"
    path.write_text(TASK)
    task = load_task(path)
    settings = opt.RunSettings(str(path), "offline", None, "sm_90", 0, False, False, "kernelpro optimize")
    outcome = opt.optimize_task(task, settings, tmp_path / "run", budget=Budget(max_evaluations=14), resume=False,
                                console=Console(file=io.StringIO()), devices=devices)
    journal = read_journal(tmp_path / "run" / "journal.jsonl")
    assert sum(isinstance(r, NodeRecord) for r in journal) == sum(isinstance(r, SubmitRecord) for r in journal) == 14
    seen = {n.evaluation.summary.get("devices") for n in outcome.result.tree if n.ok}
    assert seen == ({"0", "1"} if devices.gpus == "all" else {"1"})
    report = outcome.files.report.read_text()
    assert "GPU utilisation" in report and f"GPUs (by slot): {', '.join(sorted(seen))}" in report


def test_the_live_display_and_summary_show_gpu_busy_and_evaluations_per_minute(tmp_path: Path) -> None:
    from kernelpro.live import LiveStatus, summary_table
    from kernelpro.search import MCTSConfig, start
    from kernelpro.search.async_eval import SimClock, SimulatedEvaluator
    from kernelpro.search.synthetic import baseline_variant, knob_space

    console = Console(file=io.StringIO(), width=200)
    with LiveStatus(console, "scale") as status:
        status.gpus = ["2", "5"]
        status.finished(baseline_variant(), Evaluation.passed(10.0), 1, 0.5)
        line = status.throughput()
    assert "evaluations/min" in line and "GPU 5" in line and "GPU 2" not in line
    clock = SimClock()
    result = start(tmp_path, baseline_variant(), SimulatedEvaluator(SyntheticEvaluator(), clock, gpus=2), None,
                   config=MCTSConfig(seed=0), budget=Budget(max_evaluations=10), clock=clock, knob_space=knob_space())
    console.print(summary_table(result, str(tmp_path)))
    text = console.file.getvalue()
    assert "GPU busy" in text and "slot 0" in text and "slot 1" in text and "/min" in text
