"""Run jobs in a worker subprocess and survive whatever the job does to it.

:class:`Supervisor` keeps one ``python -m kernelpro.runner.worker`` process (protocol in
:mod:`kernelpro.runner.worker`) and sends it one job at a time. Every outcome is a
:class:`JobResult`, never an exception:

* **hang**: no message for ``idle_timeout`` seconds (the worker reports progress before every
  launch and periodically while timing), or the job running past ``timeout``: the worker's whole
  process group is killed with SIGKILL and reaped, and the failure names the last stage reported;
* **crash**: the worker's stdout closes (segfault, ``os._exit``, out of memory): the failure has
  the exit status or signal and the tail of its stderr;
* **exception / CUDA error**: the worker replies with an error record; after a CUDA error (or
  when the job asks for it) the worker exits and is replaced.

The next job starts a fresh worker if the last one is gone, so callers simply go on. Workers run
in their own session (process group), are always reaped (no zombies) and are killed when the
supervisor is closed or garbage-collected.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STDERR_LINES = 200
# How long to wait for a worker to be gone after SIGKILL. The driver's teardown of a hung CUDA context can
# take long; past this the worker is left to a background reaper and the supervisor goes on.
REAP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class JobFailure:
    """Why a job produced no result."""

    kind: str  # "timeout" | "crash" | "exception" | "cuda-error" | "start"
    message: str
    stage: str | None = None  # the last progress stage the worker reported
    exit_code: int | None = None  # negative: killed by that signal
    stderr_tail: str = ""
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class JobResult:
    """A job's outcome: ``value`` when ``ok``, else ``failure``."""

    ok: bool
    value: Mapping[str, Any] | None = None
    failure: JobFailure | None = None
    seconds: float = 0.0
    worker_pid: int | None = None


