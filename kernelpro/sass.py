"""Disassemble cubins to SASS and summarise each kernel's instructions.

:func:`disassemble` runs ``cuobjdump -sass`` (or ``nvdisasm -c`` where cuobjdump is missing);
:func:`parse_sass` reads either tool's text into one :class:`KernelSass` per function, with every
instruction split into predicate, opcode, modifiers and operands, loops found from backward
branches, and an :class:`OpcodeHistogram` of instruction classes for the whole kernel and for its
loop bodies alone.

Instruction classes (the keys of every histogram, see :data:`CLASSES`). Each instruction has one
*primary* class, so the primary counts add up to the number of instructions; a few also carry a
*tag* that is counted on top (``ffma``, ``fadd``, ``fmul``). Rules, first match wins:

1. An instruction predicated ``@!PT`` never executes: ``nop`` (the compiler pads with these).
2. ``LDG``/``STG`` are ``global_load_*``/``global_store_*`` by width modifier: ``.U8 .S8 .U16 .S16``
   → ``narrow``, ``.64`` → ``64``, ``.128`` → ``128``, none → ``32`` (sm_90 spells a plain 32-bit
   load ``LDG.E`` or ``LDG.E.CONSTANT``). Other memory opcodes have one class regardless of width.
3. :data:`MODIFIER_RULES`: an opcode with one of the listed modifiers, e.g. ``F2F.F64.F32`` →
   ``fp64_conversion``, ``MUFU.RSQ64H`` → ``fp64``.
4. ``HFMA2`` with sources ``-RZ, RZ`` is the compiler's idiom for moving a constant into a register
   (``HFMA2.MMA R9, -RZ, RZ, 1.75, 0``), not half arithmetic: ``other``.
5. :data:`OPCODE_CLASSES`: the base opcode alone. Anything not listed is ``other``.

Deliberate choices: ``barrier`` is block-level synchronisation (``BAR``, and the sm_90 mbarrier
``SYNCS``); the warp convergence operations ``WARPSYNC``/``BSSY``/``BSYNC`` that the compiler
emits around any divergent branch are ``convergence``, so they don't inflate ``barrier``.
``WARPGROUP.ARRIVE``/``WARPGROUP.DEPBAR`` (fences around wgmma) are ``other``, so ``tensor``
counts only MMA instructions. ``FSEL`` is a 32-bit select (also used on the halves of doubles)
and ``F2FP``/``I2F``/``F2I`` without ``.F64`` are conversions: all ``other``. Generic ``LD``/``ST``
(address space unknown at compile time) are ``generic_load``/``generic_store``. Every function
ends with an unconditional ``BRA`` to itself plus ``NOP`` padding; they count as ``branch`` and
``nop`` but the self-branch is not a loop.

Loops: a ``BRA`` whose target is at or below its own offset closes a loop whose body is every
instruction from the target to the branch. Code the compiler moved out of line (after the
backward branch) is not marked ``in_loop``.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from kernelpro import toolchain
from kernelpro.errors import KernelproError, ToolchainError
from kernelpro.toolchain import INSTALL_HINTS, find_tool

# Every histogram key, in report order.
CLASSES: tuple[str, ...] = (
    "global_load_narrow",
    "global_load_32",
    "global_load_64",
    "global_load_128",
    "global_store_narrow",
    "global_store_32",
    "global_store_64",
    "global_store_128",
    "generic_load",
    "generic_store",
    "local_load",
    "local_store",
    "shared_load",
    "shared_store",
    "async_copy",
    "atomic",
    "fp32",
    "ffma",
    "fadd",
    "fmul",
    "fp64",
    "fp64_conversion",
    "fp16",
    "tensor",
    "shuffle",
    "barrier",
    "convergence",
    "branch",
    "nop",
    "other",
)

# Opcodes whose class is their width: family name + "_" + width from WIDTH_MODIFIERS.
WIDTH_FAMILIES: dict[str, str] = {"LDG": "global_load", "STG": "global_store"}
WIDTH_MODIFIERS: dict[str, str] = {
    "U8": "narrow",
    "S8": "narrow",
    "U16": "narrow",
    "S16": "narrow",
    "64": "64",
    "128": "128",
}

# (opcode, modifiers, class): the opcode with any of the modifiers gets the class.
MODIFIER_RULES: tuple[tuple[str, frozenset[str], str], ...] = (
    ("F2F", frozenset({"F64"}), "fp64_conversion"),
    ("I2F", frozenset({"F64"}), "fp64_conversion"),
    ("F2I", frozenset({"F64"}), "fp64_conversion"),
    ("FRND", frozenset({"F64"}), "fp64"),
    ("MUFU", frozenset({"RSQ64H", "RCP64H"}), "fp64"),
)


def _table(**groups: str) -> dict[str, str]:
    """``class="OPA OPB"`` keyword groups → {opcode: class}."""
    return {opcode: cls for cls, opcodes in groups.items() for opcode in opcodes.split()}


OPCODE_CLASSES: dict[str, str] = _table(
    generic_load="LD",
    generic_store="ST",
    local_load="LDL",
    local_store="STL",
    shared_load="LDS LDSM",
    shared_store="STS STSM",
    async_copy="LDGSTS UBLKCP UBLKRED UTMALDG UTMASTG UTMAREDG",
    atomic="ATOM ATOMG ATOMS RED REDG REDAS",
    fp32="FADD FADD32I FMUL FMUL32I FFMA FFMA32I FMNMX FSETP FSET FCHK FRND FSWZADD MUFU",
    fp64="DADD DMUL DFMA DMNMX DSETP DSET",
    fp16="HADD2 HMUL2 HFMA2 HMNMX2 HSETP2 HSET2",
    tensor="HMMA IMMA DMMA BMMA QMMA OMMA HGMMA IGMMA QGMMA BGMMA UTCHMMA UTCIMMA UTCQMMA UTCOMMA",
    shuffle="SHFL",
    barrier="BAR SYNCS",
    convergence="WARPSYNC BSSY BSYNC BMOV",
    branch="BRA BRX BRXU JMP JMX JMXU CALL RET EXIT BREAK BPT KILL RTT",
    nop="NOP",
)

# Classes counted on top of the primary class.
OPCODE_TAGS: dict[str, str] = _table(ffma="FFMA FFMA32I", fadd="FADD FADD32I", fmul="FMUL FMUL32I")

# Branches whose last operand is a target offset (``BRA 0x1a0``) or label (``BRA `(.L_x_2)``).
_DIRECT_BRANCHES = frozenset({"BRA", "CALL"})

_TIMEOUT_S = 120


def classify(
    opcode: str, modifiers: tuple[str, ...], operands: tuple[str, ...] = (), predicate: str | None = None
) -> tuple[str, ...]:
    """Classes of one instruction: the primary class first, then any tags (see the module doc)."""
    if predicate == "@!PT":
        return ("nop",)
    if opcode in WIDTH_FAMILIES:
        width = next((WIDTH_MODIFIERS[m] for m in modifiers if m in WIDTH_MODIFIERS), "32")
        return (f"{WIDTH_FAMILIES[opcode]}_{width}",)
    primary = None
    for rule_opcode, rule_modifiers, cls in MODIFIER_RULES:
        if opcode == rule_opcode and rule_modifiers.intersection(modifiers):
            primary = cls
            break
    if primary is None and opcode == "HFMA2" and operands[1:3] == ("-RZ", "RZ"):
        primary = "other"
    if primary is None:
        primary = OPCODE_CLASSES.get(opcode, "other")
    tag = OPCODE_TAGS.get(opcode)
    return (primary, tag) if tag else (primary,)


@dataclass(frozen=True)
class SassInstruction:
    """One SASS instruction, e.g. ``@!P0 LDG.E.128.CONSTANT R8, desc[UR4][R2.64]``."""

    offset: int  # byte offset from the start of the function
    predicate: str | None  # "@P0", "@!P0", "@!PT", ...; None when unpredicated
    opcode: str  # base opcode: "LDG"
    modifiers: tuple[str, ...]  # ("E", "128", "CONSTANT")
    operands: tuple[str, ...]  # ("R8", "desc[UR4][R2.64]")
    text: str  # the instruction as the tool printed it, without offset, ";" and encoding
    in_loop: bool = False
    target: int | None = None  # offset a BRA/CALL jumps to, when it is known
    classes: tuple[str, ...] = ("other",)  # primary class first, then tags

    @property
    def op_class(self) -> str:
        """The primary class (one of :data:`CLASSES`)."""
        return self.classes[0]


class OpcodeHistogram(Mapping[str, int]):
    """Instruction counts per class. Every name in :data:`CLASSES` is a key (0 when absent);
    any other name raises ``KeyError``, so a misspelt class can't silently read as zero."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        counts = dict(counts or {})
        unknown = set(counts) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown instruction classes: {sorted(unknown)}")
        self._counts = {cls: int(counts.get(cls, 0)) for cls in CLASSES}

    @classmethod
    def of(cls, instructions: Iterable[SassInstruction]) -> OpcodeHistogram:
        """Count the classes (primary and tags) of ``instructions``."""
        return cls(Counter(c for ins in instructions for c in ins.classes))

    def __getitem__(self, key: str) -> int:
        return self._counts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def nonzero(self) -> dict[str, int]:
        """Only the classes that occur."""
        return {cls: n for cls, n in self._counts.items() if n}

    def __repr__(self) -> str:
        return f"OpcodeHistogram({self.nonzero()})"


