"""``kernelpro export``: a run's verified winner as one commit on a new branch of the user's repository.

**What counts as verified.** ``best.cu`` must be, byte for byte, what :func:`kernelpro.report.best_file_text`
writes for one journaled node (so it was not edited by hand); that node's evaluation passed the wall; and
``report.md``'s ``final check`` line says ``node <id>: passed`` (the compute-sanitizer re-check that
``kernelpro optimize`` runs before writing ``best.cu``). A run without that line was never re-checked and is
refused, as is one whose final check fell back to the baseline.

**What changes in the target file.** The ``__global__`` function named by the task's ``[origin]`` (or
``--function``) is replaced by the winner's entry kernel (renamed to the target's name when they differ), and
each ``#define KNOB value`` the target file has for a knob the winner changed gets the winner's value. Every
other byte of the file stays as it was. Knobs the target does not ``#define`` and nvcc flags the winner needs
are listed in ``PR.md`` for the user's build; they are not guessed into it. A winner with its own launch
(``/* kernelpro launch */``) is handled by :mod:`kernelpro.export_launch`: a block size the host code takes
from a ``#define`` is set there; any other launch change is written into ``PR.md`` as the new launch, with
a plain "host code must change" and the line of the current call.

**Where things go.** The commit lands on a new branch (default ``kernelpro/<task>-<run-id>``), made with
``git switch -c`` from the current HEAD, so the checkout is left on that branch. ``PR.md`` (the pull request
body) is written into the run folder, never into the user's repository.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kernelpro.cuda_source import blank_comments_and_strings, find_kernels
from kernelpro.errors import KernelproError
from kernelpro.export_launch import LaunchExport, launch_export, set_defines
from kernelpro.optimize import RunSettings
from kernelpro.report import best_file_text
from kernelpro.search.interfaces import Node
from kernelpro.search.journal import JOURNAL_NAME, read_journal
from kernelpro.search.records import NodeRecord
from kernelpro.task import Task

PR_FILE = "PR.md"


@dataclass(frozen=True)
class RunRecord:
    """A finished run read back from its folder: settings, task, and the baseline and winner nodes."""

    run_dir: Path
    settings: RunSettings
    task: Task
    baseline: NodeRecord
    best: NodeRecord
    best_text: str  # best.cu
    report: str  # report.md ("" when missing)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def gpu(self) -> str:
        return str(self.best.evaluation.summary.get("gpu") or self.baseline.evaluation.summary.get("gpu") or "unknown")


def _as_node(record: NodeRecord) -> Node:
    return Node(record.id, record.parent, 0, record.iteration, record.variant, record.evaluation)


def load_run(run_dir: Path) -> RunRecord:
    """Read ``run.json``, the task, ``journal.jsonl`` and ``best.cu``; find the journaled node ``best.cu`` is."""
    from kernelpro.task_loader import load_task

    run_dir = Path(run_dir)
    settings = RunSettings.load(run_dir)
    task = load_task(settings.task_path)
    nodes = [r for r in read_journal(run_dir / JOURNAL_NAME) if isinstance(r, NodeRecord)]
    baseline = next((r for r in nodes if r.parent is None), None)
    if baseline is None:
        raise KernelproError("the run's journal holds no evaluated baseline", file=run_dir / JOURNAL_NAME,
                             fix="pass a run folder that `kernelpro optimize` finished")
    best_path = run_dir / "best.cu"
    try:
        best_text = best_path.read_text()
    except OSError as exc:
        raise KernelproError(f"cannot read the winner ({exc})", file=best_path,
                             fix="finish the run first: `kernelpro optimize --resume` writes best.cu") from None
    # Several journaled nodes may render to the same file (same source, knobs, flags): prefer one that passed.
    matches = sorted((r for r in nodes if best_file_text(task, _as_node(r)) == best_text),
                     key=lambda r: (not r.evaluation.ok, r.id))
    if not matches:
        raise KernelproError("best.cu matches no candidate in the journal (edited by hand?)", file=best_path,
                             fix="restore best.cu from the run, or export from an unedited run folder")
    report_path = run_dir / "report.md"
    report = report_path.read_text() if report_path.is_file() else ""
    return RunRecord(run_dir, settings, task, baseline, matches[0], best_text, report)


def final_check_line(report: str) -> str | None:
    """The text of ``report.md``'s ``- final check: ...`` line, or None when the run has none."""
    match = re.search(r"^- final check: (.*)$", report, re.MULTILINE)
    return match.group(1) if match else None


