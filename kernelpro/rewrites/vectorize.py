"""16-byte vector loads and stores for elementwise and row loops of *any* element type.

``transforms.vectorize_elementwise`` knows float/int/double by name and emits ``float4``. Real kernels
walk ``__half``/``__nv_bfloat16`` rows, or name their element type through ``typedef``/``using``/a
template parameter; one 16-bit element per instruction moves 2 bytes where the load unit could move 16.
This rewrite does not need to know the type: the number of lanes is a compile-time expression,
``16 / sizeof(T)`` (the smallest element type in the loop decides), each buffer's chunk is loaded as
``uint4`` words into an ``__align__(16) T kp_x[lanes]`` register array, and the original loop body runs
once per lane, fully unrolled, on those registers. So a bf16 row loop becomes eight lanes of one
128-bit ``LDG.E.128``; a float loop four lanes, as before; half in and float out is eight lanes, one
128-bit load and two 128-bit stores. Nothing is added outside the kernel.

Correctness: the vector path runs only when every buffer it touches is 16-byte aligned (checked at
run time: a row pointer ``x + row * cols`` is aligned only for some ``cols``); the elements after the
last whole vector, and every element of a misaligned call, take the original scalar loop. The loop
shapes accepted are those of the float4 transform (block- and grid-stride loops whose straight-line
body touches buffers only as ``p[i]``); element types of different sizes in one loop are fine.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kernelpro.rewrites._kernel import (
    _IDENT,
    _accesses,
    _assigned,
    _definitions,
    _indent_of,
    _Kernel,
    _Loop,
    _reindent,
    _splice,
    _strided,
    _uses,
)
from kernelpro.transforms import Rewrite, TransformError, rewrite_stride_loops, vectorize_elementwise

VECTOR_BYTES = 16  # the widest global load/store one thread issues (LDG.E.128)

# `const T* name =` / `T* __restrict__ name =` at the start of a statement: a local pointer and its element type.
_LOCAL_POINTER = re.compile(r"(?:^|(?<=[;{}]))\s*(?:const\s+)?([A-Za-z_][\w:]*(?:\s+(?:int|long|short|char))?)"
                            r"\s*(?:const\s+)?\*\s*(?:const\s+)?(?:__restrict__\s+)?([A-Za-z_]\w*)\s*=", re.MULTILINE)
_NOT_TYPES = frozenset({"return", "else", "case", "goto", "sizeof", "delete", "throw"})


def element_types(k: _Kernel) -> dict[str, str]:
    """Pointer parameters and local pointer variables of the kernel → element type as written (const dropped)."""
    types = {p.name: re.sub(r"\bconst\b", "", p.base_type).strip() for p in k.sig.params
             if p.is_pointer and p.text.count("*") == 1}
    for match in _LOCAL_POINTER.finditer(k.code, k.body[0] + 1, k.body[1]):
        if match.group(1) not in _NOT_TYPES:
            types.setdefault(match.group(2), match.group(1).strip())
    return types


def _lanes_expr(types: list[str]) -> str:
    """``16 / sizeof`` of the smallest of ``types``, as a constant expression."""
    smallest = f"sizeof({types[0]})"
    for t in types[1:]:
        smallest = f"(sizeof({t}) < {smallest} ? sizeof({t}) : {smallest})"
    return f"(int)({VECTOR_BYTES} / {smallest})"


def _vector_loop(k: _Kernel, loop: _Loop, definitions: dict[str, str], types: dict[str, str]) -> str:
    type_, var, start, bound, stride = _strided(k, loop, definitions)
    accesses = _accesses(k, loop, var, types)
    for name in _IDENT.findall(" ".join((bound, start, stride))):
        if _assigned(k.code[loop.body[0] : loop.body[1]], name):
            raise TransformError(f"the loop body changes {name}, which the loop bounds use")
    source, code = k.source, k.code
    body_start, body_stop = loop.body
    if code[body_start] == "{":
        body_start, body_stop = body_start + 1, body_stop - 1
    indent = _indent_of(source, loop.at)
    pad = indent + "    "
    inner = pad + "        "
    aligned = " | ".join(f"reinterpret_cast<unsigned long long>({a.name})" for a in accesses)
    lanes = _lanes_expr(sorted({types[a.name] for a in accesses}))
    lines = [f"{{  // kernelpro: {VECTOR_BYTES}-byte vector loads/stores when every buffer is aligned, scalar tail",
             f"{pad}constexpr int kp_lanes = {lanes};",
             f"{pad}{type_} kp_done = 0;",
             f"{pad}if ((({aligned}) & {VECTOR_BYTES - 1}) == 0) {{",
             f"{pad}    const {type_} kp_vectors = ({bound}) / kp_lanes;",
             f"{pad}    for ({type_} kp_v = {start}; kp_v < kp_vectors; kp_v += {stride}) {{"]
    for a in accesses:
        lines += [f"{inner}__align__(16) {types[a.name]} kp_{a.name}[kp_lanes];",
                  f"{inner}static_assert(sizeof(kp_{a.name}) % 16 == 0, \"element sizes are not powers of two\");"]
        if a.read:
            lines += [f"{inner}#pragma unroll",
                      f"{inner}for (int kp_q = 0; kp_q < (int)(sizeof(kp_{a.name}) / 16); ++kp_q)",
                      f"{inner}    reinterpret_cast<uint4*>(kp_{a.name})[kp_q] = "
                      f"reinterpret_cast<const uint4*>({a.name})[kp_v * (sizeof(kp_{a.name}) / 16) + kp_q];"]
    body = code[body_start:body_stop]  # lanes are copied without comments (the body has no strings)
    edits = []
    for a in accesses:
        for use in _uses(body, a.name):
            index = re.compile(rf"\s*\[\s*{var}\s*\]").match(body, use.end())
            assert index is not None  # _accesses checked every use
            edits.append((use.start(), index.end(), f"kp_{a.name}[kp_l]"))
    text = _splice(body, edits)
    index_decl = f" const {type_} {var} = kp_v * kp_lanes + kp_l;" if re.search(rf"\b{var}\b", text) else ""
    lines += [f"{inner}#pragma unroll",
              f"{inner}for (int kp_l = 0; kp_l < kp_lanes; ++kp_l) {{{index_decl}",
              _reindent(text, inner + "    "), f"{inner}}}"]
    for a in accesses:
        if a.written:
            lines += [f"{inner}#pragma unroll",
                      f"{inner}for (int kp_q = 0; kp_q < (int)(sizeof(kp_{a.name}) / 16); ++kp_q)",
                      f"{inner}    reinterpret_cast<uint4*>({a.name})[kp_v * (sizeof(kp_{a.name}) / 16) + kp_q] = "
                      f"reinterpret_cast<const uint4*>(kp_{a.name})[kp_q];"]
    header = f"for ({type_} {var} = kp_done + {start}; {var} < {bound}; {var} += {stride})"
    lines += [f"{pad}    }}", f"{pad}    kp_done = kp_vectors * kp_lanes;", f"{pad}}}",
              f"{pad}{header} {_reindent(source[loop.body[0] : loop.body[1]], pad).lstrip()}", f"{indent}}}"]
    return "\n".join(lines)


def vectorize_any(source: str, kernel: str) -> Rewrite:
    """16-byte vectors in every eligible loop of ``kernel``, for any element type (see the module doc)."""
    types: dict[str, str] = {}

    def rewrite_for(k: _Kernel) -> Callable[[_Loop], str]:
        definitions = _definitions(k)
        types.update(element_types(k))
        return lambda loop: _vector_loop(k, loop, definitions, types)

    new, count, note = rewrite_stride_loops(source, kernel, rewrite_for)
    elements = sorted({types[n] for n in types if re.search(rf"\bkp_{re.escape(n)}\[kp_lanes\]", new)})
    change = (f"vectorize {count} loop(s) to 16-byte loads/stores of {'/'.join(elements)} "
              f"(16 / sizeof lanes), alignment check and scalar tail{note}")
    return Rewrite(new, change)


def vectorize(source: str, kernel: str) -> Rewrite:
    """The float4 transform where it applies (plain float/int/double), else :func:`vectorize_any`."""
    try:
        return vectorize_elementwise(source, kernel)
    except TransformError as first:
        try:
            return vectorize_any(source, kernel)
        except TransformError as second:
            raise TransformError(f"{second} (float4 transform: {first})") from None
