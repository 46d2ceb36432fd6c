"""16-byte vector loads and stores for elementwise and row loops of *any* element type.

``transforms.vectorize_elementwise`` knows float/int/double by name and emits ``float4``. Real kernels
walk ``__half``/``__nv_bfloat16`` rows, or name their element type through ``typedef``/``using``/a
template parameter; one 16-bit element per instruction moves 2 bytes where the load unit could move 16.
This rewrite does not need to know the type: the number of lanes is a compile-time expression,
``16 / sizeof(T)`` (the largest element type in the loop decides), each buffer's chunk is loaded as raw
bytes (``uint4``, ``uint2``, ...) into an ``__align__(16) T kp_x[lanes]`` register array, and the
original loop body runs once per lane, fully unrolled, on those registers. So a bf16 row loop becomes
eight lanes of one 128-bit ``LDG.E.128``; a float loop four lanes, as before.

Correctness: the vector path runs only when every buffer it touches is 16-byte aligned (checked at
run time: a row pointer ``x + row * cols`` is aligned only for some ``cols``); the elements after the
last whole vector, and every element of a misaligned call, take the original scalar loop. The loop
shapes accepted are those of the float4 transform (block- and grid-stride loops whose straight-line
body touches buffers only as ``p[i]``); element types of different sizes in one loop are fine.
"""

from __future__ import annotations

import re

from kernelpro.rewrites._kernel import (
    _IDENT,
    _accesses,
    _as_grid_stride,
    _assigned,
    _definitions,
    _guarded_elementwise,
    _indent_of,
    _Kernel,
    _locate,
    _Loop,
    _loops,
    _reindent,
    _splice,
    _strided,
    _uses,
    line_of,
)
from kernelpro.transforms import Rewrite, TransformError, vectorize_elementwise

VECTOR_BYTES = 16  # the widest global load/store one thread issues (LDG.E.128)

# Raw byte vectors for a chunk of N bytes; extern "C++" so it is legal inside an extern "C" block.
HELPER_GUARD = "KERNELPRO_RAW_VECTORS"
HELPER = f"""#ifndef {HELPER_GUARD}
#define {HELPER_GUARD}
extern "C++" {{
template <int N> struct kp_raw;  // kernelpro: N raw bytes, the unit of one vector load or store
template <> struct kp_raw<16> {{ typedef uint4 type; }};
template <> struct kp_raw<8> {{ typedef uint2 type; }};
template <> struct kp_raw<4> {{ typedef unsigned int type; }};
template <> struct kp_raw<2> {{ typedef unsigned short type; }};
template <> struct kp_raw<1> {{ typedef unsigned char type; }};
}}
#endif
"""

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
    """``16 / sizeof`` of the largest of ``types``, as a constant expression."""
    largest = f"sizeof({types[0]})"
    for t in types[1:]:
        largest = f"(sizeof({t}) > {largest} ? sizeof({t}) : {largest})"
    return f"(int)({VECTOR_BYTES} / {largest})"


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
        raw = f"kp_raw<sizeof(kp_{a.name})>::type"
        lines.append(f"{inner}__align__(16) {types[a.name]} kp_{a.name}[kp_lanes];")
        if a.read:
            lines.append(f"{inner}*reinterpret_cast<{raw}*>(kp_{a.name}) = "
                         f"reinterpret_cast<const {raw}*>({a.name})[kp_v];")
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
            raw = f"kp_raw<sizeof(kp_{a.name})>::type"
            lines.append(f"{inner}reinterpret_cast<{raw}*>({a.name})[kp_v] = "
                         f"*reinterpret_cast<const {raw}*>(kp_{a.name});")
    header = f"for ({type_} {var} = kp_done + {start}; {var} < {bound}; {var} += {stride})"
    lines += [f"{pad}    }}", f"{pad}    kp_done = kp_vectors * kp_lanes;", f"{pad}}}",
              f"{pad}{header} {_reindent(source[loop.body[0] : loop.body[1]], pad).lstrip()}", f"{indent}}}"]
    return "\n".join(lines)


def with_helper(source: str, kernel_start: int) -> str:
    """``source`` with :data:`HELPER` inserted before the kernel (once per file)."""
    if HELPER_GUARD in source:
        return source
    line_start = source.rfind("\n", 0, kernel_start) + 1
    return source[:line_start] + HELPER + source[line_start:]


def vectorize_any(source: str, kernel: str) -> Rewrite:
    """16-byte vectors in every eligible loop of ``kernel``, for any element type (see the module doc)."""
    k = _locate(source, kernel)
    note = ""
    try:
        guarded = _guarded_elementwise(k)
    except TransformError:
        guarded = None
    if guarded is not None:
        k = _locate(_as_grid_stride(source, k, guarded), kernel)
        note = " (as a grid-stride loop: a grid sized for one element per thread now has surplus threads)"
    definitions, types = _definitions(k), element_types(k)
    edits, reasons = [], []
    for loop in _loops(k):
        try:
            edits.append((loop.at, loop.body[1], _vector_loop(k, loop, definitions, types)))
        except TransformError as exc:
            reasons.append(f"line {line_of(k.source, loop.at)}: {exc}")
    if not edits:
        why = "; ".join(reasons) if reasons else "it has no block- or grid-stride loop"
        raise TransformError(f"nothing in {kernel} to vectorize: {why}")
    new = _splice(k.source, edits)
    new = with_helper(new, _locate(new, kernel).sig.start)
    elements = sorted({types[n] for n in types if re.search(rf"\bkp_{re.escape(n)}\[kp_lanes\]", new)})
    change = (f"vectorize {len(edits)} loop(s) to 16-byte loads/stores of {'/'.join(elements)} "
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
