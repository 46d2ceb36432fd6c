"""The prompt an LLM proposer sends: a fixed part per task, a part per parent and a part per call.

- **Fixed** (:func:`fixed_blocks`): the role and the pinned **rules card**, then the task (name,
  description, signature, argument semantics, problem sizes, launch, knobs). It depends on the task
  only, so it is byte-identical for every call of a run and can be prompt-cached; the rules card is
  never summarized or clipped.
- **Context** (:func:`context_block`): the current kernel (the parent's source, knobs and flags,
  its time), its diagnosis (``Diagnosis.text``: the roofline verdict and the prescriptions; never
  raw counters, which made model-written kernels worse) and a short, clipped history: the parent's
  failed children and the search memory.
- **Skills** (progressive disclosure, :mod:`kernelpro.skill_library`): the one-line description of every
  skill is part of the fixed task block (:func:`skills_catalog`, cached); the full body of the one or two
  skills the parent's diagnosis selects (at most ``BODY_TOKEN_BUDGET`` tokens together) follows its
  diagnosis in the context (:func:`skills_block`).
- **Ask** (:func:`ask_block`): which of the ``n`` attempts this is and what to focus on, so that
  the ``n`` calls for one parent try different things (prescription #k for attempt k).

Everything here is plain text; :mod:`kernelpro.search.llm` puts it into API requests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kernelpro.search.interfaces import Diagnosis, ProposalRequest
from kernelpro.skill_library import Skill, catalog
from kernelpro.task import FLOAT_DTYPES, Argument, Task

MAX_FEEDBACK_ITEMS = 6
MAX_FEEDBACK_CHARS = 240
MAX_MEMORY_CHARS = 1500
MAX_DIAGNOSIS_CHARS = 4000

ROLE = """\
You are an expert CUDA performance engineer working inside kernelpro, a tool that searches over \
variants of one CUDA kernel. Each reply of yours is one new variant of the current kernel: kernelpro \
compiles it, checks it against the reference behind a correctness wall and times it on the GPU; the \
fastest correct variant wins. Make one focused change per reply, the one you expect to gain most."""

GENERAL = "the change you expect to gain most"
# Angles for attempts beyond the diagnosis' prescriptions, so that the n calls differ.
ANGLES = (
    "memory access: coalescing, vectorized (128-bit) loads and stores, reuse through registers or shared memory",
    "parallelism: work per thread, the block-size knobs, occupancy and enough blocks to fill every SM",
    "instructions: unrolling, fewer integer index computations, cheaper arithmetic with identical results",
)

_PRESCRIPTION = re.compile(r"^\s*(\d+)\.\s+(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Prompt:
    """One call's prompt: ``fixed`` blocks (cacheable), the parent's ``context``, this call's ``ask``."""

    fixed: tuple[str, ...]
    context: str
    ask: str


def signature_text(task: Task) -> str:
    """The entry kernel's declaration as written: ``extern "C" __global__ void f(const float* x, ...)``."""
    sig = task.signature
    linkage = 'extern "C" ' if sig.extern_c else ""
    bounds = f"__launch_bounds__({sig.launch_bounds}) " if sig.launch_bounds else ""
    return f"{linkage}__global__ void {bounds}{sig.name}({', '.join(p.text for p in sig.params)})"


