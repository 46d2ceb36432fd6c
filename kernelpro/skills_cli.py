"""The ``kernelpro propose`` and ``kernelpro skills`` commands (registered in :mod:`kernelpro.cli`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kernelpro.errors import KernelproError


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise KernelproError(f"cannot read {what}: {exc.strerror}", file=path, fix="check the path") from None


def _task_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.cu"))
            if not found:
                raise KernelproError("no .cu task files in this folder", file=path, fix="point at a folder of tasks")
            files += found
        else:
            files.append(path)
    return files


@click.command("propose")
@click.argument("tasks", metavar="TASK...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--candidate", type=click.Path(path_type=Path), help="Start from this variant of the kernel.")
@click.option("--arch", default="sm_90", show_default=True, help="Architecture to compile for.")
@click.option("-n", "count", default=8, show_default=True, help="Proposals in the first round.")
@click.option("--skills", "skill_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A folder of user skills to add to the built-in ones (repeatable).")
@click.option("--no-diff", is_flag=True, help="Leave out the diffs.")
@click.option("--summary", is_flag=True, help="One table row per task: bound, structural rewrites, SASS evidence.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def propose_command(tasks: tuple[Path, ...], candidate: Path | None, arch: str, count: int,
                    skill_dirs: tuple[Path, ...], no_diff: bool, summary: bool, as_json: bool) -> None:
    """Show what kernelpro would try first on TASK, from a static diagnosis (no GPU): the offline
    proposer's proposals with their diffs and SASS evidence, and the skills an LLM proposer would receive."""
    from kernelpro.propose import propose
    from kernelpro.task_loader import load_task

    files = _task_files(tasks)
    if candidate is not None and len(files) != 1:
        raise KernelproError("--candidate needs exactly one TASK", fix="give one task file with --candidate")
    source = _read(candidate, "candidate") if candidate is not None else None
    reports = [propose(load_task(f), source=source, arch=arch, n=count, user_skills=skill_dirs) for f in files]
    if as_json:
        click.echo(json.dumps([_as_json(r) for r in reports], indent=2))
    elif summary:
        _print_summary(reports)
    else:
        for report in reports:
            _print_report(report, diffs=not no_diff)
    if any(not r.proposals for r in reports):
        sys.exit(1)


def _as_json(report) -> dict:
    return {"task": report.task.name, "bound": report.bound, "intensity": report.intensity,
            "signals": list(report.signals),
            "proposals": [{"origin": p.variant.origin, "change": p.variant.change, "structural": p.structural,
                           "knobs": dict(p.variant.knobs), "flags": list(p.variant.flags), "evidence": p.evidence,
                           "intended": p.intended, "shows_intended": p.shows_intended, "launch": p.launch,
                           "diff": p.diff} for p in report.proposals],
            "skills_selected": [s.name for s in report.selected], "skills_available": len(report.skills)}


def _print_summary(reports) -> None:
    click.echo("| task | [cost] FLOP/B → class | structural rewrites that apply (SASS evidence) |")
    click.echo("|---|---|---|")
    for r in reports:
        cls = f"{r.intensity:.2f} → {r.bound}" if r.intensity is not None else "no [cost]"
        rows = [f"`{p.variant.origin.removeprefix('offline:')}`: {p.evidence}"
                + ("" if p.shows_intended else " (intended change NOT shown)") for p in r.proposals if p.structural]
        click.echo(f"| {r.task.name} | {cls} | {'<br>'.join(rows) or 'none'} |")


def _print_report(report, *, diffs: bool) -> None:
    task = report.task
    bound = f"{report.bound}-bound by [cost] ({report.intensity:.2f} FLOP/B)" if report.bound else "no [cost]"
    click.echo(f"== {task.name} ({task.path}): {bound}")
    click.echo(f"signals: {', '.join(report.signals) or 'none'}")
    for i, p in enumerate(report.proposals, 1):
        kind = "structural" if p.structural else "knob/flag/local"
        click.echo(f"\n{i}. [{kind}] {p.variant.origin}: {p.variant.change}")
        click.echo(f"   SASS: {p.evidence}" + (f"; intended: {p.intended} → {'yes' if p.shows_intended else 'NO'}"
                                                if p.intended else ""))
        if not p.structural:
            click.echo(f"   knobs: {dict(p.variant.knobs)} flags: {list(p.variant.flags)}")
        if diffs and p.diff:
            click.echo("   " + p.diff.rstrip("\n").replace("\n", "\n   "))
    if not report.proposals:
        click.echo("\nno proposal: every move was refused or is a no-op")
    chosen = ", ".join(f"{s.name} (~{s.tokens} tokens)" for s in report.selected) or "none"
    click.echo(f"\nskills for an LLM proposer: {len(report.skills)} descriptions in the cached prompt; "
               f"full body of: {chosen}\n")


@click.group("skills")
def skills_group() -> None:
    """List, export and learn skills (Agent Skills: <name>/SKILL.md folders)."""


@skills_group.command("list")
@click.option("--skills", "skill_dirs", multiple=True, type=click.Path(path_type=Path), help="User skills folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def skills_list(skill_dirs: tuple[Path, ...], as_json: bool) -> None:
    """The built-in skills (and user skills), one line each: name, origin, rewrites, description."""
    from kernelpro.skill_library import load_skills

    skills = load_skills(skill_dirs)
    if as_json:
        click.echo(json.dumps([{"name": s.name, "description": s.description, "path": str(s.path), "user": s.user,
                                "rewrites": list(s.rewrites), "tokens": s.tokens} for s in skills], indent=2))
        return
    for s in skills:
        origin = "user" if s.user else "built-in"
        rewrites = f" [rewrites: {', '.join(s.rewrites)}]" if s.rewrites else ""
        click.echo(f"{s.name} ({origin}, ~{s.tokens} tokens){rewrites}\n    {s.description}")


@skills_group.command("export")
@click.option("--to", "target", required=True, type=click.Path(path_type=Path),
              help="Folder to copy the skill folders into, e.g. .claude/skills.")
@click.option("--skills", "skill_dirs", multiple=True, type=click.Path(path_type=Path), help="User skills folder.")
def skills_export(target: Path, skill_dirs: tuple[Path, ...]) -> None:
    """Copy every skill folder (SKILL.md, assets/, ...) into TARGET for other agents."""
    from kernelpro.skill_library import export_skills, load_skills

    for path in export_skills(load_skills(skill_dirs), target):
        click.echo(str(path))


def default_user_skills() -> Path:
    """``$KERNELPRO_SKILLS`` or ``~/.kernelpro/skills``: where learned skills go by default."""
    import os

    return Path(os.environ.get("KERNELPRO_SKILLS") or Path.home() / ".kernelpro" / "skills")


@skills_group.command("learn")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--to", "target", type=click.Path(path_type=Path),
              help="User skills folder (default: $KERNELPRO_SKILLS or ~/.kernelpro/skills).")
def skills_learn(run_dir: Path, target: Path | None) -> None:
    """Turn RUN's verified winning path (steps that passed the wall, their measured gains, the GPU) into a
    draft skill in a user skills folder; use it with `optimize --skills DIR`."""
    from kernelpro.learn import learn

    path = learn(run_dir, target or default_user_skills())
    click.echo(f"wrote {path} (a draft: review its 'When it applies' before sharing)")