@dataclass(frozen=True)
class Loop:
    """A loop closed by a backward ``BRA``: the body runs from ``start`` to ``end`` (inclusive)."""

    start: int  # offset of the branch target
    end: int  # offset of the backward branch


@dataclass(frozen=True)
class KernelSass:
    """The SASS of one function in a cubin."""

    name: str  # as the disassembler prints it: mangled for C++ linkage
    demangled: str  # c++filt's spelling, e.g. "void scale<float>(float*, int)"; ``name`` if not mangled
    arch: str | None  # "sm_90", from the disassembly header
    instructions: tuple[SassInstruction, ...]
    loops: tuple[Loop, ...]
    histogram: OpcodeHistogram  # every instruction
    histogram_in_loops: OpcodeHistogram  # instructions with ``in_loop``

    @property
    def base_name(self) -> str:
        """The demangled name without return type, parameters or template arguments: ``ns::scale``."""
        return _base_name(self.demangled)

    def find(self, opcode: str) -> tuple[SassInstruction, ...]:
        """Instructions whose base opcode is ``opcode``."""
        return tuple(ins for ins in self.instructions if ins.opcode == opcode)


# --- running the disassembler -----------------------------------------------------------------

def disassemble(cubin: Path, tool: str | None = None) -> str:
    """SASS text of ``cubin`` from ``cuobjdump -sass``, or ``nvdisasm -c`` when cuobjdump is missing.

    ``tool`` forces one of ``"cuobjdump"`` / ``"nvdisasm"``. Raises :class:`ToolchainError` when no
    disassembler is installed and :class:`KernelproError` (with the tool's message) when it fails.
    """
    cubin = Path(cubin)
    if not cubin.is_file():
        raise KernelproError("cubin not found", file=cubin, fix="compile it first with `nvcc -cubin`")
    if tool is None:
        exe = find_tool("cuobjdump", required=False)
        tool = "cuobjdump"
        if exe is None:
            exe, tool = find_tool("nvdisasm", required=False), "nvdisasm"
        if exe is None:
            searched = ", ".join(str(d) for d in toolchain.search_dirs()) or "(none)"
            raise ToolchainError(
                f"neither `cuobjdump` nor `nvdisasm` found on PATH or in {searched}",
                fix=INSTALL_HINTS["cuobjdump"],
            )
    elif tool in ("cuobjdump", "nvdisasm"):
        exe = find_tool(tool)
    else:
        raise ValueError(f"tool must be 'cuobjdump' or 'nvdisasm', not {tool!r}")

    args = [str(exe), "-sass" if tool == "cuobjdump" else "-c", str(cubin)]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except OSError as exc:
        raise ToolchainError(f"cannot run `{exe}`: {exc}", fix=INSTALL_HINTS[tool]) from exc
    except subprocess.TimeoutExpired as exc:
        raise KernelproError(f"`{tool}` took more than {_TIMEOUT_S} s", file=cubin) from exc
    if proc.returncode != 0:
        message = (proc.stderr.strip() or proc.stdout.strip() or "no message").replace("\n", "; ")
        raise KernelproError(
            f"`{tool}` failed (exit {proc.returncode}): {message}",
            file=cubin,
            fix="pass a cubin built with `nvcc -cubin -arch=sm_XX`",
        )
    return proc.stdout


