"""Compile what a launch sequence names: template instantiations in, one symbol per launch out.

``kernel = "softmax<float, BLOCK>"`` needs that specialization in the cubin. kernelpro appends one
line per template launch that takes the specialization's address (``static void* ... =
(void*)&softmax<float, BLOCK>;``), which makes nvcc instantiate it without the user writing the
parameter list again; knobs in the template arguments are macros, so ``-DBLOCK=...`` reaches them.
The symbol of each launch is then found by its demangled name, the knob values substituted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kernelpro.compiler import CompileResult
from kernelpro.task import Launch

_MARK = "// kernelpro: template instantiations for the launch sequence"


def with_instantiations(source: str, plan: tuple[Launch, ...]) -> str:
    """``source`` plus the instantiation of each template kernel in ``plan`` (unchanged when there is none)."""
    templated = sorted({launch.kernel for launch in plan if launch.template_args is not None})
    if not templated:
        return source
    lines = [f"static void* __kernelpro_instance_{i} = (void*)&{kernel};" for i, kernel in enumerate(templated)]
    return f"{source.rstrip()}\n\n{_MARK}\n" + "\n".join(lines) + "\n"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def launch_symbol(result: CompileResult, launch: Launch, defines: Mapping[str, str]) -> str | None:
    """The cubin symbol of ``launch``'s kernel (its template specialization when it names one)."""
    name = launch.kernel_name
    if launch.template_args is None:
        if name in result.resources:
            return name
        return next((s for s, r in result.resources.items() if r.name == name), None)
    targs = re.sub(r"[A-Za-z_]\w*", lambda m: str(defines.get(m.group(0), m.group(0))), launch.template_args)
    want = _squash(f"{name}<{targs}>(")
    candidates = [s for s, r in result.resources.items() if r.name == name]
    exact = [s for s in candidates if want in _squash(result.resources[s].demangled)]
    if exact:
        return exact[0]
    return candidates[0] if len(candidates) == 1 else None


def plan_symbols(result: CompileResult, plan: tuple[Launch, ...],
                 defines: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """``kernel text -> symbol`` for every launch, and the first kernel not found (None when all are)."""
    symbols = {}
    for launch in plan:
        symbol = launch_symbol(result, launch, defines)
        if symbol is None:
            return symbols, launch.kernel
        symbols[launch.kernel] = symbol
    return symbols, None
