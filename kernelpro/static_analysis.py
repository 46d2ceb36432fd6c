"""Compile-time analysis of a task's kernel: resources, occupancy and SASS findings, no GPU needed.

:func:`analyze_static` compiles the task (knobs as ``-D``), reads ptxas resources per kernel,
computes the occupancy of the task's launch configuration, disassembles the cubin and applies the
static checks in :data:`CHECKS`. Each check is a small function ``(context) -> Finding | None``; the
profiled micro-profiling tools in ``kernelpro.tools`` build on the same inputs with counters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kernelpro.candidate_launch import candidate_plan
from kernelpro.compiler import Compiler, CompileRequest, CompileResult, Diagnostic
from kernelpro.errors import KernelproError
from kernelpro.instantiate import plan_symbols, with_instantiations
from kernelpro.occupancy import Occupancy, WhatIfRow, compute_occupancy, what_if
from kernelpro.ptxas import KernelResources
from kernelpro.sass import KernelSass, SassInstruction, sass_for_cubin
from kernelpro.task import FLOAT_DTYPES, Launch, Task
from kernelpro.toolchain import tool_version

# A half-precision task whose cost is at least this many FLOPs per DRAM byte is matmul-shaped:
# it has the reuse that tensor cores need (GEMM, attention), unlike elementwise or reductions.
MATMUL_INTENSITY = 16.0
LOW_OCCUPANCY = 0.5  # below half the SM's warps, latency hiding gets thin for memory-bound code
EVIDENCE_LINES = 3


@dataclass(frozen=True)
class Finding:
    """One static observation about the entry kernel, with the SASS or ptxas lines behind it."""

    code: str  # e.g. "sass.scalar-loads"
    severity: str  # "warning" (likely costs speed) | "info"
    message: str
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class KernelReport:
    """Resources and SASS summary of one kernel in the cubin."""

    name: str
    symbol: str
    resources: KernelResources
    sass: KernelSass | None


@dataclass(frozen=True)
class LaunchReport:
    """One launch of a sequence: its kernel, geometry, occupancy and the static findings on that kernel."""

    kernel: str  # as the launch names it (``name`` or ``name<targs>``)
    symbol: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    dynamic_shared_bytes: int
    occupancy: Occupancy | None
    occupancy_error: str | None
    what_if: tuple[WhatIfRow, ...]
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "symbol": self.symbol, "grid": self.grid, "block": self.block,
                "dynamic_shared_bytes": self.dynamic_shared_bytes,
                "occupancy": None if self.occupancy is None else asdict(self.occupancy),
                "occupancy_error": self.occupancy_error, "findings": [asdict(f) for f in self.findings]}


@dataclass(frozen=True)
class StaticReport:
    """Everything ``kernelpro analyze --static`` shows."""

    task: str
    task_path: str
    kernel: str
    arch: str
    knobs: Mapping[str, Any]
    flags: tuple[str, ...]
    nvcc_version: str
    compiled: bool
    cache_hit: bool
    compile_seconds: float
    diagnostics: tuple[Diagnostic, ...]
    grid: tuple[int, int, int] | None = None
    block: tuple[int, int, int] | None = None
    dynamic_shared_bytes: int = 0
    kernels: tuple[KernelReport, ...] = ()
    occupancy: Occupancy | None = None
    occupancy_error: str | None = None
    what_if: tuple[WhatIfRow, ...] = ()
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    # Every launch of the analyzed source's sequence (the candidate's own launch when it has one); the
    # fields above describe the first. Empty for a compile failure.
    launches: tuple[LaunchReport, ...] = ()

    @property
    def entry(self) -> KernelReport | None:
        symbol = self.launches[0].symbol if self.launches else None
        return next((k for k in self.kernels if k.symbol == symbol), None) or next(
            (k for k in self.kernels if k.name == self.kernel), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (SASS reduced to its histograms)."""
        return {
            "task": self.task,
            "task_path": self.task_path,
            "kernel": self.kernel,
            "arch": self.arch,
            "knobs": dict(self.knobs),
            "flags": list(self.flags),
            "nvcc_version": self.nvcc_version,
            "compiled": self.compiled,
            "cache_hit": self.cache_hit,
            "compile_seconds": round(self.compile_seconds, 3),
            "diagnostics": [asdict(d) for d in self.diagnostics],
            "launch": {"grid": self.grid, "block": self.block, "dynamic_shared_bytes": self.dynamic_shared_bytes},
            "kernels": [
                {
                    "name": k.name,
                    "symbol": k.symbol,
                    "resources": k.resources.to_dict(),
                    "sass": None if k.sass is None else {
                        "instructions": len(k.sass.instructions),
                        "loops": len(k.sass.loops),
                        "histogram": k.sass.histogram.nonzero(),
                        "histogram_in_loops": k.sass.histogram_in_loops.nonzero(),
                    },
                }
                for k in self.kernels
            ],
            "occupancy": None if self.occupancy is None else asdict(self.occupancy),
            "occupancy_error": self.occupancy_error,
            "what_if": [row.text for row in self.what_if],
            "findings": [asdict(f) for f in self.findings],
            "launches": [launch.to_json() for launch in self.launches],
        }