def sass_for_cubin(cubin: Path, tool: str | None = None) -> dict[str, KernelSass]:
    """:func:`disassemble` then :func:`parse_sass`."""
    return parse_sass(disassemble(cubin, tool))


# --- parsing -----------------------------------------------------------------------------------

_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)\s*$")  # cuobjdump
_SECTION = re.compile(r"^\s*\.section\s+([^,\s]+)")  # nvdisasm: ".section .text.NAME,..."
_TARGET_ARCH = re.compile(r"^\s*(?:code for|\.target)\s+(sm_\w+)")
_LABEL = re.compile(r"^\s*([.$\w]+):\s*$")  # nvdisasm branch targets: ".L_x_2:"
_OFFSET = re.compile(r"^\s*/\*([0-9a-fA-F]{4,})\*/(.*)$")
_ENCODING = re.compile(r"/\*[^*]*\*/\s*$")  # cuobjdump's "/* 0x000fe2... */" after the instruction
_BODY = re.compile(r"^(?:(@!?U?P(?:T|\d+))\s+)?([A-Z][A-Z0-9_]*)((?:\.\w+)*)\s*(.*)$")
_LABEL_REF = re.compile(r"^`\((.+)\)$")


@dataclass
class _Function:
    name: str
    arch: str | None
    lines: list[tuple[int, str]]  # (offset, instruction text)
    labels: dict[str, int]


