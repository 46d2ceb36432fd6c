"""Write a finished search to its run directory: ``best.cu``, ``tree.json``, ``report.md``, ``convergence.png``.

``journal.jsonl`` is already there (the search appends to it as it goes). ``best.cu`` is the winning
variant as a task file of its own: the winner's knob values are written into the source's ``#define``
defaults and the metadata's knob defaults, so the file reproduces the winner as it stands, and nvcc
flags the winner needs are noted in a comment. The report reads the timing figures the evaluator left
in each evaluation's ``summary`` (keys in :data:`SUMMARY_KEYS`) and shows what is there.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kernelpro.candidate_launch import candidate_plan, describe_plan
from kernelpro.errors import KernelproError
from kernelpro.search.interfaces import Node
from kernelpro.search.mcts import SearchResult
from kernelpro.task import Task
from kernelpro.toml_lines import TomlLines

# Figures an evaluator may put in Evaluation.summary, shown in the report when present.
SUMMARY_KEYS = ("median_us", "p20_us", "p80_us", "std_us", "n", "method", "roofline_pct", "gbps", "gflops")
STAGES = ("compile", "wall", "timing", "profile", "propose", "diagnose")


@dataclass(frozen=True)
class RunFiles:
    """Paths of the files :func:`write_run` wrote."""

    best: Path
    tree: Path
    report: Path
    convergence: Path


def bake_knobs(task: Task, source: str, knobs: Mapping[str, str]) -> str:
    """``source`` with each knob's default (``#define`` in the code, ``default`` in the metadata) set to
    the value in ``knobs``, so the file compiles to that configuration with no ``-D`` flags."""
    lines = source.splitlines(keepends=True)
    block = re.search(r"/\*[ \t]*kernelpro\b[^\n]*\n(.*?)\*/", source, re.DOTALL)
    toml = TomlLines(block.group(1), source.count("\n", 0, block.start(1)) + 1) if block else None
    for name, value in knobs.items():
        knob = task.knobs.get(name)
        if knob is None or str(knob.default) == str(value):
            continue
        typed = task.parse_knob(name, str(value))
        toml_value = json.dumps(typed) if isinstance(typed, str) else str(typed)
        define = re.compile(rf"^([ \t]*#[ \t]*define[ \t]+{re.escape(name)}[ \t]+)\S+", re.MULTILINE)
        for i, line in enumerate(lines):
            lines[i] = define.sub(lambda m, v=str(value): m.group(1) + v, line)
        line_no = toml.line("knobs", name, "default") if toml else None
        if line_no is not None:
            i = line_no - 1
            default = re.compile(r"(default\s*=\s*)(\"[^\"]*\"|[^\s,}]+)")
            lines[i] = default.sub(lambda m, v=toml_value: m.group(1) + v, lines[i])
    return "".join(lines)


def best_file_text(task: Task, node: Node) -> str:
    """The winner as a standalone task file (see :func:`bake_knobs`), with its nvcc flags noted."""
    text = bake_knobs(task, node.variant.source, node.variant.knob_values)
    if node.variant.flags:
        note = f"// kernelpro: compile with these nvcc flags: {' '.join(node.variant.flags)}\n"
        block_end = text.find("*/")
        insert_at = text.find("\n", block_end) + 1 if block_end >= 0 else 0
        text = text[:insert_at] + note + text[insert_at:]
    return text


def winning_path(result: SearchResult) -> list[Node]:
    """The nodes from the baseline to the best node, in order."""
    tree = result.tree
    return [tree.node(i) for i in reversed(list(tree.path_to_root(result.best.id)))]


def convergence(result: SearchResult) -> list[tuple[int, float]]:
    """(evaluation number, best speedup so far) in evaluation order; failures keep the previous best."""
    baseline = result.baseline.time_us
    points, best = [], 1.0
    for number, node in enumerate(sorted(result.tree, key=lambda n: n.id), start=1):
        if node.ok and baseline:
            best = max(best, baseline / node.time_us)
        points.append((number, best))
    return points


def _fmt_us(value: object) -> str:
    return f"{value:,.2f}" if isinstance(value, int | float) else "-"


def _timing_rows(node: Node) -> dict[str, str]:
    summary = node.evaluation.summary
    median = summary.get("median_us", node.time_us)
    return {
        "median µs": _fmt_us(median),
        "p20–p80 µs": f"{_fmt_us(summary['p20_us'])}–{_fmt_us(summary['p80_us'])}"
        if "p20_us" in summary and "p80_us" in summary else "-",
        "n": str(summary.get("n", "-")),
        "% of roofline": f"{summary['roofline_pct']:.1f}%" if isinstance(summary.get("roofline_pct"), int | float)
        else "-",
    }


def render_report(task: Task, result: SearchResult, *, header: Mapping[str, str] | None = None) -> str:
    """``report.md``: baseline vs best, the path that led to the winner, the diff, and search statistics."""
    base, best = result.baseline, result.best
    out = [f"# kernelpro run: {task.name}", ""]
    for key, value in (header or {}).items():
        out.append(f"- {key}: {value}")
    speedup = result.speedup
    out += [
        f"- stop reason: {result.stop_reason.value}",
        f"- evaluations: {result.evaluations} ({result.evaluations_per_minute:.1f}/min), "
        f"iterations: {result.iterations}, wall time: {result.elapsed_s / 60:.1f} min",
        f"- speedup over baseline: **{speedup:.3f}x**" if speedup else "- speedup: n/a (the baseline failed)",
        "",
        "## Baseline vs best",
        "",
    ]
    rows_base, rows_best = _timing_rows(base), _timing_rows(best)
    out += ["| | baseline | best |", "|---|---|---|"]
    out += [f"| {k} | {rows_base[k]} | {rows_best[k]} |" for k in rows_base]
    out += [f"| knobs | {_knobs(base)} | {_knobs(best)} |",
            f"| flags | {' '.join(base.variant.flags) or '-'} | {' '.join(best.variant.flags) or '-'} |", ""]
    out += _launch_section(task, base, best)
    out += ["## How the winner was reached", ""]
    path = winning_path(result)
    if len(path) == 1:
        out.append("Nothing beat the baseline.")
    for parent, child in zip(path, path[1:], strict=False):
        why = parent.diagnosis.text.splitlines()[0] if parent.diagnosis and parent.diagnosis.text else ""
        gain = parent.time_us / child.time_us if parent.time_us and child.time_us else None
        out.append(f"1. node {child.id} ({child.variant.origin or 'proposer'}): {child.variant.change or '-'} "
                   f"→ {_fmt_us(child.time_us)} µs" + (f" ({gain:.2f}x over its parent)" if gain else ""))
        if why:
            out.append(f"   - diagnosis of node {parent.id}: {why}")
    out += ["", "## Search statistics", "", "| stage | seconds |", "|---|---|"]
    for stage in STAGES:
        if stage in result.stage_seconds:
            out.append(f"| {stage} | {result.stage_seconds[stage]:.1f} |")
    out += _utilisation(result)
    usage = result.usage
    out += ["", f"LLM usage: {usage.tokens_in:,} tokens in, {usage.tokens_out:,} out, ${usage.cost_usd:.2f}", ""]
    failures = [n for n in result.tree if not n.ok]
    out.append(f"{len(failures)} of {len(result.tree)} candidates failed "
               f"({_count_stages(failures)}).")
    diff = difflib.unified_diff(task.source.splitlines(keepends=True), best_file_text(task, best).splitlines(
        keepends=True), fromfile=f"{task.path.name} (original)", tofile="best.cu")
    out += ["", "## Diff: best vs original", "", "```diff", "".join(diff).rstrip() or "(identical)", "```", ""]
    return "\n".join(out)


def _utilisation(result: SearchResult) -> list[str]:
    """Per GPU (slot): busy time over wall time, and evaluations per minute (this session of the search)."""
    if not result.gpu_busy_s:
        return []
    out = ["", f"GPU utilisation ({result.evaluations_per_minute:.1f} evaluations/min):", "",
           "| slot | busy s | busy / wall |", "|---|---|---|"]
    for slot, fraction in result.gpu_utilisation.items():
        out.append(f"| {slot} | {result.gpu_busy_s[slot]:.1f} | {100 * fraction:.0f}% |")
    return out


def _launch_section(task: Task, base: Node, best: Node) -> list[str]:
    """The launch sequences of the baseline and the winner (when either is more than the task's one launch),
    and the winner's per-kernel diagnosis when it was profiled as a sequence."""
    try:
        plans = [candidate_plan(task, node.variant.source) for node in (base, best)]
    except KernelproError:
        return []
    if not task.is_sequence and plans[0] == plans[1] == task.plan:
        return []
    out = ["## Launches", ""]
    for label, plan in zip(("baseline", "best"), plans, strict=True):
        out += [f"{label}:", "", "```", describe_plan(plan), "```", ""]
    if plans[1] != task.plan:
        out += ["The winner has its own launch (a `/* kernelpro launch */` block in best.cu): the host code that "
                "launches the kernel must change accordingly (`kernelpro export` writes it into PR.md).", ""]
    details = best.diagnosis.details if best.diagnosis else {}
    if isinstance(details, Mapping) and details.get("kernels"):
        out += ["| launch | kernel | share of profiled time | bound | first prescription |", "|---|---|---|---|---|"]
        for k in details["kernels"]:
            share = f"{k['share']:.0%}" if isinstance(k.get("share"), int | float) else "-"
            first = k["prescriptions"][0]["change"] if k.get("prescriptions") else "-"
            out.append(f"| {k['launch']} | {k['kernel']} | {share} | {k.get('bound') or '-'} | {first} |")
        out.append("")
    return out


def _knobs(node: Node) -> str:
    return ", ".join(f"{k}={v}" for k, v in node.variant.knobs) or "-"


def _count_stages(failures: list[Node]) -> str:
    counts: dict[str, int] = {}
    for node in failures:
        stage = node.evaluation.failed_stage or "?"
        counts[stage] = counts.get(stage, 0) + 1
    return ", ".join(f"{stage}: {n}" for stage, n in sorted(counts.items())) or "none"


def plot_convergence(result: SearchResult, path: Path, title: str) -> None:
    """``convergence.png``: best speedup so far against the number of evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = convergence(result)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.step([p[0] for p in points], [p[1] for p in points], where="post", color="tab:green")
    ax.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best speedup over baseline (x)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_run(run_dir: Path, task: Task, result: SearchResult, *, header: Mapping[str, str] | None = None) -> RunFiles:
    """Write every result file of a finished (or stopped) search into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    files = RunFiles(run_dir / "best.cu", run_dir / "tree.json", run_dir / "report.md", run_dir / "convergence.png")
    files.best.write_text(best_file_text(task, result.best))
    files.tree.write_text(json.dumps(result.tree.to_node_link(), indent=1))
    files.report.write_text(render_report(task, result, header=header))
    plot_convergence(result, files.convergence, f"{task.name}: best speedup vs evaluations")
    return files
