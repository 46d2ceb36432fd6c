"""Read launch tables — the task's ``[launch]`` / ``[[launch]]`` and a candidate's ``/* kernelpro launch */``.

A launch names its kernel (``name`` or a template instantiation ``name<float, BLOCK>``), its grid
and block (1–3 expressions), its dynamic shared memory and its arguments. Each argument is a task
argument by name, ``"null"`` (a NULL pointer), an optional input (``"bias if HAS_BIAS else null"``:
the buffer where the condition holds, NULL elsewhere) or, for a by-value parameter, an expression. Every
launch is held against its kernel's signature: count, pointer vs by-value, and the dtype of the
C type after typedefs, ``using`` aliases and template arguments are resolved
(:mod:`kernelpro.c_types`). One buffer passed twice to one launch is refused: aliasing changes a
kernel's semantics (and ``__restrict__`` makes it undefined).
"""

from __future__ import annotations

import re
from typing import Any

from kernelpro.c_types import resolve, template_bindings, type_aliases
from kernelpro.cuda_source import KernelSignature, Param
from kernelpro.task import Argument, Launch, LaunchArg
from kernelpro.toml_reader import TomlReader, did_you_mean

LAUNCH_KEYS = frozenset({"kernel", "grid", "block", "shared_mem", "args"})
NULL = "null"
_OPTIONAL = re.compile(r"([A-Za-z_]\w*)\s+if\s+(.+?)\s+else\s+null")


class LaunchReader:
    """Reads launch tables with ``reader``'s errors; ``kernels`` are the source's ``__global__`` functions."""

    def __init__(self, reader: TomlReader, kernels: dict[str, KernelSignature], args: tuple[Argument, ...],
                 names: set[str], table: str = "launch") -> None:
        self.r = reader
        self.kernels = kernels
        self.args = {a.name: a for a in args}
        self.order = args
        self.names = names
        self.table = table
        self.aliases = type_aliases(reader.source)

    def read(self, spec: Any, default_kernel: str | None) -> tuple[Launch, ...]:
        """``spec`` is one table (v1 ``[launch]``) or a list of them (``[[launch]]``)."""
        if spec is None:
            raise self.r.error(f"missing [{self.table}] table", "task",
                               fix='add [launch] with grid = ["ceil_div(N, BLOCK)"] and block = ["BLOCK"]')
        entries = spec if isinstance(spec, list) else [spec]
        if not entries:
            raise self.r.error(f"[[{self.table}]] is empty", self.table, fix="give at least one [[launch]] table")
        launches = []
        for index, entry in enumerate(entries):
            where = (self.table, index) if isinstance(spec, list) else (self.table,)
            if not isinstance(entry, dict):
                raise self.r.error(f"launch {index + 1} is not a table", *where, fix="write [[launch]] tables")
            for key in entry:
                if key not in LAUNCH_KEYS:
                    raise self.r.error(f"unknown key {key!r} in [{self.table}]", *where, key,
                                       fix=did_you_mean(key, LAUNCH_KEYS))
            kernel = self.r.text(entry, "kernel", *where) or (default_kernel if len(entries) == 1 else None)
            if kernel is None:
                raise self.r.error(f"launch {index + 1} of {len(entries)} names no kernel", *where,
                                   fix='add kernel = "<__global__ function>" to every [[launch]] of a sequence')
            launches.append(self.read_one(entry, kernel, where))
        return tuple(launches)

    def read_one(self, entry: dict, kernel: str, where: tuple) -> Launch:
        name = kernel.split("<", 1)[0].strip()
        sig = self.kernels.get(name)
        if sig is None:
            found = ", ".join(self.kernels) or "none"
            raise self.r.error(f"kernel {name!r} is not a __global__ function in this file (found: {found})",
                               *where, "kernel", fix=did_you_mean(name, self.kernels) if self.kernels else
                               "define the kernel")
        targs = kernel.split("<", 1)[1].rsplit(">", 1)[0] if "<" in kernel else None
        if sig.template_params and targs is None:
            raise self.r.error(f"kernel {name} is a template <{', '.join(sig.template_params)}>", *where, "kernel",
                               fix=f'name the instantiation: kernel = "{name}<{", ".join(sig.template_params)}>" with '
                               "types and values (knobs allowed), kernelpro instantiates it")
        if targs is not None and not sig.template_params:
            raise self.r.error(f"kernel {name} is not a template but the launch gives <{targs}>", *where, "kernel",
                               fix=f'write kernel = "{name}"')
        dims = {}
        for key in ("grid", "block"):
            value = entry.get(key)
            if value is None:
                raise self.r.error(f"[{self.table}] has no {key}", *where, fix=f'add {key} = ["..."] (1 to 3 '
                                   "expressions)")
            items = value if isinstance(value, list) else [value]
            if not 1 <= len(items) <= 3:
                raise self.r.error(f"[{self.table}] {key} has {len(items)} dimensions", *where, key,
                                   fix="give 1 to 3 expressions (x, y, z)")
            dims[key] = tuple(self.r.expr(d, self.names, *where, key, what=f"launch {key}") for d in items)
        shared = self.r.expr(entry.get("shared_mem", "0"), self.names, *where, "shared_mem",
                             what="launch shared_mem")
        bindings = template_bindings(sig.template_params, targs)
        args = self.read_args(entry.get("args"), sig, bindings, where) if "args" in entry else None
        if args is None:
            self.check_default_args(sig, bindings, where)
        return Launch(dims["grid"], dims["block"], shared, kernel.strip(), args, self.r.lines.line(*where)
                      if self.r.lines else None)

    def read_args(self, spec: Any, sig: KernelSignature, bindings: dict[str, str],
                  where: tuple) -> tuple[LaunchArg, ...]:
        if not isinstance(spec, list):
            raise self.r.error("launch args must be a list", *where, "args",
                               fix='e.g. args = ["x", "y", "ROWS", "null"]')
        if len(spec) != len(sig.params):
            raise self.r.error(f"the launch passes {len(spec)} arguments but {sig.name} takes {len(sig.params)} "
                               f"({', '.join(p.text for p in sig.params) or 'none'})", *where, "args",
                               fix="give one entry per kernel parameter, in order")
        out, seen = [], set()
        for param, item in zip(sig.params, spec, strict=True):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self.r.error(f"launch argument for {param.name} is {item!r}", *where, "args",
                                   fix="each entry is a task argument name, an expression or \"null\"")
            text = str(item).strip()
            ctype = resolve(param.base_type, self.aliases, bindings)
            if text == NULL:
                if not param.is_pointer:
                    raise self.r.error(f"null passed to {param.text}, which is not a pointer", *where, "args",
                                       fix="pass null only to pointer parameters")
                out.append(LaunchArg("null", text))
                continue
            optional = _OPTIONAL.fullmatch(text)
            if optional:
                out.append(self.read_optional(optional.group(1), optional.group(2), text, param, ctype, seen, sig,
                                              where))
                continue
            if text in self.args:
                arg = self.args[text]
                if arg.is_buffer and text in seen:
                    raise self.r.error(f"buffer {text} is passed twice to {sig.name}: aliased buffers are not "
                                       "allowed", *where, "args", fix="pass each buffer at most once per launch")
                seen.add(text)
                self.check_param(arg, param, ctype, where + ("args",), sig)
                out.append(LaunchArg("arg", text))
                continue
            if param.is_pointer:
                raise self.r.error(f"{text!r} is not a task buffer, but {sig.name} takes a pointer ({param.text})",
                                   *where, "args", fix=did_you_mean(text, [a.name for a in self.order if a.is_buffer]
                                                                    + [NULL]))
            if ctype.dtype is None or ctype.vector > 1:
                raise self.r.error(f"cannot pass an expression to {param.text}: its type {ctype.describe} is not a "
                                   "plain number", *where, "args", fix="declare a scalar [[args]] of that type")
            out.append(LaunchArg("expr", text, self.r.expr(text, self.names, *where, "args",
                                                            what=f"launch argument {param.name}"), ctype.dtype))
        return tuple(out)

    def read_optional(self, name: str, condition: str, text: str, param: Param, ctype, seen: set[str],
                      sig: KernelSignature, where: tuple) -> LaunchArg:
        """``"bias if HAS_BIAS else null"``: an input buffer, or NULL where the condition is false."""
        arg = self.args.get(name)
        if arg is None or arg.intent != "in" or not param.is_pointer:
            raise self.r.error(f"{text!r}: an optional pointer must be an input buffer passed to a pointer parameter "
                               f"({param.text})", *where, "args",
                               fix='write "<input buffer> if <condition> else null", e.g. "bias if HAS_BIAS else null"')
        if name in seen:
            raise self.r.error(f"buffer {name} is passed twice to {sig.name}: aliased buffers are not allowed", *where,
                               "args", fix="pass each buffer at most once per launch")
        seen.add(name)
        self.check_param(arg, param, ctype, where + ("args",), sig)
        return LaunchArg("optional", text, self.r.expr(condition, self.names, *where, "args",
                                                       what=f"condition of {name}"), None, name)

    def check_default_args(self, sig: KernelSignature, bindings: dict[str, str], where: tuple) -> None:
        """Without ``args`` the launch passes every task argument in order: the kernel must take exactly those."""
        if tuple(self.args) != sig.param_names:
            raise self.r.error(
                f"kernel {sig.name}({', '.join(sig.param_names)}) does not take the task's arguments "
                f"({', '.join(self.args)})", *where,
                fix='list them: args = ["x", "y", "N"] (task argument names, expressions or "null")')
        for arg, param in zip(self.order, sig.params, strict=True):
            self.check_param(arg, param, resolve(param.base_type, self.aliases, bindings), where, sig)

    def check_param(self, arg: Argument, param: Param, ctype, where: tuple, sig: KernelSignature) -> None:
        check_param(self.r, arg, param, ctype, where, sig.name)


