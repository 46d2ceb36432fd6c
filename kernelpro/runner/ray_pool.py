"""A cluster through Ray (the optional extra ``kernelpro[ray]``): one actor per GPU, compiles as CPU tasks.

Each :class:`GpuActor` is created with ``num_gpus=1`` (Ray sets its ``CUDA_VISIBLE_DEVICES``) and owns a
:class:`~kernelpro.runner.supervisor.Supervisor` whose worker inherits that, so every candidate goes
through the same supervised worker, watchdog and wall as on one machine. A candidate's compile runs first
as a Ray task on any CPU (``precompile(variant)`` returns the compile-cache files as bytes); the actor
writes them into its own cache before evaluating, so nodes share no file system.

A lost actor or node is a ``crash`` failure of the candidate it was evaluating, never retried (a
candidate that killed a worker would kill the next one too); the slot gets a new actor and the search goes
on. GPUs of different models in one cluster are refused (their timings would not be comparable).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kernelpro.errors import KernelproError
from kernelpro.runner.gpu_pool import GpuInfo, check_one_model
from kernelpro.search.async_eval import Finished
from kernelpro.search.variant import Evaluation, Variant

CacheFiles = Mapping[str, bytes]  # path relative to the compile cache folder → content


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise KernelproError("--ray needs Ray, which is not installed",
                             fix="pip install 'kernelpro[ray]' (or drop --ray to use this machine's GPUs)") from None
    return ray


def install_cache_files(files: CacheFiles, cache_dir: Path) -> None:
    """Write compile-cache files shipped from another node, each entry renamed into place whole."""
    entries: dict[str, dict[str, bytes]] = {}
    for name, data in files.items():
        entry, _, leaf = name.partition("/")
        if not entry or not leaf or "/" in leaf or entry.startswith("."):
            raise ValueError(f"not a compile-cache file: {name!r}")
        entries.setdefault(entry, {})[leaf] = data
    cache_dir.mkdir(parents=True, exist_ok=True)
    for entry, leaves in entries.items():
        if (cache_dir / entry).exists():
            continue
        tmp = cache_dir / f".{entry}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        for leaf, data in leaves.items():
            (tmp / leaf).write_bytes(data)
        with contextlib.suppress(OSError):  # another writer got there first: keep theirs
            os.rename(tmp, cache_dir / entry)
        if tmp.exists():
            for leaf in leaves:
                (tmp / leaf).unlink()
            tmp.rmdir()


class GpuActor:
    """One GPU's evaluator in a Ray actor (``ray.remote(num_gpus=1)`` is applied by :class:`RayPool`)."""

    def __init__(self, make_slot: Callable[[Any], Any], cache_dir: str | None) -> None:
        from kernelpro.runner.supervisor import Supervisor

        self.supervisor = Supervisor()  # its worker inherits the CUDA_VISIBLE_DEVICES Ray gave this actor
        self.evaluator = make_slot(self.supervisor)
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def info(self) -> dict[str, Any]:
        """What this actor sees: its devices and the GPU model (from the worker, when it can tell)."""
        return {"devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(), "node": os.uname().nodename}

    def evaluate(self, variant: dict[str, Any], files: CacheFiles) -> tuple[dict[str, Any], float]:
        if files:
            from kernelpro.compiler import default_cache_dir

            install_cache_files(files, self.cache_dir or default_cache_dir())
        started = time.monotonic()
        evaluation = self.evaluator.evaluate(Variant.from_dict(variant))
        return evaluation.to_dict(), time.monotonic() - started


def _compile(precompile: Callable[[Variant], CacheFiles] | None, variant: dict[str, Any]) -> CacheFiles:
    if precompile is None:
        return {}
    try:
        return precompile(Variant.from_dict(variant))
    except Exception:  # noqa: BLE001 - the actor compiles again and reports the error as the candidate's
        return {}


class RayPool:
    """An :class:`~kernelpro.search.async_eval.AsyncEvaluator` over one :class:`GpuActor` per GPU."""

    def __init__(self, make_slot: Callable[[Any], Any], *, gpus: int | None = None,
                 precompile: Callable[[Variant], CacheFiles] | None = None, parallel: int | None = None,
                 cache_dir: str | None = None) -> None:
        self.ray = require_ray()
        total = int(self.ray.cluster_resources().get("GPU", 0))
        count = total if gpus is None else gpus
        if count < 1 or count > total:
            raise KernelproError(f"the Ray cluster has {total} GPU(s), {count} wanted",
                                 fix="add GPU nodes to the cluster, or check `ray status`")
        self._make_slot, self._cache_dir = make_slot, cache_dir
        self._actor_class = self.ray.remote(num_gpus=1, num_cpus=0, max_restarts=0, max_task_retries=0)(GpuActor)
        self._compile = self.ray.remote(num_cpus=1, max_retries=0)(_compile)
        self._precompile = precompile
        if parallel is not None and parallel < count:
            raise KernelproError(f"--parallel {parallel} with {count} GPUs in the Ray cluster leaves GPUs idle",
                                 fix=f"pass --parallel {count} or more (default: {2 * count})")
        self._ahead = 1 if parallel is None else math.ceil(parallel / count) - 1
        self.actors = [self._new_actor() for _ in range(count)]
        self._load = [0] * count
        self._pending: dict[Any, tuple[int, Variant, int]] = {}  # object ref → (ticket, variant, slot)
        self._tickets = 0

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._make_slot, self._cache_dir)

    @property
    def slots(self) -> int:
        return len(self.actors)

    @property
    def capacity(self) -> int:
        return self.slots * (1 + self._ahead)

    def info(self) -> list[dict[str, Any]]:
        """Each actor's :meth:`GpuActor.info`."""
        return self.ray.get([a.info.remote() for a in self.actors])

    def submit(self, variant: Variant) -> int:
        slot = min(range(self.slots), key=lambda s: (self._load[s], s))
        if self._load[slot] > self._ahead:
            raise RuntimeError(f"{self.capacity} evaluations are already in flight")
        self._tickets += 1
        data = variant.to_dict()
        files = self._compile.remote(self._precompile, data)  # a CPU task: the actor waits for its bytes
        ref = self.actors[slot].evaluate.remote(data, files)
        self._load[slot] += 1
        self._pending[ref] = (self._tickets, variant, slot)
        return self._tickets

    def poll(self, timeout: float | None = None) -> list[Finished]:
        if not self._pending:
            return []
        ready, _ = self.ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        if not ready:
            return []
        more, _ = self.ray.wait([r for r in self._pending if r not in ready], num_returns=len(self._pending) - 1,
                                timeout=0) if len(self._pending) > 1 else ([], [])
        return [self._finished(ref) for ref in [*ready, *more]]

    def _finished(self, ref: Any) -> Finished:
        ticket, variant, slot = self._pending.pop(ref)
        self._load[slot] -= 1
        try:
            evaluation, busy = self.ray.get(ref)
            return Finished(ticket, variant, Evaluation.from_dict(evaluation), slot, busy)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                self.ray.exceptions.NodeDiedError) as exc:
            # Not retried: the candidate may be what killed the actor. The slot gets a fresh actor.
            self.actors[slot] = self._new_actor()
            what = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            return Finished(ticket, variant, Evaluation.failed(
                "wall", f"crash: the GPU worker (Ray actor on slot {slot}) was lost during this candidate: {what}"),
                slot, 0.0)

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self._pending.clear()


