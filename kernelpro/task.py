"""The task model: one ``.cu`` file = the kernel to optimize + a TOML metadata block.

:func:`kernelpro.task_loader.load_task` builds a :class:`Task` from a file and validates it; this
module only holds the (immutable) model and the arithmetic on it: problem sizes, knob
configurations, launch geometry, buffer shapes, tolerances and costs. The format is documented in
``docs/task-format.md``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kernelpro.cuda_source import KernelSignature
from kernelpro.device_values import default_device_values
from kernelpro.expr import Expr

# dtype name → bytes per element.
DTYPE_SIZES: dict[str, int] = {
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "int64": 8,
    "uint64": 8,
    "bool": 1,
}
FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
INTENTS = ("in", "out", "inout", "scratch")


@dataclass(frozen=True)
class Tolerance:
    """An output matches when ``|got - expected| <= atol + rtol * |expected|`` elementwise."""

    atol: float
    rtol: float


# Defaults per dtype: a few ulps of accumulated rounding for a reordered reduction of ~1e6 terms.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(atol=1e-12, rtol=1e-9),
    "float32": Tolerance(atol=1e-5, rtol=1e-4),
    "float16": Tolerance(atol=1e-3, rtol=1e-2),
    "bfloat16": Tolerance(atol=1e-2, rtol=2e-2),
}
EXACT = Tolerance(atol=0.0, rtol=0.0)

# Initializers: name → number of parameters (None = optional, any count). See docs/task-format.md.
INITIALIZERS: dict[str, tuple[int, ...]] = {
    "random": (0,),  # the correctness wall draws from several distributions (normal, uniform, heavy-tailed...)
    "normal": (0, 2),  # normal(mean, std)
    "uniform": (0, 2),  # uniform(low, high)
    "randint": (2,),  # randint(low, high): integers in [low, high)
    "zeros": (0,),
    "ones": (0,),
    "full": (1,),  # full(value)
    "arange": (0,),  # 0, 1, 2, ... (mod the dtype's range)
}


@dataclass(frozen=True)
class Init:
    """How an input buffer is filled: ``kind(params...)``."""

    kind: str
    params: tuple[Expr, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(p.text for p in self.params)})" if self.params else self.kind


@dataclass(frozen=True)
class Argument:
    """One kernel argument, in signature order: a device buffer or a scalar."""

    name: str
    dtype: str
    intent: str  # "in" | "out" | "inout" | "scratch" for buffers, "scalar" for by-value arguments
    shape: tuple[Expr, ...] = ()
    init: Init | None = None
    value: Expr | None = None
    tolerance: Tolerance | None = None  # per-output override of the task's tolerance
    line: int | None = None

    @property
    def is_buffer(self) -> bool:
        return self.intent != "scalar"

    @property
    def is_output(self) -> bool:
        return self.intent in ("out", "inout")

    @property
    def is_input(self) -> bool:
        return self.intent in ("in", "inout")

    @property
    def is_scratch(self) -> bool:
        """Working memory between launches: poisoned before each launch sequence, never compared."""
        return self.intent == "scratch"


@dataclass(frozen=True)
class Knob:
    """A ``#define``-style tunable: the name, its candidate values and the baseline's value."""

    name: str
    values: tuple[int | float | str, ...]
    default: int | float | str
    line: int | None = None


@dataclass(frozen=True)
class LaunchArg:
    """One argument of a launch: a task argument by name, a scalar expression, or a NULL pointer."""

    kind: str  # "arg" | "expr" | "null" | "optional" ("bias if HAS_BIAS else null")
    text: str
    expr: Expr | None = None  # an "expr"'s value, an "optional"'s condition
    dtype: str | None = None  # of an "expr": the parameter's type
    name: str | None = None  # the buffer of an "optional"


