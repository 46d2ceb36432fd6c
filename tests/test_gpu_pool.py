"""One supervised worker per GPU, on CPU: the real worker's self-test jobs and a stand-in nvidia-smi."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fake_programs import install_program

from kernelpro.errors import KernelproError
from kernelpro.runner.evaluate import _job_failure
from kernelpro.runner.gpu_pool import (
    ExclusiveDiagnoser,
    GpuInfo,
    PrecompilingPool,
    gpu_pool,
    list_gpus,
    parse_gpus,
    pin_tools_to,
)
from kernelpro.runner.supervisor import Supervisor
from kernelpro.search import Budget, Diagnosis, Evaluation, MCTSConfig, Node, Variant, start
from kernelpro.search.synthetic import SyntheticEvaluator, baseline_variant, knob_space

FOUR_H100 = tuple(GpuInfo(i, "NVIDIA H100 80GB HBM3") for i in range(4))


class WorkerEvaluator:
    """Runs a self-test job in its supervised worker, as the wall job runs: a crashed or hung worker becomes
    a failed evaluation through the real mapping (``_job_failure``); otherwise the synthetic model's result,
    with the devices the worker saw."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def evaluate(self, variant: Variant) -> Evaluation:
        job = {"crash": ("selftest.exit", {"code": 9}), "hang": ("selftest.sleep", {"seconds": 60})}.get(
            variant.change, ("selftest.echo", {"key": variant.key}))
        result = self.supervisor.run(*job, timeout=5.0, idle_timeout=5.0)
        if not result.ok:
            failure = _job_failure(result.failure)
            return Evaluation.failed("wall", f"{failure.check}: {failure.message}".replace("\n", " | "))
        model = SyntheticEvaluator().evaluate(variant)
        summary = {"devices": result.value["devices"], "pid": result.value["pid"]}
        return Evaluation.passed(model.time_us, summary=summary) if model.ok else model


def test_list_gpus_reads_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_program(tmp_path, monkeypatch, "nvidia-smi", "#!{python}\nprint('0, NVIDIA H100\\n1, NVIDIA A100')\n")
    assert list_gpus() == (GpuInfo(0, "NVIDIA H100"), GpuInfo(1, "NVIDIA A100"))


def test_gpu_selection() -> None:
    assert parse_gpus("all", FOUR_H100) == (0, 1, 2, 3)
    assert parse_gpus("1,3", FOUR_H100) == (1, 3)


@pytest.mark.parametrize(("spec", "gpus", "message", "fix"), [
    ("0,9", FOUR_H100, "this machine has 4 GPU(s) (0-3), no GPU 9", "pick indices from 0-3"),
    ("0,x", FOUR_H100, "not a list of GPU indices", "--gpus 0,1,2,3"),
    ("1,1", FOUR_H100, "named twice", "once"),
    ("all", (GpuInfo(0, "NVIDIA H100"), GpuInfo(1, "NVIDIA A100")), "mixed GPU models (NVIDIA A100, NVIDIA H100)",
     "one model"),
    ("0", (), "no GPU listed by nvidia-smi", "leave --gpus out"),
])
def test_bad_gpu_selections_are_one_line_errors(spec: str, gpus: tuple, message: str, fix: str) -> None:
    with pytest.raises(KernelproError) as caught:
        parse_gpus(spec, gpus)
    assert message in caught.value.message and fix in caught.value.fix
    assert "\n" not in caught.value.message


def test_each_slot_has_its_own_worker_seeing_only_its_gpu_and_crash_and_hang_fail_only_their_candidate() -> None:
    pool, supervisors = gpu_pool([2, 5], WorkerEvaluator, None)
    try:
        base = baseline_variant()
        variants = [base.with_knobs({"BLOCK": b}, change=c, origin="t")
                    for b, c in (("64", "ok"), ("128", "crash"), ("256", "hang"), ("512", "ok"))]
        for v in variants[:2]:
            pool.submit(v)
        done = []
        while len(done) < 4:
            done += pool.poll()
            if len(done) == 2:
                for v in variants[2:]:
                    pool.submit(v)
        by_change = {f.variant.change: f for f in done if f.variant.change != "ok"}
        passed = [f for f in done if f.variant.change == "ok"]
        assert by_change["crash"].evaluation.failure.startswith("wall: crash:")
        assert by_change["hang"].evaluation.failure.startswith("wall: timeout:")
        assert {f.evaluation.summary["devices"] for f in passed} <= {"2", "5"}
        # Every slot's worker saw only its own GPU, and the slots' workers are distinct processes.
        seen = {}
        for slot, sup in enumerate(supervisors):
            echo = sup.run("selftest.echo", {})
            seen[slot] = (echo.value["devices"], echo.value["pid"])
        assert [d for d, _ in seen.values()] == ["2", "5"] and seen[0][1] != seen[1][1]
        assert all(f.evaluation.summary["devices"] == str([2, 5][f.slot]) for f in passed)
    finally:
        pool.close()
        for sup in supervisors:
            sup.close()