def parse_sass(text: str, demangle: bool = True) -> dict[str, KernelSass]:
    """Parse ``cuobjdump -sass`` or ``nvdisasm -c`` output into one :class:`KernelSass` per function,
    keyed by the function name as printed (mangled for C++ linkage).

    ``demangle=False`` skips running c++filt (``demangled`` is then the raw name).
    """
    functions = _split_functions(text)
    names = _demangle([f.name for f in functions]) if demangle else {}
    return {f.name: _build_kernel(f, names.get(f.name, f.name)) for f in functions}


def _split_functions(text: str) -> list[_Function]:
    functions: list[_Function] = []
    current: _Function | None = None
    pending_labels: list[str] = []  # nvdisasm labels waiting for the next instruction's offset
    arch = None
    for line in text.splitlines():
        if match := _OFFSET.match(line):
            if current is not None:
                offset = int(match.group(1), 16)
                current.labels.update(dict.fromkeys(pending_labels, offset))
                pending_labels.clear()
                body = _ENCODING.sub("", match.group(2)).strip().strip("{}").strip().rstrip(";").strip()
                current.lines.append((offset, body))
        elif match := _TARGET_ARCH.match(line):
            arch = match.group(1)
        elif match := _FUNCTION.match(line):
            current = _start_function(functions, match.group(1), arch)
            pending_labels.clear()
        elif match := _SECTION.match(line):
            section = match.group(1)
            is_code = section.startswith(".text.")
            current = _start_function(functions, section[len(".text.") :], arch) if is_code else None
            pending_labels.clear()
        elif (match := _LABEL.match(line)) and current is not None:
            pending_labels.append(match.group(1))
    return functions


