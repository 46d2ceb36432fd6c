"""The CuPy backend and its event timer on CPU, against the recording CuPy stand-in (tests/fake_cupy.py).

What is checked is what the GPU would be asked to do and in which order: the timer's untimed warm-up
(graph upload and one launch) before any event is recorded; the warm spin or the cold flush queued
before the start event, so the host's launch gap is not timed; the clean flush's read sweep after its
write; CUDA errors at an event record or a graph launch raised as a kernel fault; and which launch errors
count as a lost context (the worker restarts) rather than a rejected launch.
"""

from __future__ import annotations

import numpy as np
import pytest
from fake_cupy import FakeCupy, install
from test_runner_wall import H100

from kernelpro.runner import jobs, worker
from kernelpro.runner.backend import Geometry, KernelFault, LaunchRejected
from kernelpro.runner.device import SPIN_NS, CupyBackend
from kernelpro.runner.wall import WallResult

GEOMETRY = Geometry((4, 1, 1), (256, 1, 1))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCupy:
    return install(monkeypatch)


@pytest.fixture
def backend(fake: FakeCupy):
    backend = CupyBackend()
    backend._info = H100
    yield backend
    backend.close()


def timer(backend: CupyBackend, fake: FakeCupy, launches: int = 1, flush: bool | str = True, graph: bool = True):
    kernel = backend.load_kernel("k.cubin", "scale")
    runner = backend.timed_runner(kernel, GEOMETRY, [(np.int32(1),)], launches, flush, use_graph=graph)
    return runner


def sample_ops(fake: FakeCupy, runner) -> list[tuple]:
    fake.ops.clear()
    runner.sample()
    return fake.ops


# --- the timer: what is queued, in which order -----------------------------------------------------
def test_cold_sample_flushes_clean_before_the_start_event(backend: CupyBackend, fake: FakeCupy) -> None:
    runner = timer(backend, fake)
    ops = sample_ops(fake, runner)
    names = [op[0] for op in ops]
    assert names == ["fill", "helper", "record", "launch", "record", "event-sync"]
    assert ops[1] == ("helper", "kp_read_sweep")  # the read-back right after the write: L2 left clean
    assert ops[2] == ("record", "start") and ops[4] == ("record", "end")


def test_dirty_flush_only_writes(backend: CupyBackend, fake: FakeCupy) -> None:
    ops = sample_ops(fake, timer(backend, fake, flush="dirty"))
    assert [op[0] for op in ops] == ["fill", "record", "launch", "record", "event-sync"]


def test_warm_sample_keeps_the_gpu_busy_before_the_start_event(backend: CupyBackend, fake: FakeCupy) -> None:
    """Warm mode: the spin kernel is queued before start.record, so the GPU is still busy when the start event and
    the launch are issued, and the host's gap between them is not counted as kernel time."""
    for launches in (1, 50):
        ops = sample_ops(fake, timer(backend, fake, launches=launches, flush=False))
        names = [op[0] for op in ops]
        assert ops[0] == ("helper", "kp_spin") and "fill" not in names
        assert names.index("helper") < names.index("record") < names.index("launch" if launches == 1
                                                                           else "graph-launch")
    assert SPIN_NS >= 20_000  # several times the host's record + launch time


def test_graph_is_uploaded_and_run_once_before_the_first_timed_sample(backend: CupyBackend, fake: FakeCupy) -> None:
    kernel = backend.load_kernel("k.cubin", "scale")
    fake.ops.clear()
    runner = backend.timed_runner(kernel, GEOMETRY, [()], 8, False, use_graph=True)
    assert runner.method == "graph"
    assert fake.ops == [("graph-upload",), ("graph-launch", 8), ("sync",)]  # captured launches are not run
    ops = sample_ops(fake, runner)
    assert ("graph-upload",) not in ops and ops.count(("graph-launch", 8)) == 1


def test_single_launch_timer_runs_one_untimed_launch_first(backend: CupyBackend, fake: FakeCupy) -> None:
    kernel = backend.load_kernel("k.cubin", "scale")
    fake.ops.clear()
    backend.timed_runner(kernel, GEOMETRY, [()], 1, True, use_graph=False)
    assert fake.ops == [("launch", "scale"), ("sync",)]


