"""Load and validate a task file.

Every problem is reported as a :class:`TaskError` naming the file, the line and the fix. The
checks run in the order a reader would: metadata block, TOML syntax, unknown keys, the entry
kernel, parameters and knobs, the arguments against the kernel signature, launch geometry,
correctness settings and costs. The format is documented in ``docs/task-format.md``.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kernelpro import task_checks
from kernelpro.c_types import resolve, template_bindings, type_aliases
from kernelpro.cuda_source import (
    KernelSignature,
    find_kernels,
    identifiers,
    line_of,
    unguarded_defines,
)
from kernelpro.errors import TaskError
from kernelpro.expr import ExprError
from kernelpro.launch_spec import LAUNCH_KEYS, LaunchReader, check_param
from kernelpro.task import (
    DTYPE_SIZES,
    INITIALIZERS,
    INTENTS,
    Argument,
    Comparator,
    Correctness,
    Cost,
    Init,
    Knob,
    Launch,
    Origin,
    Task,
    Tolerance,
)
from kernelpro.toml_lines import TomlLines
from kernelpro.toml_reader import TomlReader, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Allowed keys per table; None = free-form names (validated separately).
SCHEMA: dict[str, frozenset[str] | None] = {
    "task": frozenset({"name", "kernel", "description"}),
    "params": None,
    "args": frozenset({"name", "dtype", "shape", "init", "intent", "value", "atol", "rtol"}),
    "launch": LAUNCH_KEYS,
    "knobs": None,
    "tuning": frozenset({"constraints"}),
    "correctness": frozenset({"reference", "atol", "rtol", "sizes", "deterministic", "allow_lower_precision",
                              "drawn_size", "exclude_distributions"}),
    "cost": frozenset({"flops", "bytes"}),
    "comparator": frozenset({"library", "expr"}),
    "origin": frozenset({"path", "function"}),
}
KNOB_KEYS = frozenset({"values", "default"})
COMPARATOR_LIBRARIES = ("cupy", "torch", "numpy")

_BLOCK = re.compile(r"/\*[ \t]*kernelpro\b(?![ \t]+launch\b)[^\n]*\n(.*?)\*/", re.DOTALL)
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_SKELETON = '/* kernelpro\n[task]\nkernel = "my_kernel"\n...\n*/  (see docs/task-format.md)'


def load_task(path: str | Path) -> Task:
    """Read, parse and validate the task file at ``path``."""
    path = Path(path)
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"cannot read task file: {exc}", file=path, fix="check the path") from None
    return parse_task(source, path)


def parse_task(source: str, path: str | Path = "<task>") -> Task:
    """Validate a task given its text (``path`` is used for messages and the task's default name)."""
    return _Loader(source, Path(path)).load()


class _Loader(TomlReader):
    # --- the steps ----------------------------------------------------------------------------
    def load(self) -> Task:
        meta, block_lines = self.read_metadata()
        task_checks.check_no_todos(self, meta)
        self.check_schema(meta)
        task_checks.check_string_keys(self, meta)
        task_table = meta.get("task", {})
        launch_spec = meta.get("launch")
        launch_entries = launch_spec if isinstance(launch_spec, list) else [launch_spec or {}]
        kernel_text = self.text(task_table, "kernel", "task") or self.text(launch_entries[0], "kernel", "launch", 0)
        if not kernel_text:
            raise self.error("missing entry kernel", "task", fix='add `kernel = "<name of the __global__ function>"` '
                             "under [task]")
        kernel_name = kernel_text.split("<", 1)[0].strip()
        kernels = find_kernels(self.source)
        if kernel_name not in kernels:
            found = ", ".join(kernels) or "none"
            raise self.error(f"entry kernel {kernel_name!r} is not a __global__ function in this file "
                             f"(found: {found})", "task", "kernel",
                             fix=did_you_mean(kernel_name, kernels) if kernels else "define the kernel")
        signature = kernels[kernel_name]
        params = self.read_params(meta.get("params", {}))
        knobs = self.read_knobs(meta.get("knobs", {}), params)
        names = set(params) | set(knobs)
        explicit = any(isinstance(e, dict) and "args" in e for e in launch_entries)
        if explicit:
            args = task_checks.read_free_args(self, meta.get("args", []), names)
        else:
            args = self.read_args(meta.get("args", []), signature, names, kernel_text)
        launches = LaunchReader(self, kernels, args, names).read(launch_spec, kernel_text)
        self.launch_where = [("launch", i) if isinstance(launch_spec, list) else ("launch",)
                             for i in range(len(launches))]
        if explicit:
            task_checks.check_every_buffer_passed(self, args, launches)
        constraints = tuple(
            self.expr(c, names, "tuning", "constraints", what="constraint")
            for c in meta.get("tuning", {}).get("constraints", [])
        )
        comparator = self.read_comparator(meta.get("comparator"))
        correctness = self.read_correctness(meta.get("correctness", {}), kernels, signature, params,
                                            comparator, len(launches) > 1 or explicit)
        cost = self.read_cost(meta.get("cost"), names)
        task = Task(
            path=self.path,
            name=str(task_table.get("name") or self.path.stem),
            kernel=kernel_name,
            source=self.source,
            signature=signature,
            args=args,
            params=params,
            launch=launches[0],
            correctness=correctness,
            cost=cost,
            knobs=knobs,
            constraints=constraints,
            description=str(task_table.get("description", "")).strip(),
            comparator=comparator,
            origin=self.read_origin(meta.get("origin")),
            metadata_lines=block_lines,
            launches=launches,
        )
        self.check_evaluates(task)
        return task

    def read_metadata(self) -> tuple[dict, tuple[int, int]]:
        match = _BLOCK.search(self.source)
        if not match:
            raise TaskError("no kernelpro metadata block", file=self.path, line=1,
                            fix=f"start the file with a comment holding the task's TOML: {_SKELETON}")
        first = line_of(self.source, match.start(1))
        last = line_of(self.source, match.end())
        text = match.group(1)
        try:
            meta = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            pos = _TOML_POS.search(str(exc))
            line = first + int(pos.group(1)) - 1 if pos else first
            message = _TOML_POS.sub("", str(exc)).strip()
            raise TaskError(f"bad TOML in the metadata block: {message}", file=self.path, line=line,
                            fix="fix the TOML syntax on that line (strings need quotes, tables [name])") from None
        self.lines = TomlLines(text, first)
        return meta, (line_of(self.source, match.start()), last)

    def check_schema(self, meta: dict) -> None:
        for table, value in meta.items():
            if table not in SCHEMA:
                raise self.error(f"unknown table [{table}]", table, fix=did_you_mean(table, SCHEMA))
            allowed = SCHEMA[table]
            entries = value if isinstance(value, list) else [value]
            expected_array = table == "args" or (table == "launch" and isinstance(value, list))
            if expected_array != isinstance(value, list) or not all(isinstance(e, dict) for e in entries):
                form = "[[args]] tables, one per argument" if expected_array else f"a [{table}] table"
                raise self.error(f"{table!r} must be {form}", table, fix=f"write it as {form}")
            if allowed is None:
                continue
            for index, entry in enumerate(entries):
                for key in entry:
                    if key not in allowed:
                        where = (table, index, key) if expected_array else (table, key)
                        raise self.error(f"unknown key {key!r} in [{table}]", *where,
                                         fix=did_you_mean(key, allowed))

    def read_params(self, table: dict) -> dict[str, int]:
        params = {}
        for name, value in table.items():
            if not _IDENTIFIER.fullmatch(name):
                raise self.error(f"parameter name {name!r} is not an identifier", "params", name,
                                 fix="use letters, digits and _ (e.g. N, BATCH)")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise self.error(f"parameter {name} = {value!r} is not a non-negative integer", "params", name,
                                 fix=f"give {name} an integer problem size, e.g. {name} = 4096")
            params[name] = value
        return params

    def read_knobs(self, table: dict, params: dict[str, int]) -> dict[str, Knob]:
        knobs: dict[str, Knob] = {}
        used = identifiers(self.source)
        for name, spec in table.items():
            line = self.lines.line("knobs", name) if self.lines else None
            if not _IDENTIFIER.fullmatch(name):
                raise self.error(f"knob name {name!r} is not a C identifier", line=line,
                                 fix="knobs are #define names: letters, digits and _")
            if name in params:
                raise self.error(f"{name!r} is both a parameter and a knob", line=line,
                                 fix="rename one of them")
            if not isinstance(spec, dict):
                raise self.error(f"knob {name} must be a table with `values` and `default`", line=line,
                                 fix=f"write `{name} = {{ values = [...], default = ... }}`")
            for key in spec:
                if key not in KNOB_KEYS:
                    raise self.error(f"unknown key {key!r} in knob {name}", line=line,
                                     fix=did_you_mean(key, KNOB_KEYS))
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise self.error(f"knob {name} has no values", line=line,
                                 fix=f"list its candidates: `{name} = {{ values = [64, 128, 256], default = 128 }}`")
            if any(isinstance(v, bool) or not isinstance(v, int | float | str) for v in values):
                raise self.error(f"knob {name} values must be numbers or strings", line=line,
                                 fix="use values like [1, 2, 4] or [\"float\", \"float4\"]")
            if len(set(values)) != len(values):
                raise self.error(f"knob {name} lists a value twice", line=line, fix="remove the duplicate")
            if "default" not in spec:
                raise self.error(f"knob {name} has no default", line=line,
                                 fix="add `default = <the value the baseline uses>`")
            default = spec["default"]
            if default not in values:
                raise self.error(f"knob {name} default {default!r} is not among its values {values}", line=line,
                                 fix=f"add {default!r} to values or pick a default from them")
            if name not in used:
                raise self.error(f"knob {name} never appears in the source", line=line,
                                 fix=f"use {name} in the kernel (e.g. `#ifndef {name}` / `#define {name} ...`) "
                                 "or remove the knob")
            knobs[name] = Knob(name, tuple(values), default, line)
        for name, define_line in unguarded_defines(self.source, set(knobs)).items():
            raise self.error(f"knob {name} is #defined without an #ifndef guard, so -D{name}=... cannot set it",
                             line=define_line, fix=f"wrap it: `#ifndef {name}` / `#define {name} ...` / `#endif`")
        for name, knob in knobs.items():
            written = re.search(rf"^[ \t]*#[ \t]*define[ \t]+{name}[ \t]+(\S+)", self.source, re.MULTILINE)
            if written and written.group(1) != str(knob.default):
                raise self.error(
                    f"knob {name} default {knob.default!r} differs from the source's `#define {name} "
                    f"{written.group(1)}`", line=knob.line,
                    fix="make them equal: the baseline is the kernel as written")
        return knobs

    def read_args(self, entries: list[dict], signature: KernelSignature, names: set[str],
                  kernel_text: str) -> tuple[Argument, ...]:
        params = signature.params
        if len(entries) != len(params):
            declared = ", ".join(p.name for p in params) or "none"
            raise self.error(
                f"{len(entries)} [[args]] declared but kernel {signature.name} takes {len(params)} "
                f"parameters ({declared})", *(("args", len(entries) - 1) if entries else ("task",)),
                fix="declare one [[args]] table per kernel parameter, in signature order")
        args: list[Argument] = []
        for index, (entry, param) in enumerate(zip(entries, params, strict=True)):
            args.append(self.read_arg(index, entry, param, names, signature, kernel_text))
        outputs = [a for a in args if a.is_output]
        if not outputs:
            raise self.error("no output argument: nothing to check a candidate against", "args",
                             fix='mark the buffers the kernel writes with intent = "out" (or "inout")')
        return tuple(args)

    def read_arg(self, index: int, entry: dict, param, names: set[str], signature: KernelSignature,
                 kernel_text: str) -> Argument:
        where = ("args", index)
        name = entry.get("name")
        if not name:
            raise self.error(f"argument {index + 1} has no name", *where,
                             fix=f'add `name = "{param.name}"` (parameter {index + 1} of {signature.name})')
        if name != param.name:
            raise self.error(
                f"argument {index + 1} is named {name!r} but parameter {index + 1} of {signature.name} is "
                f"{param.name!r} ({param.text})", *where, "name",
                fix="list [[args]] in the kernel's signature order with the same names")
        dtype = entry.get("dtype")
        if dtype not in DTYPE_SIZES:
            raise self.error(f"unknown dtype {dtype!r} for argument {name}", *where, "dtype",
                             fix=did_you_mean(dtype, DTYPE_SIZES))
        ctype = resolve(param.base_type, type_aliases(self.source),
                        template_bindings(signature.template_params, Launch((), (), kernel=kernel_text).template_args))
        stand_in = Argument(name, dtype, "in" if param.is_pointer else "scalar")
        check_param(self, stand_in, param, ctype, (*where, "dtype"), signature.name)
        tolerance = self.read_tolerance(entry, *where)
        if not param.is_pointer:
            if "value" not in entry:
                raise self.error(f"scalar argument {name} ({param.text}) needs a value", *where,
                                 fix=f'add `value = "<expression>"`, e.g. value = "{next(iter(names), "N")}"')
            for key in ("shape", "init", "intent"):
                if key in entry:
                    raise self.error(f"scalar argument {name} ({param.text}) cannot have {key!r}", *where, key,
                                     fix="scalars take only name, dtype and value")
            value = self.expr(entry["value"], names, *where, "value", what=f"value of {name}")
            return Argument(name, dtype, "scalar", value=value, line=self.lines.line(*where))
        if "value" in entry:
            raise self.error(f"argument {name} is a pointer ({param.text}) but has a scalar value", *where, "value",
                             fix="give pointers shape, intent and init instead of value")
        intent = entry.get("intent")
        if intent not in INTENTS:
            raise self.error(f"argument {name} has intent {intent!r}", *where, "intent",
                             fix=f"use one of {', '.join(INTENTS)}")
        if param.is_const and intent != "in":
            raise self.error(f"argument {name} is declared const ({param.text}) but has intent {intent!r}",
                             *where, "intent", fix='use intent = "in" or drop const')
        shape_spec = entry.get("shape")
        if shape_spec is None:
            raise self.error(f"buffer argument {name} has no shape", *where,
                             fix='add `shape = ["N"]` (one expression per dimension)')
        shape_list = shape_spec if isinstance(shape_spec, list) else [shape_spec]
        if not shape_list:
            raise self.error(f"argument {name} has an empty shape", *where, "shape", fix='e.g. shape = ["M", "N"]')
        shape = tuple(self.expr(d, names, *where, "shape", what=f"shape of {name}") for d in shape_list)
        init = self.read_init(entry.get("init"), intent, name, names, where)
        if tolerance is not None and intent == "in":
            raise self.error(f"input argument {name} has a tolerance", *where, "atol",
                             fix="tolerances apply to outputs (intent out/inout)")
        return Argument(name, dtype, intent, shape=shape, init=init, tolerance=tolerance,
                        line=self.lines.line(*where))

    def read_init(self, spec: Any, intent: str, name: str, names: set[str], where: tuple) -> Init | None:
        if spec is None:
            return None if intent in ("out", "scratch") else Init("random")
        if intent in ("out", "scratch"):
            what = "output" if intent == "out" else "scratch"
            raise self.error(f"{what} argument {name} has an init, which would be overwritten (it is poisoned "
                             "before each launch)", *where, "init",
                             fix='remove init, or use intent = "inout" if the kernel reads it')
        match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*", str(spec))
        kind = match.group(1) if match else str(spec)
        if not match or kind not in INITIALIZERS:
            raise self.error(f"unknown initializer {spec!r} for argument {name}", *where, "init",
                             fix=did_you_mean(kind, INITIALIZERS))
        raw = [p for p in _split_args(match.group(2) or "")]
        if len(raw) not in INITIALIZERS[kind]:
            counts = " or ".join(str(n) for n in INITIALIZERS[kind])
            raise self.error(f"initializer {kind} takes {counts} parameters, got {len(raw)}", *where, "init",
                             fix="e.g. normal(0, 1), uniform(-1, 1), randint(0, 1000), full(0.5)")
        params = tuple(self.expr(p, names, *where, "init", what=f"init of {name}") for p in raw)
        return Init(kind, params)

    def read_tolerance(self, table: dict, *where: str | int) -> Tolerance | None:
        if "atol" not in table and "rtol" not in table:
            return None
        values = {}
        for key in ("atol", "rtol"):
            value = table.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise self.error(f"{key} = {value!r} is not a non-negative number", *where, key,
                                 fix=f"e.g. {key} = 1e-5")
            values[key] = float(value)
        return Tolerance(**values)

    def read_correctness(self, table: dict, kernels: dict[str, KernelSignature], entry: KernelSignature,
                         params: dict[str, int], comparator: Comparator | None, sequence: bool) -> Correctness:
        reference = self.text(table, "reference", "correctness")
        if reference == "original":
            reference = None
        if reference == "comparator":
            if comparator is None:
                raise self.error('reference = "comparator" but the task has no [comparator]', "correctness",
                                 "reference", fix='add [comparator] with library and expr, or reference = "original"')
        elif reference is not None:
            if sequence:
                raise self.error(f"reference kernel {reference!r} in a task with a launch sequence", "correctness",
                                 "reference", fix='use reference = "original" (the sequence) or "comparator"')
            if reference not in kernels:
                raise self.error(f"reference kernel {reference!r} is not a __global__ function in this file",
                                 "correctness", "reference",
                                 fix=did_you_mean(reference, [*kernels, "original", "comparator"]))
            ref = kernels[reference]
            ours = [(p.is_pointer, p.base_type) for p in entry.params]
            theirs = [(p.is_pointer, p.base_type) for p in ref.params]
            if ours != theirs:
                raise self.error(f"reference kernel {reference} takes ({', '.join(p.text for p in ref.params)}), "
                                 f"not the entry kernel's parameters", "correctness", "reference",
                                 fix="give the reference the same parameter types, in the same order")
        sizes = []
        for index, size in enumerate(table.get("sizes", [])):
            if not isinstance(size, dict) or not size:
                raise self.error("each correctness size must be a table of params", "correctness", "sizes",
                                 fix="e.g. sizes = [{ N = 1000003 }, { N = 17 }]")
            for name, value in size.items():
                if name not in params:
                    raise self.error(f"correctness size {index + 1} sets unknown parameter {name!r}",
                                     "correctness", "sizes", fix=did_you_mean(name, params))
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise self.error(f"correctness size {index + 1}: {name} = {value!r} is not an integer",
                                     "correctness", "sizes", fix="problem sizes are non-negative integers")
            sizes.append(dict(size))
        for flag in ("deterministic", "allow_lower_precision"):
            if flag in table and not isinstance(table[flag], bool):
                raise self.error(f"{flag} must be true or false", "correctness", flag, fix=f"{flag} = true")
        return Correctness(
            reference=reference,
            tolerance=self.read_tolerance(table, "correctness"),
            sizes=tuple(sizes),
            deterministic=table.get("deterministic", True),
            allow_lower_precision=table.get("allow_lower_precision", False),
            drawn_size=self.read_drawn_size(table.get("drawn_size", {}), params),
            exclude_distributions=self.read_excluded_distributions(table.get("exclude_distributions", {})),
        )

    def read_drawn_size(self, table: Any, params: dict[str, int]) -> dict[str, tuple[int, int]]:
        """``drawn_size = { N = [low, high] }``: where the wall's per-seed extra size draws each param."""
        if not isinstance(table, dict):
            raise self.error("drawn_size must be a table of [low, high] ranges", "correctness", "drawn_size",
                             fix="e.g. drawn_size = { N = [17, 100000] }")
        bounds = {}
        for name, span in table.items():
            if name not in params:
                raise self.error(f"drawn_size sets unknown parameter {name!r}", "correctness", "drawn_size",
                                 fix=did_you_mean(name, params))
            ok = (isinstance(span, list) and len(span) == 2
                  and all(isinstance(v, int) and not isinstance(v, bool) for v in span) and 1 <= span[0] <= span[1])
            if not ok:
                raise self.error(f"drawn_size {name} = {span!r} is not a range [low, high] of positive integers",
                                 "correctness", "drawn_size", fix=f"e.g. {name} = [1, {params[name]}]")
            bounds[name] = (span[0], span[1])
        return bounds

    def read_excluded_distributions(self, table: Any) -> dict[str, str]:
        """``exclude_distributions = { offset = "why" }``: input distributions the task cannot take."""
        from kernelpro.runner.inputs import FLOAT_DISTRIBUTIONS, INT_DISTRIBUTIONS

        known = dict.fromkeys(FLOAT_DISTRIBUTIONS + INT_DISTRIBUTIONS)
        if not isinstance(table, dict):
            raise self.error("exclude_distributions must be a table of distribution = reason", "correctness",
                             "exclude_distributions",
                             fix='e.g. exclude_distributions = { offset = "log of negatives" }')
        for name, reason in table.items():
            if name not in known:
                raise self.error(f"unknown input distribution {name!r} in exclude_distributions", "correctness",
                                 "exclude_distributions", fix=did_you_mean(name, known))
            if not isinstance(reason, str) or not reason.strip():
                raise self.error(f"exclude_distributions {name} needs a reason", "correctness",
                                 "exclude_distributions", fix=f'{name} = "why the kernel cannot take these inputs"')
        if set(FLOAT_DISTRIBUTIONS) <= set(table):
            raise self.error("exclude_distributions leaves no float distribution", "correctness",
                             "exclude_distributions", fix="keep at least one, e.g. normal")
        return dict(table)

    def read_cost(self, table: dict | None, names: set[str]) -> Cost | None:
        if table is None:
            return None
        for key in ("flops", "bytes"):
            if key not in table:
                raise self.error(f"[cost] has no {key}", "cost",
                                 fix=f'add {key} = "<expression>" (e.g. flops = "2*M*N*K")')
        return Cost(self.expr(table["flops"], names, "cost", "flops", what="cost flops"),
                    self.expr(table["bytes"], names, "cost", "bytes", what="cost bytes"))

    def read_comparator(self, table: dict | None) -> Comparator | None:
        if table is None:
            return None
        library, expr = table.get("library"), table.get("expr")
        if library not in COMPARATOR_LIBRARIES:
            raise self.error(f"unknown comparator library {library!r}", "comparator", "library",
                             fix=f"use one of {', '.join(COMPARATOR_LIBRARIES)}")
        if not isinstance(expr, str) or not expr.strip():
            raise self.error("comparator has no expr", "comparator", fix='e.g. expr = "cupy.matmul(A, B, out=C)"')
        try:
            ast.parse(expr)
        except SyntaxError as exc:
            raise self.error(f"comparator expr is not valid Python: {exc.msg}", "comparator", "expr",
                             fix="write one Python statement over the argument names") from None
        return Comparator(library, expr)

    def read_origin(self, table: dict | None) -> Origin | None:
        if table is None:
            return None
        for key in ("path", "function"):
            if not isinstance(table.get(key), str) or not table[key]:
                raise self.error(f"[origin] has no {key}", "origin",
                                 fix='give path = "src/ops.cu" and function = "my_kernel"')
        return Origin(table["path"], table["function"])

    def check_evaluates(self, task: Task) -> None:
        """Evaluate shapes, launches, scalars and constraints at every problem size with the default knobs."""
        knobs = task.default_knobs()
        if not task.satisfies_constraints(knobs):
            raise self.error(f"the default knobs {knobs} violate a [tuning] constraint", "tuning", "constraints",
                             fix="change the constraint or the knob defaults")
        for size_index, sizes in enumerate(task.problem_sizes()):
            env = task.env(sizes=sizes)
            label = "the benchmark size" if size_index == 0 else f"correctness size {size_index}"
            try:
                absent = task_checks.null_buffers(task, env)
                for arg in task.buffers:
                    where = ("args", task.args.index(arg), "shape")
                    smallest = 0 if arg.name in absent else 1
                    if any(d < smallest for d in task.shape(arg, env)):
                        raise self.error(f"shape of {arg.name} is {task.shape(arg, env)} at {label}", *where,
                                         fix="every dimension must be positive (an absent optional pointer is "
                                         '"null", or "name if CONDITION else null", in the launch args)')
                if task.cost is not None:
                    task.flops(env), task.bytes_moved(env)
            except ExprError as exc:
                raise self.error(f"{exc} at {label}", "args", fix="fix the expression") from None
            task_checks.check_scalars(self, task, env, label)
            task_checks.check_memory(self, task, env, label)
            for launch, where in zip(task.plan, self.launch_where, strict=True):
                task_checks.check_geometry(self, launch, env, label, where)
                task_checks.check_launch_scalars(self, launch, env, label, where)


def _split_args(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:k].strip())
            start = k + 1
    tail = text[start:].strip()
    return parts + [tail] if tail or parts else parts


