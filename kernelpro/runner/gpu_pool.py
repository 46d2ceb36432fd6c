"""Several GPUs on one machine: one supervised worker per GPU, compiles ahead on CPU threads, no new dependency.

``--gpus 0,1,2,3`` (or ``all``) is checked against ``nvidia-smi``: an index the machine lacks, or GPUs of
different models (their timings would not be comparable), is a one-line :class:`KernelproError`.

:func:`gpu_pool` builds a :class:`PrecompilingPool`: per GPU a slot whose evaluator owns a
:class:`~kernelpro.runner.supervisor.Supervisor` whose worker sees only that GPU (``CUDA_VISIBLE_DEVICES``),
so each candidate goes through the same worker, watchdog and wall as on one GPU. Compiles are started on a
thread pool the moment a candidate is submitted (nvcc is a subprocess; the content-addressed compile cache
is on disk and safe between threads), one candidate ahead per GPU, so a GPU's next candidate is compiled
while it checks the current one and the slot's own compile is a cache hit.

Exclusive use: each GPU has a lock that its slot holds for a whole evaluation; :class:`ExclusiveDiagnoser`
takes the first GPU's lock for Nsight Compute, which runs from this process with ``CUDA_VISIBLE_DEVICES``
set to that GPU (:func:`pin_tools_to`), as do the compute-sanitizer runs of the final check.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from kernelpro.errors import KernelproError
from kernelpro.runner.supervisor import Supervisor
from kernelpro.search.async_eval import Finished
from kernelpro.search.interfaces import Diagnoser, Diagnosis, Evaluator, Node
from kernelpro.search.variant import Variant

VISIBLE = "CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi`` lists it."""

    index: int
    name: str


def list_gpus() -> tuple[GpuInfo, ...]:
    """The machine's GPUs from ``nvidia-smi`` (none when it is missing or fails)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        proc = subprocess.run([smi, "--query-gpu=index,name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    if proc.returncode != 0:
        return ()
    gpus = []
    for line in proc.stdout.splitlines():
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            gpus.append(GpuInfo(int(index), name.strip()))
    return tuple(gpus)


def parse_gpus(spec: str, available: Sequence[GpuInfo]) -> tuple[int, ...]:
    """The GPU indices ``--gpus`` names (``all`` or ``0,1,3``), checked against ``available``."""
    if not available:
        raise KernelproError(f"--gpus {spec}: no GPU listed by nvidia-smi",
                             fix="run on a machine with NVIDIA GPUs, or leave --gpus out")
    by_index = {g.index: g for g in available}
    span = f"{min(by_index)}-{max(by_index)}" if len(by_index) > 1 else str(min(by_index))
    if spec.strip() == "all":
        chosen = sorted(by_index)
    else:
        try:
            chosen = [int(part) for part in spec.split(",") if part.strip()]
        except ValueError:
            raise KernelproError(f"--gpus {spec}: not a list of GPU indices",
                                 fix="write --gpus 0,1,2,3 or --gpus all") from None
        missing = [i for i in chosen if i not in by_index]
        if missing or not chosen:
            raise KernelproError(f"--gpus {spec}: this machine has {len(by_index)} GPU(s) ({span}), no GPU "
                                 f"{', '.join(map(str, missing)) or 'named'}",
                                 fix=f"pick indices from {span}, or --gpus all")
        if len(set(chosen)) != len(chosen):
            raise KernelproError(f"--gpus {spec}: a GPU is named twice", fix="name each GPU once")
    check_one_model([by_index[i] for i in chosen], f"--gpus {spec}")
    return tuple(chosen)


def check_one_model(gpus: Sequence[GpuInfo], what: str) -> None:
    """Refuse GPUs of different models in one search: their timings would not be comparable."""
    models = sorted({g.name for g in gpus})
    if len(models) > 1:
        raise KernelproError(f"{what}: mixed GPU models ({', '.join(models)}); timings would not be comparable",
                             fix="pick GPUs of one model (run one search per model)")


def worker_env(gpu: int | str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker that sees only ``gpu``."""
    return {**(os.environ if base is None else base), VISIBLE: str(gpu)}


@contextlib.contextmanager
def pin_tools_to(gpu: int | str) -> Iterator[None]:
    """Run this process's own GPU tools (ncu, compute-sanitizer) on ``gpu`` for the duration."""
    before = os.environ.get(VISIBLE)
    os.environ[VISIBLE] = str(gpu)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(VISIBLE, None)
        else:
            os.environ[VISIBLE] = before


