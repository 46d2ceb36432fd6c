"""Machine-applicable actions: the vocabulary a prescription uses to say *what to change*.

The diagnosis layer attaches actions to its prescriptions; the offline proposer executes them (edits the
source, sets a knob, adds a compiler flag) and an LLM proposer reads their ``text``. An action is plain
data: a ``kind``, its ``params`` and a one-line ``text`` for people. ``applicable_offline`` is False for
changes no mechanical edit can make (rewriting a loop nest for tensor cores): those are for the LLM only.

Kinds and their params (:data:`KINDS` holds the same table for code):

===================== ==========================================================================
kind                  params
===================== ==========================================================================
``set_knob``          ``name`` (knob), ``value``
``block_size``        ``old``, ``new`` (threads per block), ``knob`` (the knob that sets it, or None
                      when the block size is a launch expression in the task file)
``launch_bounds``     ``max_threads``, ``min_blocks`` (None: leave the second argument out)
``maxrregcount``      ``registers`` (passed as ``-maxrregcount=N``)
``vectorize_loads``   ``width`` (bits per load: 64 or 128)
``pad_shared``        ``array`` (name of the ``__shared__`` array), ``cols`` (new inner size),
                      ``rows`` (outer size, None when unknown)
``unroll``            ``factor`` (None: unroll fully)
``add_restrict``      none: mark the kernel's pointer parameters ``__restrict__``
``nvcc_flag``         ``flag`` (e.g. ``--use_fast_math`` or ``-Xptxas -dlcm=cg``)
``grid_stride_loop``  none: loop ``i += blockDim.x * gridDim.x`` so any grid covers the problem
``increase_grid``     ``min_blocks``, ``knob`` (the knob that sets the grid, or None)
``use_tensor_cores``  ``dtype`` (None when unknown); not applicable offline
===================== ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# kind -> its parameter names, in the order the constructor takes them.
KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "set_knob": ("name", "value"),
        "block_size": ("old", "new", "knob"),
        "launch_bounds": ("max_threads", "min_blocks"),
        "maxrregcount": ("registers",),
        "vectorize_loads": ("width",),
        "pad_shared": ("array", "cols", "rows"),
        "unroll": ("factor",),
        "add_restrict": (),
        "nvcc_flag": ("flag",),
        "grid_stride_loop": (),
        "increase_grid": ("min_blocks", "knob"),
        "use_tensor_cores": ("dtype",),
    }
)


@dataclass(frozen=True)
class Action:
    """One change: ``kind`` (a key of :data:`KINDS`), its ``params`` and a line of ``text`` for people."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""
    applicable_offline: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown action kind {self.kind!r}; known: {', '.join(KINDS)}")
        unknown = set(self.params) - set(KINDS[self.kind])
        if unknown:
            raise ValueError(f"action {self.kind!r} takes {KINDS[self.kind]}, not {sorted(unknown)}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` reverses it."""
        return {"kind": self.kind, "params": dict(self.params), "text": self.text,
                "applicable_offline": self.applicable_offline}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Action:
        return cls(data["kind"], dict(data.get("params", {})), data.get("text", ""),
                   bool(data.get("applicable_offline", True)))


def set_knob(name: str, value: int | float | str) -> Action:
    """Set task knob ``name`` to ``value``."""
    return Action("set_knob", {"name": name, "value": value}, f"set knob {name} = {value}")


def block_size(old: int, new: int, knob: str | None = None) -> Action:
    """Launch ``new`` threads per block instead of ``old``; through ``knob`` when one sets it."""
    where = f" (knob {knob})" if knob else " (the launch block expression)"
    return Action("block_size", {"old": old, "new": new, "knob": knob},
                  f"change the block size from {old} to {new} threads{where}")


def launch_bounds(max_threads: int, min_blocks: int | None = None) -> Action:
    """Declare ``__launch_bounds__(max_threads, min_blocks)`` so ptxas budgets registers for that occupancy."""
    args = f"{max_threads}" if min_blocks is None else f"{max_threads}, {min_blocks}"
    return Action("launch_bounds", {"max_threads": max_threads, "min_blocks": min_blocks},
                  f"declare launch bounds ({args}) on the kernel")


def maxrregcount(registers: int) -> Action:
    """Cap registers per thread for the whole compilation unit."""
    return Action("maxrregcount", {"registers": registers}, f"compile with -maxrregcount={registers}")


def vectorize_loads(width: int = 128) -> Action:
    """Load ``width``-bit vectors (128: float4/int4) where data is contiguous and aligned."""
    if width not in (64, 128):
        raise ValueError("vector loads are 64 or 128 bits wide")
    kind = "float4" if width == 128 else "float2"
    return Action("vectorize_loads", {"width": width}, f"use {width}-bit ({kind}) global loads")


def pad_shared(array: str, cols: int, rows: int | None = None) -> Action:
    """Give shared array ``array`` an inner size of ``cols`` (e.g. [32][32] -> [32][33])."""
    shape = f"[{rows}][{cols}]" if rows is not None else f"[...][{cols}]"
    return Action("pad_shared", {"array": array, "cols": cols, "rows": rows},
                  f"pad shared array {array} to {shape}")


def unroll(factor: int | None = None) -> Action:
    """``#pragma unroll factor`` on the hot loop (``None``: unroll fully)."""
    text = "unroll the hot loop fully" if factor is None else f"unroll the hot loop by {factor}"
    return Action("unroll", {"factor": factor}, text)


def add_restrict() -> Action:
    """Mark pointer parameters ``__restrict__`` (and ``const`` for inputs) so loads may use the read-only path."""
    return Action("add_restrict", {}, "mark the pointer parameters restrict")


def nvcc_flag(flag: str) -> Action:
    """Add one nvcc flag (may hold several words, e.g. ``-Xptxas -dlcm=cg``)."""
    return Action("nvcc_flag", {"flag": flag}, f"compile with {flag}")


def grid_stride_loop() -> Action:
    """Wrap the body in ``for (i = ...; i < n; i += blockDim.x * gridDim.x)``."""
    return Action("grid_stride_loop", {}, "use a grid-stride loop so any grid size covers the problem")


def increase_grid(min_blocks: int, knob: str | None = None) -> Action:
    """Launch at least ``min_blocks`` blocks (through ``knob`` when one sets the grid)."""
    where = f" (knob {knob})" if knob else ""
    return Action("increase_grid", {"min_blocks": min_blocks, "knob": knob},
                  f"launch at least {min_blocks} blocks{where}")


def use_tensor_cores(dtype: str | None = None) -> Action:
    """Move the inner product onto tensor cores (mma/wmma/wgmma): a rewrite only an LLM can make."""
    what = f" for the {dtype} products" if dtype else ""
    return Action("use_tensor_cores", {"dtype": dtype}, f"use tensor-core MMA instructions{what}",
                  applicable_offline=False)
