"""Thread-per-row → warp-per-row: the 32 lanes of a warp share a row, reductions end in a butterfly.

A first version often gives each thread a whole row: ``row = blockIdx.x * blockDim.x + threadIdx.x``, then
``for (j = 0; j < cols; ++j)`` loops over it. Neighbouring threads then read addresses ``cols`` elements
apart (one sector per thread per load: uncoalesced), and a warp needs 32 rows to have work. Giving each row
to a warp makes every load of the warp contiguous: lane ``l`` takes ``j = l, l + 32, ...``; a value the loop
accumulated (``acc += ...``, ``m = fmaxf(m, ...)``) is combined across the lanes with a five-step
``__shfl_xor_sync`` butterfly that leaves it in every lane, and the code after the loop runs unchanged.

What is accepted (anything else is refused with the reason):

- ``row = blockIdx.x * blockDim.x + threadIdx.x`` then ``if (row < rows) { ... }`` or ``if (row >= rows) return;``;
- in that code, ``for (int j = 0; j < n; ++j)`` loops whose straight-line bodies only declare locals, store
  ``p[j] = ...`` (arrays written only at ``[j]`` and read only at ``[j]`` in the loop, so iterations are
  independent), and update outer accumulators with ``v += e`` / ``v = v + e`` or ``v = fmaxf(v, e)``
  (``fminf``/``fmax``/``fmin``) where ``e`` does not read ``v`` — each accumulator's lanes start from the
  identity and the value it had before the loop is combined back after the butterfly;
- no barrier, shuffle, atomic or ``return`` inside the row code.

``per_block=True`` gives the row to the whole block instead (threads stride by ``blockDim.x``; after the
warp butterfly, lane 0 of each warp parks its partial in shared memory, one barrier, and every thread combines
the partials in the same order): for long rows, where a warp per row would leave too few warps in flight.
Its grid is the row count, ``ROWS``, and the row code's guard is the same for the whole block.

Launch: the block is unchanged (it must be a multiple of 32: the registry checks every allowed knob value);
the grid gets 32 times the threads, ``ceil_div((ROWS) * 32, BLOCK)``, written as the candidate's own launch.
"""

from __future__ import annotations

import re

from kernelpro.rewrites._kernel import (
    _DECL,
    _GLOBAL_INDEX,
    _indent_of,
    _locate,
    _loops,
    _matching,
    _normalise,
    _skip_space,
    _splice,
    _statement_end,
    _statements,
    line_of,
)
from kernelpro.rewrites.launch import CandidateLaunch, render_launch, with_launch
from kernelpro.transforms import Rewrite, TransformError

FULL_MASK = "0xffffffffu"
_IDENTITY = {"+": "0", "fmaxf": "-INFINITY", "fminf": "INFINITY", "fmax": "-INFINITY", "fmin": "INFINITY"}
_CEIL = re.compile(r"\s*(?:ceil_div|cdiv)\s*\(\s*(.+?)\s*,\s*([^,()]+?)\s*\)\s*")
_FORBIDDEN = re.compile(r"\b(?:__syncthreads|__syncwarp|__shfl\w*|atomic\w*|return|goto|blockIdx|threadIdx|blockDim)\b")


def _accumulator(stmt: str, outer: set[str]) -> tuple[str, str, str] | None:
    """``(variable, op, expression)`` when ``stmt`` accumulates into an outer variable, else None."""
    text = stmt.strip().rstrip(";").strip()
    match = re.fullmatch(r"([A-Za-z_]\w*)\s*\+=\s*(.+)", text, re.DOTALL) or \
        re.fullmatch(r"([A-Za-z_]\w*)\s*=\s*\1\s*\+\s*(.+)", text, re.DOTALL)
    if match and match.group(1) in outer:
        return match.group(1), "+", match.group(2)
    call = re.fullmatch(r"([A-Za-z_]\w*)\s*=\s*(fmaxf|fminf|fmax|fmin)\s*\(\s*\1\s*,\s*(.+)\)", text, re.DOTALL)
    if call and call.group(1) in outer:
        return call.group(1), call.group(2), call.group(3)
    return None


