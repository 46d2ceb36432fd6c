"""What a winner's own launch means for the user's repository, for ``kernelpro export``.

A winner may carry a ``/* kernelpro launch */`` block (:mod:`kernelpro.candidate_launch`): another
grid or block, other kernels (one fused kernel for the task's two). The kernel text alone does not
carry that to the user's code, so the export says it, plainly:

* Only the block size changed and the target's host launch takes it from a ``#define`` that the
  winner's kernels do not read (``k<<<grid, BLOCK_SIZE>>>``): the commit sets that ``#define``, and
  nothing else in the host code has to change.
* Otherwise: **host code must change**. PR.md shows the new launch as CUDA (``kernel<<<grid, block,
  smem>>>(args)``, expressions over the task's sizes and the values at the benchmark size) and the
  line of the target's current launch. Where the winner launches other kernels than the target's
  function, they replace that function in the commit, under their own names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from kernelpro.candidate_launch import candidate_plan, render_launch_block
from kernelpro.cuda_source import blank_comments_and_strings, find_kernels, line_of
from kernelpro.device_values import DEVICE_NAMES
from kernelpro.task import Launch, Task


@dataclass(frozen=True)
class LaunchExport:
    """The winner's launch against the task's: what the commit sets and what PR.md must say."""

    changed: bool
    plan: tuple[Launch, ...]
    kernels_text: str | None = None  # the winner's kernels, when they replace the target's function
    defines: dict[str, str] = field(default_factory=dict)  # host-launch macros the commit sets
    host_change: bool = False
    notes: tuple[str, ...] = ()


def _dims(exprs, env) -> str:
    values = [e.eval_int(env) for e in exprs]
    text = ", ".join(e.text for e in exprs)
    return f"dim3({text})" if len(exprs) > 1 else text, values


def cuda_launch(task: Task, launch: Launch, env: Mapping) -> str:
    """``kernel<<<grid, block, smem>>>(args)`` with the task's expressions, and the values at ``env`` as a comment."""
    grid, grid_values = _dims(launch.grid, env)
    block, block_values = _dims(launch.block, env)
    args = [a.name for a in task.args] if launch.args is None else [
        "nullptr" if a.kind == "null" else f"({a.expr.text} ? {a.name} : nullptr)" if a.kind == "optional" else a.text
        for a in launch.args]
    return (f"{launch.kernel}<<<{grid}, {block}, {launch.shared_mem.text}>>>({', '.join(args)});"
            f"  // at the benchmark size: grid {grid_values}, block {block_values}, "
            f"{launch.shared_bytes(env)} B dynamic shared memory")


def _host_launch(target: str, function: str) -> tuple[list[str], int] | None:
    code = blank_comments_and_strings(target)
    match = re.search(rf"\b{re.escape(function)}\s*(?:<[^<>;]*>)?\s*<<<(.*?)>>>", code, re.DOTALL)
    if match is None:
        return None
    parts = [p.strip() for p in match.group(1).split(",")]
    return parts, line_of(target, match.start())


def launch_export(task: Task, winner: str, knobs: Mapping[str, str], target: str, function: str,
                  target_name: str) -> LaunchExport:
    """Compare the winner's launch with the task's and decide the edit and the PR text."""
    config = {**task.default_knobs(), **{k: task.parse_knob(k, v) for k, v in knobs.items()}}
    plan = candidate_plan(task, winner, knobs=config)
    if plan == task.plan:
        return LaunchExport(False, plan)
    env = task.env(knobs=config)
    host = _host_launch(target, function)
    where = f"`{target_name}:{host[1]}`" if host else f"the host code that launches `{function}`"
    kernels = find_kernels(winner)
    names = list(dict.fromkeys(launch.kernel_name for launch in plan))
    same_kernel = names == [task.kernel] and len(plan) == 1 and plan[0].args is None
    if same_kernel and host is not None:
        define = _define_route(task, plan[0], host[0], target, winner, kernels, env)
        if define is not None:
            name, value = define
            return LaunchExport(True, plan, None, {name: value}, False, (
                f"- launch: blocks of {plan[0].block_dims(env)[0]} threads (the task's launch: "
                f"{task.plan[0].block_dims(env)[0]}); "
                f"the host launch at {where} takes it from `#define {name}`, which this commit sets to {value}: "
                "**no host code change needed**",))
    text = None if same_kernel else "\n\n".join(winner[kernels[n].start:kernels[n].end] for n in names)
    calls = "\n".join(cuda_launch(task, launch, env) for launch in plan)
    replaced = "" if same_kernel else (
        f"The commit replaces `{function}` with the winner's kernel(s) {', '.join(f'`{n}`' for n in names)}, "
        "so the old call no longer compiles until it is updated. ")
    device = [n for n in DEVICE_NAMES if any(n in e.text for launch in plan for e in (*launch.grid, *launch.block,
                                                                                     launch.shared_mem))]
    device_note = (f" ({', '.join(device)}: the GPU's values, e.g. from cudaDeviceGetAttribute)" if device else "")
    notes = (f"- **host code must change**: the winner uses its own launch. {replaced}Replace the launch of "
             f"`{function}` at {where} with{device_note}:", "", "```cuda", calls, "```", "",
             "  (as kernelpro ran it, the candidate's launch block:)", "", "```", render_launch_block(plan), "```")
    return LaunchExport(True, plan, text, {}, True, notes)


def _define_route(task: Task, launch: Launch, host: list[str], target: str, winner: str, kernels,
                  env: Mapping) -> tuple[str, str] | None:
    """``(macro, value)`` when the block change is exactly a host ``#define`` the kernels do not read."""
    entry = task.plan[0]
    if len(host) < 2 or launch.grid != entry.grid or launch.shared_mem != entry.shared_mem or len(launch.block) != 1:
        return None
    macro = host[1]
    if not re.fullmatch(r"[A-Za-z_]\w*", macro) or macro in task.knobs:
        return None
    if not re.search(rf"^[ \t]*#[ \t]*define[ \t]+{macro}[ \t]+\S+", target, re.MULTILINE):
        return None
    kernel = kernels[launch.kernel_name]
    if re.search(rf"\b{macro}\b", blank_comments_and_strings(winner[kernel.start:kernel.end])):
        return None
    values = {launch.block[0].eval_int(task.env(sizes=s, knobs={k: env[k] for k in task.knobs}))
              for s in task.problem_sizes()}
    return (macro, str(values.pop())) if len(values) == 1 else None


def set_defines(text: str, defines: Mapping[str, str]) -> str:
    """``text`` with ``#define NAME value`` set for each entry."""
    for name, value in defines.items():
        text = re.sub(rf"^([ \t]*#[ \t]*define[ \t]+{re.escape(name)}[ \t]+)\S+", lambda m, v=value: m.group(1) + v,
                      text, flags=re.MULTILINE)
    return text
