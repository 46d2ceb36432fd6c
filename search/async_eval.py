"""The asynchronous evaluator: submit variants, poll for finished evaluations, at most ``capacity`` in flight.

:class:`AsyncEvaluator` is the search's view of many GPUs (:mod:`kernelpro.search.parallel` drives it);
:class:`Evaluator` stays the view of one. Two implementations live here, neither needing a GPU
(the per-GPU and Ray ones are :mod:`kernelpro.runner.gpu_pool` and :mod:`kernelpro.runner.ray_pool`):

- :class:`SerialEvaluator` wraps today's evaluator: capacity 1, the evaluation runs inside ``poll``, so
  the search at ``--parallel 1`` makes exactly the calls, in exactly the order, of the serial search.
- :class:`SimulatedEvaluator` evaluates on a simulated clock with fixed latencies: the CPU tests and the
  benchmark, where a compile pool feeds the GPU slots.

Every implementation returns failures as evaluations (a worker or actor lost mid-evaluation is a ``crash``
failure of that candidate); ``poll`` raises only for errors of the search's own making.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kernelpro.search.interfaces import Evaluator
from kernelpro.search.variant import Evaluation, Variant


@dataclass(frozen=True)
class Finished:
    """One finished evaluation: its ticket (from ``submit``), the slot (GPU) it ran on and its busy seconds there."""

    ticket: int
    variant: Variant
    evaluation: Evaluation
    slot: int
    busy_s: float


class AsyncEvaluator(Protocol):
    """Evaluations in flight, at most :attr:`capacity` at a time."""

    @property
    def capacity(self) -> int:
        """How many evaluations may be in flight at once."""
        ...

    @property
    def slots(self) -> int:
        """How many GPUs (slots) run evaluations; busy seconds are reported per slot."""
        ...

    def submit(self, variant: Variant) -> int:
        """Start evaluating ``variant``; returns its ticket. Raises RuntimeError when ``capacity`` are in flight."""
        ...

    def poll(self, timeout: float | None = None) -> list[Finished]:
        """Wait for at least one evaluation in flight to finish and return all that have (none in flight: []).

        With ``timeout`` (seconds), wait at most that long and return [] if none finished: the search polls
        so while a proposal is in progress, to journal each evaluation the moment it finishes.
        """
        ...

    def close(self) -> None:
        """Stop the workers (evaluations still in flight are abandoned)."""
        ...


class SerialEvaluator:
    """Today's evaluator as an asynchronous one of capacity 1: ``poll`` runs the one submitted evaluation."""

    capacity = 1
    slots = 1

    def __init__(self, evaluator: Evaluator, clock: Callable[[], float] = time.monotonic) -> None:
        self.evaluator = evaluator
        self._clock = clock
        self._next: tuple[int, Variant] | None = None
        self._tickets = 0

    def submit(self, variant: Variant) -> int:
        if self._next is not None:
            raise RuntimeError("the serial evaluator holds one evaluation at a time")
        self._tickets += 1
        self._next = (self._tickets, variant)
        return self._tickets

    def poll(self, timeout: float | None = None) -> list[Finished]:
        # Capacity 1 never proposes while an evaluation is in flight, so it is never polled with a timeout.
        if self._next is None:
            return []
        (ticket, variant), self._next = self._next, None
        started = self._clock()
        evaluation = self.evaluator.evaluate(variant)
        return [Finished(ticket, variant, evaluation, 0, self._clock() - started)]

    def close(self) -> None:
        self._next = None


class SimClock:
    """A simulated clock: time moves only when something advances it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance_to(self, when: float) -> None:
        self.now = max(self.now, when)


@dataclass(frozen=True)
class Latencies:
    """Simulated seconds: compiling on a CPU worker, and the wall plus timing on a GPU."""

    compile_s: float = 1.5
    gpu_s: float = 2.0


class SimulatedEvaluator:
    """An evaluator on a :class:`SimClock`: ``gpus`` GPU slots fed by ``compilers`` CPU compile workers.

    A submitted variant compiles on the first free compile worker, then runs on the first free GPU once its
    compile is done; ``capacity`` is ``gpus + compilers``, so each GPU can have the next candidate compiling
    while it checks one (a GPU never waits on a compile that could have started earlier). The result is the
    inner evaluator's, computed at submit; ``poll`` advances the clock to the next finish (``poll(timeout)``
    returns what finished by now and does not advance it).
    """

    def __init__(self, inner: Evaluator, clock: SimClock, *, gpus: int = 1, compilers: int | None = None,
                 latencies: Latencies = Latencies()) -> None:
        if gpus < 1:
            raise ValueError(f"need at least one GPU slot, got {gpus}")
        self.inner = inner
        self.clock = clock
        self.latencies = latencies
        self._gpus = gpus
        self._compilers = gpus if compilers is None else compilers
        self._compiler_free = [clock.now] * self._compilers
        self._gpu_free = [clock.now] * gpus
        self._events: list[tuple[float, int, Finished]] = []
        self._tickets = 0

    @property
    def capacity(self) -> int:
        return self._gpus + self._compilers

    @property
    def slots(self) -> int:
        return self._gpus

    def submit(self, variant: Variant) -> int:
        if len(self._events) >= self.capacity:
            raise RuntimeError(f"{self.capacity} evaluations are already in flight")
        self._tickets += 1
        now = self.clock.now
        c = min(range(self._compilers), key=lambda i: self._compiler_free[i])
        compiled = max(now, self._compiler_free[c]) + self.latencies.compile_s
        self._compiler_free[c] = compiled
        evaluation = self.inner.evaluate(variant)
        compile_failed = not evaluation.ok and (evaluation.failure or "").startswith("compile")
        busy = 0.0 if compile_failed else self.latencies.gpu_s
        g = min(range(self._gpus), key=lambda i: self._gpu_free[i])
        done = max(compiled, self._gpu_free[g]) + busy
        self._gpu_free[g] = done
        heapq.heappush(self._events, (done, self._tickets, Finished(self._tickets, variant, evaluation, g, busy)))
        return self._tickets

    def poll(self, timeout: float | None = None) -> list[Finished]:
        if not self._events:
            return []
        if timeout is not None:
            # Simulated time passes only when someone advances the clock (a simulated proposer does): with a
            # timeout, return what has finished by now and leave the clock alone, so runs are deterministic.
            finished = []
            while self._events and self._events[0][0] <= self.clock.now:
                finished.append(heapq.heappop(self._events)[2])
            return finished
        when = self._events[0][0]
        self.clock.advance_to(when)
        finished = []
        while self._events and self._events[0][0] <= when:
            finished.append(heapq.heappop(self._events)[2])
        return finished

    def close(self) -> None:
        self._events.clear()
