"""The candidate-owned launch a remap writes: a ``/* kernelpro launch ... */`` TOML block in the candidate.

A rewrite that changes the thread-to-work mapping (a warp per row instead of a block) must also change
the grid and the block. The task's ``/* kernelpro ... */`` metadata stays as it is; the candidate carries
its own launch in a second comment block (the format is in ``docs/task-format.md``, parsed and run by
the task loader): one ``[[launch]]`` table per launch with ``kernel``, ``grid``, ``block``,
``shared_mem`` and ``args``, expressions over the task's params, knobs and device values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MARKER = "/* kernelpro launch"
_BLOCK = re.compile(r"/\*\s*kernelpro\s+launch\b.*?\*/\n?", re.DOTALL)


@dataclass(frozen=True)
class CandidateLaunch:
    """One ``[[launch]]`` of a candidate: expressions as text; ``None`` leaves a key to its default."""

    grid: tuple[str, ...]
    block: tuple[str, ...]
    shared_mem: str = "0"
    kernel: str | None = None
    args: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name, exprs in (("grid", self.grid), ("block", self.block)):
            if not 1 <= len(exprs) <= 3:
                raise ValueError(f"a launch {name} has 1 to 3 expressions, not {len(exprs)}")


def _strings(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"  # a JSON string is a TOML basic string


def render_launch(*launches: CandidateLaunch, note: str = "") -> str:
    """The ``/* kernelpro launch ... */`` block for ``launches``, in order; ``note`` becomes a TOML comment."""
    lines = [MARKER]
    if note:
        lines.append(f"# {note}")
    for launch in launches:
        lines.append("[[launch]]")
        if launch.kernel is not None:
            lines.append(f"kernel = {json.dumps(launch.kernel)}")
        lines += [f"grid = {_strings(launch.grid)}", f"block = {_strings(launch.block)}",
                  f"shared_mem = {json.dumps(launch.shared_mem)}"]
        if launch.args is not None:
            lines.append(f"args = {_strings(launch.args)}")
    return "\n".join(lines) + "\n*/\n"


def with_launch(source: str, block: str, after: int) -> str:
    """``source`` with any earlier candidate launch removed and ``block`` on the line after offset ``after``
    (the kernel's closing brace: the text before the kernel, the task's metadata included, stays as it is)."""
    old = _BLOCK.search(source)
    if old is not None:
        if old.start() < after:
            after -= old.end() - old.start()
        source = source[: old.start()] + source[old.end() :]
    line_end = source.find("\n", after)
    line_end = len(source) if line_end < 0 else line_end + 1
    return source[:line_end] + ("" if source[:line_end].endswith("\n") else "\n") + block + source[line_end:]


def launch_text(source: str) -> str | None:
    """The TOML inside the candidate's launch block, or None when it has none."""
    match = _BLOCK.search(source)
    return None if match is None else match.group()[len(MARKER) : match.group().rstrip().rfind("*/")]