def cluster_models(nodes: list[Mapping[str, Any]]) -> list[str]:
    """The GPU models of the live nodes of ``ray.nodes()`` (Ray's ``accelerator_type:<model>`` resources)."""
    return sorted({key.split(":", 1)[1] for node in nodes if node.get("Alive")
                   for key in node.get("Resources", {}) if key.startswith("accelerator_type:")})


def check_cluster_models(models: list[str]) -> None:
    """Refuse a cluster whose GPUs are of different models."""
    check_one_model([GpuInfo(i, m) for i, m in enumerate(models)], "--ray")


@contextlib.contextmanager
def ray_pool(address: str, make_slot: Callable[[Any], Any], parallel: int | None,
             precompile: Callable[[Variant], CacheFiles] | None = None) -> Iterator[tuple[RayPool, list[str]]]:
    """Connect to the Ray cluster at ``address`` (``auto``: the one this machine belongs to) and build the
    pool; the GPU labels are ``node:devices`` per slot."""
    ray = require_ray()
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise KernelproError(f"--ray {address}: cannot connect to a Ray cluster ({str(exc).splitlines()[0]})",
                             fix="start one with `ray start --head` (or pass its address, host:port)") from None
    check_cluster_models(cluster_models(ray.nodes()))
    pool = RayPool(make_slot, precompile=precompile, parallel=parallel)
    try:
        labels = [f"{i['node']}:{i['devices']}" for i in pool.info()]
        yield pool, labels
    finally:
        pool.close()
