"""The worker process: runs jobs for its parent, one at a time, speaking JSON lines over pipes.

Started as ``python -m kernelpro.runner.worker`` by :class:`~kernelpro.runner.supervisor.Supervisor`.
Protocol (one JSON object per line):

* worker → parent, once at start: ``{"type": "ready", "pid": 1234}``
* parent → worker: ``{"id": 7, "kind": "wall", "params": {...}}``
* worker → parent, any number of times during a job: ``{"type": "progress", "id": 7, "stage": "..."}``
  (the parent's idle watchdog restarts at each; the stage names where a hung job hung)
* worker → parent, once per job: ``{"type": "result", "id": 7, "ok": true, "result": {...},
  "restart": false}`` or ``{..., "ok": false, "error": {"kind": "exception" | "cuda-error",
  "type": ..., "message": ..., "traceback": ...}, "restart": true}``

``restart: true`` means the worker exits after replying because its CUDA context may be unusable
(a kernel fault, or any CUDA error raised out of a job); the parent starts a fresh one for the
next job. The protocol uses a private copy of the original stdout; file descriptor 1 is then
pointed at stderr, so anything else printed (a kernel's ``printf``, library chatter) cannot
corrupt the protocol.

``python -m kernelpro.runner.worker --job FILE.json`` runs one job from a file outside the
protocol (the compute-sanitizer target) and exits 0, or 1 after printing the error to stderr.

Job kinds: ``wall``, ``launch-once`` and ``device-info`` (:mod:`kernelpro.runner.jobs`), and
``selftest.*`` jobs that sleep, exit, raise, fault or print, for testing the supervision on
machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

from kernelpro.errors import KernelproError
from kernelpro.runner.backend import KernelFault
from kernelpro.runner.records import jsonable

Handler = Callable[[dict[str, Any], "JobContext"], dict[str, Any]]


class JobContext:
    """What a job handler may tell the parent: progress stages, and that the worker must restart."""

    def __init__(self, job_id: int | None, send: Callable[[dict[str, Any]], None]) -> None:
        self.job_id = job_id
        self._send = send
        self.restart = False

    def progress(self, stage: str) -> None:
        self._send({"type": "progress", "id": self.job_id, "stage": stage})

    def restart_after(self) -> None:
        """Exit after this job's reply (the CUDA context is not to be trusted any more)."""
        self.restart = True


# --- self-test jobs: the supervision's CPU tests use these ----------------------------------------
def _echo(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    return {"echo": params, "pid": os.getpid(), "devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _sleep(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.progress("sleeping")
    time.sleep(float(params.get("seconds", 3600)))
    return {"slept": params.get("seconds", 3600)}


def _progress(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    for step in range(int(params.get("steps", 3))):
        ctx.progress(f"step {step}")
        time.sleep(float(params.get("interval", 0.1)))
    return {"steps": params.get("steps", 3)}


def _exit(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.progress("exiting")
    os._exit(int(params.get("code", 3)))


def _raise(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    raise RuntimeError(params.get("message", "selftest failure"))


def _fault(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    raise KernelFault(params.get("message", "simulated: an illegal memory access was encountered"))


def _print(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    print("noise on sys.stdout")
    sys.stdout.flush()
    os.write(1, b"noise on file descriptor 1\n")  # what a kernel's printf does
    return {"printed": True}


SELFTEST_JOBS: dict[str, Handler] = {
    "selftest.echo": _echo,
    "selftest.sleep": _sleep,
    "selftest.progress": _progress,
    "selftest.exit": _exit,
    "selftest.raise": _raise,
    "selftest.fault": _fault,
    "selftest.print": _print,
}


def handler_for(kind: str) -> Handler:
    """The handler of job ``kind`` (GPU jobs are imported on first use)."""
    if kind in SELFTEST_JOBS:
        return SELFTEST_JOBS[kind]
    from kernelpro.runner import jobs

    if kind not in jobs.JOBS:
        raise KeyError(f"unknown job kind {kind!r} (known: {', '.join([*jobs.JOBS, *SELFTEST_JOBS])})")
    return jobs.JOBS[kind]


def _is_cuda_error(exc: BaseException) -> bool:
    return isinstance(exc, KernelFault) or type(exc).__name__ in ("CUDARuntimeError", "CUDADriverError")


def run_job(job: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Run one job; the reply's fields (``ok``, ``result`` or ``error``, ``restart``)."""
    try:
        result = handler_for(job["kind"])(dict(job.get("params", {})), ctx)
        return {"ok": True, "result": jsonable(result), "restart": ctx.restart}
    except Exception as exc:  # noqa: BLE001 - every failure becomes a record for the parent
        cuda = _is_cuda_error(exc)
        message = str(exc) if isinstance(exc, KernelproError) else f"{type(exc).__name__}: {exc}"
        error = {"kind": "cuda-error" if cuda else "exception", "type": type(exc).__name__, "message": message,
                 "traceback": traceback.format_exc(limit=20)}
        return {"ok": False, "error": error, "restart": ctx.restart or cuda}


def serve(stdin: IO[str], protocol: IO[str]) -> int:
    """Answer jobs from ``stdin`` on ``protocol`` until EOF or a restart."""
    def send(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message, allow_nan=False) + "\n")
        protocol.flush()

    send({"type": "ready", "pid": os.getpid()})
    for line in stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as exc:
            send({"type": "result", "id": None, "ok": False, "restart": False,
                  "error": {"kind": "exception", "type": "JSONDecodeError", "message": f"bad job line: {exc}"}})
            continue
        ctx = JobContext(job.get("id"), send)
        reply = run_job(job, ctx)
        send({"type": "result", "id": job.get("id"), **reply})
        if reply["restart"]:
            return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernelpro.runner.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--job", help="run the job in this JSON file ({kind, params}) and exit")
    args = parser.parse_args(argv)
    if args.job:
        with open(args.job) as handle:
            job = json.load(handle)
        reply = run_job(job, JobContext(None, lambda message: None))
        if not reply["ok"]:
            print(reply["error"]["message"], file=sys.stderr)
            return 1
        return 0
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return serve(sys.stdin, protocol)


if __name__ == "__main__":
    sys.exit(main())
