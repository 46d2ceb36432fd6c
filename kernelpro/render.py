"""Terminal rendering (rich) for the CLI. Only presentation lives here; the data comes from
:mod:`kernelpro.static_analysis` and :mod:`kernelpro.task`."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kernelpro.static_analysis import StaticReport
from kernelpro.task import Task
from kernelpro.task_checks import format_bytes

# SASS classes shown in the summary table, in order, with their labels.
SASS_ROWS: tuple[tuple[str, str], ...] = (
    ("global_load_32", "global loads 32-bit"),
    ("global_load_64", "global loads 64-bit"),
    ("global_load_128", "global loads 128-bit"),
    ("global_load_narrow", "global loads 8/16-bit"),
    ("global_store_32", "global stores 32-bit"),
    ("global_store_64", "global stores 64-bit"),
    ("global_store_128", "global stores 128-bit"),
    ("global_store_narrow", "global stores 8/16-bit"),
    ("local_load", "local loads (LDL)"),
    ("local_store", "local stores (STL)"),
    ("shared_load", "shared loads"),
    ("shared_store", "shared stores"),
    ("async_copy", "async copies"),
    ("fp32", "FP32 arithmetic"),
    ("ffma", "  of which FFMA"),
    ("fp64", "FP64 arithmetic"),
    ("fp64_conversion", "FP64 conversions"),
    ("fp16", "FP16 arithmetic"),
    ("tensor", "tensor core (MMA)"),
    ("shuffle", "shuffles"),
    ("barrier", "barriers"),
    ("atomic", "atomics / reductions"),
    ("branch", "branches"),
)


def _kib(n: int) -> str:
    return f"{n:,} B" if n < 4096 else f"{n / 1024:.1f} KiB"


def render_task_table(console: Console, tasks: Sequence[Task]) -> None:
    table = Table(title="Tasks", show_lines=False)
    for column in ("task", "kernel", "problem size", "arguments", "knobs (configs)", "reference", "cost"):
        table.add_column(column)
    for task in tasks:
        args = ", ".join(f"{a.name}: {a.dtype} {a.intent}" if a.is_buffer else f"{a.name}: {a.dtype} = {a.value.text}"
                         for a in task.args)
        knobs = ", ".join(f"{k.name}={k.default}" for k in task.knobs.values()) or "-"
        knobs += f" ({sum(1 for _ in task.knob_space())})" if task.knobs else ""
        cost = "-"
        if task.cost is not None:
            cost = f"{task.flops() / 1e9:.3g} GFLOP, {task.bytes_moved() / 1e6:.4g} MB"
        sizes = ", ".join(f"{k}={v}" for k, v in task.params.items())
        sizes += f" ({format_bytes(task.buffer_bytes(task.env()))} of buffers)"
        kernels = " -> ".join(launch.kernel for launch in task.plan)
        table.add_row(task.name, kernels, sizes, args, knobs,
                      task.correctness.reference or "original kernel", cost)
    console.print(table)


def render_tools_table(console: Console, tools: Sequence[dict]) -> None:
    table = Table(title=f"{len(tools)} micro-profiling tools")
    for column in ("tool", "what it finds", "fires when", "runs for", "metrics"):
        table.add_column(column, overflow="fold")
    for tool in tools:
        metrics = "\n".join(tool["metrics"]) or "(ptxas / SASS only)"
        table.add_row(tool["name"], tool["title"], tool["fires_when"], ", ".join(tool["applies_to"]), metrics)
    console.print(table)


def render_static_report(console: Console, report: StaticReport) -> None:
    knobs = ", ".join(f"{k}={v}" for k, v in report.knobs.items()) or "none"
    cache = "cache hit" if report.cache_hit else f"compiled in {report.compile_seconds:.1f} s"
    console.print(f"[bold]{report.task}[/bold] ({report.task_path}) kernel [bold]{report.kernel}[/bold] "
                  f"for {report.arch}, knobs {knobs}, nvcc {report.nvcc_version}, {cache}", highlight=False)
    if report.flags:
        console.print(f"flags: {' '.join(report.flags)}", highlight=False)
    if not report.compiled:
        console.print("[red bold]compile failed[/red bold]")
        for diag in report.diagnostics:
            console.print(f"  {escape(str(diag))}", highlight=False)
            if diag.source_line:
                console.print(f"    {escape(diag.source_line.strip())}", highlight=False)
        return
    for diag in report.diagnostics:
        console.print(f"[yellow]{escape(str(diag))}[/yellow]", highlight=False)
    _render_resources(console, report)
    _render_occupancy(console, report)
    _render_sass(console, report)
    _render_findings(console, report)
    _render_other_launches(console, report)


def _render_resources(console: Console, report: StaticReport) -> None:
    table = Table(title="Resources (ptxas -v)")
    for column in ("kernel", "registers", "static smem", "stack frame", "spill st/ld", "barriers", "cmem"):
        if column == "kernel":
            table.add_column(column, no_wrap=True, min_width=12)
        else:
            table.add_column(column, justify="right")
    for k in report.kernels:
        r = k.resources
        label = k.name + (" (entry)" if k.name == report.kernel else "")
        cmem = ", ".join(f"[{bank}] {size} B" for bank, size in sorted(r.constant_bytes.items())) or "-"
        table.add_row(label, str(r.registers), _kib(r.shared_static_bytes), f"{r.stack_frame_bytes} B",
                      f"{r.spill_store_bytes}/{r.spill_load_bytes} B", "-" if r.barriers is None else str(r.barriers),
                      cmem)
    console.print(table)


def _render_occupancy(console: Console, report: StaticReport) -> None:
    dims = "x".join(str(d) for d in report.grid) if report.grid else "?"
    block = "x".join(str(d) for d in report.block) if report.block else "?"
    console.print(f"launch: grid {dims}, block {block}, dynamic smem {_kib(report.dynamic_shared_bytes)}",
                  highlight=False)
    if report.occupancy_error:
        console.print(f"[red]cannot launch:[/red] {escape(str(report.occupancy_error))}", highlight=False)
        return
    occ = report.occupancy
    if occ is None:
        return
    table = Table(title=f"Occupancy on {occ.arch}")
    table.add_column("limit")
    table.add_column("blocks/SM", justify="right")
    rows = (
        ("warps", occ.limit_warps),
        ("registers", occ.limit_registers),
        ("shared memory (driver carveout)", occ.limit_shared_mem),
        ("shared memory (max carveout)", occ.limit_shared_mem_max_carveout),
        ("blocks per SM", occ.limit_blocks),
        ("barriers", occ.limit_barriers),
    )
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    console.print(f"occupancy [bold]{occ.occupancy:.1%}[/bold]: {occ.blocks_per_sm} blocks x "
                  f"{occ.warps_per_block} warps = {occ.active_warps_per_sm}/{occ.max_warps_per_sm} warps per SM, "
                  f"limited by [bold]{occ.limiter}[/bold]", highlight=False)
    # Only the changes that raise occupancy, plus any register headroom (how many more it may use).
    shown = [row for row in report.what_if
             if row.occupancy.occupancy > occ.occupancy or (row.change == "registers" and row.after > row.before)]
    if shown:
        console.print("what if:", highlight=False)
        for row in shown[:8]:
            console.print(f"  {row.text}", highlight=False)


def _render_sass(console: Console, report: StaticReport) -> None:
    entry = report.entry
    if entry is None or entry.sass is None:
        return
    sass = entry.sass
    table = Table(title=f"SASS of {entry.name}: {len(sass.instructions)} instructions, {len(sass.loops)} loops")
    table.add_column("class")
    table.add_column("count", justify="right")
    table.add_column("in loops", justify="right")
    for key, label in SASS_ROWS:
        total = sass.histogram[key]
        if total:
            table.add_row(label, str(total), str(sass.histogram_in_loops[key]))
    console.print(table)


def _render_findings(console: Console, report: StaticReport) -> None:
    if not report.findings:
        console.print("[green]static findings: none[/green]")
        return
    console.print("[bold]static findings[/bold]")
    for finding in report.findings:
        color = "yellow" if finding.severity == "warning" else "cyan"
        console.print(f"[{color}]{finding.severity}[/{color}] {finding.code}: {escape(finding.message)}",
                      highlight=False)
        for line in finding.evidence:
            console.print(f"    {line}", highlight=False, markup=False)


def _render_other_launches(console: Console, report: StaticReport) -> None:
    """The launches after the first of a sequence: geometry, occupancy and findings of each."""
    if len(report.launches) < 2:
        return
    console.rule(f"launch sequence: {len(report.launches)} launches (above: launch 1, {report.launches[0].kernel})")
    for index, launch in enumerate(report.launches[1:], 2):
        occ = launch.occupancy
        where = (f"occupancy {occ.occupancy:.1%} ({occ.blocks_per_sm} blocks/SM, limited by {occ.limiter})" if occ
                 else f"cannot launch: {launch.occupancy_error}")
        console.print(f"[bold]launch {index}: {escape(launch.kernel)}[/bold] grid {'x'.join(map(str, launch.grid))}, "
                      f"block {'x'.join(map(str, launch.block))}, dynamic smem {_kib(launch.dynamic_shared_bytes)}; "
                      f"{escape(where)}", highlight=False)
        for finding in launch.findings:
            console.print(f"  {finding.severity} {finding.code}: {finding.message}", highlight=False, markup=False)
