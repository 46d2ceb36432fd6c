"""Naive transpose → 32x32 shared-memory tile with a padding column, with the candidate's own launch.

``y[col * rows + row] = x[row * cols + col]`` with one thread per element reads rows coalesced but writes
columns: each warp store touches 32 sectors for 128 useful bytes. The tiled transpose reads a 32x32 tile
with coalesced rows into shared memory, and writes the transposed tile with coalesced rows of ``y``
(block indices swapped). The tile is ``[32][33]``: the padding column puts the column reads of the
second phase on 32 different banks. Blocks are 32x8 threads, each moving four elements per phase (the
loops over the tile also cover it with any other block shape, so a knob that changes the block stays correct).

Recognised exactly: ``col = blockIdx.x * BX + threadIdx.x``, ``row = blockIdx.y * BY + threadIdx.y``,
``if (row < rows && col < cols) OUT[col * rows + row] = IN[row * cols + col];`` (casts allowed, either
order of the guard's terms) and a 2-D task grid ``ceil_div(COLS, ...), ceil_div(ROWS, ...)`` from which
the new grid ``ceil_div(COLS, 32), ceil_div(ROWS, 32)`` is taken.
"""

from __future__ import annotations

import re

from kernelpro.rewrites._kernel import _DECL, _indent_of, _locate, _normalise, _statements
from kernelpro.rewrites.launch import CandidateLaunch, render_launch, with_launch
from kernelpro.rewrites.vectorize import element_types
from kernelpro.transforms import Rewrite, TransformError

TILE = 32
ROWS_PER_PASS = 8
_INDEX = re.compile(r"blockIdx\.(?P<d>[xy])\*\w+\+threadIdx\.(?P=d)|threadIdx\.(?P<e>[xy])\+blockIdx\.(?P=e)\*\w+")
_COPY = re.compile(r"(\w+)\[(\w+)\*(\w+)\+(\w+)\]=(\w+)\[(\w+)\*(\w+)\+(\w+)\];")
_CEIL = re.compile(r"\s*(?:ceil_div|cdiv)\s*\(\s*(.+?)\s*,\s*[^,()]+\s*\)\s*")


def tiled_transpose(source: str, kernel: str, grid: tuple[str, ...]) -> Rewrite:
    """Tile the naive transpose ``kernel`` through shared memory (see the module doc)."""
    if len(grid) != 2 or not all(_CEIL.fullmatch(g) for g in grid):
        raise TransformError("the task's grid is not ceil_div(COLS, ...), ceil_div(ROWS, ...)")
    k = _locate(source, kernel)
    stmts = [k.code[a:b] for a, b in _statements(k.code, k.body[0] + 1, k.body[1])]
    if len(stmts) != 3:
        raise TransformError("the kernel is not two index declarations and one guarded copy")
    dims = {}
    for text in stmts[:2]:
        decl = _DECL.fullmatch(text.strip())
        match = _INDEX.fullmatch(_normalise(decl["init"])) if decl else None
        if match is None:
            raise TransformError("the indices are not blockIdx * B + threadIdx in x and y")
        dims[match["d"] or match["e"]] = decl["name"]
    if set(dims) != {"x", "y"}:
        raise TransformError("the kernel does not index both x and y")
    col, row = dims["x"], dims["y"]
    guard = re.fullmatch(r"if\((.+?)&&(.+?)\)\{?(.+?;)\}?", re.sub(r"\s+", "", _normalise(stmts[2])))
    terms = {guard.group(1), guard.group(2)} if guard else set()
    copy = _COPY.fullmatch(guard.group(3)) if guard else None
    if copy is None:
        raise TransformError("the body is not `if (row < rows && col < cols) y[col * rows + row] = "
                             "x[row * cols + col];`")
    out, c1, rows, r1, in_, r2, cols, c2 = copy.groups()
    if (c1, r1, r2, c2) != (col, row, row, col) or terms != {f"{row}<{rows}", f"{col}<{cols}"}:
        raise TransformError("the copy is not the transpose y[col * rows + row] = x[row * cols + col]")
    types = element_types(k)
    if out not in types or types.get(in_) != types[out]:
        raise TransformError("the input and output are not pointers to the same element type")
    indent = _indent_of(source, _statements(k.code, k.body[0] + 1, k.body[1])[0][0])
    body = "\n".join([
        "",
        f"{indent}// kernelpro: 32x32 tile through shared memory, padded to 33 columns; block 32x8",
        f"{indent}__shared__ {types[out]} kp_tile[{TILE}][{TILE + 1}];",
        f"{indent}for (int kp_k = threadIdx.y; kp_k < {TILE}; kp_k += blockDim.y) {{",
        f"{indent}    for (int kp_c = threadIdx.x; kp_c < {TILE}; kp_c += blockDim.x) {{  // any block shape works",
        f"{indent}        const int {row} = blockIdx.y * {TILE} + kp_k, {col} = blockIdx.x * {TILE} + kp_c;",
        f"{indent}        if ({row} < {rows} && {col} < {cols})",
        f"{indent}            kp_tile[kp_k][kp_c] = {in_}[(size_t){row} * {cols} + {col}];",
        f"{indent}    }}",
        f"{indent}}}",
        f"{indent}__syncthreads();",
        f"{indent}for (int kp_k = threadIdx.y; kp_k < {TILE}; kp_k += blockDim.y) {{",
        f"{indent}    for (int kp_c = threadIdx.x; kp_c < {TILE}; kp_c += blockDim.x) {{",
        f"{indent}        const int {row} = blockIdx.y * {TILE} + kp_c, {col} = blockIdx.x * {TILE} + kp_k;",
        f"{indent}        if ({row} < {rows} && {col} < {cols})",
        f"{indent}            {out}[(size_t){col} * {rows} + {row}] = kp_tile[kp_c][kp_k];",
        f"{indent}    }}",
        f"{indent}}}",
        ""])
    new = source[: k.body[0] + 1] + body + source[k.body[1] :]
    extents = [_CEIL.fullmatch(g).group(1) for g in grid]
    launch = CandidateLaunch(tuple(f"ceil_div({e}, {TILE})" for e in extents), (str(TILE), str(ROWS_PER_PASS)), "0")
    new = with_launch(new, render_launch(launch, note="tiled transpose: 32x32 tiles, 32x8 threads"),
                      _locate(new, kernel).sig.end - 1)
    return Rewrite(new, f"transpose through a padded {TILE}x{TILE + 1} shared tile (coalesced reads and writes), "
                        f"block {TILE}x{ROWS_PER_PASS}, grid ceil_div(..., {TILE}) in x and y")
