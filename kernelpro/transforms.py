"""Source-to-source transforms of a task's entry kernel: the edits the offline proposer makes.

Each transform takes the whole ``.cu`` source and the entry kernel's name, edits only that kernel's
text (the span :func:`~kernelpro.cuda_source.find_kernels` reports; everything before and after,
the metadata comment included, stays byte-identical) and returns a :class:`Rewrite`: the new source
and a one-line ``change`` saying what it did. When a transform does not apply (nothing to change, or
a shape it does not recognise) it raises :class:`TransformError` and the caller skips it.

These are pattern matchers on a copy of the source with comments and strings blanked, not a C++
parser: they recognise the shapes first versions of kernels are written in and refuse the rest.

- :func:`add_restrict`: ``__restrict__`` on every pointer parameter, and ``const`` on those the kernel
  provably only reads: every use is a subscript ``p[...]`` that is neither assigned, incremented nor
  has its address taken (a pointer copied, offset or passed anywhere is left alone). Restrict
  promises the buffers don't overlap, which holds for a task's arguments (separate allocations).
- :func:`set_launch_bounds`: insert or replace ``__launch_bounds__(max_threads[, min_blocks])``.
- :func:`unroll_loops`: ``#pragma unroll N`` on innermost ``for`` loops with an additive step and no
  barrier, block- and grid-stride loops included: unrolling those lets a thread issue N independent
  loads before it waits on the first, which latency-bound streaming loops need. Loops with a ``>>=``
  or ``*=`` step (tree reductions) and loops around ``__syncthreads`` are skipped: their trip counts
  are tiny and the barrier serialises the iterations anyway. ``factor=None`` (unroll fully) only
  takes loops whose bounds are literals or macros (``#define``), the only ones ptxas can unroll fully.
- :func:`fast_math_intrinsics`: ``expf`` → ``__expf`` and the other single-precision transcendentals
  with a hardware approximation, in this kernel only. Division is left alone: ``__fdividef(x, y)``
  returns 0 for ``2**126 < |y| < 2**128`` and the denominator's range can't be known from the text
  (``--use_fast_math`` is the flag for that).
- :func:`pad_shared`: ``__shared__ T a[R][C]`` → ``a[R][cols]`` (code that flattens the array by hand
  would break; the wall catches it).
- :func:`grid_stride_loop`: ``i = global thread index; if (i < n) body`` (or ``if (i >= n) return;``)
  → ``for (i = index; i < n; i += blockDim.x * gridDim.x) body``, so any grid covers the problem.
- :func:`vectorize_elementwise`: turns the elementwise pattern into a grid-stride loop, then rewrites
  every block- or grid-stride loop whose buffer accesses are all ``p[i]`` (32-bit or double
  elements) into a loop over float4 (or 2-wide) vectors plus a scalar loop for the tail. The vector
  path runs only when every pointer it touches is 16-byte aligned (checked at run time; cudaMalloc
  gives 256 bytes, but a row pointer ``x + row * cols`` is aligned only when ``cols % 4 == 0``), so
  misaligned buffers and odd sizes take the scalar loop and stay correct. The task's grid is not
  changed: a launch sized for one element per thread now has four times the threads it needs, and
  the surplus ones find their loop empty and exit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from kernelpro.cuda_source import KernelSignature, blank_comments_and_strings, find_kernels, matching_bracket
from kernelpro.errors import KernelproError


class TransformError(KernelproError):
    """A transform does not apply to this kernel; the message says why."""


@dataclass(frozen=True)
class Rewrite:
    """The whole new source and a one-line description of the edit."""

    source: str
    change: str


# --- locating the kernel and its statements ---------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_]\w*")
_ASSIGN_AFTER = re.compile(r"\s*(?:[-+*/%&|^]|<<|>>)?=(?!=)|\s*(?:\+\+|--)")
_CONTROL = ("if", "for", "while", "switch")


@dataclass(frozen=True)
class _Kernel:
    source: str
    code: str  # the source with comments and strings blanked (same offsets)
    sig: KernelSignature
    params: tuple[int, int]  # offsets of the parameter list's "(" and ")"
    body: tuple[int, int]  # offsets of the body's "{" and "}"


def _locate(source: str, kernel: str) -> _Kernel:
    sig = find_kernels(source).get(kernel)
    if sig is None:
        raise TransformError(f"no __global__ kernel {kernel!r} in the source")
    code = blank_comments_and_strings(source)
    name = re.compile(rf"\b{re.escape(kernel)}\s*\(").search(code, sig.start, sig.end)
    assert name is not None  # find_kernels found it there
    open_ = name.end() - 1
    close = _matching(code, open_)
    body_open = code.find("{", close)
    return _Kernel(source, code, sig, (open_, close), (body_open, sig.end - 1))


def _matching(code: str, at: int) -> int:
    """Offset of the bracket closing the one at ``at``."""
    close = matching_bracket(code, at)
    if close < 0:
        raise TransformError(f"no balanced bracket at offset {at}")
    return close


def _skip_space(code: str, pos: int, end: int) -> int:
    """The first offset at or after ``pos`` that is neither whitespace nor a preprocessor line."""
    while pos < end:
        if code[pos].isspace():
            pos += 1
        elif code[pos] == "#" and code[code.rfind("\n", 0, pos) + 1 : pos].strip() == "":
            newline = code.find("\n", pos)
            pos = end if newline < 0 else newline + 1
        else:
            break
    return pos


def _word_at(code: str, pos: int) -> str:
    match = _IDENT.match(code, pos)
    return match.group() if match else ""


def _statement_end(code: str, pos: int, end: int) -> int:
    """Offset just past the statement starting at ``pos`` (a block, a control statement or ``...;``)."""
    word = _word_at(code, pos)
    if code[pos] == "{":
        return _matching(code, pos) + 1
    if word in _CONTROL:
        header = _skip_space(code, pos + len(word), end)
        stop = _statement_end(code, _skip_space(code, _matching(code, header) + 1, end), end)
        after = _skip_space(code, stop, end)
        if word == "if" and _word_at(code, after) == "else":
            stop = _statement_end(code, _skip_space(code, after + 4, end), end)
        return stop
    if word == "do":
        body_end = _statement_end(code, _skip_space(code, pos + 2, end), end)
        return _statement_end(code, _skip_space(code, body_end, end), end)  # "while (...);"
    depth = 0
    for k in range(pos, end):
        if code[k] in "([{":
            depth += 1
        elif code[k] in ")]}":
            depth -= 1
        elif code[k] == ";" and depth == 0:
            return k + 1
    raise TransformError(f"statement at offset {pos} does not end")


def _statements(code: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the top-level statements in ``code[start:end]``."""
    spans, pos = [], _skip_space(code, start, end)
    while pos < end:
        stop = _statement_end(code, pos, end)
        spans.append((pos, stop))
        pos = _skip_space(code, stop, end)
    return spans