@dataclass(frozen=True)
class Launch:
    """One kernel launch: the kernel (``name`` or ``name<targs>``), grid and block as expressions (1–3 dims
    each), the dynamic shared memory in bytes, and its arguments (None: the task's arguments in order)."""

    grid: tuple[Expr, ...]
    block: tuple[Expr, ...]
    shared_mem: Expr = Expr("0")
    kernel: str = ""
    args: tuple[LaunchArg, ...] | None = None
    line: int | None = field(default=None, compare=False)

    @property
    def kernel_name(self) -> str:
        """The kernel's name without template arguments."""
        return self.kernel.split("<", 1)[0].strip()

    @property
    def template_args(self) -> str | None:
        """The text between ``<`` and ``>`` of a template kernel, else None."""
        return self.kernel.split("<", 1)[1].rsplit(">", 1)[0].strip() if "<" in self.kernel else None

    def grid_dims(self, env: Mapping[str, int | float | str]) -> tuple[int, int, int]:
        return _dim3(self.grid, env)

    def block_dims(self, env: Mapping[str, int | float | str]) -> tuple[int, int, int]:
        return _dim3(self.block, env)

    def shared_bytes(self, env: Mapping[str, int | float | str]) -> int:
        return self.shared_mem.eval_int(env)

    def arg_names(self, task_args: tuple[Argument, ...]) -> tuple[str, ...]:
        """The task arguments this launch passes (by name)."""
        if self.args is None:
            return tuple(a.name for a in task_args)
        return tuple(a.text if a.kind == "arg" else a.name for a in self.args if a.kind in ("arg", "optional"))


@dataclass(frozen=True)
class Correctness:
    """How a candidate is checked against the ground truth."""

    reference: str | None = None  # a reference kernel in the file, "comparator", or None = the original kernel
    tolerance: Tolerance | None = None  # None = per output dtype, DEFAULT_TOLERANCES
    sizes: tuple[Mapping[str, int], ...] = ()  # extra problem sizes (overrides of params)
    deterministic: bool = True
    allow_lower_precision: bool = False  # may SASS use FP16 arithmetic in an FP32 task?
    drawn_size: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # bounds of the per-seed extra size
    exclude_distributions: Mapping[str, str] = field(default_factory=dict)  # input distribution -> why not


@dataclass(frozen=True)
class Cost:
    """Algorithmic cost for the roofline: useful FLOPs and the minimum DRAM bytes moved."""

    flops: Expr
    bytes: Expr


@dataclass(frozen=True)
class Comparator:
    """A production implementation to compare against, as a Python expression over the arguments."""

    library: str  # "cupy" | "torch" | ...
    expr: str


@dataclass(frozen=True)
class Origin:
    """Where the kernel lives in the user's repository, for exporting a winner as a pull request."""

    path: str
    function: str


