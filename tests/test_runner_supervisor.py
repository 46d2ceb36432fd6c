"""Supervision of the worker process on CPU, with the worker's self-test jobs.

A job that hangs is killed by the watchdog, one that crashes becomes a record, one that raises
becomes a record without a restart, a CUDA error restarts the worker; each time the next job runs
normally and no worker is left behind as a zombie.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from kernelpro.runner.supervisor import Supervisor, describe_exit


def gone(pid: int) -> bool:
    """True when no process has this pid; an unreaped zombie still has one, so this also means reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def supervisor():
    with Supervisor(timeout=60, idle_timeout=30, startup_timeout=60) as sup:
        yield sup


def test_jobs_run_in_one_long_lived_worker(supervisor: Supervisor) -> None:
    first = supervisor.run("selftest.echo", {"value": [1, 2]})
    second = supervisor.run("selftest.echo", {"value": 3})
    assert first.ok and first.value["echo"] == {"value": [1, 2]}
    assert second.ok and second.value["pid"] == first.value["pid"] == first.worker_pid != os.getpid()
    assert supervisor.restarts == 0


def test_hung_job_is_killed_and_the_next_job_runs(supervisor: Supervisor) -> None:
    result = supervisor.run("selftest.sleep", {"seconds": 3600}, idle_timeout=1.0)
    assert not result.ok
    assert result.failure.kind == "timeout" and result.failure.stage == "sleeping"
    assert "sent nothing for 1 s in stage 'sleeping'" in result.failure.message
    assert result.seconds < 30
    assert gone(result.worker_pid), "the hung worker is still there"
    after = supervisor.run("selftest.echo", {})
    assert after.ok and after.worker_pid != result.worker_pid
    assert supervisor.restarts == 1


def test_total_timeout_applies_even_with_progress(supervisor: Supervisor) -> None:
    result = supervisor.run("selftest.progress", {"steps": 100, "interval": 0.2}, timeout=1.0, idle_timeout=5.0)
    assert result.failure.kind == "timeout" and "did not finish within 1 s" in result.failure.message
    assert result.failure.stage.startswith("step ")
    assert gone(result.worker_pid)


def test_progress_keeps_a_slow_job_alive(supervisor: Supervisor) -> None:
    stages: list[str] = []
    result = supervisor.run("selftest.progress", {"steps": 5, "interval": 0.3}, idle_timeout=1.0,
                            progress=stages.append)
    assert result.ok and stages == [f"step {k}" for k in range(5)]


def test_crash_becomes_a_record_and_the_worker_is_replaced(supervisor: Supervisor) -> None:
    result = supervisor.run("selftest.exit", {"code": 7})
    assert not result.ok
    assert result.failure.kind == "crash" and result.failure.exit_code == 7
    assert "exit status 7" in result.failure.message and result.failure.stage == "exiting"
    assert gone(result.worker_pid)
    assert supervisor.run("selftest.echo", {}).ok


def test_exception_becomes_a_record_without_a_restart(supervisor: Supervisor) -> None:
    before = supervisor.run("selftest.echo", {}).worker_pid
    result = supervisor.run("selftest.raise", {"message": "boom"})
    assert result.failure.kind == "exception" and "RuntimeError: boom" in result.failure.message
    assert "Traceback" in result.failure.traceback
    assert supervisor.run("selftest.echo", {}).worker_pid == before


def test_cuda_error_restarts_the_worker(supervisor: Supervisor) -> None:
    result = supervisor.run("selftest.fault", {})
    assert result.failure.kind == "cuda-error" and "illegal memory access" in result.failure.message
    assert gone(result.worker_pid), "a worker whose CUDA context faulted must exit"
    after = supervisor.run("selftest.echo", {})
    assert after.ok and after.worker_pid != result.worker_pid


def test_stray_output_does_not_corrupt_the_protocol(supervisor: Supervisor) -> None:
    result = supervisor.run("selftest.print", {})
    assert result.ok and result.value == {"printed": True}
    assert supervisor.run("selftest.echo", {"after": True}).value["echo"] == {"after": True}


def test_unknown_job_kind(supervisor: Supervisor) -> None:
    result = supervisor.run("no-such-job", {})
    assert result.failure.kind == "exception" and "unknown job kind" in result.failure.message


def test_close_stops_and_reaps_the_worker() -> None:
    supervisor = Supervisor()
    pid = supervisor.run("selftest.echo", {}).worker_pid
    supervisor.close()
    assert gone(pid) and supervisor.worker_pid is None


def test_a_worker_that_cannot_start_is_a_record() -> None:
    with Supervisor(command=[sys.executable, "-c", "import sys; sys.exit(4)"], startup_timeout=10) as supervisor:
        result = supervisor.run("selftest.echo", {})
    assert result.failure.kind == "start" and "exit status 4" in result.failure.message


def test_exit_descriptions() -> None:
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-11) == "killed by SIGSEGV"


def test_a_worker_that_will_not_die_is_left_behind_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """After SIGKILL the driver may take long to tear a hung context down: the supervisor waits at most
    REAP_TIMEOUT_S, then goes on with a new worker (a daemon thread reaps the old one whenever it exits)."""
    import subprocess
    import threading

    from kernelpro.runner import supervisor as module

    monkeypatch.setattr(module, "REAP_TIMEOUT_S", 0.5)
    with Supervisor(timeout=60, idle_timeout=30) as sup:
        assert sup.run("selftest.echo", {}).ok
        proc = sup._worker.proc
        real_wait = proc.wait

        def slow_teardown(timeout=None):  # as if the killed process lingered in the driver
            if threading.current_thread() is threading.main_thread():
                assert timeout is not None, "the supervisor waited for a killed worker without a timeout"
                raise subprocess.TimeoutExpired(proc.args, timeout)
            return real_wait()  # the background reaper

        proc.wait = slow_teardown
        started = time.monotonic()
        hung = sup.run("selftest.sleep", {"seconds": 3600}, idle_timeout=1.0)
        assert time.monotonic() - started < 15
        assert hung.failure.kind == "timeout" and "left behind" in hung.failure.message
        after = sup.run("selftest.echo", {})
        assert after.ok and after.worker_pid != hung.worker_pid
    deadline = time.monotonic() + 10
    while not gone(hung.worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(hung.worker_pid), "the background reaper did not reap it"
