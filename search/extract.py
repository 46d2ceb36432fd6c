"""Take one kernel out of a model's reply, or say exactly why the reply is unusable.

A usable reply holds exactly one fenced code block tagged ``cuda``, ``cu``, ``cpp``, ``c++``, ``c``
or nothing, with the complete ``.cu`` file, and a ``CHANGE:`` line saying in one line what changed.
An optional ``KNOBS: NAME=value ...`` line sets knobs (only values the task lists). Blocks in other
languages (a ``bash`` snippet, a ``text`` table) are ignored; zero or several kernel blocks, an
unclosed block, a file that no longer defines the entry kernel with the task's parameter list, or
an unknown knob value raise :class:`MalformedReply`, whose message is written to be sent back to
the model as the correction.

The task's metadata comment (``/* kernelpro ... */``) belongs to the task, not to the model: if
the reply dropped or edited it, the original block is put back (at the top of the file when it was
dropped) and :attr:`Extracted.metadata_restored` says so. The evaluator reads the task, not this
comment, but the winning file is exported as a task file, so it must keep the block intact. A
second block, ``/* kernelpro launch ... */``, is the candidate's own launch (see
:mod:`kernelpro.candidate_launch`): it is the model's to write, is kept as written, and replaces
the entry-kernel check by the check of its launches against the task.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from kernelpro.candidate_launch import candidate_plan, has_launch_block
from kernelpro.cuda_source import Param, find_kernels
from kernelpro.errors import TaskError
from kernelpro.task import Task

KERNEL_LANGUAGES = frozenset({"", "cuda", "cu", "cpp", "c++", "c", "cxx", "cc"})
MAX_CHANGE_CHARS = 200

_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+\-]*)[^\n`]*$")
_CHANGE = re.compile(r"^[ \t>*_#-]*CHANGE[ \t*_]*:[ \t*_]*(.*)$", re.MULTILINE | re.IGNORECASE)
_KNOBS = re.compile(r"^[ \t>*_#-]*KNOBS[ \t*_]*:[ \t*_]*(.*)$", re.MULTILINE | re.IGNORECASE)
# The task's metadata, not a candidate's own `/* kernelpro launch */` block (which the model may write).
_METADATA = re.compile(r"/\*[ \t]*kernelpro\b(?![ \t]+launch\b).*?\*/", re.DOTALL)


class MalformedReply(ValueError):
    """The reply cannot become a variant; ``str(error)`` tells the model what to fix."""


@dataclass(frozen=True)
class Extracted:
    """What a usable reply holds: the full source, the one-line change and any knob settings."""

    source: str
    change: str
    knobs: Mapping[str, str] = field(default_factory=dict)
    metadata_restored: bool = False


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as ``(language, body)``; raises :class:`MalformedReply` on an unclosed one."""
    blocks: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        language = opening.group(1).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise MalformedReply(f"the ```{language} block is never closed (was the reply cut off?); "
                                 "close it with a line holding only ```")
        blocks.append((language, "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return blocks


def extract_kernel(reply: str, task: Task, knobs: Mapping[str, str] | None = None) -> Extracted:
    """The variant a reply proposes for ``task`` (see the module docstring for the rules).

    ``knobs`` are the current kernel's settings: a ``KNOBS:`` line changes some of them, and the
    result must satisfy the task's constraints.
    """
    blocks = [body for language, body in fenced_blocks(reply) if language in KERNEL_LANGUAGES]
    if not blocks:
        raise MalformedReply("the reply has no ```cuda block; put the complete .cu file in exactly one ```cuda block")
    if len(blocks) > 1:
        raise MalformedReply(f"the reply has {len(blocks)} code blocks; send exactly one ```cuda block holding the "
                             "complete file (no snippets, no alternatives)")
    source, restored = restore_metadata(blocks[0], task.source)
    check_entry_kernel(source, task)
    return Extracted(source, _change_line(reply), _knob_settings(reply, task, knobs or {}), restored)


def restore_metadata(source: str, original: str) -> tuple[str, bool]:
    """``source`` with ``original``'s ``/* kernelpro ... */`` block, and whether it had to be put back."""
    wanted = _METADATA.search(original)
    if wanted is None:
        return source, False
    found = _METADATA.search(source)
    if found is None:
        return wanted.group(0) + "\n" + source, True
    if found.group(0) == wanted.group(0):
        return source, False
    return source[: found.start()] + wanted.group(0) + source[found.end() :], True


def _param_key(param: Param) -> tuple[str, str, bool, bool]:
    # __restrict__ may be added or dropped; a by-value `const` changes nothing for the caller.
    return param.name, param.base_type, param.is_pointer, param.is_const and param.is_pointer


def check_entry_kernel(source: str, task: Task) -> None:
    """Raise :class:`MalformedReply` unless ``source`` defines the entry kernel with the task's parameters,
    or carries a ``/* kernelpro launch */`` block that is valid for the task (then its kernels are the ones that
    must exist)."""
    if has_launch_block(source) or task.is_sequence:
        try:
            candidate_plan(task, source)
        except TaskError as exc:
            raise MalformedReply(f"{'the launch block' if has_launch_block(source) else 'the file'}: {exc.message}"
                                 + (f" ({exc.fix})" if exc.fix else "")) from None
        if has_launch_block(source):
            return
    expected = task.signature
    kernel = find_kernels(source).get(task.kernel)
    if kernel is None:
        raise MalformedReply(f"the file no longer defines the entry kernel `__global__ void {task.kernel}(...)`; "
                             "keep its name and parameter list exactly")
    if [_param_key(p) for p in kernel.params] != [_param_key(p) for p in expected.params]:
        want = ", ".join(p.text for p in expected.params)
        got = ", ".join(p.text for p in kernel.params)
        raise MalformedReply(f"the parameter list of {task.kernel} changed: expected ({want}), got ({got}); "
                             "the signature must not change (adding __restrict__ is fine)")
    if kernel.extern_c != expected.extern_c:
        linkage = 'keep `extern "C"`' if expected.extern_c else 'don\'t add `extern "C"`'
        raise MalformedReply(f"the linkage of {task.kernel} changed; {linkage}")


def _change_line(reply: str) -> str:
    match = _CHANGE.search(reply)
    text = " ".join(match.group(1).split()).strip("*_` ") if match else ""
    if not text:
        return "unnamed change (the reply had no CHANGE: line)"
    return text if len(text) <= MAX_CHANGE_CHARS else text[: MAX_CHANGE_CHARS - 1] + "…"


def _knob_settings(reply: str, task: Task, current: Mapping[str, str]) -> dict[str, str]:
    match = _KNOBS.search(reply)
    if match is None or match.group(1).strip().strip("`").lower() in ("", "none", "unchanged"):
        return {}
    settings: dict[str, str] = {}
    for item in re.split(r"[\s,;`]+", match.group(1).strip()):
        if not item:
            continue
        name, _, value = item.partition("=")
        if name not in task.knobs:
            known = ", ".join(task.knobs) or "none"
            raise MalformedReply(f"KNOBS names an unknown knob {name!r} (the task's knobs: {known})")
        allowed = [str(v) for v in task.knobs[name].values]
        if value not in allowed:
            raise MalformedReply(f"KNOBS sets {name}={value!r}, which is not one of its values {', '.join(allowed)}")
        settings[name] = value
    merged = {**current, **settings}
    if not task.satisfies_constraints({n: task.parse_knob(n, v) for n, v in merged.items() if n in task.knobs}):
        rules = "; ".join(c.text for c in task.constraints)
        raise MalformedReply(f"KNOBS {settings} violates the task's constraints ({rules})")
    return settings