def _splice(source: str, edits: list[tuple[int, int, str]]) -> str:
    """``source`` with each ``(start, stop, text)`` span replaced (spans must not overlap)."""
    for start, stop, text in sorted(edits, reverse=True):
        source = source[:start] + text + source[stop:]
    return source


def _indent_of(source: str, pos: int) -> str:
    line = source[source.rfind("\n", 0, pos) + 1 : pos]
    return line[: len(line) - len(line.lstrip())]


def _uses(code: str, name: str) -> list[re.Match[str]]:
    return list(re.finditer(rf"(?<![\w.>])\b{re.escape(name)}\b", code))


def _assigned(code: str, name: str) -> bool:
    """Whether ``name`` (a plain variable) is assigned, incremented or decremented in ``code``."""
    for use in _uses(code, name):
        before = code[: use.start()].rstrip()
        if _ASSIGN_AFTER.match(code, use.end()) or before.endswith(("++", "--")):
            return True
    return False


def _modifies_or_takes_address(lead: str) -> bool:
    """Whether the code just before a use (``lead``) increments it (``++x``) or takes its address (``&x``,
    but not ``a & x`` or ``a && x``)."""
    if lead.endswith(("++", "--")):
        return True
    if not lead.endswith("&") or lead.endswith("&&"):
        return False
    before = lead[:-1].rstrip()
    return before == "" or before[-1] in "=(,;?:|+-*/<>!~%^[{"


# --- __restrict__ and const -------------------------------------------------------------------------

def _read_only(body: str, name: str) -> bool:
    """Every use of pointer ``name`` is a subscript read: ``name[...]``, never assigned or address-taken."""
    uses = _uses(body, name)
    for use in uses:
        at = _skip_space(body, use.end(), len(body))
        if at >= len(body) or body[at] != "[":
            return False
        if _ASSIGN_AFTER.match(body, _matching(body, at) + 1):
            return False
        if _modifies_or_takes_address(body[: use.start()].rstrip()):
            return False
    return bool(uses)