@dataclass(frozen=True)
class CheckContext:
    """What a static check reads: the task, the entry kernel's resources and SASS, its occupancy."""

    task: Task
    resources: KernelResources
    sass: KernelSass | None
    occupancy: Occupancy | None
    threads_per_block: int


def _lines(instructions: tuple[SassInstruction, ...] | list[SassInstruction]) -> tuple[str, ...]:
    return tuple(f"/*{ins.offset:04x}*/ {ins.text}" for ins in list(instructions)[:EVIDENCE_LINES])


def _task_float_dtypes(task: Task) -> set[str]:
    return {a.dtype for a in task.args if a.dtype in FLOAT_DTYPES}


def check_spills(ctx: CheckContext) -> Finding | None:
    res = ctx.resources
    if not res.spills:
        return None
    return Finding(
        "ptxas.spills", "warning",
        f"{res.registers} registers and {res.spill_store_bytes} bytes spill stores / {res.spill_load_bytes} bytes "
        "spill loads to local memory: spilled values round-trip through L1/L2 on every use",
        (f"ptxas: {res.stack_frame_bytes} bytes stack frame, {res.spill_store_bytes} bytes spill stores, "
         f"{res.spill_load_bytes} bytes spill loads",),
    )


def check_local_memory(ctx: CheckContext) -> Finding | None:
    if ctx.sass is None or ctx.resources.spills:
        return None
    local = [i for i in ctx.sass.instructions if i.op_class in ("local_load", "local_store")]
    if not local:
        return None
    in_loop = sum(1 for i in local if i.in_loop)
    return Finding(
        "sass.local-memory", "warning" if in_loop else "info",
        f"{len(local)} local-memory instructions ({in_loop} inside loops) with no spills: a per-thread array "
        f"indexed with a runtime value lives in local memory ({ctx.resources.stack_frame_bytes} bytes stack "
        "frame); index it with compile-time constants (unrolled loops) so it stays in registers",
        _lines(local),
    )


def check_scalar_loads(ctx: CheckContext) -> Finding | None:
    if ctx.sass is None:
        return None
    hist, loops = ctx.sass.histogram, ctx.sass.histogram_in_loops
    scalar, wide = hist["global_load_32"], hist["global_load_64"] + hist["global_load_128"]
    if scalar == 0 or wide > 0:
        return None
    scalar_loads = [i for i in ctx.sass.instructions if i.op_class == "global_load_32"]
    if loops["global_load_32"]:
        where = f"{loops['global_load_32']} of them inside loops"
        severity = "warning"
    else:
        where = "one element per thread"
        severity = "info"
    return Finding(
        "sass.scalar-loads", severity,
        f"all {scalar} global loads are scalar 32-bit ({where}) and none is 64/128-bit: for contiguous, "
        "16-byte-aligned data, float4 (128-bit) loads move 4x the bytes per instruction",
        _lines(scalar_loads),
    )


def check_narrow_accesses(ctx: CheckContext) -> Finding | None:
    """8- and 16-bit global loads/stores with no 64/128-bit access: each instruction moves 1-2 bytes where
    one 128-bit access moves 16 (a bf16 kernel loading one element per thread is the common case)."""
    if ctx.sass is None:
        return None
    hist, loops = ctx.sass.histogram, ctx.sass.histogram_in_loops
    narrow = hist["global_load_narrow"] + hist["global_store_narrow"]
    wide = sum(hist[f"global_{op}_{w}"] for op in ("load", "store") for w in ("64", "128"))
    if narrow == 0 or wide > 0:
        return None
    accesses = [i for i in ctx.sass.instructions if i.op_class in ("global_load_narrow", "global_store_narrow")]
    in_loops = loops["global_load_narrow"] + loops["global_store_narrow"]
    where = f"{in_loops} of them inside loops" if in_loops else "one element per thread"
    return Finding(
        "sass.narrow-accesses", "warning" if in_loops else "info",
        f"{narrow} global loads/stores are 8- or 16-bit ({where}) and none is 64/128-bit: each moves 1-2 bytes "
        "where a 128-bit access moves 16 (8 bf16/half or 16 bytes per instruction)",
        _lines(accesses),
    )


