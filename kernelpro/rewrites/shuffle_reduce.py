"""Shared-memory tree reduction → warp-shuffle reduction.

The first version of a block reduction halves the active threads through shared memory::

    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];      // or fmaxf(...), or a compare-and-select on several arrays
        __syncthreads();
    }

That is log2(block) barriers (8 at 256 threads), each idling the whole block while fewer and fewer
threads work. Expert kernels reduce inside each warp with ``__shfl_down_sync`` (registers, no barrier),
let each warp's lane 0 park its partial in shared memory, and reduce the partials with one more warp:
two barriers instead of eight, and no shared-memory traffic inside the warps.

The step is taken from the loop's own ``if``: ``red[tid + s]`` becomes the value shuffled down from the
partner lane and ``red[tid]`` this lane's register, so any combine the author wrote (sum, max, an argmax
over a value array and an index array) is kept. ``shfl_down`` pairs lane ``l`` with ``l + s``, as the
tree pairs ``tid`` with ``tid + s``; only the order in which partials meet changes (a float sum may
round differently, as it would at another block size).

Correctness guards: the shuffle path runs only when the tree's width is ``blockDim.x``, a power of two
and a multiple of 32, on a 1-D block; any other launch runs the original loop, kept as the ``else``
branch (left out when the task's launch guarantees the width: see :func:`shuffle_reduction`). After the
reduction only ``red[0]`` holds the tree's result (the other slots hold partials), so
the rewrite refuses kernels that read any other slot afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kernelpro.rewrites._kernel import (
    _definitions,
    _indent_of,
    _Kernel,
    _locate,
    _Loop,
    _loops,
    _matching,
    _normalise,
    _reindent,
    _resolve,
    _skip_space,
    _splice,
    _statement_end,
    _statements,
    line_of,
)
from kernelpro.transforms import Rewrite, TransformError

FULL_MASK = "0xffffffffu"
_SHARED = re.compile(r"__shared__\s+(?:volatile\s+)?(?P<type>[A-Za-z_][\w:]*(?:\s+(?:int|long|short|char))?)\s+"
                     r"(?P<name>[A-Za-z_]\w*)\s*\[")
_HALVE = re.compile(r"(?P<v>[A-Za-z_]\w*)\s*(?:>>=\s*1|/=\s*2)|(?P<w>[A-Za-z_]\w*)\s*=\s*(?P=w)\s*(?:>>\s*1|/\s*2)")


@dataclass(frozen=True)
class TreeReduction:
    """One matched tree loop: its span, width expression, step variable, thread index and arrays."""

    span: tuple[int, int]
    width: str  # the number of elements reduced, e.g. "blockDim.x" or "BLOCK"
    step: str  # the halving variable, e.g. "s"
    tid: str  # the thread-index expression as written, e.g. "tid" or "threadIdx.x"
    condition: str  # the extra condition besides `tid < s` ("" when none)
    body: str  # the `if`'s body (source text)
    arrays: tuple[tuple[str, str], ...]  # (name, element type) of each shared array reduced


def shared_arrays(k: _Kernel) -> dict[str, str]:
    """``__shared__`` arrays declared in the kernel (or the file) → element type."""
    return {m["name"]: m["type"] for m in _SHARED.finditer(k.code)}


def _is_thread(expr: str, definitions: dict[str, str]) -> bool:
    return _resolve(expr, definitions) == "threadIdx.x"


def match_tree(k: _Kernel, loop: _Loop, definitions: dict[str, str], shared: dict[str, str]) -> TreeReduction:
    """The tree reduction ``loop`` is, or TransformError saying why it is not one."""
    init = re.fullmatch(r"(?:(?:unsigned|int|unsigned\s+int|auto|const)\s+)*(?P<v>[A-Za-z_]\w*)\s*=\s*"
                        r"(?P<w>.+?)\s*(?:/\s*2|>>\s*1)", loop.init, re.DOTALL)
    if init is None:
        raise TransformError("the loop does not start at `width / 2`")
    s, width = init["v"], init["w"].strip().strip("()").strip()
    if not re.fullmatch(r"[A-Za-z_][\w.]*|\d+", width):
        raise TransformError(f"the tree width {width!r} is not a name or a number")
    if not re.fullmatch(rf"{s}\s*>\s*0|0\s*<\s*{s}|{s}\s*>=\s*1|{s}\s*!=\s*0", loop.cond):
        raise TransformError(f"the loop does not run while {s} > 0")
    step = _HALVE.fullmatch(loop.step)
    if step is None or (step["v"] or step["w"]) != s:
        raise TransformError(f"the loop does not halve {s}")
    start, stop = loop.body
    if k.code[start] != "{":
        raise TransformError("the loop body is not a block with a barrier")
    stmts = _statements(k.code, start + 1, stop - 1)
    texts = [re.sub(r"\s+", "", k.code[a:b]) for a, b in stmts]
    if len(stmts) != 2 or texts[1] != "__syncthreads();" or not texts[0].startswith("if("):
        raise TransformError("the loop body is not `if (tid < s) ...; __syncthreads();`")
    if_at = stmts[0][0]
    open_ = _skip_space(k.code, if_at + 2, stop)
    close = _matching(k.code, open_)
    then = _skip_space(k.code, close + 1, stop)
    if _statement_end(k.code, then, stop) != stmts[0][1]:
        raise TransformError("the `if` has an else branch")
    terms = [t.strip() for t in k.code[open_ + 1 : close].split("&&")]
    less = re.compile(rf"(.+?)\s*<\s*{s}")
    guard = next((t for t in terms if (m := less.fullmatch(t)) and _is_thread(m.group(1), definitions)), None)
    if guard is None:
        raise TransformError(f"the `if` does not test `tid < {s}`")
    tid = less.fullmatch(guard).group(1).strip()
    rest = [t for t in terms if t is not guard]
    body = k.code[then : stmts[0][1]]
    arrays = []
    for name in dict.fromkeys(re.findall(r"([A-Za-z_]\w*)\s*\[", body + " ".join(rest))):
        if name not in shared:
            raise TransformError(f"the step indexes {name!r}, which is not a __shared__ array")
        arrays.append((name, shared[name]))
    for sub in re.finditer(r"\[([^\[\]]*)\]", body + " ".join(rest)):
        text = _normalise(sub.group(1))
        if not (_is_thread(text, definitions) or text in (f"{_normalise(tid)}+{s}", f"{s}+{_normalise(tid)}")):
            raise TransformError(f"the step reads [{sub.group(1).strip()}], not [tid] or [tid + {s}]")
    return TreeReduction((loop.at, loop.body[1]), width, s, tid, " && ".join(rest), k.source[then : stmts[0][1]],
                         tuple(arrays))


def _substitute(text: str, tree: TreeReduction) -> str:
    """``A[tid + s]`` → ``kp_o_A`` (the partner's value), ``A[tid]`` → ``kp_A`` (this lane's)."""
    for name, _ in tree.arrays:
        text = re.sub(rf"\b{name}\s*\[\s*(?:{re.escape(tree.tid)}\s*\+\s*{tree.step}|{tree.step}\s*\+\s*"
                      rf"{re.escape(tree.tid)})\s*\]", f"kp_o_{name}", text)
        text = re.sub(rf"\b{name}\s*\[\s*{re.escape(tree.tid)}\s*\]", f"kp_{name}", text)
    return text


def _warp_steps(tree: TreeReduction, first: str, pad: str) -> list[str]:
    step = _substitute(tree.body, tree)
    condition = _substitute(tree.condition, tree)
    if condition:
        step = f"if ({condition}) {step.strip()}"
    inner = pad + "    "
    lines = [f"{pad}for (int kp_s = {first}; kp_s > 0; kp_s >>= 1) {{"]
    lines += [f"{inner}const {t} kp_o_{n} = __shfl_down_sync({FULL_MASK}, kp_{n}, kp_s);" for n, t in tree.arrays]
    lines += [_reindent(re.sub(rf"\b{tree.step}\b", "kp_s", step), inner), f"{pad}}}"]
    return lines


def shuffle_code(k: _Kernel, tree: TreeReduction, proven: bool = False) -> str:
    """The replacement for the tree loop: the shuffle path, and the original loop for other launches (left out
    when ``proven``: every launch the task allows has the width the shuffle path needs)."""
    indent = _indent_of(k.source, tree.span[0])
    pad, inner = indent + "    ", indent + "        "
    fast = (f"{tree.width} == blockDim.x && (blockDim.x & 31) == 0 && (blockDim.x & (blockDim.x - 1)) == 0 && "
            "blockDim.y == 1 && blockDim.z == 1")
    lane = "threadIdx.x"
    what = "warp-shuffle reduction, then one warp over the warps' partials"
    lines = [f"{{  // kernelpro: {what} (every allowed block is a power-of-two multiple of 32)" if proven
             else f"if ({fast}) {{  // kernelpro: {what}"]
    lines += [f"{pad}{t} kp_{n} = {n}[{lane}];" for n, t in tree.arrays]
    lines += _warp_steps(tree, "16", pad)
    lines += [f"{pad}__syncthreads();  // every slot is read before the warp leaders overwrite the first ones",
              f"{pad}if (({lane} & 31) == 0) {{"]
    lines += [f"{inner}{n}[{lane} >> 5] = kp_{n};" for n, _ in tree.arrays]
    lines += [f"{pad}}}", f"{pad}__syncthreads();", f"{pad}if ({lane} < 32) {{"]
    lines += [f"{inner}kp_{n} = {n}[{lane}];" for n, _ in tree.arrays]
    lines += _warp_steps(tree, "(int)(blockDim.x >> 6)", inner)
    lines += [f"{inner}if ({lane} == 0) {{"] + [f"{inner}    {n}[0] = kp_{n};" for n, _ in tree.arrays]
    lines += [f"{inner}}}", f"{pad}}}", f"{pad}__syncthreads();"]
    if not proven:
        lines += [f"{indent}}} else {{", _reindent(k.source[tree.span[0] : tree.span[1]], pad)]
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def _other_uses(k: _Kernel, trees: list[TreeReduction], definitions: dict[str, str]) -> str | None:
    """Why the kernel reads a reduced array other than at slot 0 outside the trees, or None."""
    names = {n for t in trees for n, _ in t.arrays}
    for match in re.finditer(r"\b([A-Za-z_]\w*)\s*\[", k.code[k.body[0] : k.body[1]]):
        at = k.body[0] + match.start()
        if match.group(1) not in names or any(t.span[0] <= at < t.span[1] for t in trees):
            continue
        statement = k.code[max(k.code.rfind(";", 0, at), k.code.rfind("{", 0, at)) + 1 : at]
        if "__shared__" in statement:
            continue  # the declaration
        close = _matching(k.code, k.body[0] + match.end() - 1)
        index = k.code[k.body[0] + match.end() : close].strip()
        stored = re.match(r"\s*=(?!=)", k.code[close + 1 :]) is not None
        if index == "0" or (stored and _is_thread(index, definitions)):
            continue
        return f"line {line_of(k.source, at)} uses {match.group(1)}[{index}], which the shuffle path leaves different"
    return None


def shuffle_reduction(source: str, kernel: str, proven_widths: frozenset[str] = frozenset()) -> Rewrite:
    """Replace every shared-memory tree reduction in ``kernel`` by a warp-shuffle one (see the module doc).

    ``proven_widths``: tree widths (``blockDim.x``, the task's block macro) that the caller has proven to be a
    power-of-two multiple of 32 on a 1-D block for every launch the task allows; their trees get no fallback.
    """
    k = _locate(source, kernel)
    definitions, shared = _definitions(k), shared_arrays(k)
    trees, reasons = [], []
    for loop in _loops(k):
        try:
            trees.append(match_tree(k, loop, definitions, shared))
        except TransformError as exc:
            reasons.append(f"line {line_of(source, loop.at)}: {exc}")
    if not trees:
        why = "; ".join(reasons) if reasons else "it has no loops"
        raise TransformError(f"no shared-memory tree reduction in {kernel}: {why}")
    problem = _other_uses(k, trees, definitions)
    if problem:
        raise TransformError(f"cannot replace the tree reduction in {kernel}: {problem}")
    new = _splice(source, [(t.span[0], t.span[1], shuffle_code(k, t, t.width in proven_widths)) for t in trees])
    arrays = sorted({n for t in trees for n, _ in t.arrays})
    return Rewrite(new, f"replace {len(trees)} shared-memory tree reduction(s) over {', '.join(arrays)} by "
                        "warp-shuffle reductions (3 barriers each instead of log2(block))")