def _loop_plan(body: str, var: str, outer: set[str]) -> dict[str, str]:
    """The accumulators (name → op) a row loop updates, or TransformError when the body is not acceptable."""
    if re.search(r"\b(?:if|else|for|while|do|switch|break|continue)\b|[{}]", body.strip().strip("{}")):
        raise TransformError("the row loop's body is not straight-line code")
    accumulators: dict[str, str] = {}
    written, read_at = set(), {}
    for stmt in [s for s in body.strip().strip("{}").split(";") if s.strip()]:
        acc = _accumulator(stmt + ";", outer)
        if acc:
            name, op, expr = acc
            if re.search(rf"\b{name}\b", expr) or accumulators.get(name, op) != op:
                raise TransformError(f"{name} is not a plain sum/min/max accumulation")
            accumulators[name] = op
            continue
        store = re.fullmatch(rf"\s*([A-Za-z_]\w*)\s*\[\s*{var}\s*\]\s*=(?!=)(.+)", stmt, re.DOTALL)
        local = _DECL.fullmatch(stmt.strip() + ";") or re.fullmatch(
            r"\s*(?:const\s+)?[A-Za-z_][\w:]*\s+[A-Za-z_]\w*\s*=.+", stmt, re.DOTALL)
        if store:
            written.add(store.group(1))
        elif not local:
            raise TransformError(f"`{stmt.strip()}` is neither a local, a p[{var}] store nor an accumulation")
    for sub in re.finditer(r"([A-Za-z_]\w*)\s*\[([^\[\]]*)\]", body):
        read_at.setdefault(sub.group(1), set()).add(re.sub(r"\s+", "", sub.group(2)))
    for name in written:
        if read_at.get(name, set()) - {var}:
            raise TransformError(f"{name} is written at [{var}] and accessed elsewhere in the same loop")
    for name in outer - set(accumulators):
        if re.search(rf"\b{name}\s*(?:[-+*/%&|^]?=(?!=)|\+\+|--)", body):
            raise TransformError(f"the row loop changes {name} other than by accumulating")
    return accumulators