def verify(run: RunRecord) -> str:
    """Raise unless the winner passed the wall and the final check (see the module docstring); return the
    final check's note for the winner."""
    best_path = run.run_dir / "best.cu"
    if not run.best.evaluation.ok:
        raise KernelproError(f"the winner (node {run.best.id}) never passed the correctness wall "
                             f"({run.best.evaluation.failure})", file=best_path,
                             fix="export only a winner that `kernelpro optimize` verified")
    line = final_check_line(run.report)
    note = None if line is None else next(
        (part.strip() for part in line.split(";") if part.strip().startswith(f"node {run.best.id}: passed")), None)
    if note is None:
        why = "report.md has no final check line" if line is None else f"report.md says: {line}"
        raise KernelproError(f"the winner (node {run.best.id}) never passed the final check ({why})",
                             file=run.run_dir / "report.md",
                             fix="rerun `kernelpro optimize` so the winner is re-checked under compute-sanitizer")
    return note.split(":", 1)[1].strip()


# --- the source edit -----------------------------------------------------------------------------

def changed_knobs(run: RunRecord) -> dict[str, str]:
    """Knobs whose winning value differs from the task's default."""
    defaults = {k: str(v) for k, v in run.task.default_knobs().items()}
    return {k: v for k, v in run.best.variant.knob_values.items() if defaults.get(k) != v}


def winner_function(run: RunRecord, name: str) -> str:
    """The winner's entry kernel's text (with ``extern "C"``/template prefix), renamed to ``name``."""
    source = run.best.variant.source
    kernel = find_kernels(source)[run.task.kernel]
    text = source[kernel.start:kernel.end]
    if name == run.task.kernel:
        return text
    code = blank_comments_and_strings(text)
    at = re.search(rf"\b{re.escape(run.task.kernel)}\b(?=\s*\()", code)
    return text[:at.start()] + name + text[at.end():] if at else text


@dataclass(frozen=True)
class Edit:
    """The target file before and after, and what was set where."""

    path: Path
    before: str
    after: str
    span: tuple[int, int]  # the function's offsets in ``before``
    defines: dict[str, str]  # knob -> value written into a #define of the target
    unset_knobs: dict[str, str]  # changed knobs the target does not #define: for the user's build
    launch: LaunchExport | None = None  # the winner's own launch, when it has one that differs


def edit_target(run: RunRecord, path: Path, function: str) -> Edit:
    """The target file with ``function`` replaced by the winner's and the changed knobs' ``#define`` s updated."""
    try:
        before = path.read_text()
    except OSError as exc:
        raise KernelproError(f"cannot read the target file ({exc})", file=path,
                             fix="give --repo the repository root and --file the path inside it") from None
    kernels = find_kernels(before)
    if function not in kernels:
        found = ", ".join(kernels) or "none"
        raise KernelproError(f"no __global__ function {function!r} in the target (found: {found})", file=path,
                             fix="give --function the kernel's name in that file")
    span = (kernels[function].start, kernels[function].end)
    head, tail = before[:span[0]], before[span[1]:]
    defines, unset = {}, {}
    for knob, value in changed_knobs(run).items():
        define = re.compile(rf"^([ \t]*#[ \t]*define[ \t]+{re.escape(knob)}[ \t]+)\S+", re.MULTILINE)
        if define.search(before):
            head = define.sub(lambda m, v=value: m.group(1) + v, head)
            tail = define.sub(lambda m, v=value: m.group(1) + v, tail)
            defines[knob] = value
        else:
            unset[knob] = value
    launch = launch_export(run.task, run.best.variant.source, run.best.variant.knob_values, before, function,
                           path.name)
    after = head + (launch.kernels_text or winner_function(run, function)) + tail
    after = set_defines(after, launch.defines)
    return Edit(path, before, after, span, defines, unset, launch if launch.changed else None)


# --- the texts --------------------------------------------------------------------------------------