def add_restrict(source: str, kernel: str, *, add_const: bool = True) -> Rewrite:
    """Mark every pointer parameter ``__restrict__``; with ``add_const``, also ``const`` on read-only ones."""
    k = _locate(source, kernel)
    body = k.code[k.body[0] : k.body[1] + 1]
    edits, restricted, consted = [], [], []
    pos = k.params[0] + 1
    for offset, stop in _split_params(k.code[pos : k.params[1]]):
        start, text = pos + offset, k.code[pos + offset : pos + stop]
        param = next(p for p in k.sig.params if re.search(rf"\b{re.escape(p.name)}\s*$", text))
        if not param.is_pointer or text.count("*") != 1:
            continue
        if not param.is_restrict:
            star = start + text.rindex("*") + 1
            edits.append((star, star, " __restrict__"))
            restricted.append(param.name)
        if add_const and not param.is_const and param.base_type in _ELEMENTS and _read_only(body, param.name):
            lead = start + len(text) - len(text.lstrip())
            edits.append((lead, lead, "const "))
            consted.append(param.name)
    if not edits:
        raise TransformError(f"every pointer parameter of {kernel} is already __restrict__ (or none is a pointer)")
    change = "mark " + ", ".join(restricted) + " __restrict__" if restricted else ""
    if consted:
        change += ("; " if change else "") + "make read-only " + ", ".join(consted) + " const"
    return Rewrite(_splice(source, edits), change)


def _split_params(text: str) -> list[tuple[int, int]]:
    """Spans of the comma-separated parameters in a parameter list's inside."""
    spans, depth, start = [], 0, 0
    for k, ch in enumerate(text + ","):
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        elif ch == "," and depth == 0:
            if text[start:k].strip():
                spans.append((start, k))
            start = k + 1
    return spans


# --- __launch_bounds__ -----------------------------------------------------------------------------

_BOUND_EXPR = re.compile(r"[\w\s*+/()-]+")


def set_launch_bounds(source: str, kernel: str, max_threads: int | str, min_blocks: int | str | None = None) -> Rewrite:
    """Insert or replace ``__launch_bounds__(max_threads[, min_blocks])`` on the kernel.

    Both may be integer constant expressions over knob macros (``BLOCK_X * BLOCK_Y``), so the bound
    follows the block size when a knob changes it; a block larger than ``max_threads`` fails to launch.
    """
    for value in (max_threads, min_blocks):
        if value is not None and not _BOUND_EXPR.fullmatch(str(value)):
            raise TransformError(f"launch bound {value!r} is not a constant expression")
    args = str(max_threads) if min_blocks is None else f"{max_threads}, {min_blocks}"
    k = _locate(source, kernel)
    if k.sig.launch_bounds is not None:
        if re.sub(r"\s", "", k.sig.launch_bounds) == re.sub(r"\s", "", args):
            raise TransformError(f"{kernel} already has __launch_bounds__({args})")
        bounds = re.compile(r"__launch_bounds__\s*\(").search(k.code, k.sig.start, k.body[0])
        assert bounds is not None
        close = _matching(k.code, bounds.end() - 1)
        new = _splice(source, [(bounds.end(), close, args)])
        return Rewrite(new, f"launch bounds ({k.sig.launch_bounds}) → ({args})")
    global_ = re.compile(r"\b__global__\b").search(k.code, k.sig.start, k.params[0])
    assert global_ is not None
    new = _splice(source, [(global_.end(), global_.end(), f" __launch_bounds__({args})")])
    return Rewrite(new, f"declare __launch_bounds__({args})")


# --- loops: unrolling ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Loop:
    at: int  # offset of "for"
    header: tuple[int, int]  # "(" and ")"
    body: tuple[int, int]  # span of the body statement
    init: str
    cond: str
    step: str


def _loops(k: _Kernel) -> list[_Loop]:
    loops = []
    for match in re.finditer(r"\bfor\s*\(", k.code[: k.body[1]]):
        if match.start() < k.body[0]:
            continue
        open_ = match.end() - 1
        close = _matching(k.code, open_)
        parts = k.code[open_ + 1 : close].split(";")
        if len(parts) != 3:
            continue  # a range-for
        body_start = _skip_space(k.code, close + 1, k.body[1])
        body = (body_start, _statement_end(k.code, body_start, k.body[1]))
        loops.append(_Loop(match.start(), (open_, close), body, *(p.strip() for p in parts)))
    return loops


