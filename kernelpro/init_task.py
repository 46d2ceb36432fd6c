"""``kernelpro init kernel.cu``: a draft task from a kernel's signature.

What the source says is written; what only the author knows is ``"TODO"`` with a comment saying
what to put there, and :func:`kernelpro.task_checks.check_no_todos` makes loading the draft fail
with every TODO named, line by line. From the signature: one ``[[args]]`` per parameter in order,
the dtype of its C type (typedefs resolved), ``const T*`` → ``intent = "in"``; an integer
by-value parameter becomes a problem-size parameter (``int n`` → ``value = "N"``, ``[params] N``).
Knobs are the ``#define``s the file's own host launch (``kernel<<<grid, BLOCK>>>``) uses, and the
``#ifndef``-guarded ones (already written to be overridden); an unguarded one gets its guard.
Left to the author: problem sizes, shapes, the intent of non-const buffers, grid and block
(the host launch found is quoted beside them), the cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kernelpro.c_types import resolve, type_aliases
from kernelpro.cuda_source import KernelSignature, blank_comments_and_strings, find_kernels, split_top_level
from kernelpro.errors import KernelproError

_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+([^\n]+?)[ \t]*$", re.MULTILINE)
_GUARDED = re.compile(r"^[ \t]*#[ \t]*ifndef[ \t]+([A-Za-z_]\w*)", re.MULTILINE)
_INT_DTYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}


@dataclass(frozen=True)
class KnobDraft:
    name: str
    default: int | float | str
    values: tuple[int | float | str, ...]
    guarded: bool


def _literal(text: str) -> int | float | str:
    text = text.strip().rstrip("uUlLfF") if re.fullmatch(r"[\d.]+[uUlLfF]*", text.strip()) else text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def host_launch(source: str, kernel: str) -> list[str] | None:
    """The ``<<<...>>>`` configuration of the first host launch of ``kernel`` in ``source``, split."""
    code = blank_comments_and_strings(source)
    match = re.search(rf"\b{re.escape(kernel)}\s*(?:<[^<>;]*>)?\s*<<<(.*?)>>>", code, re.DOTALL)
    return split_top_level(match.group(1)) if match else None


def draft_knobs(source: str, launch: list[str] | None) -> list[KnobDraft]:
    code = blank_comments_and_strings(source)
    guarded = set(_GUARDED.findall(code))
    used = set(re.findall(r"[A-Za-z_]\w*", " ".join(launch or [])))
    knobs, seen = [], set()
    for name, value in _DEFINE.findall(code):
        if name in seen or not (name in guarded or name in used):
            continue
        seen.add(name)
        default = _literal(value)
        values: tuple = (default,)
        if isinstance(default, int) and default > 1 and default & (default - 1) == 0:
            values = (default // 2, default, default * 2)
        knobs.append(KnobDraft(name, default, values, name in guarded))
    return knobs


def _toml(value: int | float | str) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def draft_task(source: str, path: Path, kernel: str | None = None) -> str:
    """The text of a draft task for ``kernel`` (or the file's only kernel) in ``source``."""
    if re.search(r"/\*[ \t]*kernelpro\b(?![ \t]+launch)", source):
        raise KernelproError("the file already has a kernelpro metadata block", file=path,
                             fix="it is a task already: `kernelpro analyze` it, or remove the block to draft again")
    kernels = find_kernels(source)
    if not kernels:
        raise KernelproError("no __global__ kernel in the file", file=path,
                             fix="point at the .cu file that defines the kernel")
    if kernel is None:
        if len(kernels) > 1:
            raise KernelproError(f"the file defines {len(kernels)} kernels ({', '.join(kernels)})", file=path,
                                 fix=f"choose one: kernelpro init {path} --kernel {next(iter(kernels))}")
        kernel = next(iter(kernels))
    if kernel not in kernels:
        raise KernelproError(f"no __global__ kernel {kernel!r} in the file (found: {', '.join(kernels)})", file=path,
                             fix="give --kernel one of the kernels listed")
    sig = kernels[kernel]
    launch = host_launch(source, kernel)
    knobs = draft_knobs(source, launch)
    meta = _metadata(source, path, sig, launch, knobs)
    return meta + _guard_knobs(source, knobs)


def _metadata(source: str, path: Path, sig: KernelSignature, launch: list[str] | None,
              knobs: list[KnobDraft]) -> str:
    aliases = type_aliases(source)
    entry = f"{sig.name}<TODO>" if sig.template_params else sig.name
    lines = ["/* kernelpro", "[task]", f'name = "{path.stem}"', f'kernel = "{entry}"'
             + ("  # TODO: the template arguments, e.g. <float, 256>" if sig.template_params else ""),
             'description = ""', "", "[params]  # problem sizes: the size that is timed"]
    sizes = []
    for param in sig.params:
        ctype = resolve(param.base_type, aliases)
        if not param.is_pointer and ctype.dtype in _INT_DTYPES:
            sizes.append(param.name.upper())
    lines += [f'{name} = "TODO"  # TODO: an integer, e.g. {name} = 4096' for name in dict.fromkeys(sizes)]
    for param in sig.params:
        ctype = resolve(param.base_type, aliases)
        dtype = ctype.dtype or "TODO"
        lines += ["", "[[args]]", f'name = "{param.name}"',
                  f'dtype = "{dtype}"' + ("" if ctype.dtype else f"  # TODO: the dtype of {param.base_type}")]
        if param.is_pointer:
            lines.append('shape = ["TODO"]  # TODO: one expression per dimension, e.g. ["ROWS", "COLS"]'
                         + (f" (in {ctype.dtype} components of {ctype.resolved})" if ctype.vector > 1 else ""))
            if param.is_const:
                lines.append('intent = "in"')
            else:
                lines.append('intent = "TODO"  # TODO: out (written only), inout (read and written) or scratch')
        elif ctype.dtype in _INT_DTYPES:
            lines.append(f'value = "{param.name.upper()}"')
        else:
            lines.append('value = "TODO"  # TODO: an expression over the params, e.g. "1e-5" or "1.0 / COLS"')
    host = f"  # the file's host code launches <<<{', '.join(launch)}>>>" if launch else ""
    block_knob = next((k.name for k in knobs if launch and len(launch) > 1 and launch[1].strip() == k.name), None)
    lines += ["", "[launch]", f'grid = ["TODO"]  # TODO: 1-3 expressions, e.g. ["ceil_div(N, BLOCK)"]{host}',
              f'block = ["{block_knob}"]' if block_knob else 'block = ["TODO"]  # TODO: e.g. ["256"]']
    if launch and len(launch) > 2 and launch[2].strip() != "0":
        lines.append(f'shared_mem = "TODO"  # TODO: dynamic shared memory bytes (host code: {launch[2].strip()})')
    if knobs:
        lines += ["", "[knobs]  # #defines the search may tune: -DNAME=value"]
        lines += [f"{k.name} = {{ values = [{', '.join(map(_toml, k.values))}], default = {_toml(k.default)} }}"
                  for k in knobs]
    lines += ["", "[correctness]", "# sizes = [{ N = 1000003 }, { N = 17 }]  # extra sizes: odd ones find edge bugs",
              "", "[cost]  # the work, for the roofline",
              'flops = "TODO"  # TODO: useful floating-point operations, e.g. "2 * N"',
              'bytes = "TODO"  # TODO: minimum DRAM bytes moved, e.g. "4 * 3 * N"', "*/", ""]
    return "\n".join(lines)


def _guard_knobs(source: str, knobs: list[KnobDraft]) -> str:
    """``source`` with an ``#ifndef`` guard around each unguarded knob ``#define``."""
    for knob in knobs:
        if knob.guarded:
            continue
        source = re.sub(rf"^([ \t]*#[ \t]*define[ \t]+{knob.name}\b[^\n]*)$", rf"#ifndef {knob.name}\n\1\n#endif",
                        source, count=1, flags=re.MULTILINE)
    return source


def write_draft(kernel_file: Path, kernel: str | None = None, output: Path | None = None,
                force: bool = False) -> Path:
    """Write the draft beside ``kernel_file`` (``<stem>.task.cu``) and return its path."""
    try:
        source = kernel_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelproError(f"cannot read kernel file: {exc}", file=kernel_file, fix="check the path") from None
    text = draft_task(source, kernel_file, kernel)
    target = output or kernel_file.with_name(f"{kernel_file.stem}.task.cu")
    if target.exists() and not force:
        raise KernelproError(f"{target} exists", file=target, fix="pass --force to overwrite it, or --output PATH")
    target.write_text(text)
    return target