@dataclass(frozen=True)
class Task:
    """A validated task. Build one with :func:`kernelpro.task_loader.load_task`."""

    path: Path
    name: str
    kernel: str
    source: str
    signature: KernelSignature
    args: tuple[Argument, ...]
    params: Mapping[str, int]
    launch: Launch
    correctness: Correctness
    cost: Cost | None = None
    knobs: Mapping[str, Knob] = field(default_factory=dict)
    constraints: tuple[Expr, ...] = ()
    description: str = ""
    comparator: Comparator | None = None
    origin: Origin | None = None
    metadata_lines: tuple[int, int] = (0, 0)  # first and last line of the metadata comment
    launches: tuple[Launch, ...] = ()  # the launch sequence; empty = one launch of `launch` (v1)

    @property
    def plan(self) -> tuple[Launch, ...]:
        """The task's launch sequence, each launch naming its kernel."""
        if self.launches:
            return self.launches
        return (Launch(self.launch.grid, self.launch.block, self.launch.shared_mem, self.kernel, None,
                       self.launch.line),)

    @property
    def is_sequence(self) -> bool:
        """Several launches, or one that names its own arguments (a v2 task)."""
        return len(self.plan) > 1 or self.plan[0].args is not None

    @property
    def reference_is_comparator(self) -> bool:
        return self.correctness.reference == "comparator"

    # --- problem sizes and knobs -----------------------------------------------------------
    def default_knobs(self) -> dict[str, int | float | str]:
        return {name: knob.default for name, knob in self.knobs.items()}

    def parse_knob(self, name: str, text: str) -> int | float | str:
        """A knob value given as text (CLI ``--knob NAME=VALUE``), typed like the knob's own values."""
        knob = self.knobs[name]
        for value in knob.values:
            if str(value) == text:
                return value
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
        return text

    def parse_knobs(self, texts: Mapping[str, str] | None) -> dict[str, int | float | str]:
        """``--knob NAME=VALUE`` overrides typed like the task's knob values; an unknown name is an error."""
        from kernelpro.errors import KernelproError

        parsed = {}
        for name, text in (texts or {}).items():
            if name not in self.knobs:
                known = ", ".join(self.knobs) or "none"
                raise KernelproError(f"unknown knob {name!r} (task knobs: {known})", file=self.path,
                                     fix="use a knob declared in the task's [knobs]")
            parsed[name] = self.parse_knob(name, str(text))
        return parsed

    def env(
        self,
        sizes: Mapping[str, int] | None = None,
        knobs: Mapping[str, int | float | str] | None = None,
        device: Mapping[str, int] | None = None,
    ) -> dict[str, int | float | str]:
        """Variables for expressions: params (overridden by ``sizes``), device values (the visible GPU's when
        given, else the target's table) and knobs (default + overrides)."""
        env: dict[str, int | float | str] = dict(self.params)
        env.update(sizes or {})
        env.update(device or default_device_values())
        env.update(self.default_knobs())
        env.update(knobs or {})
        return env

    def problem_sizes(self) -> list[dict[str, int]]:
        """The benchmark size first, then each extra correctness size (full param dicts)."""
        return [dict(self.params)] + [{**self.params, **s} for s in self.correctness.sizes]

    def knob_space(self) -> Iterator[dict[str, int | float | str]]:
        """Every knob configuration that satisfies the constraints (default config included)."""
        names = list(self.knobs)
        for values in itertools.product(*(self.knobs[n].values for n in names)):
            config = dict(zip(names, values, strict=True))
            if self.satisfies_constraints(config):
                yield config

    def satisfies_constraints(self, knobs: Mapping[str, int | float | str]) -> bool:
        env = self.env(knobs=knobs)
        return all(bool(c.eval(env)) for c in self.constraints)

    def defines(self, knobs: Mapping[str, int | float | str] | None = None) -> tuple[tuple[str, str], ...]:
        """Knob values as ``-D`` pairs, sorted by name (a stable compile cache key)."""
        config = {**self.default_knobs(), **(knobs or {})}
        return tuple(sorted((k, str(v)) for k, v in config.items()))

    # --- launch geometry and buffers ---------------------------------------------------------
    def grid(self, env: Mapping[str, int | float | str]) -> tuple[int, int, int]:
        return _dim3(self.launch.grid, env)

    def block(self, env: Mapping[str, int | float | str]) -> tuple[int, int, int]:
        return _dim3(self.launch.block, env)

    def threads_per_block(self, env: Mapping[str, int | float | str]) -> int:
        return math.prod(self.block(env))

    def dynamic_shared_bytes(self, env: Mapping[str, int | float | str]) -> int:
        return self.launch.shared_mem.eval_int(env)

    def shape(self, arg: Argument, env: Mapping[str, int | float | str]) -> tuple[int, ...]:
        return tuple(dim.eval_int(env) for dim in arg.shape)

    def nbytes(self, arg: Argument, env: Mapping[str, int | float | str]) -> int:
        return math.prod(self.shape(arg, env)) * DTYPE_SIZES[arg.dtype]

    @property
    def buffers(self) -> tuple[Argument, ...]:
        return tuple(a for a in self.args if a.is_buffer)

    @property
    def outputs(self) -> tuple[Argument, ...]:
        return tuple(a for a in self.args if a.is_output)

    def arg(self, name: str) -> Argument:
        return next(a for a in self.args if a.name == name)

    def buffer_bytes(self, env: Mapping[str, int | float | str]) -> int:
        """Bytes of every buffer at one problem size."""
        return sum(self.nbytes(a, env) for a in self.buffers)

    def tolerance_for(self, arg: Argument) -> Tolerance:
        """The tolerance an output is checked with: per-argument, task-wide, or the dtype default."""
        if arg.tolerance is not None:
            return arg.tolerance
        if self.correctness.tolerance is not None:
            return self.correctness.tolerance
        return DEFAULT_TOLERANCES.get(arg.dtype, EXACT)

    # --- cost ---------------------------------------------------------------------------------
    def flops(self, env: Mapping[str, int | float | str] | None = None) -> float | None:
        return None if self.cost is None else float(self.cost.flops.eval(env or self.env()))

    def bytes_moved(self, env: Mapping[str, int | float | str] | None = None) -> float | None:
        return None if self.cost is None else float(self.cost.bytes.eval(env or self.env()))


def _dim3(exprs: tuple[Expr, ...], env: Mapping[str, int | float | str]) -> tuple[int, int, int]:
    dims = [e.eval_int(env) for e in exprs] + [1] * (3 - len(exprs))
    return dims[0], dims[1], dims[2]