def _start_function(functions: list[_Function], name: str, arch: str | None) -> _Function:
    if any(f.name == name for f in functions):
        raise KernelproError(
            f"function `{name}` appears twice in the disassembly (several architectures?)",
            fix="disassemble a cubin built for one architecture (`nvcc -cubin -arch=sm_XX`)",
        )
    functions.append(_Function(name, arch, [], {}))
    return functions[-1]


def _split_operands(text: str) -> tuple[str, ...]:
    """Split on commas outside brackets: ``desc[UR4][R2.64], R8`` → two operands."""
    operands, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            operands.append(text[start:i])
            start = i + 1
    operands.append(text[start:])
    return tuple(op.strip() for op in operands if op.strip())


def _branch_target(operands: tuple[str, ...], labels: dict[str, int]) -> int | None:
    if not operands:
        return None
    last = operands[-1]
    if last.lower().startswith("0x"):
        try:
            return int(last, 16)
        except ValueError:
            return None
    if match := _LABEL_REF.match(last):
        return labels.get(match.group(1))
    return None


def _build_kernel(function: _Function, demangled: str) -> KernelSass:
    parsed = []
    for offset, body in function.lines:
        match = _BODY.match(body)
        if match:
            predicate, opcode, mods, rest = match.groups()
            modifiers = tuple(m for m in mods.split(".") if m)
        else:  # not an instruction shape we know: keep it whole rather than drop it
            predicate, opcode, modifiers, rest = None, body.split()[0] if body else "", (), ""
        operands = _split_operands(rest)
        target = _branch_target(operands, function.labels) if opcode in _DIRECT_BRANCHES else None
        parsed.append((offset, predicate, opcode, modifiers, operands, body, target))

    loops = tuple(
        Loop(start=target, end=offset)
        for offset, predicate, opcode, _, _, _, target in parsed
        if opcode == "BRA" and target is not None and target <= offset
        # an unconditional branch to itself is the end-of-function trap, not a loop
        and not (target == offset and predicate is None)
    )
    instructions = tuple(
        SassInstruction(
            offset=offset,
            predicate=predicate,
            opcode=opcode,
            modifiers=modifiers,
            operands=operands,
            text=body,
            in_loop=any(loop.start <= offset <= loop.end for loop in loops),
            target=target,
            classes=classify(opcode, modifiers, operands, predicate),
        )
        for offset, predicate, opcode, modifiers, operands, body, target in parsed
    )
    return KernelSass(
        name=function.name,
        demangled=demangled,
        arch=function.arch,
        instructions=instructions,
        loops=loops,
        histogram=OpcodeHistogram.of(instructions),
        histogram_in_loops=OpcodeHistogram.of(ins for ins in instructions if ins.in_loop),
    )


# --- names -------------------------------------------------------------------------------------

def _demangle(names: list[str]) -> dict[str, str]:
    """{mangled: demangled} via cu++filt or c++filt; names that aren't mangled, or no tool, map to
    themselves."""
    mangled = [n for n in names if n.startswith("_Z")]
    result = {n: n for n in names}
    if not mangled:
        return result
    exe = find_tool("cu++filt", required=False) or find_tool("c++filt", required=False)
    if exe is None:
        return result
    try:
        proc = subprocess.run(
            [str(exe)], input="\n".join(mangled) + "\n", capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return result
    lines = proc.stdout.splitlines()
    if proc.returncode == 0 and len(lines) == len(mangled):
        result.update(zip(mangled, (line.strip() for line in lines), strict=True))
    return result


def _base_name(demangled: str) -> str:
    """``void ns::scale<float>(float*, int)`` → ``ns::scale``; unmangled names come back unchanged."""
    text = demangled.strip()
    if text.endswith(")"):  # drop the parameter list: from the "(" matching the final ")"
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                text = text[:i]
                break
    kept, depth = [], 0
    for ch in text:  # drop template arguments, and the return type before the last top-level space
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            if ch == " ":
                kept.clear()
            else:
                kept.append(ch)
    return "".join(kept).strip() or demangled
