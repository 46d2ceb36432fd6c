"""``kernelpro skills learn RUN``: a run's verified winning path as a draft skill in a user skills folder.

Only what the run proved goes in. The winner must have passed the correctness wall and the final
compute-sanitizer check (as for ``kernelpro export``); the recipe is the path from the baseline to the
winner, one step per node, each with the change that made it, who made it (``offline:<rewrite>`` or the
model), its measured median time and its gain over its parent, on the GPU the run measured. Steps whose
evaluation did not pass are left out and counted. Children of path nodes that failed the wall become the
pitfalls ("tried and rejected"). The winner's file is the skill's reference kernel (``assets/``). The
skill is a draft: its description says so, and a person should edit its "when it applies".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kernelpro.errors import KernelproError
from kernelpro.export import RunRecord, load_run, verify
from kernelpro.rewrites.registry import REWRITES
from kernelpro.search.journal import JOURNAL_NAME, read_journal
from kernelpro.search.records import DiagnosisRecord, NodeRecord
from kernelpro.skill_library import DESCRIPTION_CHARS, parse_skill

MAX_PITFALLS = 8


@dataclass(frozen=True)
class Step:
    """One verified step of the winning path."""

    node: int
    change: str
    origin: str
    time_us: float
    gain: float  # parent time / this time


def _median(record: NodeRecord) -> float:
    return float(record.evaluation.summary.get("median_us", record.evaluation.time_us or 0.0))


def winning_path(run: RunRecord, nodes: dict[int, NodeRecord]) -> tuple[list[Step], int]:
    """The verified steps from the baseline to the winner, and how many path nodes were left out (not passed)."""
    chain, current = [], run.best
    while current.parent is not None:
        chain.append(current)
        current = nodes[current.parent]
    steps, skipped, previous = [], 0, run.baseline
    for record in reversed(chain):
        if not record.evaluation.ok or not _median(record):
            skipped += 1
            continue
        steps.append(Step(record.id, record.variant.change or "(no description)", record.variant.origin,
                          _median(record), _median(previous) / _median(record)))
        previous = record
    return steps, skipped


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


def draft_skill(run: RunRecord) -> tuple[str, str, str]:
    """``(name, SKILL.md text, asset file name)`` for the run's verified winner."""
    records = read_journal(run.run_dir / JOURNAL_NAME)
    nodes = {r.id: r for r in records if isinstance(r, NodeRecord)}
    steps, skipped = winning_path(run, nodes)
    if not steps:
        raise KernelproError("the winner is the baseline: the run found no verified improvement to learn from",
                             file=run.run_dir, fix="learn from a run whose best.cu is faster than its baseline")
    path_ids = {run.baseline.id, *(s.node for s in steps)}
    failed = [r for r in nodes.values() if r.parent in path_ids and not r.evaluation.ok]
    signals = sorted({str(p.get("tool")) for r in records if isinstance(r, DiagnosisRecord) and r.id in path_ids
                      for p in r.diagnosis.details.get("prescriptions", ()) if p.get("tool")})
    rewrites = sorted({s.origin.removeprefix("offline:") for s in steps} & {r.name for r in REWRITES})
    total = _median(run.baseline) / _median(run.best)
    name = f"learned-{_slug(run.task.name)}-{_slug(run.run_id)}"[:64].rstrip("-")
    asset = f"{_slug(run.task.name).replace('-', '_')}_winner.cu"
    summary = "; ".join(s.change for s in steps)
    description = (f"Draft learned from a verified kernelpro run: {run.task.name} {total:.2f}x faster on {run.gpu} "
                   f"by {summary}")
    if len(description) > DESCRIPTION_CHARS:
        description = description[: DESCRIPTION_CHARS - 1] + "…"
    meta = [f"  signals: {' '.join(signals)}"] if signals else []
    meta += [f"  rewrites: {' '.join(rewrites)}"] if rewrites else []
    lines = ["---", f"name: {name}", f"description: {_yaml_string(description)}", "metadata:",
             f"  source-run: {_yaml_string(str(run.run_dir))}", *meta, "---",
             f"# {run.task.name}: {total:.2f}x on {run.gpu} (learned, draft)", "",
             "## When it applies",
             f"- Kernels like `{run.task.name}` ({_clip(run.task.description)}).",
             f"- Diagnosis signals seen on the path: {', '.join(signals) or 'none recorded'}.",
             "- Draft: edit this section to say which source patterns the recipe needs.", "",
             "## Recipe (the verified winning path, in order)"]
    for i, s in enumerate(steps, 1):
        lines.append(f"{i}. {s.change} (`{s.origin}`): {s.time_us:,.2f} µs, {s.gain:.2f}x over its parent.")
    lines += ["", f"Baseline {_median(run.baseline):,.2f} µs → winner {_median(run.best):,.2f} µs on {run.gpu}; "
              "every step passed the correctness wall and the winner the final compute-sanitizer check."]
    if skipped:
        lines.append(f"({skipped} step(s) on the path without a passing measurement were left out.)")
    lines += ["", "## Pitfalls (tried from this path and rejected by the wall)"]
    for r in sorted(failed, key=lambda r: r.id)[:MAX_PITFALLS]:
        lines.append(f"- {r.variant.change or r.variant.origin}: {_clip(str(r.evaluation.failure), 160)}")
    if not failed:
        lines.append("- None recorded on this run.")
    lines += ["", f"Reference: `assets/{asset}` (the run's best.cu)."]
    return name, "\n".join(lines) + "\n", asset


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def learn(run_dir: Path, target: Path) -> Path:
    """Write the draft skill for ``run_dir`` into ``target/<name>/``; return its ``SKILL.md``."""
    run = load_run(run_dir)
    verify(run)
    name, text, asset = draft_skill(run)
    folder = target / name
    try:
        (folder / "assets").mkdir(parents=True, exist_ok=True)
        (folder / "SKILL.md").write_text(text)
        (folder / "assets" / asset).write_text(run.best_text)
    except OSError as exc:
        raise KernelproError(f"cannot write the skill: {exc.strerror}", file=exc.filename or folder,
                             fix="choose a writable --to folder") from None
    parse_skill(folder / "SKILL.md", user=True)  # what we wrote must load
    return folder / "SKILL.md"