def check_fp64(ctx: CheckContext) -> Finding | None:
    if ctx.sass is None or "float64" in _task_float_dtypes(ctx.task):
        return None
    fp64 = [i for i in ctx.sass.instructions if i.op_class in ("fp64", "fp64_conversion")]
    if not fp64:
        return None
    conversions = sum(1 for i in fp64 if i.op_class == "fp64_conversion")
    return Finding(
        "sass.fp64-in-fp32", "warning",
        f"{len(fp64)} FP64 instructions ({conversions} F2F/I2F conversions) in a task with no float64 data: a "
        "double literal (0.5 instead of 0.5f) or a double-precision math call promotes the arithmetic; FP64 "
        "runs at a fraction of FP32 throughput",
        _lines(fp64),
    )


def check_lower_precision(ctx: CheckContext) -> Finding | None:
    if ctx.sass is None or ctx.task.correctness.allow_lower_precision:
        return None
    if _task_float_dtypes(ctx.task) & {"float16", "bfloat16"}:
        return None
    half = [i for i in ctx.sass.instructions if i.op_class == "fp16"]
    if not half:
        return None
    return Finding(
        "sass.lower-precision", "warning",
        f"{len(half)} FP16 arithmetic instructions in a task whose data is FP32 or wider: results lose precision "
        "unless the task allows it ([correctness] allow_lower_precision = true)",
        _lines(half),
    )


def check_tensor_cores(ctx: CheckContext) -> Finding | None:
    if ctx.sass is None or not _task_float_dtypes(ctx.task) & {"float16", "bfloat16"}:
        return None
    flops, moved = ctx.task.flops(), ctx.task.bytes_moved()
    if not flops or not moved or flops / moved < MATMUL_INTENSITY or ctx.sass.histogram["tensor"]:
        return None
    fp = ctx.sass.histogram["fp16"] + ctx.sass.histogram["fp32"]
    return Finding(
        "sass.no-tensor-cores", "warning",
        f"matmul-shaped half-precision task ({flops / moved:.0f} FLOP/byte) with no tensor-core instruction "
        f"(HMMA/HGMMA) and {fp} scalar FP instructions: use mma/wmma (or wgmma on sm_90a) for up to ~16x the "
        "math throughput",
    )


def check_unfused(ctx: CheckContext) -> Finding | None:
    if ctx.sass is None:
        return None
    loops = ctx.sass.histogram_in_loops
    pairs = min(loops["fadd"], loops["fmul"])
    if pairs < 2 or pairs <= loops["ffma"]:
        return None
    return Finding(
        "sass.unfused-fp32", "info",
        f"inside loops, {loops['fmul']} FMUL and {loops['fadd']} FADD against {loops['ffma']} FFMA: a multiply "
        "followed by an add that did not fuse (different operands order, -fmad=false, or volatile) costs two "
        "issue slots instead of one",
        _lines([i for i in ctx.sass.instructions if i.in_loop and i.opcode in ("FMUL", "FADD")]),
    )


def check_block_size(ctx: CheckContext) -> Finding | None:
    if ctx.threads_per_block % 32 == 0:
        return None
    idle = 32 - ctx.threads_per_block % 32
    return Finding(
        "launch.block-not-multiple-of-32", "warning",
        f"block of {ctx.threads_per_block} threads is not a multiple of the 32-thread warp: the last warp runs "
        f"with {idle} idle lanes in every block",
    )


def check_occupancy(ctx: CheckContext) -> Finding | None:
    occ = ctx.occupancy
    if occ is None or occ.occupancy >= LOW_OCCUPANCY:
        return None
    return Finding(
        "occupancy.low", "warning",
        f"theoretical occupancy {occ.occupancy:.0%} ({occ.active_warps_per_sm}/{occ.max_warps_per_sm} warps per "
        f"SM, {occ.blocks_per_sm} blocks) limited by {occ.limiter}: registers {occ.registers_per_thread_allocated}"
        f"/thread allow {occ.limit_registers} blocks, shared memory {occ.shared_mem_per_block_allocated} B/block "
        f"allows {occ.limit_shared_mem_max_carveout}, warps allow {occ.limit_warps}",
    )


CHECKS: tuple[Callable[[CheckContext], Finding | None], ...] = (
    check_spills,
    check_local_memory,
    check_scalar_loads,
    check_narrow_accesses,
    check_fp64,
    check_lower_precision,
    check_tensor_cores,
    check_unfused,
    check_block_size,
    check_occupancy,
)