def _values(values: tuple[object, ...]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def _dims(exprs: tuple) -> str:
    return "(" + ", ".join(e.text for e in exprs) + ")"


def _sizes(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) or "(no size parameters)"


def knob_lines(task: Task) -> list[str]:
    """``NAME in {values} (baseline: default)`` per knob, in the task's order."""
    return [f"{name} in {_values(knob.values)} (baseline: {knob.default})" for name, knob in task.knobs.items()]


def launch_block_rule(task: Task) -> str:
    """How a variant changes its own launch: the ``/* kernelpro launch */`` block, with its syntax."""
    args = ", ".join(f'"{a.name}"' for a in task.args)
    return (
        "The launch may change: to use another grid, block, dynamic shared memory, thread-to-work mapping, "
        "or other kernels (one fused kernel for several, or several for one), add this block to the file "
        "(beside, not inside, the /* kernelpro ... */ metadata), one [[launch]] table per kernel launch, in order:\n"
        "/* kernelpro launch\n[[launch]]\nkernel = \"my_kernel\"   # a __global__ function of your file; "
        "templates as \"name<float, 256>\"\ngrid = [\"ceil_div(ROWS, 8)\"]   # 1-3 expressions\n"
        "block = [\"256\"]\nshared_mem = \"0\"          # dynamic shared memory bytes\n"
        f"args = [{args}]   # task argument names in the kernel's parameter order, an expression for a "
        "by-value parameter, or \"null\"\n*/\n"
        "Expressions use the problem sizes, the knobs and SM_COUNT, MAX_THREADS_PER_SM, MAX_SMEM_PER_BLOCK, "
        "MAX_SMEM_PER_SM, WARP_SIZE, L2_BYTES. The buffers stay the task's (no new ones, none passed twice to "
        "one launch), every output must be written, and the wall checks the variant with its own launch at "
        "every size. Without a block the task's launch above is used, so keep the current kernel's block when "
        "you keep its launch.")


def rules_card(task: Task) -> str:
    """The pinned rules: in every prompt, never clipped. Each one is enforced by kernelpro."""
    launch_text = "; then ".join(
        f"{launch.kernel} with grid = {_dims(launch.grid)}, block = {_dims(launch.block)}, dynamic shared memory = "
        f"{launch.shared_mem.text} bytes" for launch in task.plan)
    if task.knobs:
        knobs = "; ".join(knob_lines(task))
        constraints = "; ".join(c.text for c in task.constraints)
        knob_rule = (f"The knobs are compile-time macros (-DNAME=value): {knobs}."
                     + (f" Every setting must satisfy: {constraints}." if constraints else "")
                     + " To change the launch, set a knob with a KNOBS: line; the kernel must stay correct "
                     "for the knob values it is compiled with.")
    else:
        knob_rule = "This task has no knobs."
    sizes = ", ".join(f"({_sizes(s)})" for s in task.correctness.sizes)
    odd_sizes = f" and at the extra sizes {sizes}" if sizes else ""
    determinism = ("must be bit-identical (the task is deterministic: no atomics or other reductions whose "
                   "order varies between runs)" if task.correctness.deterministic else "must still match")
    data = {a.dtype for a in task.buffers}
    if task.correctness.allow_lower_precision or not data & FLOAT_DTYPES or data & {"float16", "bfloat16"}:
        precision = "the SASS is read for the arithmetic precision used."
    else:
        precision = ("the SASS must not contain FP16/BF16 arithmetic: this task's data is FP32 or wider, "
                     "so compute at that precision.")
    return f"""\
RULES (pinned; kernelpro checks every one of them mechanically)
1. Semantics are fixed. Keep `{signature_text(task)}` exactly: the name, the parameter \
names, types and order (adding __restrict__ is fine), unless a launch block (rule 3) says what to launch \
instead. Compute exactly what the current kernel computes, for every problem size, not only the \
benchmark size.
2. Device code only. Write the complete .cu file: the kernel, __device__ helpers, macros, includes of \
CUDA headers. No host code, no main(), no streams or events, no memory allocation, no kernel \
launches from the device, extra kernels only through a launch block, no global or static state \
kept between launches.
3. kernelpro launches {launch_text}. {knob_rule} {launch_block_rule(task)}
4. The correctness wall, run on every variant: fresh random inputs drawn from several distributions \
(normal, uniform, heavy-tailed, negative and tiny values; new seeds every evaluation) at the benchmark \
size{odd_sizes}; outputs are poisoned before each launch, so every output element must be written; \
guard regions around every buffer must stay intact (no out-of-bounds access); inputs must be left \
unchanged; a second run on the same inputs {determinism}; after timing, the variant is checked again \
on inputs it has never seen (no caching of results between launches); {precision} A time faster \
than the hardware allows for the work is rejected. Shortcuts that special-case inputs, sizes or \
repeated launches always fail: don't spend an attempt on them.
5. Output format: exactly one ```cuda fenced block holding the complete file (keep the \
/* kernelpro ... */ metadata comment unchanged), then one line `CHANGE: <what you changed, in one \
line>`. To change knobs, add one line `KNOBS: NAME=value ...` (listed values only). No other code \
blocks."""


def _argument_line(task: Task, arg: Argument) -> str:
    if not arg.is_buffer:
        return f"- {arg.name}: {arg.dtype} scalar, passed by value = {arg.value.text if arg.value else '?'}"
    shape = "[" + ", ".join(d.text for d in arg.shape) + "]"
    role = {
        "in": "input, read-only (must stay unchanged)",
        "out": "output (poisoned before each launch: write every element)",
        "inout": "input and output (read, then overwritten)",
        "scratch": "scratch between launches (poisoned before each launch sequence, never compared)",
    }[arg.intent]
    line = f"- {arg.name}: {arg.dtype} buffer {shape}, {role}"
    if arg.is_input:
        line += f"; filled with {arg.init or 'random'}"
    if arg.is_output:
        tol = task.tolerance_for(arg)
        line += f"; must match the reference within atol={tol.atol:g}, rtol={tol.rtol:g}"
    return line


def task_block(task: Task) -> str:
    """The task as the model needs it: what the kernel computes, its arguments, sizes, launch and knobs."""
    lines = [f"TASK: {task.name}"]
    if task.description:
        lines.append(task.description)
    lines.append(f"Entry kernel: {signature_text(task)}")
    lines.append("Arguments, in order:")
    lines += [_argument_line(task, arg) for arg in task.args]
    lines.append(f"Benchmark size (timed): {_sizes(task.params)}")
    if task.correctness.sizes:
        extra = ", ".join(f"({_sizes(s)})" for s in task.correctness.sizes)
        lines.append(f"Extra sizes checked for correctness: {extra}")
    for launch in task.plan:
        args = "" if launch.args is None else f", arguments ({', '.join(a.text for a in launch.args)})"
        lines.append(f"Launch{'' if len(task.plan) == 1 else ' (in order)'}: {launch.kernel} with grid "
                     f"{_dims(launch.grid)}, block {_dims(launch.block)}, dynamic shared memory "
                     f"{launch.shared_mem.text} bytes{args}")
    lines.append("Knobs: " + ("; ".join(knob_lines(task)) if task.knobs else "none"))
    if task.constraints:
        lines.append("Knob constraints: " + "; ".join(c.text for c in task.constraints))
    if task.cost is not None:
        cost = task.cost
        lines.append(f"Useful work: {cost.flops.text} FLOPs, at least {cost.bytes.text} bytes of DRAM traffic")
    return "\n".join(lines)


def fixed_blocks(task: Task, skills: tuple[Skill, ...] = ()) -> tuple[str, str]:
    """The cacheable prefix: the role with the rules card, then the task (and the skills catalog).
    Depends on ``task`` and the skill set only."""
    text = task_block(task)
    if skills:
        text += "\n\n" + skills_catalog(skills)
    return f"{ROLE}\n\n{rules_card(task)}", text


def skills_catalog(skills: tuple[Skill, ...]) -> str:
    """Every skill's name and description: what expert recipes exist (their bodies come when selected)."""
    return ("SKILLS (expert recipes; the full text of those that fit the current diagnosis comes with the "
            f"kernel):\n{catalog(skills)}")


def skills_block(selected: tuple[Skill, ...]) -> str:
    """The full bodies of the selected skills, for the context."""
    if not selected:
        return ""
    parts = ["SKILLS FOR THIS DIAGNOSIS (follow the recipe; the pitfalls are what breaks correctness):"]
    parts += [f"=== skill: {s.name} ===\n{s.body.strip()}" for s in selected]
    return "\n\n".join(parts)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def context_block(request: ProposalRequest, skills: tuple[Skill, ...] = ()) -> str:
    """The current kernel, its diagnosis, the bodies of the selected ``skills`` and a short history (the
    part that changes with the parent)."""
    node = request.parent
    variant = node.variant
    head = f"CURRENT KERNEL (node {node.id})"
    if node.time_us:
        head += (f": {node.time_us:.4g} us, {request.baseline_us / node.time_us:.2f}x the baseline's speed "
                 f"(baseline {request.baseline_us:.4g} us)")
    knobs = " ".join(f"{k}={v}" for k, v in variant.knobs) or "none"
    lines = [head, f"Knobs: {knobs}. nvcc flags: {' '.join(variant.flags) or 'none'}."]
    if variant.change and node.parent is not None:
        lines.append(f"Last change that produced it: {_clip(variant.change, MAX_FEEDBACK_CHARS)}")
    lines += ["```cuda", variant.source.rstrip("\n"), "```", "", "DIAGNOSIS (roofline verdict and prescriptions):"]
    lines.append(_diagnosis_text(node.diagnosis) or "Not profiled: no diagnosis for this kernel.")
    if skills:
        lines += ["", skills_block(skills)]
    lines += ["", "HISTORY"]
    feedback = request.feedback[-MAX_FEEDBACK_ITEMS:]
    if feedback:
        lines.append("Attempts from this kernel that failed (don't repeat them):")
        lines += [f"- {_clip(item, MAX_FEEDBACK_CHARS)}" for item in feedback]
        if hidden := len(request.feedback) - len(feedback):
            lines.append(f"- ({hidden} earlier failures not shown)")
    memory = request.memory.strip()
    if memory:
        if len(memory) > MAX_MEMORY_CHARS:
            memory = memory[: MAX_MEMORY_CHARS - 1] + "…"
        lines += ["What the search tried so far and what it gave (speed-ups over the baseline, best first):", memory]
    if not feedback and not memory:
        lines.append("Nothing tried yet.")
    return "\n".join(lines)


def _diagnosis_text(diagnosis: Diagnosis | None) -> str:
    if diagnosis is None:
        return ""
    text = diagnosis.text.strip()
    return text if len(text) <= MAX_DIAGNOSIS_CHARS else text[: MAX_DIAGNOSIS_CHARS - 1] + "…"


def prescriptions(diagnosis: Diagnosis | None) -> list[str]:
    """The numbered prescriptions in a diagnosis text (``1. Do X. Why: ...``), in order."""
    return [m.group(2).strip() for m in _PRESCRIPTION.finditer(_diagnosis_text(diagnosis))]


def ask_block(diagnosis: Diagnosis | None, attempt: int, n: int) -> str:
    """The instruction for attempt ``attempt`` (0-based) of ``n``: prescription #k, else another angle."""
    found = prescriptions(diagnosis)
    if attempt < len(found):
        focus = f"Apply prescription #{attempt + 1} of the diagnosis: {_clip(found[attempt], 300)}"
    elif found:
        focus = (f"The other attempts apply the prescriptions; make a change they don't cover, in "
                 f"{ANGLES[(attempt - len(found)) % len(ANGLES)]}.")
    elif attempt == 0:
        focus = f"Make {GENERAL}."
    else:
        focus = f"Make a different change from the other attempts, in {ANGLES[(attempt - 1) % len(ANGLES)]}."
    head = f"ATTEMPT {attempt + 1} of {n} for this kernel. " if n > 1 else ""
    return (f"{head}{focus}\nReply with exactly one ```cuda block holding the complete file, then the line "
            "`CHANGE: ...` (and `KNOBS: ...` only if you change knobs).")


def correction(reason: str) -> str:
    """The follow-up message after an unusable reply."""
    return (f"Your reply could not be used: {reason}. Reply again, following rule 5 exactly: one ```cuda "
            "block holding the complete file, then one `CHANGE:` line.")