def check_param(r: TomlReader, arg: Argument, param: Param, ctype, where: tuple, kernel: str) -> None:
    """``arg`` may be passed to ``param`` (C type ``ctype`` resolved): pointer-ness, vector types, dtype."""
    if arg.is_buffer != param.is_pointer:
        kind = "a buffer" if arg.is_buffer else "a scalar"
        raise r.error(f"argument {arg.name} is {kind} but {kernel} takes `{param.text}` "
                      f"({'a pointer' if param.is_pointer else 'by value'})", *where,
                      fix="declare pointers with shape and intent, by-value parameters with a value")
    if ctype.vector > 1 and not param.is_pointer:
        raise r.error(f"argument {arg.name}: `{param.text}` passes a {ctype.resolved} struct by value, which a "
                      f"{arg.dtype} scalar cannot describe", *where,
                      fix=f"pass the {ctype.resolved} as a pointer to {ctype.dtype} components, or as "
                      f"{ctype.vector} scalar parameters")
    if ctype.dtype is not None and ctype.dtype != arg.dtype:
        vector = f" ({ctype.vector} x {ctype.dtype}; the shape counts {ctype.dtype} components)" \
            if ctype.vector > 1 else ""
        alias = "" if ctype.written == ctype.resolved else f"{ctype.written} = {ctype.resolved}: "
        raise r.error(f"argument {arg.name} has dtype {arg.dtype} but {kernel} declares `{param.text}` "
                      f"({alias}{ctype.dtype}){vector}", *where,
                      fix=f'set dtype = "{ctype.dtype}"')
