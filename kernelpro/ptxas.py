"""Read the per-kernel resource report that ``nvcc -Xptxas -v`` prints.

For each entry function ptxas prints a block like this (CUDA 13)::

    ptxas info    : Compiling entry function 'k_spill' for 'sm_90'
    ptxas info    : Function properties for k_spill
        256 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    ptxas info    : Used 32 registers, used 0 barriers, 256 bytes cumulative stack size, 360 bytes cmem[0]
    ptxas info    : Compile time = 59.586 ms

The ``Used`` line lists only what is non-zero (plus registers and, since CUDA 12, barriers), in
the order registers, barriers, smem, lmem, textures, surfaces, samplers, cumulative stack, cmem.
Older toolkits wrote ``4+0 bytes lmem`` and ``28+16 bytes smem`` (user + system bytes), had no
``for 'sm_XX'``, and used one space in ``ptxas info :``; all of these parse. Non-entry device
functions get a ``Function properties`` block of their own but no ``Compiling entry function``
line; they are not returned. ptxas never prints ``__launch_bounds__``: those come from the PTX
(:func:`parse_ptx_launch_bounds`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

_PTXAS_LINE = re.compile(r"ptxas\s+(?:info|warning|error|fatal)\s*:\s*(?P<text>.*)")
_ENTRY = re.compile(r"Compiling entry function\s+'(?P<symbol>[^']+)'(?:\s+for\s+'(?P<arch>[^']+)')?")
_PROPERTIES = re.compile(r"Function properties for\s+'?(?P<symbol>.+?)'?\s*$")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_BARRIERS = re.compile(r"used (\d+) barriers")
_SMEM = re.compile(r"(\d+)(?:\+(\d+))? bytes smem")
_LMEM = re.compile(r"(\d+)(?:\+(\d+))? bytes lmem")
_CUMULATIVE_STACK = re.compile(r"(\d+) bytes cumulative stack size")
_CMEM = re.compile(r"(\d+) bytes cmem\[(\d+)\]")


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reports for one kernel (entry function); sizes in bytes, per thread or per block."""

    symbol: str  # as ptxas prints it: mangled for C++ linkage, plain for extern "C"
    name: str  # base function name: no return type, scope, template arguments or parameters
    arch: str | None  # e.g. "sm_90"; None where ptxas did not say
    registers: int  # per thread
    shared_static_bytes: int = 0  # static __shared__ per block (dynamic shared memory is not included)
    stack_frame_bytes: int = 0  # per thread, local arrays and spills of this function
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0
    barriers: int | None = None  # named barriers; None where ptxas does not print them (before CUDA 12)
    constant_bytes: dict[int, int] = field(default_factory=dict)  # constant bank -> bytes
    local_bytes: int | None = None  # "lmem"; only older ptxas prints it
    cumulative_stack_bytes: int | None = None  # stack including callees, when ptxas prints it
    max_threads: int | None = None  # __launch_bounds__ / .maxntid, filled from the PTX
    min_blocks: int | None = None  # __launch_bounds__ second argument / .minnctapersm
    demangled: str = ""  # full demangled signature, e.g. "void k<float>(float const*, float*, int)"

    @property
    def spills(self) -> bool:
        """True when ptxas spilled registers to local memory."""
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelResources:
        """Inverse of :meth:`to_dict`, also after a JSON round trip (bank numbers become strings)."""
        fields = dict(data)
        fields["constant_bytes"] = {int(bank): int(size) for bank, size in data["constant_bytes"].items()}
        return cls(**fields)


@dataclass
class _Entry:
    symbol: str
    arch: str | None
    used: str = ""  # text of the "Used N registers, ..." line


def parse_ptxas_verbose(text: str) -> dict[str, KernelResources]:
    """Resources of every entry function in ``ptxas -v`` output, keyed by symbol, in ptxas order.

    When the text covers several architectures, the last report for a symbol wins.
    """
    entries: dict[str, _Entry] = {}
    frames: dict[str, tuple[int, int, int]] = {}
    current: _Entry | None = None
    frame_owner: str | None = None  # the "Function properties" block waiting for its numbers
    for line in text.splitlines():
        frame = _FRAME.search(line)
        if frame and frame_owner is not None:
            frames[frame_owner] = (int(frame[1]), int(frame[2]), int(frame[3]))
            frame_owner = None
            continue
        match = _PTXAS_LINE.search(line)
        if not match:
            continue
        body = match["text"]
        if entry := _ENTRY.match(body):
            current = _Entry(entry["symbol"], entry["arch"])
            entries.pop(current.symbol, None)
            entries[current.symbol] = current
        elif props := _PROPERTIES.match(body):
            frame_owner = props["symbol"]
        elif _USED.match(body) and current is not None:
            current.used = body
            current = None  # a later "Used" line (if any) belongs to no entry we know of

    names = demangle_names(list(entries))
    result: dict[str, KernelResources] = {}
    for symbol, entry in entries.items():
        if not entry.used:
            continue
        stack, spill_stores, spill_loads = frames.get(symbol, (0, 0, 0))
        used = entry.used
        base, demangled = names[symbol]
        result[symbol] = KernelResources(
            symbol=symbol,
            name=base,
            demangled=demangled,
            arch=entry.arch,
            registers=_int(_USED, used) or 0,
            shared_static_bytes=_sum_plus(_SMEM, used) or 0,
            stack_frame_bytes=stack,
            spill_store_bytes=spill_stores,
            spill_load_bytes=spill_loads,
            barriers=_int(_BARRIERS, used),
            constant_bytes={int(bank): int(size) for size, bank in _CMEM.findall(used)},
            local_bytes=_sum_plus(_LMEM, used),
            cumulative_stack_bytes=_int(_CUMULATIVE_STACK, used),
        )
    return result