class PrecompilingPool:
    """An :class:`~kernelpro.search.async_eval.AsyncEvaluator` over one evaluator per GPU, compiling ahead.

    ``precompile(variant)`` runs on a CPU thread pool as soon as a variant is submitted (its errors are
    ignored: the slot's evaluator compiles again and reports them). Each GPU slot takes at most
    ``1 + ahead`` candidates, checking one while the next compiles; ``capacity`` (at most ``slots * (1 + ahead)``)
    bounds the candidates in flight in all.
    ``busy_s`` counts the slot's evaluation only, not the wait for its compile. An exception a slot
    evaluator raises is re-raised by :meth:`poll` (a candidate's failures are evaluations, not exceptions).
    """

    def __init__(self, evaluators: Sequence[Evaluator], precompile: Callable[[Variant], object] | None = None, *,
                 ahead: int = 1, capacity: int | None = None, compile_workers: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not evaluators:
            raise ValueError("a GPU pool needs at least one evaluator")
        self._precompile = precompile
        self._ahead = ahead if precompile is not None else 0
        self._capacity = len(evaluators) * (1 + self._ahead) if capacity is None else capacity
        if not len(evaluators) <= self._capacity <= len(evaluators) * (1 + self._ahead):
            raise ValueError(f"capacity {capacity} does not fit {len(evaluators)} slots, {self._ahead} ahead each")
        self._clock = clock
        self.locks = tuple(threading.Lock() for _ in evaluators)
        self._compiles = ThreadPoolExecutor(compile_workers or max(1, len(evaluators)), "compile") \
            if precompile is not None else None
        self._inboxes: list[queue.Queue[tuple[int, Variant, Future[object] | None] | None]] = \
            [queue.Queue() for _ in evaluators]
        self._load = [0] * len(evaluators)
        self._done: queue.Queue[tuple[int, Finished | None, BaseException | None]] = queue.Queue()
        self._tickets = 0
        self._threads = [threading.Thread(target=self._serve, args=(slot, e), daemon=True, name=f"gpu-slot-{slot}")
                         for slot, e in enumerate(evaluators)]
        for thread in self._threads:
            thread.start()

    @property
    def slots(self) -> int:
        return len(self._inboxes)

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, variant: Variant) -> int:
        slot = min(range(self.slots), key=lambda s: (self._load[s], s))
        if self._load[slot] > self._ahead or sum(self._load) >= self._capacity:
            raise RuntimeError(f"{self.capacity} evaluations are already in flight")
        self._tickets += 1
        compiled = self._compiles.submit(self._precompile, variant) if self._compiles is not None else None
        self._load[slot] += 1
        self._inboxes[slot].put((self._tickets, variant, compiled))
        return self._tickets

    def poll(self, timeout: float | None = None) -> list[Finished]:
        if not any(self._load):
            return []
        try:
            results = [self._done.get(timeout=timeout)]
        except queue.Empty:
            return []
        with contextlib.suppress(queue.Empty):
            while True:
                results.append(self._done.get_nowait())
        finished = []
        for slot, done, error in results:
            self._load[slot] -= 1
            if error is not None:
                raise error
            assert done is not None
            finished.append(done)
        return finished

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        if self._compiles is not None:
            self._compiles.shutdown(wait=False, cancel_futures=True)

    def _serve(self, slot: int, evaluator: Evaluator) -> None:
        while (job := self._inboxes[slot].get()) is not None:
            ticket, variant, compiled = job
            if compiled is not None:
                compiled.exception()  # wait for the compile; its errors are the evaluator's to report
            try:
                with self.locks[slot]:
                    started = self._clock()
                    evaluation = evaluator.evaluate(variant)
                    busy = self._clock() - started
            except BaseException as exc:  # handed to the driver's thread, which re-raises it
                self._done.put((slot, None, exc))
                continue
            self._done.put((slot, Finished(ticket, variant, evaluation, slot, busy), None))


class ExclusiveDiagnoser:
    """A diagnoser that holds a GPU's lock while it profiles, so no evaluation shares the GPU with ncu."""

    def __init__(self, inner: Diagnoser, lock: threading.Lock) -> None:
        self.inner = inner
        self.lock = lock

    def diagnose(self, node: Node) -> Diagnosis:
        with self.lock:
            return self.inner.diagnose(node)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def gpu_pool(gpus: Sequence[int] | None, make_evaluator: Callable[[Supervisor], Evaluator],
             precompile: Callable[[Variant], object] | None, *, ahead: int = 1, capacity: int | None = None,
             command: Sequence[str] | None = None) -> tuple[PrecompilingPool, list[Supervisor]]:
    """One supervised worker per GPU (seeing only that GPU; ``gpus`` None: one worker on the GPU this process
    sees) and a slot evaluator on each; close the pool, then the supervisors, when done."""
    envs = [None] if gpus is None else [worker_env(g) for g in gpus]
    supervisors = [Supervisor(env=env, command=command) for env in envs]
    pool = PrecompilingPool([make_evaluator(s) for s in supervisors], precompile, ahead=ahead, capacity=capacity)
    return pool, supervisors