def thread_to_warp(source: str, kernel: str, grid: tuple[str, ...], *, per_block: bool = False) -> Rewrite:
    """Remap a thread-per-row ``kernel`` to a warp per row, or with ``per_block`` to a block per row (see the
    module doc)."""
    if len(grid) != 1 or _CEIL.fullmatch(grid[0]) is None:
        raise TransformError("the task's grid is not ceil_div(ROWS, BLOCK)")
    k = _locate(source, kernel)
    stmts = _statements(k.code, k.body[0] + 1, k.body[1])
    decl = _DECL.fullmatch(k.code[stmts[0][0] : stmts[0][1]].strip()) if stmts else None
    if decl is None or _normalise(decl["init"]) not in _GLOBAL_INDEX or len(stmts) < 2:
        raise TransformError("the kernel does not start with `row = blockIdx.x * blockDim.x + threadIdx.x`")
    row = decl["name"]
    guard = re.compile(r"if\s*\(").match(k.code, stmts[1][0])
    if guard is None:
        raise TransformError(f"no `if ({row} < rows)` guard after the row index")
    close = _matching(k.code, guard.end() - 1)
    cond = k.code[guard.end() : close].strip()
    then = _skip_space(k.code, close + 1, k.body[1])
    if re.fullmatch(rf"{row}\s*<\s*[\w.]+", cond) and _statement_end(k.code, then, k.body[1]) == stmts[1][1]:
        region = (then + 1, stmts[1][1] - 1) if k.code[then] == "{" else (then, stmts[1][1])
        if len(stmts) != 2:
            raise TransformError("code follows the row guard's block")
    elif re.fullmatch(rf"{row}\s*>=\s*[\w.]+", cond) and re.fullmatch(r"\{?\s*return\s*;\s*\}?",
                                                                        k.code[then : stmts[1][1]].strip()):
        region = (stmts[1][1], stmts[-1][1])
    else:
        raise TransformError(f"the guard is not `if ({row} < rows) {{...}}` or `if ({row} >= rows) return;`")
    code = k.code[region[0] : region[1]]
    if re.search(rf"\b{row}\s*(?:[-+*/%&|^]?=(?!=)|\+\+|--)", code):
        raise TransformError(f"the row code changes {row}")
    if _FORBIDDEN.search(code):
        raise TransformError("the row code synchronises, shuffles, uses atomics, returns or reads thread indices")
    outer = {m["name"] for s, e in _statements(k.code, region[0], region[1])
             if (m := _DECL.fullmatch(k.code[s:e].strip()) or re.fullmatch(
                 r"(?:const\s+)?(?P<type>(?:unsigned\s+)?[A-Za-z_][\w:]*)\s+(?P<name>[A-Za-z_]\w*)\s*=.+;",
                 k.code[s:e].strip(), re.DOTALL))}
    types = {m.group(2): m.group(1) for m in re.finditer(r"([A-Za-z_][\w:]*)\s+([A-Za-z_]\w*)\s*=", code)}
    edits, reduced = [], 0
    top_level = {start for start, _ in _statements(k.code, region[0], region[1])}
    lane, stride = ("threadIdx.x", "blockDim.x") if per_block else ("kp_lane", "32")
    for loop in _loops(k):
        if not region[0] <= loop.at < region[1]:
            continue
        if loop.at not in top_level:
            raise TransformError(f"line {line_of(source, loop.at)}: the row loop is nested in other code "
                                 "(its lanes might not all reach the shuffles)")
        init = re.fullmatch(r"(?:int|unsigned|unsigned\s+int|size_t|long\s+long)\s+(\w+)\s*=\s*0", loop.init)
        var = init.group(1) if init else ""
        if not init or not re.fullmatch(rf"{var}\s*<\s*.+", loop.cond) or \
                not re.fullmatch(rf"\+\+\s*{var}|{var}\s*\+\+|{var}\s*\+=\s*1", loop.step):
            raise TransformError(f"line {line_of(source, loop.at)}: the loop is not `for (j = 0; j < n; ++j)`")
        accumulators = _loop_plan(k.code[loop.body[0] : loop.body[1]], var, outer)
        indent = _indent_of(source, loop.at)
        kind_of_j = init.group(0).split(var)[0].strip()
        edits.append((loop.header[0] + 1, loop.header[1],
                      f"{kind_of_j} {var} = {lane}; {loop.cond}; {var} += {stride}"))
        before, after = [], []
        for name, op in accumulators.items():
            kind = types[name]  # declared in the row code: `outer` holds only those
            identity = f"({kind}){_IDENTITY[op]}" if op == "+" else _IDENTITY[op]
            combine = (f"{name} += kp_o;" if op == "+" else f"{name} = {op}({name}, kp_o);")
            before.append(f"const {kind} kp_{name}_before = {name};\n{indent}{name} = {identity};\n{indent}")
            restore = (f"{name} += kp_{name}_before;" if op == "+" else f"{name} = {op}({name}, kp_{name}_before);")
            text = (f"\n{indent}for (int kp_s = 16; kp_s > 0; kp_s >>= 1) {{  // kernelpro: lanes → row\n"
                    f"{indent}    const {kind} kp_o = __shfl_xor_sync({FULL_MASK}, {name}, kp_s);\n"
                    f"{indent}    {combine}\n{indent}}}")
            if per_block:  # then the warps' partials, combined in the same order by every thread
                part = f"kp_part_{name}_{reduced}"
                text += (f"\n{indent}__shared__ {kind} {part}[32];\n"
                         f"{indent}if ((threadIdx.x & 31u) == 0) {part}[threadIdx.x >> 5] = {name};\n"
                         f"{indent}__syncthreads();\n{indent}{name} = {part}[0];\n"
                         f"{indent}for (int kp_w = 1; kp_w < (int)(blockDim.x >> 5); ++kp_w) "
                         + (f"{name} += {part}[kp_w];" if op == "+" else f"{name} = {op}({name}, {part}[kp_w]);"))
            after.append(text + f"\n{indent}{restore}")
        reduced += len(accumulators)
        if before:
            edits.append((loop.at, loop.at, "".join(before)))
        if after:
            edits.append((loop.body[1], loop.body[1], "".join(after)))
    if not edits:
        raise TransformError("the row code has no `for (j = 0; j < n; ++j)` loop over the row")
    new = _splice(source, edits)
    k2 = _locate(new, kernel)
    decl_span = _statements(k2.code, k2.body[0] + 1, k2.body[1])[0]
    index_type = re.sub(r"\bconst\s+", "", decl["type"])
    rows, block = _CEIL.fullmatch(grid[0]).groups()
    if per_block:
        head = f"const {index_type} {row} = ({index_type})blockIdx.x;  // kernelpro: one block per row"
        launch, what = CandidateLaunch((rows,), (block,), "0"), "block-per-row (threads stride the row by blockDim.x"
    else:
        head = (f"const {index_type} {row} = ({index_type})(blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5));"
                f"  // kernelpro: one warp per row\n{_indent_of(new, decl_span[0])}"
                "const unsigned int kp_lane = threadIdx.x & 31u;")
        launch = CandidateLaunch((f"ceil_div(({rows}) * 32, {block})",), (block,), "0")
        what = "warp-per-row (lanes stride the row by 32"
    new = _splice(new, [(decl_span[0], decl_span[1], head)])
    note = f"{what.split(' (')[0]}: grid {launch.grid[0]}, block {block}"
    new = with_launch(new, render_launch(launch, note=note), _locate(new, kernel).sig.end - 1)
    return Rewrite(new, f"remap thread-per-row to {what}, {reduced} accumulator(s) combined by shuffles), "
                        f"grid {launch.grid[0]}")
