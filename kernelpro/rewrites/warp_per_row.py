"""Block-per-row → warp-per-row: one warp owns a row, reductions stay in registers, no block barrier.

Row kernels are written one block per row: 256 threads stride across the row and meet in a
shared-memory tree for every statistic (a max, a sum). For rows of a few thousand elements that is
tens of barriers per row and a block that idles at each. Expert kernels give each row to one warp:
lanes stride by 32, a statistic is a five-step ``__shfl_xor_sync`` butterfly that leaves the result in
every lane, and warps never wait on each other. The grid shrinks by the warps per block.

The rewrite is textual and refuses what it cannot prove: ``blockIdx.x`` is the row, ``threadIdx.x`` and
``blockDim.x`` the in-row index and stride (renamed ``kp_row``, ``kp_lane`` and ``32u``), every
``__shared__`` array is a reduction buffer used only as ``red[tid] = v``, a tree, and ``red[0]`` (each
becomes one register), and each tree combines with a commutative operation (sum, min, max), so every
lane of the butterfly ends with the same value. ``__syncthreads`` becomes ``__syncwarp``.

Launch: the kernel's parameters stay as they are; the candidate carries its own launch
(:mod:`kernelpro.rewrites.launch`). With a row guard (``if (row >= rows) return;``) a block holds
``WARPS_PER_BLOCK`` rows and the grid is ``ceil_div(rows, WARPS_PER_BLOCK)``; without one, surplus
warps would run past the last row, so a block is one warp (grid unchanged, block ``32``). Threads beyond
the launch's block leave at once (no barrier remains), so a larger block, e.g. the task's own launch
where the candidate's is not read, stays correct.
"""

from __future__ import annotations

import re

from kernelpro.rewrites._kernel import (
    _definitions,
    _indent_of,
    _Kernel,
    _locate,
    _loops,
    _matching,
    _resolve,
    _splice,
    _statements,
    line_of,
)
from kernelpro.rewrites.launch import CandidateLaunch, render_launch, with_launch
from kernelpro.rewrites.shuffle_reduce import TreeReduction, _substitute, match_tree, shared_arrays
from kernelpro.transforms import Rewrite, TransformError

WARPS_PER_BLOCK = 8  # rows per block when the kernel guards its row index
FULL_MASK = "0xffffffffu"
_COMMUTATIVE = ("fmaxf", "fminf", "fmax", "fmin", "max", "min")
_RENAMES = {"blockIdx.x": "kp_row", "threadIdx.x": "kp_lane", "blockDim.x": "32u"}


def _combine(tree: TreeReduction) -> str:
    """The tree's step as ``kp_A = ...`` over ``kp_A`` and ``kp_o_A``, or TransformError if not commutative."""
    if len(tree.arrays) != 1 or tree.condition:
        raise TransformError("a tree over several arrays or with a condition (an argmax) is not a plain reduction")
    (name, _), step = tree.arrays[0], re.sub(r"\s+", " ", _substitute(tree.body, tree)).strip().strip("{} ;")
    mine, other = f"kp_{name}", f"kp_o_{name}"
    if step in (f"{mine} += {other}", f"{mine} = {mine} + {other}", f"{mine} = {other} + {mine}"):
        return f"{mine} += {other};"
    call = re.fullmatch(rf"{mine} = (\w+)\s*\(\s*({mine}|{other})\s*,\s*({mine}|{other})\s*\)", step)
    if call and call.group(1) in _COMMUTATIVE and {call.group(2), call.group(3)} == {mine, other}:
        return f"{mine} = {call.group(1)}({mine}, {other});"
    raise TransformError(f"the tree step `{step}` is not a sum, min or max")


def _guarded(k: _Kernel, definitions: dict[str, str]) -> bool:
    """Whether the kernel returns early for rows past the end: ``if (row >= rows) return;``."""
    for start, stop in _statements(k.code, k.body[0] + 1, k.body[1]):
        guard = re.fullmatch(r"if\s*\(\s*([\w.]+)\s*>=\s*[\w.]+\s*\)\s*\{?\s*return\s*;\s*\}?",
                             k.code[start:stop].strip())
        if guard and _resolve(guard.group(1), definitions) == "blockIdx.x":
            return True
    return False


def _check_indices(k: _Kernel) -> None:
    body = k.code[k.body[0] : k.body[1]]
    for builtin in re.finditer(r"\b(blockIdx|threadIdx|blockDim|gridDim)\s*\.\s*([xyz])", body):
        if builtin.group(1) == "gridDim" or builtin.group(2) != "x":
            raise TransformError(f"the kernel uses {builtin.group(1)}.{builtin.group(2)}: not a 1-D row kernel")
    if re.search(r"\b(?:extern\s+__shared__|__shfl\w*|__syncwarp|cooperative_groups|atomic\w*)\b", body):
        raise TransformError("the kernel already uses dynamic shared memory, warp operations or atomics")


