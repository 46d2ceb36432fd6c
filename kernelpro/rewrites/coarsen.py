"""Thread coarsening of a 2-D one-point-per-thread kernel: each thread computes several rows.

Stencils and other 2-D pointwise kernels are written one output per thread. Giving each thread
``ROWS_PER_THREAD`` outputs, one block height apart, keeps every warp's accesses coalesced as before,
divides the blocks to schedule by the factor, computes the column index and bounds once, and, unrolled,
lets a thread issue the loads of all its rows before it waits on the first (more bytes in flight, which
a memory-bound stencil needs). Neighbouring rows of one thread also share loads through L1.

Recognised: ``j = blockIdx.x * BX + threadIdx.x; i = blockIdx.y * BY + threadIdx.y;`` (either order, any
names and casts) then ``if (i >= rows || j >= cols) return;`` and code with no other ``return`` and no
barrier. The code runs in an unrolled loop over the thread's rows, the guard becoming ``continue``. The
candidate's launch divides the task's y grid, ``ceil_div(ROWS, BY)``, by the factor:
``ceil_div(ROWS, (BY) * 4)``.
"""

from __future__ import annotations

import re

from kernelpro.rewrites._kernel import _DECL, _indent_of, _locate, _normalise, _reindent, _statements
from kernelpro.rewrites.launch import CandidateLaunch, render_launch, with_launch
from kernelpro.transforms import Rewrite, TransformError

ROWS_PER_THREAD = 4
_INDEX = re.compile(r"blockIdx\.(?P<d>[xy])\*(?P<b>\w+)\+threadIdx\.(?P=d)|threadIdx\.(?P<e>[xy])\+blockIdx\.(?P=e)\*"
                    r"(?P<c>\w+)")
_CEIL = re.compile(r"\s*(?:ceil_div|cdiv)\s*\(\s*(.+?)\s*,\s*([^,()]+?)\s*\)\s*")


def coarsen_rows(source: str, kernel: str, grid: tuple[str, ...], block: tuple[str, ...],
                 factor: int = ROWS_PER_THREAD) -> Rewrite:
    """Give each thread ``factor`` rows of a 2-D pointwise kernel (see the module doc)."""
    if len(grid) != 2 or _CEIL.fullmatch(grid[1]) is None:
        raise TransformError("the task's grid is not 2-D with a y extent ceil_div(ROWS, BY)")
    k = _locate(source, kernel)
    spans = _statements(k.code, k.body[0] + 1, k.body[1])
    if len(spans) < 4:
        raise TransformError("the kernel is not two indices, a bounds guard and code")
    found = {}
    for start, stop in spans[:2]:
        decl = _DECL.fullmatch(k.code[start:stop].strip())
        match = _INDEX.fullmatch(_normalise(decl["init"])) if decl else None
        if match is None:
            raise TransformError("the kernel does not start with blockIdx * B + threadIdx indices in x and y")
        found[match["d"] or match["e"]] = (decl, match["b"] or match["c"], (start, stop))
    if set(found) != {"x", "y"}:
        raise TransformError("the kernel does not index both x and y")
    row_decl, block_y, row_span = found["y"]
    row = row_decl["name"]
    guard_text = k.code[spans[2][0] : spans[2][1]].strip()
    guard = re.fullmatch(r"if\s*\((.+)\)\s*\{?\s*return\s*;\s*\}?", guard_text, re.DOTALL)
    if guard is None or not re.search(rf"\b{row}\s*>=", guard.group(1)):
        raise TransformError(f"no `if ({row} >= rows || ...) return;` guard after the indices")
    rest = k.code[spans[3][0] : spans[-1][1]]
    if re.search(r"\b(?:return|__syncthreads|__syncwarp|__shfl\w*|atomic\w*)\b", rest):
        raise TransformError("the code after the guard returns, synchronises or uses atomics")
    if re.search(rf"\b{row}\s*(?:[-+*/%&|^]?=(?!=)|\+\+|--)", rest):
        raise TransformError(f"the code changes {row}")
    indent = _indent_of(source, spans[0][0])
    pad = indent + "    "
    row_type = re.sub(r"\bconst\s+", "", row_decl["type"])
    body = _reindent(source[spans[3][0] : spans[-1][1]], pad)
    loop = "\n".join([
        f"#pragma unroll  // kernelpro: {factor} rows per thread, one block height apart",
        f"{indent}for (int kp_r = 0; kp_r < {factor}; ++kp_r) {{",
        f"{pad}const {row_type} {row} = (blockIdx.y * {factor} + kp_r) * {block_y} + threadIdx.y;",
        f"{pad}if ({guard.group(1).strip()}) continue;",
        body,
        f"{indent}}}"])
    edits = [(row_span[0], row_span[1], ""), (spans[2][0], spans[-1][1], loop)]
    new = source
    for start, stop, text in sorted(edits, reverse=True):
        new = new[:start] + text + new[stop:]
    new = re.sub(r"\n[ \t]*\n([ \t]*#pragma unroll  // kernelpro)", r"\n\1", new)
    extent, step = _CEIL.fullmatch(grid[1]).groups()
    launch = CandidateLaunch((grid[0], f"ceil_div({extent}, ({step}) * {factor})"), block, "0")
    new = with_launch(new, render_launch(launch, note=f"{factor} rows per thread"), _locate(new, kernel).sig.end - 1)
    return Rewrite(new, f"coarsen: {factor} rows per thread (unrolled, one block height apart), grid y divided by "
                        f"{factor}")
