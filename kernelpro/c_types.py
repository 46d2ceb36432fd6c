"""What a kernel parameter's C type really is: typedef/``using`` aliases, template arguments, vector types.

The task loader holds each declared dtype against the parameter's type. A scanner sees the type as
written (``bf16``, ``T``, ``float4``), so before the comparison the type is resolved: aliases
(``typedef __nv_bfloat16 bf16;``, ``using scalar_t = float;``) to their target, template parameters
to the launch's template arguments (``kernel = "k<float, 256>"``). CUDA vector types (``float4``)
are ``n`` elements of a component dtype: a pointer to one is a buffer of that dtype whose shape
counts components; one passed by value is a struct, which a task cannot describe as a scalar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kernelpro.cuda_source import C_TYPE_DTYPES, blank_comments_and_strings, split_top_level

_TYPEDEF = re.compile(r"\btypedef\s+([A-Za-z_][\w\s:]*?)\s+([A-Za-z_]\w*)\s*;")
_USING = re.compile(r"\busing\s+([A-Za-z_]\w*)\s*=\s*([A-Za-z_][\w\s:]*?)\s*;")
_VECTOR = re.compile(r"(char|uchar|short|ushort|int|uint|long|ulong|longlong|ulonglong|float|double|half|"
                     r"__half|__nv_bfloat16|nv_bfloat16)([1-4])")
_VECTOR_COMPONENTS = {
    "char": "int8", "uchar": "uint8", "short": "int16", "ushort": "uint16", "int": "int32", "uint": "uint32",
    "long": "int64", "ulong": "uint64", "longlong": "int64", "ulonglong": "uint64", "float": "float32",
    "double": "float64", "half": "float16", "__half": "float16", "__nv_bfloat16": "bfloat16",
    "nv_bfloat16": "bfloat16",
}
# Value ranges of the integer dtypes a scalar may take.
INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(1 << 7), (1 << 7) - 1), "uint8": (0, (1 << 8) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1), "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1),
    "bool": (0, 1),
}


@dataclass(frozen=True)
class CType:
    """A resolved parameter type: its dtype (None when unknown) and, for a vector type, the width."""

    written: str
    resolved: str
    dtype: str | None
    vector: int = 1

    @property
    def describe(self) -> str:
        return self.written if self.written == self.resolved else f"{self.written} (= {self.resolved})"


def type_aliases(source: str) -> dict[str, str]:
    """``typedef`` and ``using`` aliases in ``source``: alias → target as written."""
    code = blank_comments_and_strings(source)
    aliases = {name: " ".join(target.split()) for target, name in _TYPEDEF.findall(code)}
    aliases.update({name: " ".join(target.split()) for name, target in _USING.findall(code)})
    return aliases


def template_bindings(params: tuple[str, ...], args_text: str | None) -> dict[str, str]:
    """Template parameter name → argument text, for ``kernel = "k<float, 256>"``."""
    if not args_text:
        return {}
    return dict(zip(params, split_top_level(args_text), strict=False))


def resolve(base_type: str, aliases: dict[str, str], bindings: dict[str, str] | None = None) -> CType:
    """Resolve ``base_type`` through template ``bindings`` and ``aliases`` (chains followed, cycles cut)."""
    resolved, seen = base_type.strip(), set()
    while resolved not in seen:
        seen.add(resolved)
        stripped = re.sub(r"^(?:const|volatile)\s+|\s+(?:const|volatile)$", "", resolved).removeprefix("::")
        target = (bindings or {}).get(stripped) or aliases.get(stripped)
        if target is None:
            resolved = stripped
            break
        resolved = target.strip()
    vector = _VECTOR.fullmatch(resolved)
    if vector:
        return CType(base_type, resolved, _VECTOR_COMPONENTS[vector.group(1)], int(vector.group(2)))
    return CType(base_type, resolved, C_TYPE_DTYPES.get(resolved))


def fits(dtype: str, value: float) -> bool:
    """Does ``value`` fit a scalar of ``dtype`` (integers: the type's range; floats: always)?"""
    if dtype not in INT_RANGES:
        return True
    low, high = INT_RANGES[dtype]
    return float(value).is_integer() and low <= value <= high
