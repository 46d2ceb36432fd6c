"""Shared-memory Hillis-Steele scan → warp-shuffle scan.

The textbook block scan doubles an offset through shared memory::

    for (int offset = 1; offset < BLOCK; offset <<= 1) {
        int add = tid >= offset ? s[tid - offset] : 0;
        __syncthreads();
        s[tid] += add;
        __syncthreads();
    }

2 * log2(BLOCK) barriers (16 at 256 threads). The warp-shuffle scan does the same inclusive sum inside
each warp with ``__shfl_up_sync`` (registers, no barrier), parks each warp's total in the first slots of
the same array, scans those with one warp and adds each warp's prefix back: four barriers. Integer sums
are exact, so the result is bit-identical; float sums may round differently.

Guards as for the reductions: the shuffle path runs only when the scan's width is ``blockDim.x``, a power
of two and a multiple of 32 (at most 1024), on a 1-D block; any other launch runs the original loop.
"""

from __future__ import annotations

import re

from kernelpro.rewrites._kernel import _definitions, _indent_of, _locate, _loops, _reindent, _resolve, line_of
from kernelpro.rewrites.shuffle_reduce import shared_arrays
from kernelpro.transforms import Rewrite, TransformError

FULL_MASK = "0xffffffffu"


def _match(code: str, loop, definitions: dict[str, str], shared: dict[str, str]) -> tuple[str, str, str, str]:
    """``(width, array, element type, thread-index expression)`` of a Hillis-Steele loop, or TransformError."""
    init = re.fullmatch(r"(?:int|unsigned|unsigned\s+int)\s+(\w+)\s*=\s*1", loop.init)
    if init is None:
        raise TransformError("the loop does not start at offset 1")
    o = init.group(1)
    cond = re.fullmatch(rf"{o}\s*<\s*([\w.]+)", loop.cond)
    if cond is None or not re.fullmatch(rf"{o}\s*(?:<<=\s*1|\*=\s*2)|{o}\s*=\s*{o}\s*(?:<<\s*1|\*\s*2)", loop.step):
        raise TransformError(f"the loop does not double {o} up to a width")
    body = re.sub(r"\s+", " ", code[loop.body[0] : loop.body[1]]).strip()
    step = re.fullmatch(rf"\{{ (?:const )?([\w ]+?) (\w+) = (\w+(?:\.x)?) >= {o} \? (\w+)\[\3 - {o}\] : 0(?:\.0f?)?; "
                        rf"__syncthreads\(\); \4\[\3\] \+= \2; __syncthreads\(\); \}}", body)
    if step is None:
        raise TransformError("the loop body is not `add = tid >= offset ? s[tid - offset] : 0; sync; "
                             "s[tid] += add; sync`")
    tid, array = step.group(3), step.group(4)
    if _resolve(tid, definitions) != "threadIdx.x" or array not in shared:
        raise TransformError(f"{array}[{tid}] is not a __shared__ array indexed by threadIdx.x")
    return cond.group(1), array, shared[array], tid


def _warp_scan(value: str, type_: str, pad: str) -> list[str]:
    return [f"{pad}#pragma unroll",
            f"{pad}for (int kp_d = 1; kp_d < 32; kp_d <<= 1) {{",
            f"{pad}    const {type_} kp_up = __shfl_up_sync({FULL_MASK}, {value}, kp_d);",
            f"{pad}    if ((threadIdx.x & 31) >= kp_d) {value} += kp_up;",
            f"{pad}}}"]


def shuffle_scan(source: str, kernel: str, proven_widths: frozenset[str] = frozenset()) -> Rewrite:
    """Replace each shared-memory Hillis-Steele scan in ``kernel`` by a warp-shuffle scan (see the module doc);
    scans whose width is in ``proven_widths`` (see :func:`~kernelpro.rewrites.shuffle_reduce.shuffle_reduction`)
    get no fallback."""
    k = _locate(source, kernel)
    definitions, shared = _definitions(k), shared_arrays(k)
    edits, reasons = [], []
    for loop in _loops(k):
        try:
            width, array, type_, _ = _match(k.code, loop, definitions, shared)
        except TransformError as exc:
            reasons.append(f"line {line_of(source, loop.at)}: {exc}")
            continue
        indent = _indent_of(source, loop.at)
        pad, inner = indent + "    ", indent + "        "
        fast = (f"{width} == blockDim.x && (blockDim.x & 31) == 0 && (blockDim.x & (blockDim.x - 1)) == 0 && "
                "blockDim.y == 1 && blockDim.z == 1")
        proven = width in proven_widths
        lines = ["{  // kernelpro: warp-shuffle scan (every allowed block is a power-of-two multiple of 32)" if proven
                 else f"if ({fast}) {{  // kernelpro: warp-shuffle scan, one warp over the warp totals",
                 f"{pad}{type_} kp_v = {array}[threadIdx.x];", *_warp_scan("kp_v", type_, pad),
                 f"{pad}__syncthreads();  // every slot is read before the warp totals overwrite the first ones",
                 f"{pad}if ((threadIdx.x & 31) == 31) {array}[threadIdx.x >> 5] = kp_v;",
                 f"{pad}__syncthreads();",
                 f"{pad}if (threadIdx.x < 32) {{",
                 f"{inner}{type_} kp_t = threadIdx.x < (blockDim.x >> 5) ? {array}[threadIdx.x] : ({type_})0;",
                 *_warp_scan("kp_t", type_, inner),
                 f"{inner}if (threadIdx.x < (blockDim.x >> 5)) {array}[threadIdx.x] = kp_t;",
                 f"{pad}}}",
                 f"{pad}__syncthreads();",
                 f"{pad}if (threadIdx.x >= 32) kp_v += {array}[(threadIdx.x >> 5) - 1];",
                 f"{pad}__syncthreads();",
                 f"{pad}{array}[threadIdx.x] = kp_v;",
                 f"{pad}__syncthreads();"]
        if not proven:
            lines += [f"{indent}}} else {{", _reindent(source[loop.at : loop.body[1]], pad)]
        lines.append(f"{indent}}}")
        edits.append((loop.at, loop.body[1], "\n".join(lines)))
    if not edits:
        raise TransformError(f"no shared-memory Hillis-Steele scan in {kernel}: {'; '.join(reasons) or 'no loops'}")
    new = source
    for start, stop, text in sorted(edits, reverse=True):
        new = new[:start] + text + new[stop:]
    return Rewrite(new, f"replace {len(edits)} shared-memory Hillis-Steele scan(s) by warp-shuffle scans "
                        "(4 barriers instead of 2 log2(block))")