def test_without_nvrtc_the_flush_still_reads_back_and_warm_has_no_spin(backend: CupyBackend, fake: FakeCupy) -> None:
    fake.nvrtc = False
    cold = sample_ops(fake, timer(backend, fake))
    assert [op[0] for op in cold][:3] == ["fill", "reduce-max", "record"]
    warm = sample_ops(fake, timer(backend, fake, flush=False))
    assert warm[0] == ("record", "start")
    assert "nvrtc" in backend.helpers_error


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["record", "event-sync"])
def test_an_error_at_an_event_is_a_kernel_fault(backend: CupyBackend, fake: FakeCupy, op: str) -> None:
    runner = timer(backend, fake)
    fake.fail(op, 700)
    with pytest.raises(KernelFault, match="700"):
        runner.sample()


def test_an_error_at_the_graph_launch_is_a_kernel_fault(backend: CupyBackend, fake: FakeCupy) -> None:
    runner = timer(backend, fake, launches=8)
    fake.fail("graph-launch", 999)
    with pytest.raises(KernelFault, match="999"):
        runner.sample()
    fake.fail("graph-launch", 719)  # the warm-up launch
    with pytest.raises(KernelFault, match="warm-up"):
        timer(backend, fake, launches=8)


def test_a_non_sticky_error_at_an_event_is_a_rejected_launch(backend: CupyBackend, fake: FakeCupy) -> None:
    runner = timer(backend, fake)
    fake.fail("record", 400)
    with pytest.raises(LaunchRejected):
        runner.sample()


@pytest.mark.parametrize("status", [700, 702, 710, 714, 715, 716, 717, 718, 719, 999, 46, 201])
def test_launch_errors_are_kernel_faults_unless_known_not_sticky(backend: CupyBackend, fake: FakeCupy,
                                                                 status: int) -> None:
    kernel = backend.load_kernel("k.cubin", "scale")
    fake.fail("launch", status)
    with pytest.raises(KernelFault, match="an earlier one's surfacing here"):
        backend.launch(kernel, GEOMETRY, ())


@pytest.mark.parametrize("status", [1, 2, 98, 209, 400, 701, 720])
def test_known_non_sticky_launch_errors_are_rejections(backend: CupyBackend, fake: FakeCupy, status: int) -> None:
    kernel = backend.load_kernel("k.cubin", "scale")
    fake.fail("launch", status)
    with pytest.raises(LaunchRejected, match="grid"):
        backend.launch(kernel, GEOMETRY, ())
    backend.launch(kernel, GEOMETRY, ())  # the context is fine: the next launch goes


def test_loading_in_a_poisoned_context_is_a_fault(backend: CupyBackend, fake: FakeCupy) -> None:
    fake.fail("load", 999)
    with pytest.raises(KernelFault):
        backend.load_kernel("k.cubin", "scale")
    fake.fail("load", 200)  # a bad image: the candidate's problem, the context is fine
    with pytest.raises(LaunchRejected):
        backend.load_kernel("k.cubin", "scale")


# --- a fault nobody saw until the end restarts the worker, so the next candidate is not blamed --------
def test_close_finds_a_hidden_fault(backend: CupyBackend, fake: FakeCupy) -> None:
    fake.fail("device-sync", 999)
    backend.close()
    assert backend.context_lost


def test_wall_job_restarts_the_worker_after_a_hidden_fault(fake: FakeCupy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall saw nothing wrong, but the final synchronize does: the worker must exit after replying."""
    monkeypatch.setattr(CupyBackend, "device_info", lambda self: H100)
    monkeypatch.setattr(jobs, "_run_wall", lambda *args: WallResult((), (), {}, None, False))
    monkeypatch.setattr(jobs, "_task", lambda params: type("T", (), {"name": "scale", "kernel": "scale"})())
    monkeypatch.setattr(jobs.WallConfig, "from_dict", classmethod(lambda cls, data: cls(seed=1)))
    ctx = worker.JobContext(1, lambda message: None)
    clean = worker.run_job({"kind": "wall", "params": {"config": {}}}, ctx)
    assert clean["ok"] and not clean["restart"]
    fake.fail("device-sync", 700)
    poisoned = worker.run_job({"kind": "wall", "params": {"config": {}}}, worker.JobContext(2, lambda m: None))
    assert poisoned["ok"] and poisoned["restart"]
