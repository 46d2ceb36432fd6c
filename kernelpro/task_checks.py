"""Task checks beyond the one-table-at-a-time reading of :mod:`kernelpro.task_loader`.

* ``TODO`` markers left in a draft (``kernelpro init``): every one is named, with its line.
* Keys that must hold one string (``kernel``, ``dtype``, ``reference``...): a list there is an
  error, not an ``unhashable type`` crash later.
* The [[args]] of a launch-sequence task: task arguments in any order, each passed to a launch.
* At every problem size: each scalar fits its dtype (``COLS = 99999999999`` is no ``int32``),
  the buffers fit the GPU (the visible one's memory, else an H100's 80 GB), and each launch's
  geometry is one CUDA accepts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from kernelpro.c_types import fits
from kernelpro.cuda_source import KernelSignature, Param
from kernelpro.device_values import DEFAULT_MEMORY_BYTES
from kernelpro.expr import ExprError
from kernelpro.task import Argument, Launch, Task
from kernelpro.toml_reader import TomlReader

TODO = "TODO"
# Keys whose value is one string, per table (args: per entry).
STRING_KEYS: dict[str, tuple[str, ...]] = {
    "task": ("name", "kernel", "description"),
    "args": ("name", "dtype", "intent", "init"),
    "correctness": ("reference",),
    "comparator": ("library", "expr"),
    "origin": ("path", "function"),
}
_MAX_GRID = (2**31 - 1, 65535, 65535)
_MAX_BLOCK = (1024, 1024, 64)


_TODO = re.compile(rf"\b{TODO}\b")


def _walk(value: Any, path: tuple) -> list[tuple[tuple, str]]:
    if isinstance(value, dict):
        return [hit for key, sub in value.items() if key != "description" for hit in _walk(sub, (*path, key))]
    if isinstance(value, list):
        return [hit for index, sub in enumerate(value) for hit in _walk(sub, (*path, index))]
    return [(path, value)] if isinstance(value, str) and _TODO.search(value) else []


def check_no_todos(r: TomlReader, meta: dict) -> None:
    """Refuse a draft that still holds ``TODO``: the error names every one, with its line."""
    hits = _walk(meta, ())
    if not hits:
        return
    where = []
    for path, value in hits:
        keys, node = [], meta
        for p in path:
            if isinstance(p, int) and isinstance(node, list) and isinstance(node[p], dict) and "name" in node[p]:
                keys[-1] += f"[{node[p]['name']}]"
            elif isinstance(p, str):
                keys.append(p)
            node = node[p]
        line = r.lines.line(*path) if r.lines else None
        if line is None and r.lines is not None:
            line = r.lines.line(*path[:-1])
        where.append((line, f"line {line}: {'.'.join(keys)} = {value!r}"))
    first = min((w[0] for w in where if w[0] is not None), default=None)
    raise r.error(f"{len(hits)} TODO(s) left in the task: " + "; ".join(w[1] for w in where), line=first,
                  fix="replace each TODO with the value (see the comment beside it and docs/task-format.md)")


def check_string_keys(r: TomlReader, meta: dict) -> None:
    for table, keys in STRING_KEYS.items():
        value = meta.get(table)
        entries = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        for index, entry in enumerate(entries):
            for key in keys:
                if key in entry and not isinstance(entry[key], str):
                    where = (table, index, key) if isinstance(value, list) else (table, key)
                    raise r.error(f"{table}.{key} must be one string, got {entry[key]!r}", *where,
                                  fix=f'write {key} = "..."' + (" (a launch sequence is [[launch]] tables, one "
                                                                "kernel each)" if key == "kernel" else ""))


def read_free_args(loader: Any, entries: list[dict], names: set[str]) -> tuple[Argument, ...]:
    """[[args]] of a task whose launches list their arguments: unique names, buffers or scalars by their keys."""
    args, seen = [], set()
    sig = KernelSignature("the task", (), 0, False, None, 0, 0)
    for index, entry in enumerate(entries):
        name = entry.get("name")
        if name in seen:
            raise loader.error(f"argument {name!r} is declared twice", "args", index, "name",
                               fix="give every task argument its own name")
        seen.add(name)
        param = Param(str(name or ""), "", "value" not in entry, False, False, str(name))
        args.append(loader.read_arg(index, entry, param, names, sig, ""))
    if not any(a.is_output for a in args):
        raise loader.error("no output argument: nothing to check a candidate against", "args",
                           fix='mark the buffers the kernels write with intent = "out" (or "inout")')
    return tuple(args)


def check_every_buffer_passed(r: TomlReader, args: tuple[Argument, ...], launches: tuple[Launch, ...]) -> None:
    passed = {name for launch in launches for name in launch.arg_names(args)}
    for index, arg in enumerate(args):
        if arg.is_buffer and arg.name not in passed:
            raise r.error(f"buffer {arg.name} is passed to no launch", "args", index, "name",
                          fix=f"pass {arg.name} in a [[launch]] args list, or remove it")


def check_scalars(r: TomlReader, task: Task, env: Mapping, label: str) -> None:
    """Every scalar value (task scalars and launch expressions) fits its dtype at this size."""
    for index, arg in enumerate(task.args):
        if arg.is_buffer or arg.value is None:
            continue
        try:
            value = arg.value.eval(env)
        except ExprError as exc:
            raise r.error(f"value of {arg.name}: {exc} at {label}", "args", index, "value",
                          fix="fix the expression") from None
        if not fits(arg.dtype, value):
            raise r.error(f"scalar {arg.name} = {value} does not fit {arg.dtype} at {label}", "args", index, "value",
                          fix=f"use a wider dtype (and C type) for {arg.name}, or a smaller problem size")


def memory_problem(task: Task, env: Mapping, label: str, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> str | None:
    """Why the buffers of one problem size cannot fit in ``memory_bytes``, or None when they fit."""
    total = task.buffer_bytes(env)
    if total <= memory_bytes:
        return None
    biggest = max(task.buffers, key=lambda a: task.nbytes(a, env))
    return (f"the buffers need {format_bytes(total)} at {label} (largest: {biggest.name}, "
            f"{format_bytes(task.nbytes(biggest, env))}), more than the GPU's {format_bytes(memory_bytes)}")


def check_launch_scalars(r: TomlReader, launch: Launch, env: Mapping, label: str, where: tuple) -> None:
    """Each expression a launch passes to a by-value parameter fits that parameter's type at this size."""
    for arg in launch.args or ():
        if arg.kind != "expr" or arg.dtype is None:
            continue
        try:
            value = arg.expr.eval(env)
        except ExprError as exc:
            raise r.error(f"launch of {launch.kernel}: argument {arg.text!r}: {exc} at {label}", *where, "args",
                          fix="fix the expression") from None
        if not fits(arg.dtype, value):
            raise r.error(f"launch of {launch.kernel}: argument {arg.text} = {value} does not fit {arg.dtype} at "
                          f"{label}", *where, "args", fix="use a wider parameter type, or a smaller problem size")