def _defined_macros(code: str) -> set[str]:
    return set(re.findall(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)", code, re.MULTILINE))


def _loop_var(loop: _Loop) -> str | None:
    match = re.fullmatch(r"(?:[\w\s]+\s)?([A-Za-z_]\w*)\s*=.*", loop.init, re.DOTALL)
    return match.group(1) if match else None


def _unroll_skip_reason(k: _Kernel, loop: _Loop, loops: list[_Loop], full: bool, strided_only: bool) -> str | None:
    line_start = k.code.rfind("\n", 0, loop.at) + 1
    if k.code[line_start : loop.at].strip():
        return "does not start its line"
    previous = k.source[: line_start].rstrip().rsplit("\n", 1)[-1].strip()
    if previous.startswith("#pragma") and "unroll" in previous:
        return "already has an unroll pragma"
    if any(loop.body[0] <= other.at < loop.body[1] for other in loops):
        return "is not innermost"
    if "__syncthreads" in k.code[loop.body[0] : loop.body[1]]:
        return "contains a barrier"
    var = _loop_var(loop)
    additive = var is not None and re.fullmatch(
        rf"(?:\+\+\s*{var}|{var}\s*\+\+|{var}\s*\+=.+|{var}\s*=\s*{var}\s*\+.+)", loop.step, re.DOTALL)
    if not additive:
        return "does not step by addition"
    if strided_only and re.fullmatch(rf"\+\+\s*{var}|{var}\s*(?:\+\+|\+=\s*1)", loop.step.strip()):
        return "steps by 1 (nvcc unrolls those itself)"
    if full:
        allowed = _defined_macros(k.code) | {var}
        names = set(_IDENT.findall(" ".join((loop.init.split("=", 1)[1], loop.cond, loop.step))))
        if names - allowed:
            return "has a trip count known only at run time"
    return None


def unroll_loops(source: str, kernel: str, factor: int | None = None, *, strided_only: bool = False) -> Rewrite:
    """``#pragma unroll factor`` (``None``: fully) before each eligible innermost loop (see the module doc).

    ``strided_only`` leaves loops that step by 1 alone: nvcc already unrolls those counted loops by 4
    or more on its own (sgemm's k loop by 16), so a pragma there mostly unrolls less, while it leaves
    block- and grid-stride loops rolled.
    """
    if factor is not None and factor < 2:
        raise TransformError(f"unroll factor must be at least 2, not {factor}")
    k = _locate(source, kernel)
    loops = _loops(k)
    pragma = "#pragma unroll" if factor is None else f"#pragma unroll {factor}"
    edits, skipped = [], []
    for loop in loops:
        reason = _unroll_skip_reason(k, loop, loops, factor is None, strided_only)
        if reason:
            skipped.append(f"line {source.count(chr(10), 0, loop.at) + 1} {reason}")
            continue
        line_start = k.code.rfind("\n", 0, loop.at) + 1
        edits.append((line_start, line_start, f"{_indent_of(source, loop.at)}{pragma}\n"))
    if not edits:
        why = "; ".join(skipped) if skipped else "it has no for loops"
        raise TransformError(f"no loop of {kernel} to unroll: {why}")
    what = "fully" if factor is None else f"by {factor}"
    return Rewrite(_splice(source, edits), f"unroll {len(edits)} innermost loop(s) {what}")


# --- fast-math intrinsics --------------------------------------------------------------------------

INTRINSICS = {
    "expf": "__expf",
    "exp10f": "__exp10f",
    "logf": "__logf",
    "log2f": "__log2f",
    "log10f": "__log10f",
    "sinf": "__sinf",
    "cosf": "__cosf",
    "sincosf": "__sincosf",
}


def fast_math_intrinsics(source: str, kernel: str) -> Rewrite:
    """Call the hardware approximations (``__expf``, ``__logf``, ...) instead of the accurate functions."""
    k = _locate(source, kernel)
    pattern = re.compile(r"(?<![\w.:])(" + "|".join(INTRINSICS) + r")(?=\s*\()")
    matches = list(pattern.finditer(k.code, k.body[0], k.body[1]))
    if not matches:
        raise TransformError(f"{kernel} calls none of {', '.join(INTRINSICS)}")
    names = sorted({m.group(1) for m in matches})
    new = _splice(source, [(m.start(), m.end(), INTRINSICS[m.group(1)]) for m in matches])
    return Rewrite(new, "use " + ", ".join(f"{INTRINSICS[n]} for {n}" for n in names))


# --- shared-memory padding -------------------------------------------------------------------------

def pad_shared(source: str, kernel: str, array: str, cols: int | str) -> Rewrite:
    """Give the kernel's ``__shared__`` 2-D array ``array`` an inner dimension of ``cols``."""
    k = _locate(source, kernel)
    decl = re.compile(rf"__shared__\s+[^;]*?\b{re.escape(array)}\s*\[([^\]]*)\]\s*\[([^\]]*)\]\s*;")
    match = decl.search(k.code, k.body[0], k.body[1])
    if match is None:
        raise TransformError(f"{kernel} declares no 2-D __shared__ array {array!r}")
    old = match.group(2).strip()
    if old == str(cols).strip():
        raise TransformError(f"{array} already has {cols} columns")
    new = _splice(source, [(match.start(2), match.end(2), str(cols))])
    return Rewrite(new, f"pad shared {array}[{match.group(1).strip()}][{old}] to [{cols}] columns")


# --- grid-stride loops -----------------------------------------------------------------------------

_CAST = re.compile(r"\((?:const|unsigned|signed|long|int|size_t|u?int64_t|u?int32_t|\s)+\)")
_THREAD = frozenset({"threadIdx.x"})
_BLOCK_STRIDE = frozenset({"blockDim.x"})
_LANE_STRIDE = ("threadIdx.x&31u", "32u")  # lane, warp: a warp-per-row row loop (kernelpro.rewrites.warp_per_row)
_GLOBAL_INDEX = frozenset({"blockIdx.x*blockDim.x+threadIdx.x", "blockDim.x*blockIdx.x+threadIdx.x",
                           "threadIdx.x+blockIdx.x*blockDim.x", "threadIdx.x+blockDim.x*blockIdx.x"})
_GRID_STRIDE = frozenset({"blockDim.x*gridDim.x", "gridDim.x*blockDim.x"})
_DECL = re.compile(r"(?P<type>(?:const\s+)?(?:unsigned\s+|signed\s+)?(?:int|long\s+long|long|size_t|u?int64_t|"
                   r"u?int32_t|unsigned|auto))\s+(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<init>[^;]+);?", re.DOTALL)
_THREAD_LOCAL = re.compile(r"\b(?:threadIdx|blockIdx|__syncthreads\w*|__syncwarp|__shfl\w*|__ballot\w*|__any\w*|"
                           r"__all\w*|__activemask|cooperative_groups|asm|return)\b")


def _normalise(expr: str) -> str:
    """Whitespace and integer casts out, ``(a*b)`` unwrapped: for matching index expressions."""
    text = re.sub(r"\s+", "", _CAST.sub("", expr))
    return re.sub(r"\(([\w.]+\*[\w.]+)\)", r"\1", text)


def _definitions(k: _Kernel) -> dict[str, str]:
    """Variables declared once at the kernel's top level and never assigned again → their initialiser."""
    found: dict[str, str] = {}
    for start, stop in _statements(k.code, k.body[0] + 1, k.body[1]):
        match = _DECL.fullmatch(k.code[start:stop].strip())
        elsewhere = k.code[k.body[0] + 1 : start] + k.code[stop : k.body[1]]
        if match and not _assigned(elsewhere, match["name"]):
            found[match["name"]] = match["init"].strip()
    return found


def _resolve(expr: str, definitions: dict[str, str]) -> str:
    """``expr`` normalised, a variable replaced by its (normalised) definition."""
    text = _normalise(expr)
    return _normalise(definitions[text]) if text in definitions else text


@dataclass(frozen=True)
class _Guarded:
    """``T i = <global index>; if (i < n) body`` (or ``if (i >= n) return; body...``)."""

    span: tuple[int, int]  # from the declaration to the end of the body
    type: str
    var: str
    init: str
    bound: str
    body: str  # source text of the per-element statements, without braces


def _guarded_elementwise(k: _Kernel) -> _Guarded:
    stmts = _statements(k.code, k.body[0] + 1, k.body[1])
    if len(stmts) < 2:
        raise TransformError("the kernel is not `i = global index; if (i < n) ...`")
    decl = _DECL.fullmatch(k.code[stmts[0][0] : stmts[0][1]].strip())
    if decl is None or _normalise(decl["init"]) not in _GLOBAL_INDEX:
        raise TransformError("the kernel does not start with `i = blockIdx.x * blockDim.x + threadIdx.x`")
    var = decl["name"]
    guard = re.compile(r"if\s*\(").match(k.code, stmts[1][0])
    if guard is None:
        raise TransformError(f"no `if ({var} < n)` guard after the index")
    close = _matching(k.code, guard.end() - 1)
    cond = k.code[guard.end() : close].strip()
    lt = re.fullmatch(rf"{var}\s*<\s*(.+)|(.+?)\s*>\s*{var}", cond, re.DOTALL)
    ge = re.fullmatch(rf"{var}\s*>=\s*(.+)|(.+?)\s*<=\s*{var}", cond, re.DOTALL)
    then = _skip_space(k.code, close + 1, k.body[1])
    then_end = _statement_end(k.code, then, k.body[1])
    if then_end != stmts[1][1]:
        raise TransformError("the guard has an else branch")
    if lt and len(stmts) == 2:
        bound, end = (lt.group(1) or lt.group(2)).strip(), stmts[1][1]
        inner = (then + 1, end - 1) if k.code[then] == "{" else (then, end)
    elif ge and len(stmts) > 2 and re.fullmatch(r"\{?\s*return\s*;\s*\}?", k.code[then:then_end].strip()):
        bound, end = (ge.group(1) or ge.group(2)).strip(), stmts[-1][1]
        inner = (stmts[1][1], end)
    else:
        raise TransformError(f"the guard is not `if ({var} < n) ...` or `if ({var} >= n) return;` then code")
    text = k.code[inner[0] : inner[1]]
    if _THREAD_LOCAL.search(text):
        raise TransformError("the per-element code uses threadIdx/blockIdx, a barrier, a warp op or return")
    if _assigned(text, var):
        raise TransformError(f"the per-element code changes {var}")
    index_type = re.sub(r"\bconst\s+", "", decl["type"])  # it becomes a loop variable
    return _Guarded((stmts[0][0], end), index_type, var, decl["init"].strip(), bound,
                    k.source[inner[0] : inner[1]])


def _as_grid_stride(source: str, k: _Kernel, g: _Guarded) -> str:
    indent = _indent_of(source, g.span[0])
    stride = "blockDim.x * gridDim.x" if g.type in ("int", "unsigned", "unsigned int") else \
        f"({g.type})blockDim.x * gridDim.x"
    body = _reindent(g.body, indent + "    ")
    loop = f"for ({g.type} {g.var} = {g.init}; {g.var} < {g.bound}; {g.var} += {stride}) {{\n{body}\n{indent}}}"
    return _splice(source, [(g.span[0], g.span[1], loop)])


def _reindent(text: str, indent: str) -> str:
    """``text`` with its first line stripped and the rest dedented, every line then indented by ``indent``."""
    first, *rest = text.strip().splitlines() or [""]
    margin = min((len(line) - len(line.lstrip()) for line in rest if line.strip()), default=0)
    lines = [first.strip()] + [line[margin:].rstrip() for line in rest]
    return "\n".join(indent + line if line else "" for line in lines)


def grid_stride_loop(source: str, kernel: str) -> Rewrite:
    """Loop ``i += blockDim.x * gridDim.x`` over the one-element-per-thread body (see the module doc)."""
    k = _locate(source, kernel)
    g = _guarded_elementwise(k)
    return Rewrite(_as_grid_stride(source, k, g), f"turn the `{g.var} < {g.bound}` guard into a grid-stride loop")


# --- vectorisation ---------------------------------------------------------------------------------

# Element type -> (vector type prefix, bytes).
_ELEMENTS = {"float": ("float", 4), "int": ("int", 4), "unsigned int": ("uint", 4), "unsigned": ("uint", 4),
             "double": ("double", 8)}
_COMPONENTS = "xyzw"


@dataclass(frozen=True)
class _Access:
    name: str
    read: bool
    written: bool


def _pointer_types(k: _Kernel) -> dict[str, str]:
    """Pointer parameters and local pointer variables of the kernel → element type."""
    types = {p.name: p.base_type for p in k.sig.params if p.is_pointer and p.text.count("*") == 1}
    local = re.compile(r"\b(?:const\s+)?(float|double|int|unsigned int|unsigned)\s*\*\s*(?:const\s+)?"
                       r"(?:__restrict__\s+)?([A-Za-z_]\w*)\s*=")
    for match in local.finditer(k.code, k.body[0], k.body[1]):
        types.setdefault(match.group(2), match.group(1))
    return types


def _strided(k: _Kernel, loop: _Loop, definitions: dict[str, str]) -> tuple[str, str, str, str, str]:
    """``(type, var, start, bound, stride)`` of a block- or grid-stride loop, or TransformError."""
    decl = _DECL.fullmatch(loop.init)
    if decl is None:
        raise TransformError("the loop does not declare its index")
    var, start = decl["name"], decl["init"].strip()
    cond = re.fullmatch(rf"{var}\s*<\s*(.+)", loop.cond, re.DOTALL)
    step = re.fullmatch(rf"{var}\s*\+=\s*(.+)", loop.step, re.DOTALL)
    if cond is None or step is None:
        raise TransformError(f"the loop is not `{var} < n; {var} += stride`")
    stride = step.group(1).strip()
    pair = (_resolve(start, definitions), _resolve(stride, definitions))
    if not ((pair[0] in _THREAD and pair[1] in _BLOCK_STRIDE) or pair == _LANE_STRIDE or (pair[0] in _GLOBAL_INDEX and
                                                                   pair[1] in _GRID_STRIDE)):
        raise TransformError("the loop is not a block-stride or grid-stride loop")
    return re.sub(r"\bconst\s+", "", decl["type"]), var, start, cond.group(1).strip(), stride


def _accesses(k: _Kernel, loop: _Loop, var: str, pointers: dict[str, str]) -> tuple[_Access, ...]:
    """The buffers a loop body touches, all as ``p[var]`` in top-level, straight-line statements."""
    start, stop = loop.body
    if k.code[start] == "{":
        start, stop = start + 1, stop - 1
    text = k.code[start:stop]
    if re.search(r"\b(?:if|else|for|while|do|switch|goto|break|continue)\b|[{}\"']", text) or \
            _THREAD_LOCAL.search(text):
        raise TransformError("the loop body is not straight-line per-element code")
    for subscript in re.finditer(r"([A-Za-z_]\w*)\s*\[", text):
        if subscript.group(1) not in pointers:
            raise TransformError(f"the loop body indexes {subscript.group(1)!r}, not a global buffer")
    written: set[str] = set()
    read: set[str] = set()
    for name in pointers:
        for use in _uses(text, name):
            index = re.compile(rf"\s*\[\s*{var}\s*\]").match(text, use.end())
            if index is None:
                raise TransformError(f"the loop body uses {name} other than as {name}[{var}]")
            after = _ASSIGN_AFTER.match(text, index.end())
            op = after.group().strip() if after else None
            lead = text[: use.start()].rstrip()
            starts_statement = lead == "" or lead.endswith(";")
            if op is None and not _modifies_or_takes_address(lead):
                read.add(name)
            elif op == "=" and starts_statement:
                written.add(name)
            elif op not in (None, "++", "--") and starts_statement:  # compound assignment: read and write
                read.add(name)
                written.add(name)
            else:
                raise TransformError(f"{name}[{var}] is modified or has its address taken inside an expression")
    if not written and not read:
        raise TransformError("the loop body touches no global buffer")
    if _assigned(text, var):
        raise TransformError(f"the loop body changes {var}")
    return tuple(_Access(n, n in read, n in written) for n in pointers if n in read | written)


def _vectorized_loop(k: _Kernel, loop: _Loop, definitions: dict[str, str], pointers: dict[str, str],
                     width_bytes: int) -> str:
    type_, var, start, bound, stride = _strided(k, loop, definitions)
    accesses = _accesses(k, loop, var, pointers)
    sizes = {_ELEMENTS.get(pointers[a.name], (None, 0))[1] for a in accesses}
    if len(sizes) != 1 or 0 in sizes:
        raise TransformError("the loop's buffers are not all 32-bit or all double elements")
    lanes = width_bytes // sizes.pop()
    if lanes < 2:
        raise TransformError(f"{width_bytes * 8}-bit vectors hold one element of this type")
    for name in _IDENT.findall(" ".join((bound, start, stride))):
        if _assigned(k.code[loop.body[0] : loop.body[1]], name):
            raise TransformError(f"the loop body changes {name}, which the loop bounds use")
    source, code = k.source, k.code
    body_start, body_stop = loop.body
    if code[body_start] == "{":
        body_start, body_stop = body_start + 1, body_stop - 1
    indent = _indent_of(source, loop.at)
    pad = indent + "    "
    vec = {a.name: f"{_ELEMENTS[pointers[a.name]][0]}{lanes}" for a in accesses}
    aligned = " | ".join(f"reinterpret_cast<unsigned long long>({a.name})" for a in accesses)
    lines = [f"{{  // kernelpro: {lanes}-wide vector loads/stores when {width_bytes}-byte aligned, scalar tail",
             f"{pad}{type_} kp_done = 0;",
             f"{pad}if ((({aligned}) & {width_bytes - 1}) == 0) {{",
             f"{pad}    const {type_} kp_vectors = ({bound}) / {lanes};",
             f"{pad}    for ({type_} kp_v = {start}; kp_v < kp_vectors; kp_v += {stride}) {{"]
    inner = pad + "        "
    for a in accesses:
        vtype = vec[a.name]
        if a.read:
            const = "const " if not a.written else ""
            lines.append(f"{inner}{const}{vtype} kp_{a.name} = reinterpret_cast<const {vtype}*>({a.name})[kp_v];")
        else:
            lines.append(f"{inner}{vtype} kp_{a.name};")
    body = code[body_start:body_stop]  # lanes are copied without comments (the body has no strings)
    for lane in range(lanes):
        edits = []
        for a in accesses:
            for use in _uses(body, a.name):
                index = re.compile(rf"\s*\[\s*{var}\s*\]").match(body, use.end())
                assert index is not None  # _accesses checked every use
                edits.append((use.start(), index.end(), f"kp_{a.name}.{_COMPONENTS[lane]}"))
        text = _splice(body, edits)
        uses_index = re.search(rf"\b{var}\b", text) is not None
        index_decl = f" const {type_} {var} = kp_v * {lanes} + {lane};" if uses_index else ""
        lane_text = _reindent(text, inner + "    ")
        if "\n" in lane_text:
            lines += [f"{inner}{{{index_decl}", lane_text, f"{inner}}}"]
        else:
            lines.append(f"{inner}{{{index_decl} {lane_text.strip()} }}")
    for a in accesses:
        if a.written:
            lines.append(f"{inner}reinterpret_cast<{vec[a.name]}*>({a.name})[kp_v] = kp_{a.name};")
    header = f"for ({type_} {var} = kp_done + {start}; {var} < {bound}; {var} += {stride})"
    lines += [f"{pad}    }}", f"{pad}    kp_done = kp_vectors * {lanes};", f"{pad}}}",
              f"{pad}{header} {_reindent(source[loop.body[0] : loop.body[1]], pad).lstrip()}", f"{indent}}}"]
    return "\n".join(lines)


def vectorize_elementwise(source: str, kernel: str, width: int = 128) -> Rewrite:
    """Load and store ``width``-bit vectors (128: float4) in the kernel's elementwise loops (see the module doc).

    The one-element-per-thread pattern is first turned into a grid-stride loop; then every block- or
    grid-stride loop whose straight-line body touches buffers only as ``p[i]`` is vectorized.
    """
    if width not in (64, 128):
        raise TransformError(f"vector width must be 64 or 128 bits, not {width}")

    def rewrite_for(k: _Kernel) -> Callable[[_Loop], str]:
        definitions, pointers = _definitions(k), _pointer_types(k)
        return lambda loop: _vectorized_loop(k, loop, definitions, pointers, width // 8)

    new, count, note = rewrite_stride_loops(source, kernel, rewrite_for)
    vector = "float4" if width == 128 else "float2"
    return Rewrite(new, f"vectorize {count} loop(s) to {width}-bit ({vector}-style) loads/stores, scalar tail{note}")


def rewrite_stride_loops(source: str, kernel: str,
                         rewrite_for: Callable[[_Kernel], Callable[[_Loop], str]]) -> tuple[str, int, str]:
    """The driver the vectorizing rewrites share: the one-element-per-thread pattern first becomes a grid-stride
    loop, then ``rewrite_for(kernel)`` gives the rewrite of each block- or grid-stride loop, which raises
    :class:`TransformError` for a loop it cannot take. Returns the new source, how many loops changed, and a note
    for the change text; raises, naming every loop's reason, when none changed."""
    k = _locate(source, kernel)
    note = ""
    try:
        guarded = _guarded_elementwise(k)
    except TransformError:
        guarded = None
    if guarded is not None:
        k = _locate(_as_grid_stride(source, k, guarded), kernel)
        note = " (as a grid-stride loop: a grid sized for one element per thread now has surplus threads)"
    rewrite = rewrite_for(k)
    edits, reasons = [], []
    for loop in _loops(k):
        try:
            edits.append((loop.at, loop.body[1], rewrite(loop)))
        except TransformError as exc:
            reasons.append(f"line {k.source.count(chr(10), 0, loop.at) + 1}: {exc}")
    if not edits:
        why = "; ".join(reasons) if reasons else "it has no block- or grid-stride loop"
        raise TransformError(f"nothing in {kernel} to vectorize: {why}")
    return _splice(k.source, edits), len(edits), note
