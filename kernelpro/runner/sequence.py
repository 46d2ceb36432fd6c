"""How a launch is issued: a task's or candidate's launch sequence, bound to loaded kernels and one size.

Every launch the wall, the timer and the profiled program make goes through here:
:class:`LaunchSequence` holds a plan (:class:`~kernelpro.task.Launch` tuple) and the loaded kernel of
each launch; :meth:`LaunchSequence.bind` evaluates each launch's geometry and scalar arguments at
one problem size, giving a :class:`BoundSequence` whose :meth:`~BoundSequence.issue` launches the
kernels in order over one tuple of task arguments (buffers and scalars in ``[[args]]`` order). A
NULL argument is :data:`NULL_POINTER`, 8 zero bytes. A backend's ``launch`` given a
:class:`BoundSequence` issues it (that is how a timer's batch or CUDA graph holds whole sequences).

:class:`ComparatorReference` stands where a reference sequence would for ``reference =
"comparator"``: it runs the task's ``[comparator]`` statement over the same buffers, with the
backend's array module bound to the library's name (``cupy`` on the GPU; the numpy stand-in's
arrays in CPU tests), and ``torch`` tensors sharing the buffers' memory when the library is torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kernelpro.runner.backend import Geometry
from kernelpro.runner.inputs import float32_to_bfloat16_bits, to_storage
from kernelpro.task import FLOAT_DTYPES, Launch, LaunchArg, Task

NULL_POINTER = np.uint64(0)


def typed_scalar(dtype: str, value: float) -> np.generic:
    """``value`` as the numpy scalar a by-value parameter of ``dtype`` expects."""
    if dtype == "bfloat16":
        return np.uint16(float32_to_bfloat16_bits(np.array([value], np.float32))[0])
    if dtype in FLOAT_DTYPES:
        return np.dtype(dtype).type(float(value))
    if dtype == "bool":
        return np.bool_(bool(value))
    return to_storage(np.array([int(value)]), dtype)[0]


@dataclass(frozen=True)
class BoundStep:
    """One launch at one size: the loaded kernel, its geometry, and where each argument comes from."""

    kernel: Any
    name: str
    geometry: Geometry
    sources: tuple[tuple[str, Any], ...]  # ("arg", index in the task's args) | ("value", scalar) | ("null", None)

    def args(self, task_args: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(task_args[v] if kind == "arg" else NULL_POINTER if kind == "null" else v
                     for kind, v in self.sources)

    def describe(self) -> dict[str, Any]:
        return {"kernel": self.name, "grid": list(self.geometry.grid), "block": list(self.geometry.block),
                "shared_mem": self.geometry.shared_mem}


@dataclass(frozen=True)
class BoundSequence:
    """A launch sequence at one size; :meth:`issue` queues every launch."""

    steps: tuple[BoundStep, ...]

    def issue(self, backend: Any, task_args: Sequence[Any]) -> None:
        for step in self.steps:
            backend.launch(step.kernel, step.geometry, step.args(task_args))

    def describe(self) -> list[dict[str, Any]]:
        return [step.describe() for step in self.steps]


class LaunchSequence:
    """``plan`` with ``kernels`` (launch kernel text → loaded kernel) for ``task``'s arguments."""

    def __init__(self, task: Task, plan: tuple[Launch, ...], kernels: Mapping[str, Any], label: str = "") -> None:
        self.task = task
        self.plan = plan
        self.kernels = dict(kernels)
        self.label = label or " -> ".join(launch.kernel for launch in plan)
        self._index = {a.name: k for k, a in enumerate(task.args)}

    def bind(self, env: Mapping[str, int | float | str]) -> BoundSequence:
        """Geometry and scalar arguments of every launch at ``env``."""
        steps = []
        for launch in self.plan:
            geometry = Geometry(launch.grid_dims(env), launch.block_dims(env), launch.shared_bytes(env))
            if launch.args is None:
                sources = tuple(("arg", k) for k in range(len(self.task.args)))
            else:
                sources = tuple(self._source(a, env) for a in launch.args)
            steps.append(BoundStep(self.kernels[launch.kernel], launch.kernel, geometry, sources))
        return BoundSequence(tuple(steps))

    def _source(self, arg: LaunchArg, env: Mapping[str, int | float | str]) -> tuple[str, Any]:
        if arg.kind == "arg":
            return "arg", self._index[arg.text]
        if arg.kind == "optional":
            return ("arg", self._index[arg.name]) if arg.expr.eval(env) else ("null", None)
        if arg.kind == "null":
            return "null", None
        return "value", typed_scalar(arg.dtype or "int32", arg.expr.eval(env))


class ComparatorReference:
    """The task's ``[comparator]`` statement as the reference (``reference = "comparator"``)."""

    def __init__(self, task: Task) -> None:
        if task.comparator is None:
            raise ValueError(f"task {task.name} has no [comparator]")
        self.task = task
        self.label = f"the comparator ({task.comparator.library}: {task.comparator.expr})"
        self.plan: tuple[Launch, ...] = ()
        self.code = compile(task.comparator.expr, f"<{task.name} comparator>", "exec")

    def bind(self, env: Mapping[str, int | float | str]) -> _BoundComparator:
        return _BoundComparator(self)


@dataclass(frozen=True)
class _BoundComparator:
    reference: ComparatorReference
    steps: tuple = ()

    def issue(self, backend: Any, task_args: Sequence[Any]) -> None:
        task = self.reference.task
        library = task.comparator.library
        namespace: dict[str, Any] = {library: backend.xp, "numpy": np, "np": np}
        if library == "cupy":
            import importlib.util

            if backend.xp is not np and importlib.util.find_spec("cupyx"):
                import cupyx

                namespace["cupyx"] = cupyx
        values = {a.name: (v if a.is_buffer else v.item()) for a, v in zip(task.args, task_args, strict=True)}
        if library == "torch":
            import torch

            namespace["torch"] = torch
            for arg in task.buffers:
                tensor = torch.from_dlpack(values[arg.name])
                values[arg.name] = tensor.view(torch.bfloat16) if arg.dtype == "bfloat16" else tensor
            stream = getattr(backend, "stream", None)
            with torch.cuda.stream(torch.cuda.ExternalStream(stream.ptr)) if stream is not None else nullcontext():
                exec(self.reference.code, {**namespace, **values})  # noqa: S102 - the task's own statement
            return
        exec(self.reference.code, {**namespace, **values})  # noqa: S102 - the task's own statement, as documented

    def describe(self) -> list[dict[str, Any]]:
        return [{"comparator": self.reference.label}]



def as_sequence(task: Task, kernel: Any) -> Any:
    """``kernel`` as a launch sequence: a :class:`LaunchSequence` or comparator as it is, a loaded kernel
    as the task's single launch of it."""
    if isinstance(kernel, LaunchSequence | ComparatorReference):
        return kernel
    if len(task.plan) != 1:
        raise ValueError(f"task {task.name} launches {len(task.plan)} kernels: pass a LaunchSequence")
    return LaunchSequence(task, task.plan, {task.plan[0].kernel: kernel}, label=task.plan[0].kernel)


def reference_plan(task: Task) -> tuple[Launch, ...]:
    """The task's plan with ``[correctness] reference`` (a kernel, single-launch tasks only) in place of the entry
    kernel."""
    reference = task.correctness.reference
    if reference is None or task.reference_is_comparator:
        return task.plan
    return tuple(replace(launch, kernel=reference) if launch.kernel_name == task.kernel else launch
                 for launch in task.plan)
