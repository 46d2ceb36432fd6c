"""Histogram privatisation: global atomics into a few bins → shared-memory bins per block, flushed once.

``atomicAdd(&bins[data[i]], 1)`` from every thread serialises on a few hundred addresses in L2. Expert
histograms give each block its own copy of the bins in shared memory (native, SM-local atomics),
walk many elements per thread with a grid-stride loop, and add each non-empty bin to the global array
once per block. The grid becomes a few waves (``min(blocks, 4 * SM_COUNT)``): with one block per 256
elements the zeroing and the flush would cost as much as the atomics they save.

Applies to the one-element-per-thread pattern ``i = blockIdx.x * B + threadIdx.x; if (i < n) { ... }``
(``B`` is ``blockDim.x`` or the task's block-size expression) whose only use of the output is
``atomicAdd(&bins[idx], v)`` with ``idx`` a load from an 8-bit buffer (256 bins, the value range of a
byte). The body may not return early: every thread must reach the barriers around the private bins.
"""

from __future__ import annotations

import re

from kernelpro.rewrites._kernel import (
    _DECL,
    _GLOBAL_INDEX,
    _indent_of,
    _locate,
    _matching,
    _normalise,
    _reindent,
    _skip_space,
    _statements,
)
from kernelpro.rewrites.launch import CandidateLaunch, render_launch, with_launch
from kernelpro.rewrites.vectorize import element_types
from kernelpro.transforms import Rewrite, TransformError

WAVES = 4  # blocks per SM in the privatised launch
_BYTE_TYPES = frozenset({"unsigned char", "uint8_t", "char", "signed char", "int8_t"})
_ATOMIC = re.compile(r"atomicAdd\s*\(\s*&\s*(?P<bins>[A-Za-z_]\w*)\s*\[")


def privatize_histogram(source: str, kernel: str, grid: tuple[str, ...], block: tuple[str, ...]) -> Rewrite:
    """Shared-memory bins per block for a byte-indexed histogram (see the module doc)."""
    if len(grid) != 1 or len(block) != 1:
        raise TransformError("the task's launch is not 1-D")
    k = _locate(source, kernel)
    stmts = _statements(k.code, k.body[0] + 1, k.body[1])
    decl = _DECL.fullmatch(k.code[stmts[0][0] : stmts[0][1]].strip()) if len(stmts) == 2 else None
    size = re.sub(r"\s+", "", block[0])
    index = _normalise(decl["init"]).replace(f"({size})", "blockDim.x") if decl else ""
    index = re.sub(rf"(?<![\w.]){re.escape(size)}(?![\w.])", "blockDim.x", index)
    if decl is None or index not in _GLOBAL_INDEX:
        raise TransformError("the kernel is not `i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) ...`")
    var = decl["name"]
    guard = re.compile(rf"if\s*\(\s*{var}\s*<\s*(?P<n>[^)]+)\)").match(k.code, stmts[1][0])
    if guard is None:
        raise TransformError(f"no `if ({var} < n)` guard after the index")
    then = _skip_space(k.code, guard.end(), k.body[1])
    body = k.code[then : stmts[1][1]]
    if re.search(r"\b(?:return|__syncthreads|else)\b", body):
        raise TransformError("the guarded body returns, synchronises or has an else branch")
    atomics = list(_ATOMIC.finditer(body))
    types = element_types(k)
    names = {m["bins"] for m in atomics}
    if len(names) != 1:
        raise TransformError("the body does not atomicAdd into exactly one global array")
    bins = names.pop()
    uses = len(re.findall(rf"\b{bins}\b", body))
    everywhere = len(re.findall(rf"\b{bins}\b", k.code[k.body[0] : k.body[1]]))
    if uses != len(atomics) or bins not in types or everywhere != uses:
        raise TransformError(f"{bins} is used other than as atomicAdd(&{bins}[...], v)")
    for m in atomics:
        close = _matching(body, m.end() - 1)
        idx = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*\[\s*" + var + r"\s*\]\s*", body[m.end() : close])
        if idx is None or types.get(idx.group(1)) not in _BYTE_TYPES:
            what = body[m.end() : close].strip()
            raise TransformError(f"the bin index {what!r} is not a byte loaded from data[{var}]")
    bin_type = types[bins]
    index_type = re.sub(r"\bconst\s+", "", decl["type"])
    indent = _indent_of(source, stmts[0][0])
    inner = _reindent(_ATOMIC.sub(lambda m: "atomicAdd(&kp_bins[", k.source[then : stmts[1][1]]), indent)
    code = "\n".join([
        f"__shared__ {bin_type} kp_bins[256];  // kernelpro: private bins per block (a byte has 256 values)",
        f"{indent}for (int kp_b = threadIdx.x; kp_b < 256; kp_b += blockDim.x) kp_bins[kp_b] = 0;",
        f"{indent}__syncthreads();",
        f"{indent}for ({index_type} {var} = blockIdx.x * blockDim.x + threadIdx.x; "
        f"{var} < {guard['n'].strip()}; {var} += blockDim.x * gridDim.x) {inner.lstrip()}",
        f"{indent}__syncthreads();",
        f"{indent}for (int kp_b = threadIdx.x; kp_b < 256; kp_b += blockDim.x)",
        f"{indent}    if (kp_bins[kp_b] != 0) atomicAdd(&{bins}[kp_b], kp_bins[kp_b]);"])
    new = source[: stmts[0][0]] + code + source[stmts[1][1] :]
    launch = CandidateLaunch((f"min({grid[0]}, {WAVES} * SM_COUNT)",), block, "0")
    new = with_launch(new, render_launch(launch, note="privatised histogram: a few waves of blocks"),
                      _locate(new, kernel).sig.end - 1)
    return Rewrite(new, f"privatise {bins} in shared memory per block (256 bins), grid-stride loop over "
                        f"min({grid[0]}, {WAVES} * SM_COUNT) blocks, one global atomic per non-empty bin per block")