def task_summary(task: Task) -> Mapping[str, Any]:
    """A JSON-able summary of a task (for `kernelpro tasks --json`)."""
    return {
        "name": task.name,
        "path": str(task.path),
        "kernel": task.kernel,
        "description": task.description,
        "params": dict(task.params),
        "args": [
            {"name": a.name, "dtype": a.dtype, "intent": a.intent,
             "shape": [d.text for d in a.shape], "value": a.value.text if a.value else None}
            for a in task.args
        ],
        "knobs": {k.name: {"values": list(k.values), "default": k.default} for k in task.knobs.values()},
        "knob_configs": sum(1 for _ in task.knob_space()),
        "launches": [{"kernel": launch.kernel, "grid": [e.text for e in launch.grid],
                      "block": [e.text for e in launch.block], "shared_mem": launch.shared_mem.text,
                      "args": None if launch.args is None else [a.text for a in launch.args]}
                     for launch in task.plan],
        "buffer_bytes": task.buffer_bytes(task.env()),
        "reference": task.correctness.reference or "original kernel",
        "extra_sizes": [dict(s) for s in task.correctness.sizes],
        "cost": {"flops": task.cost.flops.text, "bytes": task.cost.bytes.text} if task.cost else None,
        "comparator": {"library": task.comparator.library, "expr": task.comparator.expr}
        if task.comparator else None,
        "origin": {"path": task.origin.path, "function": task.origin.function} if task.origin else None,
    }
