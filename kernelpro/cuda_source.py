"""Read what kernelpro needs from CUDA source text: kernel signatures, their place, and macros.

This is a scanner, not a C++ parser: it finds ``__global__`` functions, splits their parameter
lists, maps parameter types to dtypes and locates each function's full text (for export). It works
on a copy of the source with comments and string literals blanked, so offsets and line numbers
stay those of the original file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# C/CUDA scalar types → kernelpro dtype names.
C_TYPE_DTYPES: dict[str, str] = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "__half": "float16",
    "__nv_bfloat16": "bfloat16",
    "nv_bfloat16": "bfloat16",
    "bool": "bool",
    "char": "int8",
    "signed char": "int8",
    "int8_t": "int8",
    "unsigned char": "uint8",
    "uint8_t": "uint8",
    "short": "int16",
    "int16_t": "int16",
    "unsigned short": "uint16",
    "uint16_t": "uint16",
    "int": "int32",
    "int32_t": "int32",
    "unsigned": "uint32",
    "unsigned int": "uint32",
    "uint32_t": "uint32",
    "long long": "int64",
    "long long int": "int64",
    "int64_t": "int64",
    "unsigned long long": "uint64",
    "unsigned long long int": "uint64",
    "uint64_t": "uint64",
    "size_t": "uint64",
    # LP64 (Linux, the only host nvcc targets here): long is 64 bits.
    "long": "int64",
    "long int": "int64",
    "signed long": "int64",
    "unsigned long": "uint64",
    "unsigned long int": "uint64",
    "int64": "int64",
    "signed": "int32",
    "signed int": "int32",
    "ptrdiff_t": "int64",
}

_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "struct"}


@dataclass(frozen=True)
class Param:
    """One kernel parameter as written in the signature."""

    name: str
    base_type: str  # e.g. "float", "unsigned int", "T"
    is_pointer: bool
    is_const: bool
    is_restrict: bool
    text: str

    @property
    def dtype(self) -> str | None:
        """kernelpro dtype of the (pointed-to) type; None for types the scanner can't map (templates)."""
        return C_TYPE_DTYPES.get(self.base_type)


@dataclass(frozen=True)
class KernelSignature:
    """A ``__global__`` function found in the source."""

    name: str
    params: tuple[Param, ...]
    line: int  # 1-based line of the function name
    extern_c: bool
    launch_bounds: str | None  # the text inside __launch_bounds__(...)
    start: int  # offset of the first character of the declaration (incl. template/extern "C")
    end: int  # offset just past the closing brace of the body
    template_params: tuple[str, ...] = ()  # names of the template parameters, in order (T, BLOCK...)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


def blank_comments_and_strings(source: str) -> str:
    """Replace comments and string/char literals by spaces, keeping newlines and offsets."""
    out = list(source)
    i, n = 0, len(source)
    while i < n:
        two = source[i : i + 2]
        if two == "//":
            j = source.find("\n", i)
            j = n if j < 0 else j
        elif two == "/*":
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif source[i] in "\"'":
            quote, j = source[i], i + 1
            while j < n and source[j] != quote and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            j = min(j + 1, n)
            if source[i:j] == '"C"':  # keep `extern "C"` recognisable
                i = j
                continue
            # Keep the quotes; blank only the contents.
            for k in range(i + 1, j - 1):
                if out[k] != "\n":
                    out[k] = " "
            i = j
            continue
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


def line_of(source: str, offset: int) -> int:
    """1-based line number of ``offset``."""
    return source.count("\n", 0, offset) + 1


