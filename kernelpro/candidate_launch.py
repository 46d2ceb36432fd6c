"""A candidate's own launch: the ``/* kernelpro launch ... */`` block in its source.

The task's metadata is the task's; a candidate (a variant's whole ``.cu``) may add a second block
that replaces the task's launch sequence — another grid, block, dynamic shared memory, kernels
(one fused kernel for the task's two), each with its own arguments::

    /* kernelpro launch
    [[launch]]
    kernel = "softmax_rows_warp"
    grid = ["ceil_div(ROWS, 8)"]
    block = ["256"]
    args = ["x", "y", "ROWS", "COLS"]
    */

The launches are read like the task's ``[[launch]]`` (:mod:`kernelpro.launch_spec`) against the
candidate's kernels, but the buffers stay the task's: arguments name task arguments only (no new
buffers, no aliasing), and every output must reach some launch — a candidate cannot drop an output.
Without a block the candidate runs the task's launch sequence, and each kernel of it must still be
there with the task's parameter types. Because the block is source text, the variant's identity,
the journal, ``tree.json`` and ``best.cu`` carry it unchanged.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from kernelpro.cuda_source import find_kernels, line_of
from kernelpro.errors import TaskError
from kernelpro.launch_spec import LaunchReader
from kernelpro.task import Launch, Task
from kernelpro.task_checks import check_geometry, check_launch_scalars
from kernelpro.toml_lines import TomlLines
from kernelpro.toml_reader import TomlReader

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LAUNCH_BLOCK = re.compile(r"/\*[ \t]*kernelpro[ \t]+launch\b[^\n]*\n(.*?)\*/", re.DOTALL)
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def has_launch_block(source: str) -> bool:
    return LAUNCH_BLOCK.search(source) is not None


def launch_block_text(source: str) -> str | None:
    """The whole ``/* kernelpro launch ... */`` comment of ``source``, or None."""
    match = LAUNCH_BLOCK.search(source)
    return match.group(0) if match else None


def candidate_plan(task: Task, source: str, path: str | Path = "candidate.cu",
                   knobs: Mapping[str, int | float | str] | None = None) -> tuple[Launch, ...]:
    """The launch sequence ``source`` runs (its block, else the task's), checked; a :class:`TaskError` if wrong."""
    path = Path(path)
    kernels = find_kernels(source)
    match = LAUNCH_BLOCK.search(source)
    if match is None:
        return _task_plan_in(task, kernels, path)
    reader = TomlReader(source, path)
    first = line_of(source, match.start(1))
    try:
        meta = tomllib.loads(match.group(1))
    except tomllib.TOMLDecodeError as exc:
        pos = _TOML_POS.search(str(exc))
        raise TaskError(f"bad TOML in the launch block: {_TOML_POS.sub('', str(exc)).strip()}", file=path,
                        line=first + int(pos.group(1)) - 1 if pos else first,
                        fix="fix the TOML syntax (strings need quotes; each launch is a [[launch]] table)") from None
    reader.lines = TomlLines(match.group(1), first)
    extra = sorted(set(meta) - {"launch"})
    if extra:
        raise reader.error(f"the launch block may only hold [[launch]] tables, not [{extra[0]}]", extra[0],
                           fix="the task's other settings live in its own metadata and cannot be changed")
    names = set(task.params) | set(task.knobs)
    default = task.plan[0].kernel if len(task.plan) == 1 else None
    plan = LaunchReader(reader, kernels, task.args, names).read(meta.get("launch"), default)
    passed = {name for launch in plan for name in launch.arg_names(task.args)}
    missing = [a.name for a in task.outputs if a.name not in passed]
    if missing:
        raise reader.error(f"no launch writes output {missing[0]}: a candidate must produce every output of the "
                           "task", "launch", fix=f"pass {missing[0]} to the kernel that computes it")
    for sizes in task.problem_sizes():
        env = task.env(sizes=sizes, knobs=knobs)
        label = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "the default size"
        for index, launch in enumerate(plan):
            where = ("launch", index) if isinstance(meta.get("launch"), list) else ("launch",)
            check_geometry(reader, launch, env, label, where)
            check_launch_scalars(reader, launch, env, label, where)
    return plan


def _task_plan_in(task: Task, kernels: Mapping, path: Path) -> tuple[Launch, ...]:
    """The task's plan, after checking the candidate still has each kernel with the task's parameter types."""
    task_kernels = find_kernels(task.source)
    for launch in task.plan:
        name = launch.kernel_name
        if name not in kernels:
            found = ", ".join(kernels) or "none"
            raise TaskError(f"the candidate has no __global__ kernel {name!r} (found: {found})", file=path,
                            fix="keep the task's kernels, or give the candidate its own /* kernelpro launch */ block")
        ours = [(p.is_pointer, p.base_type) for p in task_kernels[name].params]
        theirs = [(p.is_pointer, p.base_type) for p in kernels[name].params]
        if ours != theirs:
            raise TaskError(
                f"the candidate's {name}({', '.join(p.text for p in kernels[name].params)}) does not take the "
                f"task's parameters ({', '.join(p.text for p in task_kernels[name].params)})", file=path,
                line=kernels[name].line,
                fix="keep the parameter types, or declare the new launch in a /* kernelpro launch */ block")
    return task.plan


def render_launch_block(plan: tuple[Launch, ...]) -> str:
    """``plan`` as a ``/* kernelpro launch ... */`` comment (what a proposer or transform writes)."""
    lines = ["/* kernelpro launch"]
    for launch in plan:
        lines.append("[[launch]]")
        lines.append(f'kernel = "{launch.kernel}"')
        lines.append("grid = [" + ", ".join(f'"{e.text}"' for e in launch.grid) + "]")
        lines.append("block = [" + ", ".join(f'"{e.text}"' for e in launch.block) + "]")
        if launch.shared_mem.text.strip() != "0":
            lines.append(f'shared_mem = "{launch.shared_mem.text}"')
        if launch.args is not None:
            lines.append("args = [" + ", ".join(f'"{a.text}"' for a in launch.args) + "]")
    lines.append("*/")
    return "\n".join(lines)


def describe_plan(plan: tuple[Launch, ...]) -> str:
    """One line per launch: ``kernel<<<grid, block, smem>>>(args)``."""
    out = []
    for launch in plan:
        grid = ", ".join(e.text for e in launch.grid)
        block = ", ".join(e.text for e in launch.block)
        args = "task arguments" if launch.args is None else ", ".join(a.text for a in launch.args)
        out.append(f"{launch.kernel}<<<({grid}), ({block}), {launch.shared_mem.text}>>>({args})")
    return "\n".join(out)