def analyze_static(
    task: Task,
    *,
    source: str | None = None,
    arch: str = "sm_90",
    knobs: Mapping[str, Any] | None = None,
    flags: tuple[str, ...] = (),
    compiler: Compiler | None = None,
    source_name: str | None = None,
) -> StaticReport:
    """Compile ``source`` (default: the task's own) for ``arch`` and analyze every kernel it launches.

    The launches are the source's own ``/* kernelpro launch */`` block when it has one, else the
    task's sequence; each gets its occupancy at its geometry and the static checks on its kernel. A
    compile failure is not an exception: the report has ``compiled=False`` and the diagnostics.
    """
    compiler = compiler or Compiler()
    config = {**task.default_knobs(), **dict(knobs or {})}
    text = task.source if source is None else source
    plan = candidate_plan(task, text, source_name or str(task.path), config)
    request = CompileRequest(
        source=with_instantiations(text, plan),
        arch=arch,
        defines=task.defines(config),
        flags=tuple(flags),
        source_name=source_name or str(task.path),
    )
    nvcc_path, nvcc_version = compiler.resolve_nvcc()
    result = compiler.compile(request)
    base = dict(
        task=task.name, task_path=str(task.path), kernel=plan[0].kernel_name, arch=arch, knobs=config,
        flags=tuple(flags), nvcc_version=nvcc_version or tool_version(str(nvcc_path)), compiled=result.ok,
        cache_hit=result.cache_hit, compile_seconds=result.seconds, diagnostics=result.diagnostics,
    )
    if not result.ok:
        return StaticReport(**base)
    return _analyze_compiled(task, config, result, base, plan)


def _analyze_compiled(task: Task, config: Mapping[str, Any], result: CompileResult, base: dict,
                      plan: tuple[Launch, ...]) -> StaticReport:
    env = task.env(knobs=config)
    sass = sass_for_cubin(result.cubin) if result.cubin else {}
    sass_by_name = {k.base_name: k for k in sass.values()} | sass
    symbols, missing = plan_symbols(result, plan, dict(task.defines(config)))
    if missing is not None:
        found = ", ".join(r.name for r in result.resources.values())
        raise KernelproError(f"the compiled cubin has no kernel {missing!r} (found: {found})", file=task.path,
                             fix="launch only kernels the source defines (templates as name<args>)")
    entry_symbol = symbols[plan[0].kernel]
    kernels = tuple(
        KernelReport(res.name, symbol, res, sass_by_name.get(symbol) or sass_by_name.get(res.name))
        for symbol, res in sorted(result.resources.items(), key=lambda kv: kv[0] != entry_symbol)
    )
    by_symbol = {k.symbol: k for k in kernels}
    launches = tuple(_launch_report(task, launch, by_symbol[symbols[launch.kernel]], env, base["arch"])
                     for launch in plan)
    first = launches[0]
    return StaticReport(
        **base, grid=first.grid, block=first.block, dynamic_shared_bytes=first.dynamic_shared_bytes,
        kernels=kernels, occupancy=first.occupancy, occupancy_error=first.occupancy_error, what_if=first.what_if,
        findings=first.findings, launches=launches,
    )


def _launch_report(task: Task, launch: Launch, kernel: KernelReport, env: Mapping[str, Any],
                   arch: str) -> LaunchReport:
    grid, block = launch.grid_dims(env), launch.block_dims(env)
    dynamic = launch.shared_bytes(env)
    threads = block[0] * block[1] * block[2]
    occupancy, occupancy_error, rows = None, None, ()
    res = kernel.resources
    barriers = res.barriers if res.barriers is not None else 1
    try:
        occupancy = compute_occupancy(arch, threads, res.registers, res.shared_static_bytes, dynamic, barriers)
        rows = tuple(what_if(arch, threads, res.registers, res.shared_static_bytes, dynamic, barriers))
    except KernelproError as exc:  # a launch that cannot run is itself the finding
        occupancy_error = str(exc)
    ctx = CheckContext(task, res, kernel.sass, occupancy, threads)
    findings = [f for check in CHECKS if (f := check(ctx)) is not None]
    if occupancy_error:
        findings.insert(0, Finding("launch.cannot-run", "warning", occupancy_error))
    findings.sort(key=lambda f: f.severity != "warning")
    return LaunchReport(launch.kernel, kernel.symbol, grid, block, dynamic, occupancy, occupancy_error, rows,
                        tuple(findings))
