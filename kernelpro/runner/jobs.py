"""GPU jobs the worker runs: ``wall``, ``launch-once`` (the sanitizer's target) and ``device-info``.

Each job makes its own :class:`~kernelpro.runner.device.CupyBackend` and closes it before
replying, so no module, buffer or stream outlives the job; the reply carries the GPU memory in
use afterwards (what the leak test watches). Parameters are plain JSON: the task's text and
path, cubin paths and kernel symbols, knobs, the wall configuration.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any

from kernelpro.candidate_launch import candidate_plan
from kernelpro.device_values import values_for_device
from kernelpro.runner.backend import LaunchRejected
from kernelpro.runner.buffers import DeviceBuffers
from kernelpro.runner.device import CupyBackend, gpu_memory_stats
from kernelpro.runner.inputs import make_inputs, scalar_args
from kernelpro.runner.records import CheckFailure, WallVerdict
from kernelpro.runner.sequence import ComparatorReference, LaunchSequence, reference_plan
from kernelpro.runner.wall import Wall, WallConfig, WallResult
from kernelpro.runner.worker import JobContext
from kernelpro.task import Task
from kernelpro.task_checks import memory_problem
from kernelpro.task_loader import parse_task


def _task(params: dict[str, Any]) -> Task:
    return parse_task(params["task_source"], params["task_path"])


def wall_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The correctness wall (and timing) of one candidate; returns a :class:`WallVerdict` as a dict."""
    started = time.perf_counter()
    task = _task(params)
    config = WallConfig.from_dict(params["config"])
    backend = CupyBackend(int(params.get("device", 0)))
    try:
        device = backend.device_info()
        result = _run_wall(task, backend, params, config, ctx)
    finally:
        backend.close()
    if result.context_lost or backend.context_lost:  # the latter: an error nobody saw until the final synchronize
        ctx.restart_after()
        memory = {}
    else:
        gc.collect()
        memory = gpu_memory_stats()
    return WallVerdict(
        task=task.name, kernel=task.kernel, seed=config.seed, failures=result.failures, flags=result.flags,
        checked=result.checked, timing=result.timing, device=device, memory=memory,
        seconds=time.perf_counter() - started,
    ).to_dict()


def _run_wall(task: Task, backend: CupyBackend, params: dict[str, Any], config: WallConfig,
              ctx: JobContext) -> WallResult:
    problem = too_big_for(task, backend.device_info())
    if problem is not None:  # the loader checked an H100's 80 GB; this GPU may have less
        return WallResult((CheckFailure("reference", problem + ": a task problem, not the candidate's"),), (), {},
                          None, False)
    sequences = {}
    for role, check in (("reference", "reference"), ("candidate", "launch")):
        try:
            sequences[role] = load_sequence(task, backend, params, role)
        except LaunchRejected as exc:
            return WallResult((CheckFailure(check, str(exc), {"role": role}),), (), {}, None, False)
    wall = Wall(task, backend, sequences["reference"], sequences["candidate"], params.get("knobs", {}), config,
                ctx.progress)
    return wall.run()


def too_big_for(task: Task, info: Any) -> str | None:
    """Why the task's buffers do not fit in the visible GPU's memory at some problem size (None when they do)."""
    device = values_for_device(info.compute_capability, info.sm_count, info.l2_bytes)
    for sizes in task.problem_sizes():
        label = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "the default size"
        problem = memory_problem(task, task.env(sizes=sizes, device=device), label, info.total_memory_bytes)
        if problem is not None:
            return problem
    return None


def load_sequence(task: Task, backend: Any, params: dict[str, Any], role: str) -> LaunchSequence | ComparatorReference:
    """The ``role``'s launch sequence with its kernels loaded from ``{role}_cubin``.

    ``{role}_symbols`` maps each launch's kernel to its symbol; the candidate's plan is read from
    ``candidate_source`` (its own launch block, else the task's). Without symbols (older job files),
    ``{role}_symbol`` is the one kernel of a single-launch task.
    """
    if role == "reference" and task.reference_is_comparator:
        return ComparatorReference(task)
    if role == "candidate" and params.get("candidate_source") is not None:
        plan = candidate_plan(task, params["candidate_source"], knobs=params.get("knobs", {}))
    else:
        plan = reference_plan(task) if role == "reference" else task.plan
    symbols = params.get(f"{role}_symbols") or {plan[0].kernel: params[f"{role}_symbol"]}
    cubin = params[f"{role}_cubin"]
    kernels = {text: backend.load_kernel(cubin, symbol) for text, symbol in symbols.items()}
    return LaunchSequence(task, plan, kernels)


def smallest_size(task: Task, knobs: dict[str, Any]) -> int:
    """Index of the problem size whose buffers take the fewest bytes (what sanitizers run on)."""
    def total(index: int) -> int:
        env = task.env(sizes=task.problem_sizes()[index], knobs=knobs)
        return sum(task.nbytes(arg, env) for arg in task.buffers)
    return min(range(len(task.problem_sizes())), key=total)


def launch_once_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Launch the candidate without pool or guards: once at the smallest problem size (for compute-sanitizer),
    or ``launches`` times at problem size ``size_index`` (0: the benchmark size, for Nsight Compute)."""
    task = _task(params)
    knobs = dict(params.get("knobs", {}))
    size_index = params["size_index"] if params.get("size_index") is not None else smallest_size(task, knobs)
    sizes = task.problem_sizes()[size_index]
    backend = CupyBackend(int(params.get("device", 0)), use_pool=False)
    info = backend.device_info()
    env = task.env(sizes=sizes, knobs=knobs, device=values_for_device(info.compute_capability, info.sm_count,
                                                                       info.l2_bytes))
    try:
        sequence = load_sequence(task, backend, params, "candidate").bind(env)
        inputs = make_inputs(task, task.env(sizes=sizes), int(params.get("seed", 0)), size_index, 0)
        shapes = {arg.name: task.shape(arg, env) for arg in task.buffers}
        buffers = DeviceBuffers(backend.xp, task, shapes, inputs, 0, backend.to_host)
        for _ in range(int(params.get("launches", 1))):
            sequence.issue(backend, buffers.kernel_args(scalar_args(task, env)))
        backend.synchronize()
        del buffers
    finally:
        backend.close()
    return {"size": sizes, "elements": {a.name: math.prod(task.shape(a, env)) for a in task.buffers}}


def device_info_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The GPU's description and memory use."""
    backend = CupyBackend(int(params.get("device", 0)))
    try:
        info = backend.device_info()
    finally:
        backend.close()
    if backend.context_lost:
        ctx.restart_after()
    return {"device": info.to_dict(), "memory": gpu_memory_stats()}


JOBS = {"wall": wall_job, "launch-once": launch_once_job, "device-info": device_info_job}