def _int(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    return int(match[1]) if match else None


def _sum_plus(pattern: re.Pattern[str], text: str) -> int | None:
    """``N bytes`` or the old ``user+system bytes`` spelling, as one total."""
    match = pattern.search(text)
    return int(match[1]) + int(match[2] or 0) if match else None


_MAXNTID = re.compile(r"\.(?:maxntid|reqntid)\s+(\d+)(?:\s*,\s*(\d+))?(?:\s*,\s*(\d+))?")
_MINNCTA = re.compile(r"\.minnctapersm\s+(\d+)")
_PTX_ENTRY = re.compile(r"\.entry\s+([\w$.]+)")


def parse_ptx_launch_bounds(ptx: str) -> dict[str, tuple[int | None, int | None]]:
    """``(max_threads, min_blocks)`` of each PTX entry with ``.maxntid``/``.reqntid``/``.minnctapersm``.

    ``__launch_bounds__(T, B)`` becomes ``.maxntid T, 1, 1`` and ``.minnctapersm B`` between the
    entry's parameter list and its body.
    """
    bounds: dict[str, tuple[int | None, int | None]] = {}
    for match in _PTX_ENTRY.finditer(ptx):
        params_end = ptx.find(")", match.end())
        body = ptx.find("{", params_end)
        if params_end < 0 or body < 0:
            continue
        header = ptx[params_end:body]
        threads = _MAXNTID.search(header)
        blocks = _MINNCTA.search(header)
        if threads or blocks:
            max_threads = None
            if threads:
                max_threads = 1
                for dim in threads.groups():
                    max_threads *= int(dim or 1)
            bounds[match[1]] = (max_threads, int(blocks[1]) if blocks else None)
    return bounds


def demangle_names(symbols: list[str]) -> dict[str, tuple[str, str]]:
    """``symbol -> (base name, demangled signature)``; uses ``cu++filt``/``c++filt`` when found.

    extern "C" symbols are returned as they are. Without a demangler, a mangled symbol's base
    name is read from its first ``<length><identifier>`` components.
    """
    mangled = [s for s in symbols if s.startswith("_Z")]
    demangled: dict[str, str] = {}
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if mangled and tool:
        try:
            out = subprocess.run(
                [tool], input="\n".join(mangled) + "\n", capture_output=True, text=True, timeout=10
            ).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            out = []
        if len(out) == len(mangled):
            demangled = dict(zip(mangled, out, strict=True))
    names: dict[str, tuple[str, str]] = {}
    for symbol in symbols:
        full = demangled.get(symbol, symbol)
        if full != symbol:
            names[symbol] = (_base_name(full), full)
        elif symbol.startswith("_Z"):
            names[symbol] = (_itanium_base_name(symbol), symbol)
        else:
            names[symbol] = (_base_name(symbol), symbol)  # extern "C", or a demangled name from old ptxas
    return names


def _base_name(signature: str) -> str:
    """``void ns::k<float, 4>(float const*, int)`` -> ``k``."""
    text = signature.strip()
    depth, cut = 0, len(text)
    for i in range(len(text) - 1, -1, -1):  # the parameter list is the last top-level (...)
        ch = text[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
            if depth == 0:
                cut = i
                break
    text = _strip_template_args(text[:cut])
    text = text.rsplit("::", 1)[-1]
    return text.split()[-1] if text.split() else signature


def _strip_template_args(text: str) -> str:
    out, depth = [], 0
    for ch in text:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _itanium_base_name(symbol: str) -> str:
    """Last source-name of ``_Z<len><id>`` or ``_ZN<len><id>...E``; the symbol itself if unreadable."""
    nested = symbol.startswith("_ZN")
    name = ""
    pos = 3 if nested else 2
    while (length := re.match(r"\d+", symbol[pos:])) is not None:
        pos += len(length[0])
        name = symbol[pos : pos + int(length[0])]
        pos += int(length[0])
        if not nested:
            break
    return name or symbol