def test_a_search_over_two_gpu_workers_with_compiles_ahead(tmp_path: Path) -> None:
    compiled: list[str] = []
    lock = threading.Lock()

    def precompile(variant: Variant) -> None:
        with lock:
            compiled.append(variant.key)

    supervisors = [Supervisor(env={"CUDA_VISIBLE_DEVICES": str(g), "PATH": "/usr/bin:/bin"}) for g in (0, 1)]
    pool = PrecompilingPool([WorkerEvaluator(s) for s in supervisors], precompile)
    try:
        result = start(tmp_path, baseline_variant(), pool, None, config=MCTSConfig(seed=0),
                       budget=Budget(max_evaluations=20), knob_space=knob_space())
    finally:
        pool.close()
        for sup in supervisors:
            sup.close()
    assert pool.capacity == 4 and result.evaluations == 20
    assert sorted(compiled) == sorted(n.key for n in result.tree)  # every candidate compiled ahead, once
    devices = {n.evaluation.summary.get("devices") for n in result.tree if n.ok}
    assert devices == {"0", "1"}
    assert set(result.gpu_busy_s) == {0, 1}


class _Profiler:
    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.held: list[bool] = []

    def diagnose(self, node: Node) -> Diagnosis:
        self.held.append(self.lock.locked())
        return Diagnosis("profiled")


def test_profiling_takes_its_gpu_exclusively_and_tools_are_pinned_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()

    class Signalling(SyntheticEvaluator):
        def evaluate(self, variant: Variant) -> Evaluation:
            started.set()
            return super().evaluate(variant)

    pool = PrecompilingPool([Signalling()])
    profiler = _Profiler(pool.locks[0])
    ExclusiveDiagnoser(profiler, pool.locks[0]).diagnose(None)  # type: ignore[arg-type]
    assert profiler.held == [True]
    with pool.locks[0]:  # as while ncu profiles on this GPU
        pool.submit(baseline_variant())
        assert not started.wait(0.2), "an evaluation started on a GPU being profiled"
    assert [f.evaluation.ok for f in pool.poll()] == [True] and started.is_set()
    pool.close()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    import os

    with pin_tools_to(3):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"


def test_the_cli_refuses_bad_device_options_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    task = Path(__file__).parent.parent / "tasks"
    target = next(task.glob("*.cu"))
    cases = [(["--ray", "auto"], "needs Ray"), (["--gpus", "0", "--ray", "auto"], "--gpus and --ray together"),
             (["--parallel", "0"], "--parallel 0: need at least 1")]
    for args, message in cases:
        env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
        (tmp_path / "ray.py").write_text("raise ImportError('no ray here')\n")  # Ray missing, as on a plain install
        command = [sys.executable, "-c", "from kernelpro.cli import main; main()", "optimize", str(target), *args]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


class _Gate:
    """A synchronous evaluator that records which slot ran it; ``change == "boom"`` is an evaluator bug."""

    def __init__(self, name: str, seen: list[tuple[str, str]]) -> None:
        self.name, self.seen = name, seen

    def evaluate(self, variant: Variant) -> Evaluation:
        if variant.change == "boom":
            raise RuntimeError("evaluator bug")
        self.seen.append((self.name, variant.change))
        return Evaluation.passed(1.0)


def test_a_pool_without_compiles_runs_one_evaluation_per_slot_and_reraises_bugs() -> None:
    seen: list[tuple[str, str]] = []
    pool = PrecompilingPool([_Gate("gpu0", seen), _Gate("gpu1", seen)])
    base = baseline_variant()
    a, b = (base.with_knobs({"BLOCK": v}, change=v, origin="t") for v in ("64", "128"))
    pool.submit(a)
    pool.submit(b)
    with pytest.raises(RuntimeError, match="in flight"):
        pool.submit(base)
    finished = []
    while len(finished) < 2:
        finished += pool.poll()
    assert sorted(f.slot for f in finished) == [0, 1] and sorted(seen) == [("gpu0", "64"), ("gpu1", "128")]
    pool.submit(base.with_knobs({"BLOCK": "512"}, change="boom", origin="t"))
    with pytest.raises(RuntimeError, match="evaluator bug"):
        pool.poll()
    assert pool.poll() == []
    pool.close()


class _Held:
    """A synchronous evaluator that waits for ``release`` (an evaluation still running on its GPU)."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def evaluate(self, variant: Variant) -> Evaluation:
        self.release.wait(10)
        return Evaluation.passed(1.0)


def test_poll_with_a_timeout_returns_nothing_while_the_evaluation_runs_then_its_result() -> None:
    release = threading.Event()
    pool = PrecompilingPool([_Held(release)])
    pool.submit(baseline_variant())
    assert pool.poll(timeout=0.05) == []  # what the search does while a proposal is in progress
    release.set()
    (done,) = pool.poll(timeout=10)
    assert done.evaluation.ok and pool.poll(timeout=0) == []
    pool.close()