def check_memory(r: TomlReader, task: Task, env: Mapping, label: str,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
    """The buffers of one problem size must fit on the GPU (checked before any allocation)."""
    problem = memory_problem(task, env, label, memory_bytes)
    if problem is not None:
        raise r.error(problem, "params", fix="use a smaller problem size (or check a shape expression)")


def check_geometry(r: TomlReader, launch: Launch, env: Mapping, label: str, where: tuple) -> None:
    """Grid and block of one launch are positive and within CUDA's limits at this size."""
    what = f"launch of {launch.kernel}"
    try:
        grid, block = launch.grid_dims(env), launch.block_dims(env)
        shared = launch.shared_bytes(env)
    except ExprError as exc:
        raise r.error(f"{what}: {exc} at {label}", *where, fix="fix the expression") from None
    threads = math.prod(block)
    if not 1 <= threads <= 1024 or any(b > m for b, m in zip(block, _MAX_BLOCK, strict=True)):
        raise r.error(f"{what}: block has {threads} threads {block} at {label}", *where, "block",
                      fix="a CUDA block holds 1 to 1024 threads (z at most 64)")
    if min(grid) < 1 or any(g > m for g, m in zip(grid, _MAX_GRID, strict=True)):
        raise r.error(f"{what}: grid {grid} at {label}", *where, "grid",
                      fix="every grid dimension must be at least 1 (y and z at most 65535)")
    if shared < 0:
        raise r.error(f"{what}: shared_mem {shared} at {label}", *where, "shared_mem", fix="must be >= 0 bytes")


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units: ``768.0 MiB``, ``80.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def null_buffers(task: Task, env: Mapping) -> set[str]:
    """Buffers every launch passes as an optional that is NULL at ``env`` (they may have zero-sized shapes)."""
    passes: dict[str, list[bool]] = {}
    for launch in task.plan:
        for arg in launch.args or ():
            if arg.kind == "arg":
                passes.setdefault(arg.text, []).append(True)
            elif arg.kind == "optional":
                passes.setdefault(arg.name, []).append(bool(arg.expr.eval(env)))
    return {name for name, used in passes.items() if not any(used)}