_GLOBAL = re.compile(r"\b__global__\b")
_LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\s*\(")
_IDENT = re.compile(r"[A-Za-z_]\w*")


_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def matching_bracket(text: str, open_at: int) -> int:
    """Offset of the bracket closing the ``(``, ``[`` or ``{`` at ``open_at``; -1 when unbalanced or no bracket."""
    if not 0 <= open_at < len(text) or text[open_at] not in _CLOSERS:
        return -1
    opener, closer, depth = text[open_at], _CLOSERS[text[open_at]], 0
    for k in range(open_at, len(text)):
        if text[k] == opener:
            depth += 1
        elif text[k] == closer:
            depth -= 1
            if depth == 0:
                return k
    return -1


def split_top_level(text: str) -> list[str]:
    """``text`` split at commas outside (), <> and []: parameter and template-argument lists."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_param(text: str) -> Param:
    """Split one parameter declaration (``const float* __restrict__ x``) into its parts."""
    clean = re.sub(r"\s+", " ", text.replace("*", " * ").replace("&", " & ")).strip()
    clean = re.sub(r"\s*=.*$", "", clean)  # default argument
    tokens = clean.split(" ")
    name = tokens[-1] if tokens and _IDENT.fullmatch(tokens[-1]) and len(tokens) > 1 else ""
    type_tokens = tokens[:-1] if name else tokens
    is_pointer = "*" in type_tokens
    is_const = "const" in type_tokens
    is_restrict = any(t.startswith("__restrict") or t == "restrict" for t in type_tokens)
    base = " ".join(t for t in type_tokens if t not in _QUALIFIERS and t not in "*&")
    return Param(name, base, is_pointer, is_const, is_restrict, text.strip())


def find_kernels(source: str) -> dict[str, KernelSignature]:
    """All ``__global__`` function definitions in ``source``, by name (first definition wins)."""
    code = blank_comments_and_strings(source)
    kernels: dict[str, KernelSignature] = {}
    for match in _GLOBAL.finditer(code):
        paren = code.find("(", match.end())
        if paren < 0:
            continue
        head = code[match.end() : paren]
        bounds = None
        lb = _LAUNCH_BOUNDS.search(code, match.end(), paren + 1)
        if lb:  # __launch_bounds__(...) sits between __global__ and the name; skip past it
            lb_open = lb.end() - 1
            lb_close = matching_bracket(code, lb_open)
            bounds = code[lb_open + 1 : lb_close].strip()
            paren = code.find("(", lb_close + 1)
            head = code[lb_close + 1 : paren]
        names = _IDENT.findall(head)
        if not names:
            continue
        name = names[-1]
        close = matching_bracket(code, paren)
        if close < 0:
            continue
        after = code[close + 1 :].lstrip()
        if after.startswith("__launch_bounds__"):
            lb_open = code.find("(", close + 1)
            lb_close = matching_bracket(code, lb_open)
            bounds = code[lb_open + 1 : lb_close].strip()
            after = code[lb_close + 1 :].lstrip()
        if not after.startswith("{"):
            continue  # a declaration, not a definition
        body_open = code.find("{", close)
        body_close = matching_bracket(code, body_open)
        start = _declaration_start(code, match.start())
        raw_params = source[paren + 1 : close]
        params = tuple(parse_param(p) for p in split_top_level(blank_comments_and_strings(raw_params)))
        if len(params) == 1 and params[0].base_type == "void" and not params[0].name:
            params = ()
        name_offset = match.end() + head.rfind(name) if not lb else code.rfind(name, 0, paren)
        kernels.setdefault(
            name,
            KernelSignature(
                name=name,
                params=params,
                line=line_of(source, name_offset),
                extern_c=bool(re.search(r'extern\s+"\s*C\s*"\s*$', code[start : match.start()].rstrip() + " ")),
                launch_bounds=bounds,
                start=start,
                end=(body_close + 1) if body_close >= 0 else len(source),
                template_params=_template_params(code[start : match.start()]),
            ),
        )
    return kernels


def _template_params(head: str) -> tuple[str, ...]:
    """``template <typename T, int BLOCK = 256>`` → ``("T", "BLOCK")``."""
    match = re.search(r"\btemplate\s*<(.*)>", head, re.DOTALL)
    if not match:
        return ()
    names = []
    for part in split_top_level(match.group(1)):
        declared = re.sub(r"\s*=.*$", "", part, flags=re.DOTALL).strip()
        ident = _IDENT.findall(declared)
        if ident:
            names.append(ident[-1])
    return tuple(names)


def _declaration_start(code: str, global_at: int) -> int:
    """Back up from ``__global__`` over ``extern "C"``, ``template<...>`` and ``static``."""
    start = global_at
    while True:
        before = code[:start].rstrip()
        for prefix in ('extern "C"', "static", "inline", "__forceinline__"):
            if before.endswith(prefix) and (len(before) == len(prefix) or not before[-len(prefix) - 1].isalnum()):
                start = len(before) - len(prefix)
                break
        else:
            if before.endswith(">"):
                depth, k = 0, len(before) - 1
                while k >= 0:
                    depth += {">": 1, "<": -1}.get(before[k], 0)
                    if depth == 0:
                        break
                    k -= 1
                head = before[:k].rstrip()
                if head.endswith("template"):
                    start = len(head) - len("template")
                    continue
            return start


_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)", re.MULTILINE)
_IFNDEF = re.compile(
    r"^[ \t]*#[ \t]*(?:ifndef[ \t]+([A-Za-z_]\w*)|if[ \t]+!\s*defined\s*\(?\s*([A-Za-z_]\w*))", re.MULTILINE
)


def unguarded_defines(source: str, names: set[str]) -> dict[str, int]:
    """Names in ``names`` that are ``#define``d without an ``#ifndef NAME`` guard → line of the define.

    A knob's value arrives as ``-DNAME=value``; an unguarded ``#define NAME`` in the file would
    silently override it (nvcc only warns), so every knob default must sit behind ``#ifndef``.
    """
    code = blank_comments_and_strings(source)
    guarded = {a or b for a, b in _IFNDEF.findall(code)}
    found: dict[str, int] = {}
    for match in _DEFINE.finditer(code):
        name = match.group(1)
        if name in names and name not in guarded:
            found.setdefault(name, line_of(source, match.start()))
    return found


def identifiers(source: str) -> set[str]:
    """Every identifier that appears in the code (comments and strings excluded)."""
    return set(_IDENT.findall(blank_comments_and_strings(source)))