def _register_edits(k: _Kernel, trees: list[TreeReduction], definitions: dict[str, str]) -> list[tuple[int, int, str]]:
    """Edits turning each reduction array into a register: declaration, stores ``A[tid] = v`` and reads ``A[0]``."""
    shared, reduced = shared_arrays(k), {n for t in trees for n, _ in t.arrays}
    if set(shared) - reduced:
        raise TransformError(f"shared array(s) {', '.join(sorted(set(shared) - reduced))} are not reduction buffers")
    edits = []
    for decl in re.finditer(r"__shared__\s+(?:volatile\s+)?([A-Za-z_][\w:]*)\s+([A-Za-z_]\w*)\s*\[[^;]*;",
                            k.code[: k.body[1]]):
        if decl.start() < k.body[0]:
            raise TransformError(f"shared array {decl.group(2)} is declared outside the kernel")
        edits.append((decl.start(), decl.end(), f"{decl.group(1)} kp_{decl.group(2)};"))
    for use in re.finditer(r"\b([A-Za-z_]\w*)\s*\[", k.code[: k.body[1]]):
        if use.group(1) not in reduced or use.start() < k.body[0] or any(s <= use.start() < e for s, e, _ in edits) \
                or any(t.span[0] <= use.start() < t.span[1] for t in trees):
            continue
        close = _matching(k.code, use.end() - 1)
        index = k.code[use.end() : close].strip()
        store = _resolve(index, definitions) == "threadIdx.x" and re.match(r"\s*=(?!=)", k.code[close + 1 :])
        if index == "0" or store:
            edits.append((use.start(), close + 1, f"kp_{use.group(1)}"))
        else:
            raise TransformError(f"line {line_of(k.source, use.start())} uses {use.group(1)}[{index}]: "
                                 "only [tid] stores and [0] reads become a register")
    return edits


def _butterfly(k: _Kernel, tree: TreeReduction) -> str:
    name = tree.arrays[0][0]
    indent = _indent_of(k.source, tree.span[0])
    return (f"for (int kp_s = 16; kp_s > 0; kp_s >>= 1) {{  // kernelpro: warp butterfly, every lane gets the result\n"
            f"{indent}    const auto kp_o_{name} = __shfl_xor_sync({FULL_MASK}, kp_{name}, kp_s);\n"
            f"{indent}    {_combine(tree)}\n{indent}}}")


def warp_per_row(source: str, kernel: str, grid: tuple[str, ...], block: tuple[str, ...],
                 shared_mem: str = "0") -> Rewrite:
    """Remap ``kernel`` from a block per row to a warp per row (see the module doc).

    ``grid``, ``block`` and ``shared_mem`` are the task's launch expressions; the result carries the new
    launch as a ``/* kernelpro launch */`` block.
    """
    if len(grid) != 1 or len(block) != 1:
        raise TransformError("the task's launch is not 1-D (one block per row)")
    if shared_mem.strip() not in ("0", ""):
        raise TransformError("the task's launch uses dynamic shared memory")
    k = _locate(source, kernel)
    _check_indices(k)
    for name in sorted(set(re.findall(r"[A-Za-z_]\w*", block[0]))):
        for use in re.finditer(rf"\b{name}\b", k.code[k.body[0] : k.body[1]]):
            statement = k.code[k.code.rfind(";", 0, k.body[0] + use.start()) + 1 : k.body[0] + use.start()]
            if "__shared__" not in statement:
                raise TransformError(f"the kernel uses {name} (the block size) in its code, not only blockDim.x")
    definitions = _definitions(k)
    if _resolve("blockIdx.x", definitions) not in {_resolve(v, definitions) for v in definitions.values()} and \
            "blockIdx.x" not in k.code[k.body[0] : k.body[1]]:
        raise TransformError("the kernel does not use blockIdx.x: not a block-per-row kernel")
    trees = []
    for loop in _loops(k):
        try:
            trees.append(match_tree(k, loop, definitions, shared_arrays(k)))
        except TransformError:
            continue
    if not trees and "__syncthreads" not in k.code[k.body[0] : k.body[1]]:
        raise TransformError("the kernel has no block-level reduction: threads of a row do not cooperate")
    edits = [(t.span[0], t.span[1], _butterfly(k, t)) for t in trees] + _register_edits(k, trees, definitions)
    new = _splice(source, edits)
    k2 = _locate(new, kernel)
    body = new[k2.body[0] + 1 : k2.body[1]]
    body = re.sub(r"\b__syncthreads\s*\(\s*\)", "__syncwarp()", body)
    for builtin, name in _RENAMES.items():
        variable, field = builtin.split(".")
        body = re.sub(rf"\b{variable}\s*\.\s*{field}\b", name, body)
    warps = WARPS_PER_BLOCK if _guarded(k, definitions) else 1
    indent = _indent_of(source, _statements(k.code, k.body[0] + 1, k.body[1])[0][0])
    head = (f"\n{indent}// kernelpro: one warp per row, {warps} row(s) per block\n"
            f"{indent}const unsigned int kp_row = blockIdx.x * {warps}u + (threadIdx.x >> 5);\n"
            f"{indent}const unsigned int kp_lane = threadIdx.x & 31u;\n"
            f"{indent}if (threadIdx.x >= {32 * warps}u) return;  // a larger block than the launch below: idle")
    new = new[: k2.body[0] + 1] + head + body + new[k2.body[1] :]
    rows = grid[0] if warps == 1 else f"ceil_div({grid[0]}, {warps})"
    launch = CandidateLaunch((rows,), (str(32 * warps),), "0")
    note = f"warp per row: {warps} row(s) per block of {32 * warps} threads"
    new = with_launch(new, render_launch(launch, note=note), _locate(new, kernel).sig.end - 1)
    what = f"{len(trees)} shared-memory tree reduction(s) → register butterflies" if trees else "barriers → __syncwarp"
    return Rewrite(new, f"remap to one warp per row ({warps} per block, grid {rows}, block {32 * warps}); {what}")