def _figures(record: NodeRecord) -> tuple[float, str]:
    summary = record.evaluation.summary
    median = float(summary.get("median_us", record.evaluation.time_us or 0.0))
    spread = (f"{float(summary['p20_us']):,.2f}–{float(summary['p80_us']):,.2f}"
              if "p20_us" in summary and "p80_us" in summary else "-")
    return median, spread


def before_after_table(run: RunRecord) -> str:
    """The Markdown before/after table (median µs with the p20–p80 spread, speedup, GPU)."""
    base_median, base_spread = _figures(run.baseline)
    best_median, best_spread = _figures(run.best)
    speedup = base_median / best_median if best_median else float("nan")
    return "\n".join([
        f"| {run.task.name} on {run.gpu} | median µs | p20–p80 µs |",
        "|---|---|---|",
        f"| before (baseline) | {base_median:,.2f} | {base_spread} |",
        f"| after (node {run.best.id}) | {best_median:,.2f} | {best_spread} |",
        f"| speedup | **{speedup:.2f}x** | |",
    ])


def _title(run: RunRecord, function: str) -> str:
    base, best = _figures(run.baseline)[0], _figures(run.best)[0]
    return f"kernelpro: {function} {base / best:.2f}x faster on {run.gpu}"


def commit_message(run: RunRecord, function: str, edit: Edit) -> str:
    """Title line, then the before/after table and where it came from."""
    lines = [_title(run, function), "", before_after_table(run), ""]
    if edit.defines:
        lines.append("Knob defaults set: " + ", ".join(f"{k}={v}" for k, v in edit.defines.items()))
    if edit.launch is not None and edit.launch.host_change:
        lines.append("Host code must change: the winner has its own launch (see PR.md).")
    lines.append(f"Verified by kernelpro run {run.run_id} (correctness wall + compute-sanitizer).")
    return "\n".join(lines) + "\n"


def _report_section(report: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report, re.MULTILINE | re.DOTALL)
    return match.group(1).strip() if match else ""


def pr_body(run: RunRecord, function: str, edit: Edit, check_note: str, repo: Path) -> str:
    """``PR.md``: what changed, the measurements, the correctness evidence, the path and how to reproduce."""
    summary = run.best.evaluation.summary
    tolerance = run.task.correctness.tolerance
    seeds = sorted({str(r.evaluation.summary["seed"]) for r in (run.baseline, run.best)
                    if "seed" in r.evaluation.summary})
    path = edit.path.relative_to(repo) if edit.path.is_relative_to(repo) else edit.path
    out = [f"# {_title(run, function)}", "",
           f"Replaces `{function}` in `{path}` with the fastest variant kernelpro found that passed its "
           "correctness wall.", "", before_after_table(run), "",
           f"GPU: {run.gpu}; timing: {summary.get('n', '?')} samples, method {summary.get('method', '?')}, "
           f"L2 {summary.get('l2', '?')}.", "", "## Correctness evidence", "",
           f"- the correctness wall: outputs of the new `{function}` compared with the task's reference "
           f"(`{run.task.correctness.reference or 'the original kernel'}`) on several random input sets and "
           f"problem sizes, with out-of-bounds guard bytes checked; tolerance: "
           f"{tolerance if tolerance is not None else 'per output dtype (kernelpro defaults)'}",
           f"- input seeds: {', '.join(seeds) or 'not recorded'}",
           f"- final check: {check_note}"]
    if summary.get("flags"):
        out.append(f"- findings that did not reject it: {', '.join(map(str, summary['flags']))}")
    out += ["", "## What changed", ""]
    if edit.defines:
        out.append("- knob defaults set in the file: " + ", ".join(f"`{k}={v}`" for k, v in edit.defines.items()))
    if edit.unset_knobs:
        out.append("- **knobs to set in your build** (the file does not `#define` them): "
                   + ", ".join(f"`-D{k}={v}`" for k, v in edit.unset_knobs.items()))
    if run.best.variant.flags:
        out.append(f"- **nvcc flags the winner needs**: `{' '.join(run.best.variant.flags)}`")
    if edit.launch is not None:
        out += list(edit.launch.notes)
    # The task's knob defaults arrive as -D flags and override best.cu's #ifndef'd defaults: pass the winner's.
    check = ["kernelpro", "check", run.settings.task_path, str(run.run_dir / "best.cu"),
             *(f"--knob={k}={v}" for k, v in run.best.variant.knobs), *(f"--flag={f}" for f in run.best.variant.flags),
             "--sanitize"]
    out += ["", "## How it was found", "",
            _report_section(run.report, "How the winner was reached") or "(no path recorded)", "",
            "## Reproduce", "", "```sh", "# the search", run.settings.command, "# the winner's correctness check",
            shlex.join(check), "```", ""]
    return "\n".join(out)


