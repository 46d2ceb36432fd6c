"""``kernelpro regress``: re-measure recorded baselines and winners on this GPU and flag regressions.

Each run folder (``run.json`` + ``journal.jsonl`` + ``best.cu``) gives two cases: its baseline and its winner.
Each is put through the correctness wall and timed again by an injected ``measure`` callable (the CLI passes
:class:`RunnerMeasure`, the GPU runner), and the new figures are compared with the journaled ones.

**The regression rule** (:func:`is_regression`), with tolerance ``tol`` (default 5 %): a case regressed when
both

* its new median is above ``stored median × (1 + tol)``, and
* its new p20 is above the stored p80: the new [p20, p80] range lies wholly above the old one, so the
  slowdown is outside the noise of either measurement.

The stored figures hold no samples, so :func:`kernelpro.runner.stats.compare_samples`' U test cannot be
used; the non-overlapping spreads stand in for it, as they do there for few samples.

**Outcomes and exit code.** ``pass``; ``regression`` or ``failure`` (the wall rejected the code now), both
exit 1; ``environment`` (run files missing or unreadable, no recorded GPU, or a different GPU model than the
one recorded: not compared, since that would compare apples to oranges), exit 2 when nothing exited 1.
No GPU at all is an environment problem too (the CLI exits 2).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kernelpro.errors import KernelproError
from kernelpro.optimize import RUN_FILE
from kernelpro.search.variant import Variant
from kernelpro.task import Task

DEFAULT_TOLERANCE = 0.05
CASES = ("baseline", "best")


@dataclass(frozen=True)
class Measurement:
    """A timing (µs) on one GPU, or a correctness failure (``ok`` False, ``failure`` says why)."""

    gpu: str
    ok: bool = True
    median_us: float = 0.0
    p20_us: float = 0.0
    p80_us: float = 0.0
    n: int = 0
    failure: str = ""


class Measure(Protocol):
    def __call__(self, task: Task, variant: Variant, *, warm: bool = False) -> Measurement:
        """Check ``variant`` behind the wall and time it (``warm``: as the run was timed, L2 not flushed)."""
        ...


@dataclass(frozen=True)
class Case:
    """One run × {baseline, best}: the stored figures, the new ones and the outcome."""

    run: str
    which: str  # "baseline" | "best"
    outcome: str  # "pass" | "regression" | "failure" | "environment"
    message: str
    stored: Measurement | None = None
    new: Measurement | None = None

    @property
    def name(self) -> str:
        return f"{self.run} [{self.which}]"


@dataclass(frozen=True)
class RegressReport:
    """Every case, the tolerance, and the exit code they add up to."""

    cases: tuple[Case, ...]
    tolerance: float

    @property
    def exit_code(self) -> int:
        outcomes = {c.outcome for c in self.cases}
        if outcomes & {"regression", "failure"}:
            return 1
        return 2 if "environment" in outcomes or not self.cases else 0

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.cases)


def parse_tolerance(text: str) -> float:
    """``5%``, ``5`` (percent) or ``0.05`` → 0.05."""
    raw = text.strip().removesuffix("%")
    try:
        value = float(raw)
    except ValueError:
        raise KernelproError(f"tolerance {text!r} is not a number", fix="write e.g. --tolerance 5%") from None
    value = value / 100 if text.strip().endswith("%") or value >= 1 else value
    if not 0 <= value < 10 or math.isnan(value):
        raise KernelproError(f"tolerance {text!r} is out of range", fix="write e.g. --tolerance 5%")
    return value


def is_regression(stored: Measurement, new: Measurement, tolerance: float) -> bool:
    """The rule in the module docstring: slower by more than the tolerance, and outside both spreads."""
    return new.median_us > stored.median_us * (1 + tolerance) and new.p20_us > stored.p80_us


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders (holding ``run.json``) at or below each path, sorted and without repeats."""
    paths = [Path(p) for p in paths]
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise KernelproError("no such folder", file=path, fix="give run folders or the results/ folder")
        if (path / RUN_FILE).is_file():
            found.add(path)
        found.update(p.parent for p in path.rglob(RUN_FILE))
    if not found:
        raise KernelproError(f"no run folders (holding {RUN_FILE}) under {', '.join(map(str, paths))}",
                             fix="give run folders, or the results/ folder that holds them")
    return sorted(found)


def stored_figures(summary: dict[str, Any], time_us: float | None) -> Measurement:
    """The journaled evaluation's figures (p20/p80 fall back to the median when absent)."""
    median = float(summary.get("median_us", time_us or 0.0))
    return Measurement(str(summary.get("gpu", "")), True, median, float(summary.get("p20_us", median)),
                       float(summary.get("p80_us", median)), int(summary.get("n", 0)))


def _fmt(m: Measurement | None) -> str:
    if m is None or not m.ok:
        return "-"
    return f"{m.median_us:,.2f} µs ({m.p20_us:,.2f}–{m.p80_us:,.2f})"


def compare(run: str, which: str, stored: Measurement, new: Measurement, tolerance: float) -> Case:
    """The case's outcome from its stored and new figures."""
    if not stored.gpu:
        return Case(run, which, "environment", "the run recorded no GPU model: not compared", stored, new)
    if new.gpu != stored.gpu and (new.ok or new.gpu):  # a compile failure never reached a GPU
        return Case(run, which, "environment", f"recorded on {stored.gpu}, this GPU is {new.gpu}: not compared "
                    "(re-record the run on this GPU, or run regress on a matching runner)", stored, new)
    if not new.ok:
        return Case(run, which, "failure", f"fails the correctness wall now: {new.failure}", stored, new)
    change = new.median_us / stored.median_us - 1 if stored.median_us else math.inf
    what = f"{_fmt(stored)} → {_fmt(new)} ({change:+.1%})"
    if is_regression(stored, new, tolerance):
        return Case(run, which, "regression", f"slower: {what}; beyond the {tolerance:.0%} tolerance and above "
                    "the recorded p20–p80 range", stored, new)
    return Case(run, which, "pass", f"holds: {what}", stored, new)


