"""Which asynchronous evaluator ``kernelpro optimize`` searches with: ``--parallel``, ``--gpus``, ``--ray``.

- Neither ``--gpus`` nor ``--ray``, ``--parallel 1`` (the default): today's evaluator wrapped in
  :class:`~kernelpro.search.async_eval.SerialEvaluator`: the serial search's calls, tree and journal.
- ``--gpus 0,1,2,3`` or ``all``, or ``--parallel N`` on the visible GPU: one supervised worker per GPU
  (:mod:`kernelpro.runner.gpu_pool`); ``N`` evaluations in flight (default two per GPU: one checked, one
  compiling), never more than one at a time on a GPU.
- ``--ray auto|ADDRESS``: one Ray actor per GPU of the cluster (:mod:`kernelpro.runner.ray_pool`).

The live display is told about each finished evaluation from the driver's thread (:class:`ObservedAsync`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kernelpro.errors import KernelproError
from kernelpro.search.async_eval import AsyncEvaluator, Finished, SerialEvaluator
from kernelpro.search.variant import Evaluation, Variant


@dataclass(frozen=True)
class Devices:
    """Where evaluations run: ``parallel`` in flight (None: the default for the devices), ``gpus`` (a
    ``--gpus`` spec) or a ``ray`` address (``auto`` or ``host:port``)."""

    parallel: int | None = None
    gpus: str | None = None
    ray: str | None = None

    def __post_init__(self) -> None:
        if self.parallel is not None and self.parallel < 1:
            raise KernelproError(f"--parallel {self.parallel}: need at least 1", fix="pass --parallel 1 or more")
        if self.gpus is not None and self.ray is not None:
            raise KernelproError("--gpus and --ray together: Ray picks the cluster's GPUs itself",
                                 fix="drop --gpus (Ray uses one actor per GPU it has), or drop --ray")

    @property
    def serial(self) -> bool:
        return self.gpus is None and self.ray is None and (self.parallel or 1) == 1


class ObservedAsync:
    """An asynchronous evaluator that reports each finished evaluation to ``observer`` from ``poll``."""

    def __init__(self, inner: AsyncEvaluator, observer: Callable[[Variant, Evaluation, int, float], None]) -> None:
        self.inner = inner
        self.observer = observer

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    @property
    def slots(self) -> int:
        return self.inner.slots

    def submit(self, variant: Variant) -> int:
        return self.inner.submit(variant)

    def poll(self, timeout: float | None = None) -> list[Finished]:
        finished = self.inner.poll(timeout)
        for done in finished:
            self.observer(done.variant, done.evaluation, done.slot, done.busy_s)
        return finished

    def close(self) -> None:
        self.inner.close()


def in_flight(parallel: int | None, slots: int) -> tuple[int, int]:
    """``(capacity, ahead)``: evaluations in flight and candidates compiled ahead per GPU."""
    capacity = 2 * slots if parallel is None else parallel
    if capacity < slots:
        raise KernelproError(f"--parallel {capacity} with {slots} GPUs leaves GPUs idle",
                             fix=f"pass --parallel {slots} or more (default: {2 * slots}, one compiling per GPU)")
    return capacity, math.ceil(capacity / slots) - 1


@contextlib.contextmanager
def search_evaluator(devices: Devices, make_slot: Callable[[Any], Any], precompile: Callable[[Variant], Any],
                     serial: Any) -> Iterator[tuple[AsyncEvaluator, list[str], Any]]:
    """The asynchronous evaluator for ``devices``, the GPU labels of its slots, and the lock of the GPU that
    profiling takes (None: profiling shares no GPU with the search's evaluations: serial, or Ray, whose
    actors hold their GPUs and leave the driver's to the profiler). ``make_slot(supervisor)`` builds one
    GPU's evaluator and ``precompile(variant)`` compiles a candidate and returns its compile-cache files (both
    picklable, for Ray); ``serial`` is the one-GPU evaluator of the serial path."""
    if devices.serial:
        yield SerialEvaluator(serial), ["0"], None
        return
    if devices.ray is not None:
        from kernelpro.runner.ray_pool import ray_pool

        with ray_pool(devices.ray, make_slot, devices.parallel, precompile) as (pool, labels):
            yield pool, labels, None
        return
    from kernelpro.runner.gpu_pool import gpu_pool, list_gpus, parse_gpus, pin_tools_to

    gpus = parse_gpus(devices.gpus, list_gpus()) if devices.gpus is not None else (0,)
    capacity, ahead = in_flight(devices.parallel, len(gpus))
    pool, supervisors = gpu_pool(gpus, make_slot, precompile, ahead=ahead, capacity=capacity)
    try:
        with pin_tools_to(gpus[0]) if devices.gpus is not None else contextlib.nullcontext():
            yield pool, [str(g) for g in gpus], pool.locks[0]
    finally:
        pool.close()
        for supervisor in supervisors:
            supervisor.close()