# --- git ---------------------------------------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    """Run ``git -C repo args``; a KernelproError with git's message when it fails."""
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise KernelproError(f"`git {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}",
                             file=repo, fix="see git's message")
    return done.stdout


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` did."""

    branch: str
    commit: str
    file: Path
    pr_file: Path
    pr_command: tuple[str, ...]  # gh pr create ... (run when --open-pr and gh is on PATH)
    push_command: tuple[str, ...]


def export(run_dir: Path, repo: Path, *, file: str | None = None, function: str | None = None,
           branch: str | None = None) -> ExportResult:
    """Commit the run's verified winner into ``repo`` on a new branch and write ``PR.md`` in the run folder."""
    run = load_run(run_dir)
    check_note = verify(run)
    if run.best.id == run.baseline.id or run.best.variant.key == run.baseline.variant.key:
        raise KernelproError("the winner is the baseline: nothing to export", file=run.run_dir / "best.cu",
                             fix="run a longer search, or export a run that beat its baseline")
    origin = run.task.origin
    if (file is None or function is None) and origin is None:
        raise KernelproError("the task has no [origin] table, so the target is unknown", file=run.task.path,
                             fix="pass --file and --function, or add [origin] path/function to the task")
    rel = file or origin.path
    name = function or origin.function
    repo = Path(repo).resolve()
    if not (repo / ".git").exists():
        git(repo, "rev-parse", "--git-dir")  # worktrees and submodules have a .git file; let git decide
    target = repo / rel
    if not target.is_file():
        raise KernelproError("the target file does not exist in the repository", file=target,
                             fix="fix [origin] path (relative to the repository root) or pass --file")
    edit = edit_target(run, target, name)
    if edit.after == edit.before:
        raise KernelproError("the winner is identical to the code in the target: nothing to export",
                             file=target, fix="export a run whose winner changed the kernel or its knobs")
    dirty = git(repo, "status", "--porcelain")
    if dirty.strip():
        raise KernelproError(f"the working tree has uncommitted changes ({dirty.splitlines()[0].strip()} ...)",
                             file=repo, fix="commit or stash them first")
    branch = branch or f"kernelpro/{run.task.name}-{run.run_id}"
    exists = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                            capture_output=True)
    if exists.returncode == 0:
        raise KernelproError(f"branch {branch!r} already exists", file=repo,
                             fix="pass another --branch, or delete that branch")
    git(repo, "switch", "-c", branch)
    target.write_text(edit.after)
    git(repo, "add", "--", rel)
    git(repo, "commit", "-q", "-m", commit_message(run, name, edit))
    commit = git(repo, "rev-parse", "HEAD").strip()
    pr_file = run.run_dir.resolve() / PR_FILE
    pr_file.write_text(pr_body(run, name, edit, check_note, repo))
    title = _title(run, name)
    return ExportResult(branch, commit, target, pr_file,
                        ("gh", "pr", "create", "--title", title, "--body-file", str(pr_file), "--head", branch),
                        ("git", "-C", str(repo), "push", "-u", "origin", branch))


def open_pr(result: ExportResult, repo: Path) -> tuple[bool, str]:
    """Push the branch and run ``gh pr create`` when ``gh`` is on PATH: ``(True, gh's output)``; else
    ``(False, the exact commands to run)``."""
    commands = f"{shlex.join(result.push_command)}\n(cd {shlex.quote(str(repo))} && {shlex.join(result.pr_command)})"
    if shutil.which("gh") is None:
        return False, commands
    git(repo, *result.push_command[3:])
    done = subprocess.run(result.pr_command, cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        raise KernelproError(f"`gh pr create` failed: {done.stderr.strip()}", file=repo,
                             fix=f"run it yourself: {commands}")
    return True, done.stdout.strip()