def regress(run_dirs: Sequence[Path], measure: Measure, tolerance: float = DEFAULT_TOLERANCE,
            name: Callable[[Path], str] = str) -> RegressReport:
    """Re-check and re-time each run's baseline and winner with ``measure`` and compare (module docstring)."""
    from kernelpro.export import load_run

    cases: list[Case] = []
    for run_dir in run_dirs:
        label = name(run_dir)
        try:
            run = load_run(run_dir)
        except KernelproError as exc:
            cases += [Case(label, which, "environment", f"cannot read the run: {exc}") for which in CASES]
            continue
        for which, record in (("baseline", run.baseline), ("best", run.best)):
            if not record.evaluation.ok:
                cases.append(Case(label, which, "environment", "the journal holds no passing measurement of it"))
                continue
            stored = stored_figures(dict(record.evaluation.summary), record.evaluation.time_us)
            new = measure(run.task, record.variant, warm=run.settings.warm)
            cases.append(compare(label, which, stored, new, tolerance))
    return RegressReport(tuple(cases), tolerance)


# --- outputs ---------------------------------------------------------------------------------------

def junit_xml(report: RegressReport) -> str:
    """JUnit XML: one testsuite, one testcase per run × {baseline, best}; regressions and correctness
    failures are ``<failure>``, environment problems ``<error>``."""
    suite = ET.Element("testsuite", name="kernelpro regress", tests=str(len(report.cases)),
                       failures=str(report.count("regression") + report.count("failure")),
                       errors=str(report.count("environment")), skipped="0")
    for case in report.cases:
        element = ET.SubElement(suite, "testcase", classname=case.run, name=case.which)
        if case.outcome in ("regression", "failure"):
            ET.SubElement(element, "failure", message=case.message, type=case.outcome).text = case.message
        elif case.outcome == "environment":
            ET.SubElement(element, "error", message=case.message, type="environment").text = case.message
        else:
            ET.SubElement(element, "system-out").text = case.message
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_outputs(report: RegressReport, *, junit: Path | None = None, summary: Path | None = None) -> None:
    """Write the JUnit XML and the Markdown summary; the summary goes to ``$GITHUB_STEP_SUMMARY`` (appended,
    as GitHub expects) when no ``summary`` path is given and that variable is set."""
    if junit is not None:
        Path(junit).write_text(junit_xml(report), encoding="utf-8")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    target = Path(summary) if summary is not None else Path(step_summary) if step_summary else None
    if target is None:
        return
    mode = "a" if step_summary and target == Path(step_summary) else "w"
    with target.open(mode, encoding="utf-8") as handle:
        handle.write(markdown_summary(report))


_MARK = {"pass": "✅ pass", "regression": "❌ regression", "failure": "❌ wrong results",
         "environment": "⚠️ not compared"}


def markdown_summary(report: RegressReport) -> str:
    """A Markdown job summary: the verdict line, then a table of every case."""
    verdict = {0: "all recorded results hold", 1: "regression or correctness failure",
               2: "environment problem: some results were not compared"}[report.exit_code]
    counts = ", ".join(f"{report.count(o)} {o}" for o in ("pass", "regression", "failure", "environment")
                       if report.count(o))
    out = ["## kernelpro regress", "", f"**{verdict}** ({counts or 'no runs'}; tolerance {report.tolerance:.0%})",
           "", "| run | case | recorded | now | result | detail |", "|---|---|---|---|---|---|"]
    for c in report.cases:
        detail = c.message.replace("|", "\\|")
        out.append(f"| {c.run} | {c.which} | {_fmt(c.stored)} | {_fmt(c.new)} | {_MARK[c.outcome]} | {detail} |")
    return "\n".join(out) + "\n"


# --- the real measurement (GPU) --------------------------------------------------------------------

class RunnerMeasure:
    """The correctness wall and timing on the visible GPU (:class:`kernelpro.runner.evaluate.Evaluator`)."""

    def __init__(self, arch: str | None = None) -> None:
        from kernelpro.runner.evaluate import Evaluator

        self.runner = Evaluator(arch=arch)

    def __call__(self, task: Task, variant: Variant, *, warm: bool = False) -> Measurement:
        from kernelpro.runner.evaluate import WallOptions
        from kernelpro.runner.timing import TimingOptions

        verdict = self.runner.check(task, variant.source, knobs=task.parse_knobs(variant.knob_values),
                                    flags=variant.flags, options=WallOptions(timing=TimingOptions(warm=warm)))
        gpu = verdict.device.name if verdict.device is not None else ""
        if not verdict.ok or verdict.timing is None:
            failure = verdict.failures[0] if verdict.failures else None
            message = f"{failure.check}: {failure.message}" if failure else "no timing"
            return Measurement(gpu, False, failure=message.replace("\n", " | ")[:500])
        t = verdict.timing
        return Measurement(gpu, True, t.median_s * 1e6, t.p20_s * 1e6, t.p80_s * 1e6, t.n)

    def close(self) -> None:
        self.runner.close()
