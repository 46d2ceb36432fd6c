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

from kernelpro.runner.backend import Geometry, LaunchRejected
from kernelpro.runner.buffers import DeviceBuffers
from kernelpro.runner.device import CupyBackend, gpu_memory_stats
from kernelpro.runner.inputs import make_inputs, scalar_args
from kernelpro.runner.records import CheckFailure, WallVerdict
from kernelpro.runner.wall import Wall, WallConfig, WallResult
from kernelpro.runner.worker import JobContext
from kernelpro.task import Task
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
    kernels = {}
    for role, check in (("reference", "reference"), ("candidate", "launch")):
        try:
            kernels[role] = backend.load_kernel(params[f"{role}_cubin"], params[f"{role}_symbol"])
        except LaunchRejected as exc:
            return WallResult((CheckFailure(check, str(exc), {"role": role}),), (), {}, None, False)
    wall = Wall(task, backend, kernels["reference"], kernels["candidate"], params.get("knobs", {}), config,
                ctx.progress)
    return wall.run()


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
    env = task.env(sizes=sizes, knobs=knobs)
    backend = CupyBackend(int(params.get("device", 0)), use_pool=False)
    try:
        kernel = backend.load_kernel(params["candidate_cubin"], params["candidate_symbol"])
        inputs = make_inputs(task, task.env(sizes=sizes), int(params.get("seed", 0)), size_index, 0)
        shapes = {arg.name: task.shape(arg, env) for arg in task.buffers}
        buffers = DeviceBuffers(backend.xp, task, shapes, inputs, 0, backend.to_host)
        geometry = Geometry(task.grid(env), task.block(env), task.dynamic_shared_bytes(env))
        for _ in range(int(params.get("launches", 1))):
            backend.launch(kernel, geometry, buffers.kernel_args(scalar_args(task, env)))
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