def describe_exit(code: int | None) -> str:
    """``exit status 3`` / ``killed by SIGSEGV``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class _Worker:
    """One worker process and the threads draining its pipes."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None) -> None:
        self.proc = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None, start_new_session=True,
        )
        self.pid = self.proc.pid
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.jobs = 0
        self.abandoned = False  # still not gone REAP_TIMEOUT_S after SIGKILL: left to a background reaper
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                self.stderr.append(f"[not protocol] {raw.decode(errors='replace').rstrip()}")
                continue
            if isinstance(message, dict):
                self.messages.put(message)
        self.messages.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip())

    def send(self, message: Mapping[str, Any]) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(message, allow_nan=False) + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(list(self.stderr)[-lines:])

    def kill(self) -> int | None:
        """SIGKILL the worker's process group, reap it, close the pipes; returns its exit code."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self._reap()

    def stop(self, grace_s: float = 5.0) -> int | None:
        """Close its stdin (the worker exits at EOF), then kill it if it has not exited within ``grace_s``."""
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            return self.kill()
        return self._reap()

    def _reap(self) -> int | None:
        try:
            code = self.proc.wait(timeout=REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # Killed but not gone (a hung GPU context being torn down): never block on it. A daemon thread
            # reaps it whenever it exits, so it does not stay a zombie.
            # Its pipes stay open (closing one under a blocked reader thread would block too).
            self.abandoned = True
            threading.Thread(target=self.proc.wait, name=f"reap-{self.pid}", daemon=True).start()
            return None
        for thread in self._threads:
            thread.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()
        return code


def _kill_quietly(worker: _Worker) -> None:
    with contextlib.suppress(Exception):
        worker.kill()


class Supervisor:
    """Runs jobs in a supervised worker process (see the module docstring).

    ``timeout`` bounds a whole job, ``idle_timeout`` the silence between two messages from the
    worker; both can be overridden per job. ``max_jobs_per_worker`` recycles the worker after that
    many jobs (None: never).
    """

    def __init__(self, *, timeout: float = 900.0, idle_timeout: float = 60.0, startup_timeout: float = 60.0,
                 command: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                 max_jobs_per_worker: int | None = None) -> None:
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.startup_timeout = startup_timeout
        self.command = tuple(command or (sys.executable, "-m", "kernelpro.runner.worker"))
        self.env = env
        self.max_jobs_per_worker = max_jobs_per_worker
        self.restarts = 0  # workers replaced after a failure
        self._worker: _Worker | None = None
        self._finalizer: weakref.finalize | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def worker_pid(self) -> int | None:
        """The pid of the live worker (None before the first job and after a failure)."""
        return self._worker.pid if self._worker is not None else None

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (politely, then by force)."""
        with self._lock:
            self._drop_worker(graceful=True)

    def run(self, kind: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None,
            idle_timeout: float | None = None, progress: Callable[[str], None] | None = None) -> JobResult:
        """Run job ``kind`` with ``params`` and wait for its outcome."""
        with self._lock:
            return self._run(kind, dict(params or {}), timeout or self.timeout, idle_timeout or self.idle_timeout,
                             progress)

    # --- internals --------------------------------------------------------------------------------
    def _run(self, kind: str, params: dict[str, Any], timeout: float, idle_timeout: float,
             progress: Callable[[str], None] | None) -> JobResult:
        started = time.monotonic()
        worker, failure = self._ensure_worker()
        if worker is None:
            return JobResult(False, failure=failure, seconds=time.monotonic() - started)
        job_id = next(self._ids)
        worker.jobs += 1
        if not worker.send({"id": job_id, "kind": kind, "params": params}):
            return self._crashed(worker, None, started)
        deadline, idle_deadline, stage = started + timeout, started + idle_timeout, None
        while True:
            now = time.monotonic()
            if now >= deadline or now >= idle_deadline:
                return self._timed_out(worker, stage, now >= deadline, timeout, idle_timeout, started)
            try:
                message = worker.messages.get(timeout=min(deadline, idle_deadline) - now)
            except queue.Empty:
                continue
            if message is None:
                return self._crashed(worker, stage, started)
            if message.get("id") != job_id:
                continue  # a line from no job (or a stale one): ignore
            if message.get("type") == "progress":
                stage = str(message.get("stage"))
                idle_deadline = time.monotonic() + idle_timeout
                if progress is not None:
                    progress(stage)
            elif message.get("type") == "result":
                return self._finish(worker, message, stage, started)

    def _ensure_worker(self) -> tuple[_Worker | None, JobFailure | None]:
        if self._worker is not None and self._worker.proc.poll() is None:
            return self._worker, None
        self._drop_worker(graceful=False)
        try:
            worker = _Worker(self.command, self.env)
        except OSError as exc:
            return None, JobFailure("start", f"cannot start the worker {' '.join(self.command)}: {exc}")
        try:
            message = worker.messages.get(timeout=self.startup_timeout)
        except queue.Empty:
            message = None
        if not message or message.get("type") != "ready":
            code = worker.kill()
            return None, JobFailure("start", f"the worker did not start ({describe_exit(code)})", exit_code=code,
                                    stderr_tail=worker.stderr_tail())
        self._worker = worker
        self._finalizer = weakref.finalize(self, _kill_quietly, worker)
        return worker, None

    def _drop_worker(self, graceful: bool) -> int | None:
        worker, self._worker = self._worker, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if worker is None:
            return None
        return worker.stop() if graceful else worker.kill()

    def _finish(self, worker: _Worker, message: dict[str, Any], stage: str | None, started: float) -> JobResult:
        seconds = time.monotonic() - started
        recycle = self.max_jobs_per_worker is not None and worker.jobs >= self.max_jobs_per_worker
        if message.get("restart") or recycle:
            self._drop_worker(graceful=True)
            if message.get("restart"):
                self.restarts += 1
        if message.get("ok"):
            return JobResult(True, value=message.get("result") or {}, seconds=seconds, worker_pid=worker.pid)
        error = message.get("error") or {}
        failure = JobFailure(str(error.get("kind", "exception")), str(error.get("message", "unknown error")),
                             stage=stage, stderr_tail=worker.stderr_tail(), traceback=str(error.get("traceback", "")))
        return JobResult(False, failure=failure, seconds=seconds, worker_pid=worker.pid)

    def _timed_out(self, worker: _Worker, stage: str | None, total: bool, timeout: float, idle_timeout: float,
                   started: float) -> JobResult:
        code = self._drop_worker(graceful=False)
        self.restarts += 1
        where = f" in stage {stage!r}" if stage else ""
        why = f"did not finish within {timeout:g} s" if total else f"sent nothing for {idle_timeout:g} s"
        killed = "the worker was killed" + (f" (still not gone {REAP_TIMEOUT_S:g} s after SIGKILL: left behind)"
                                            if worker.abandoned else "")
        failure = JobFailure("timeout", f"the job {why}{where}; {killed}", stage=stage, exit_code=code,
                             stderr_tail=worker.stderr_tail())
        return JobResult(False, failure=failure, seconds=time.monotonic() - started, worker_pid=worker.pid)

    def _crashed(self, worker: _Worker, stage: str | None, started: float) -> JobResult:
        code = self._drop_worker(graceful=False)
        self.restarts += 1
        where = f" in stage {stage!r}" if stage else ""
        tail = worker.stderr_tail(5).strip().replace("\n", " | ")
        failure = JobFailure("crash", f"the worker died ({describe_exit(code)}){where}" + (f": {tail}" if tail else ""),
                             stage=stage, exit_code=code, stderr_tail=worker.stderr_tail())
        return JobResult(False, failure=failure, seconds=time.monotonic() - started, worker_pid=worker.pid)
