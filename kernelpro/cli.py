"""The ``kernelpro`` command line.

Every failure exits non-zero with one line saying why: a :class:`KernelproError` prints its
``file:line: message (fix: ...)`` and exits 1; a usage error exits 2 (click's convention);
Ctrl-C exits 130; anything unexpected prints one line asking for a report and exits 3 (set
``KERNELPRO_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from kernelpro import __version__
from kernelpro.cli_init import init_command
from kernelpro.errors import KernelproError

if TYPE_CHECKING:
    from kernelpro.parallel_run import Devices

console = Console()


def _parse_assignments(items: tuple[str, ...], what: str) -> dict[str, str]:
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint=what)
        values[name.strip()] = value.strip()
    return values


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kernelpro")
def cli() -> None:
    """kernelpro makes CUDA kernels faster: MCTS over verified, profiled variants."""


@cli.command("tasks")
@click.argument("folder", type=click.Path(path_type=Path), default=Path("tasks"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def tasks_command(folder: Path, as_json: bool) -> None:
    """List the tasks in FOLDER (default: ./tasks) with their metadata."""
    from kernelpro.render import render_task_table
    from kernelpro.task_loader import load_task, task_summary

    if not folder.is_dir():
        raise KernelproError(f"{folder} is not a folder", fix="give the folder that holds the task .cu files")
    files = sorted(folder.glob("*.cu"))
    if not files:
        raise KernelproError(f"no .cu task files in {folder}", fix="point at a folder of task files")
    loaded, errors = [], []
    for path in files:
        try:
            loaded.append(load_task(path))
        except KernelproError as exc:
            errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken file must not hide the others
            errors.append(f"{path}: internal error while loading: {type(exc).__name__}: {exc} (please report it)")
    if as_json:
        click.echo(json.dumps({"tasks": [task_summary(t) for t in loaded], "errors": errors}, indent=2))
    else:
        render_task_table(console, loaded)
        for error in errors:
            console.print(f"[red]invalid:[/red] {escape(error)}", highlight=False)
    if errors:
        sys.exit(1)


@cli.command("analyze")
@click.argument("task_path", metavar="TASK", type=click.Path(path_type=Path))
@click.option("--static", "static_only", is_flag=True, help="Compile-time analysis only (no GPU needed).")
@click.option("--candidate", type=click.Path(path_type=Path), help="Analyze this variant of the task's kernel.")
@click.option("--arch", help="Target architecture, e.g. sm_90 (default: the visible GPU, else sm_90).")
@click.option("--knob", "knobs", multiple=True, metavar="NAME=VALUE", help="Override a knob (repeatable).")
@click.option("--flag", "flags", multiple=True, metavar="FLAG", help="Extra nvcc flag (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option("--raw-counters", is_flag=True, help="Append the raw counters to the prescriptions (for ablations).")
@click.option("--plot", type=click.Path(path_type=Path), metavar="PNG", help="Draw the roofline with the kernel.")
def analyze_command(task_path: Path, static_only: bool, candidate: Path | None, arch: str | None,
                    knobs: tuple[str, ...], flags: tuple[str, ...], as_json: bool, raw_counters: bool,
                    plot: Path | None) -> None:
    """Analyze TASK: resources, occupancy and SASS findings (--static, no GPU); on a GPU also timing,
    the roofline verdict and the micro-profiling tools' prescriptions."""
    from kernelpro.compiler import default_arch
    from kernelpro.render import render_static_report
    from kernelpro.static_analysis import analyze_static
    from kernelpro.task_loader import load_task

    task = load_task(task_path)
    source = task.source
    if candidate is not None:
        try:
            source = candidate.read_text()
        except OSError as exc:
            raise KernelproError(f"cannot read candidate: {exc}", file=candidate, fix="check the path") from None
    overrides = task.parse_knobs(_parse_assignments(knobs, "--knob"))
    if not static_only:
        _analyze_on_gpu(task, source, arch, overrides, tuple(flags), as_json, raw_counters, plot)
        return
    report = analyze_static(task, source=source, arch=arch or default_arch(), knobs=overrides,
                            flags=tuple(flags), source_name=str(candidate or task_path))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        render_static_report(console, report)
    if not report.compiled:
        sys.exit(1)


def _analyze_on_gpu(task, source: str, arch: str | None, knobs: dict, flags: tuple[str, ...], as_json: bool,
                    raw_counters: bool, plot: Path | None) -> None:
    """Wall + timing, then static analysis and the two-stage profile digested into prescriptions."""
    from kernelpro.optimize import ProfilingDiagnoser
    from kernelpro.render import render_static_report
    from kernelpro.runner.commands import achieved_rates, render
    from kernelpro.runner.device import require_gpu
    from kernelpro.runner.evaluate import Evaluator
    from kernelpro.search import Variant
    from kernelpro.toolchain import find_tool

    require_gpu()
    if find_tool("ncu", required=False) is None:
        raise KernelproError("`ncu` (Nsight Compute) not found", fix="install Nsight Compute and put ncu on PATH, "
                             "or use --static")
    with Evaluator(arch=arch) as runner:
        verdict = runner.check(task, source, knobs=knobs, flags=flags)
        variant = Variant(source, tuple((k, str(v)) for k, v in {**task.default_knobs(), **knobs}.items()), flags)
        diagnoser = ProfilingDiagnoser(task, runner.compiler, runner.arch, warn=lambda m: None)
        diagnosis, static, ctx = diagnoser.analyze(variant)
    if diagnoser.last_error is not None:
        raise profiling_failed(task.kernel, diagnoser.last_error)
    if plot is not None and ctx.verdict is not None:
        from kernelpro.roofline import plot_roofline

        plot_roofline([(task.name, ctx.verdict)], plot)
    if as_json:
        click.echo(json.dumps({"wall": verdict.to_dict(), "static": static.to_json(),
                               "diagnosis": diagnosis.to_dict(),
                               "prompt": diagnosis.render(raw_counters=raw_counters)}, indent=2))
    else:
        click.echo(render(task, verdict, f"analyze {task.name}", achieved_rates(task, verdict, knobs)))
        render_static_report(console, static)
        console.rule("diagnosis (what the proposer sees)")
        console.print(diagnosis.render(raw_counters=raw_counters), highlight=False, markup=False)
        if plot is not None:
            console.print(f"roofline plot: {plot}", highlight=False)
    if not verdict.ok:
        sys.exit(1)


def profiling_failed(kernel: str, exc: BaseException) -> KernelproError:
    """``analyze``'s error when ncu failed: the real reason (permission, kernel-name mismatch, nothing profiled,
    a timeout...) and the ncu command that failed, with the error's own fix when it has one."""
    from kernelpro.optimize import profile_error_text

    fix = getattr(exc, "fix", None) or "run the ncu command above by hand to see the problem, or use --static"
    reason = profile_error_text(exc)
    if isinstance(exc, KernelproError) and exc.fix:
        reason = reason.replace(f" (fix: {exc.fix})", "")
    return KernelproError(f"Nsight Compute could not profile {kernel}: {reason}", fix=fix)


def _checked_skill_dirs(dirs: tuple[Path, ...]) -> tuple[str, ...]:
    """The user skills folders as absolute paths, each loaded once now so a bad skill fails before the run."""
    from kernelpro.skill_library import load_skills

    load_skills(dirs)
    return tuple(str(d.resolve()) for d in dirs)


def parse_duration(text: str | None) -> float | None:
    """``90s``, ``15m``, ``1h30m`` or plain seconds → seconds."""
    if text is None:
        return None
    import re

    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or parts is None or not any(parts.groups()):
        raise click.BadParameter(f"{text!r}: use e.g. 90s, 15m or 1h30m", param_hint="--time")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse_devices(parallel: int | None, gpus: str | None, ray_address: str | None) -> Devices:
    """``--parallel``/``--gpus``/``--ray`` checked before anything starts (a missing Ray is a one-line error)."""
    from kernelpro.parallel_run import Devices

    devices = Devices(parallel, gpus, ray_address)
    if ray_address is not None:
        from kernelpro.runner.ray_pool import require_ray

        require_ray()
    return devices


@cli.command("optimize")
@click.argument("task_path", metavar="TASK", type=click.Path(path_type=Path), required=False)
@click.option("--budget", type=click.IntRange(min=1), default=60, show_default=True,
              help="Most evaluations, the baseline included.")
@click.option("--time", "time_limit", metavar="DURATION", help="Wall-clock limit, e.g. 15m or 1h30m.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="LLM token budget.")
@click.option("--max-dollars", type=float, help="LLM spend budget in USD.")
@click.option("--proposer", type=click.Choice(["llm", "offline"]),
              help="Default: llm when ANTHROPIC_API_KEY is set, else offline.")
@click.option("--model", help="Model for --proposer llm.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), help="Continue the run in this folder.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: results/<task>/<run-id>).")
@click.option("--seed", type=int, default=0, show_default=True, help="Search seed.")
@click.option("--arch", help="Target architecture (default: the visible GPU).")
@click.option("--warm", is_flag=True, help="Time with a warm L2 (the report says so).")
@click.option("--no-profile", is_flag=True, help="Diagnose from static analysis only (no Nsight Compute).")
@click.option("--skills", "skill_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A folder of user skills (<name>/SKILL.md) added to the built-in ones (repeatable).")
# -- many GPUs (kernelpro/parallel_run.py) --
@click.option("--parallel", type=int, help="Evaluations in flight (default 1; with --gpus/--ray two per GPU).")
@click.option("--gpus", help="GPUs of this machine, one worker each: 0,1,2,3 or all.")
@click.option("--ray", "ray_address", metavar="auto|ADDRESS", help="Evaluate on a Ray cluster, one actor per GPU.")
def optimize_command(task_path: Path | None, budget: int, time_limit: str | None, max_tokens: int | None,
                     max_dollars: float | None, proposer: str | None, model: str | None, resume_dir: Path | None,
                     out: Path | None, seed: int, arch: str | None, warm: bool, no_profile: bool,
                     skill_dirs: tuple[Path, ...], parallel: int | None, gpus: str | None,
                     ray_address: str | None) -> None:
    """Search for a faster kernel for TASK that passes the correctness wall; write results/<task>/<run-id>/."""
    from kernelpro import optimize as opt
    from kernelpro.compiler import default_arch
    from kernelpro.live import summary_table
    from kernelpro.search import Budget
    from kernelpro.task_loader import load_task

    max_seconds = parse_duration(time_limit)
    devices = parse_devices(parallel, gpus, ray_address)
    if resume_dir is not None:
        settings = opt.RunSettings.load(resume_dir)
        run_dir, task = resume_dir, load_task(settings.task_path)
    else:
        if task_path is None:
            raise click.UsageError("give a TASK file, or --resume RUN_DIR")
        task = load_task(task_path)
        run_dir = out or opt.new_run_dir(Path("results"), task)
        settings = opt.RunSettings(str(task_path), proposer or opt.default_proposer(), model, arch or default_arch(),
                                   seed, not no_profile, warm, " ".join(["kernelpro", *sys.argv[1:]]),
                                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   skills=_checked_skill_dirs(skill_dirs))
    limits = Budget(max_evaluations=budget, max_seconds=max_seconds, max_tokens=max_tokens, max_dollars=max_dollars)
    try:
        outcome = opt.optimize_task(task, settings, run_dir, budget=limits, resume=resume_dir is not None,
                                    console=console, devices=devices)
    except KeyboardInterrupt:
        click.echo(f"interrupted: every evaluated candidate is in {run_dir}/journal.jsonl; continue with "
                   f"`kernelpro optimize --resume {run_dir}`", err=True)
        sys.exit(130)
    console.print(summary_table(outcome.result, str(run_dir)))
    console.print(f"winner: {outcome.files.best} (node {outcome.best.id}); report: {outcome.files.report}",
                  highlight=False)


@cli.command("suite")
@click.option("--tasks", "pattern", default="tasks/*.cu", show_default=True, help="Glob of the task files to run.")
@click.option("--budget", type=click.IntRange(min=1), default=30, show_default=True, help="Evaluations per task.")
@click.option("--time", "time_limit", metavar="DURATION", help="Wall-clock limit per task, e.g. 10m.")
@click.option("--proposer", type=click.Choice(["llm", "offline"]),
              help="Default: llm with ANTHROPIC_API_KEY, else offline.")
@click.option("--model", help="Model for --proposer llm.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--arch", help="Target architecture (default: the visible GPU).")
@click.option("--no-profile", is_flag=True, help="Diagnose from static analysis only.")
@click.option("--no-comparator", is_flag=True, help="Do not time the production comparators.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
              show_default=True)
def suite_command(pattern: str, budget: int, time_limit: str | None, proposer: str | None, model: str | None,
                  seed: int, arch: str | None, no_profile: bool, no_comparator: bool, results_dir: Path) -> None:
    """Optimize every task of the suite and write results/suite-<gpu>-<date>.{json,md}: baseline, best and
    production medians, speedups, % of the roofline bound, geometric means."""
    import glob
    import shlex

    from kernelpro import optimize as opt
    from kernelpro.compiler import default_arch
    from kernelpro.runner.device import require_gpu
    from kernelpro.runner.nvml import driver_version
    from kernelpro.runner.records import DeviceInfo
    from kernelpro.runner.supervisor import Supervisor
    from kernelpro.search import Budget
    from kernelpro.suite import SuiteEnvironment, TaskOutcome, render_markdown, run_suite, time_comparator, write_suite
    from kernelpro.task_loader import load_task

    paths = sorted(glob.glob(pattern))
    if not paths:
        raise KernelproError(f"no task files match {pattern!r}", fix="pass --tasks 'tasks/*.cu' or a narrower glob")
    tasks = [load_task(p) for p in paths]
    require_gpu()
    with Supervisor() as supervisor:
        job = supervisor.run("device-info", {})
    if not job.ok:
        raise KernelproError(f"cannot read the GPU's properties: {job.failure}", fix="check `nvidia-smi`")
    device = DeviceInfo.from_dict(job.value["device"])
    command = shlex.join(["kernelpro", *sys.argv[1:]])
    kind, arch = proposer or opt.default_proposer(), arch or default_arch()
    limits = Budget(max_evaluations=budget, max_seconds=parse_duration(time_limit))

    def run_one(task) -> TaskOutcome:
        settings = opt.RunSettings(str(task.path), kind, model, arch, seed, not no_profile, False, command,
                                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        run_dir = opt.new_run_dir(results_dir, task)
        outcome = opt.optimize_task(task, settings, run_dir, budget=limits, resume=False, console=console)
        production = None
        if task.comparator is not None and not no_comparator:
            production = time_comparator(task) * 1e6
        result = outcome.result
        return TaskOutcome(task.name, result.baseline.time_us, outcome.best.time_us, production_us=production,
                           evaluations=result.evaluations, minutes=result.elapsed_s / 60,
                           best_knobs=outcome.best.variant.knob_values,
                           comparator=f"{task.comparator.library}: {task.comparator.expr}" if task.comparator else None,
                           run_dir=str(run_dir))

    environment = SuiteEnvironment.from_device(device, driver=driver_version(), command=command)
    table = run_suite(tasks, run_one, device, environment=environment,
                      on_outcome=lambda o: console.print(f"{o.task}: {o.error or 'done'}", highlight=False))
    json_path, md_path = write_suite(table, results_dir)
    click.echo(render_markdown(table))
    click.echo(f"wrote {json_path} and {md_path}")


@cli.command("bench")
@click.argument("task_path", metavar="TASK", type=click.Path(path_type=Path))
@click.option("--knob", "knobs", multiple=True, metavar="NAME=VALUE", help="Override a knob (repeatable).")
@click.option("--arch", help="Target architecture (default: the visible GPU).")
@click.option("--warm", is_flag=True, help="Do not flush L2 before each sample (the output says so).")
@click.option("--seed", type=int, help="Fix the input seed (default: fresh from os.urandom).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def bench_command(task_path: Path, knobs: tuple[str, ...], arch: str | None, warm: bool, seed: int | None,
                  as_json: bool) -> None:
    """Check TASK's kernel against its reference, then time it (median, p20/p80, GB/s, GFLOP/s)."""
    from kernelpro.runner import commands

    result = commands.bench(task_path, knobs=_parse_assignments(knobs, "--knob"), arch=arch, warm=warm, seed=seed)
    click.echo(json.dumps(result.data, indent=2) if as_json else result.text)
    if not result.ok:
        sys.exit(1)


@cli.command("check")
@click.argument("task_path", metavar="TASK", type=click.Path(path_type=Path))
@click.argument("candidate", metavar="CANDIDATE.cu", type=click.Path(path_type=Path))
@click.option("--knob", "knobs", multiple=True, metavar="NAME=VALUE", help="Override a knob (repeatable).")
@click.option("--flag", "flags", multiple=True, metavar="FLAG", help="Extra nvcc flag (repeatable).")
@click.option("--arch", help="Target architecture (default: the visible GPU).")
@click.option("--warm", is_flag=True, help="Do not flush L2 before each sample.")
@click.option("--seed", type=int, help="Fix the input seed (default: fresh from os.urandom).")
@click.option("--no-time", is_flag=True, help="Correctness only.")
@click.option("--sanitize/--no-sanitize", default=True,
              help="compute-sanitizer memcheck at the smallest and full size (+ racecheck with shared memory); on by "
                   "default.")
@click.option("--explain", is_flag=True, help="Print the checks the candidate would go through, and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def check_command(task_path: Path, candidate: Path, knobs: tuple[str, ...], flags: tuple[str, ...],
                  arch: str | None, warm: bool, seed: int | None, no_time: bool, sanitize: bool, explain: bool,
                  as_json: bool) -> None:
    """Run the full correctness wall on CANDIDATE.cu (a variant of TASK's kernel) and print the verdict."""
    from kernelpro.runner import commands

    if explain:
        click.echo(commands.explain(task_path, time=not no_time, sanitizer=sanitize, warm=warm))
        return
    result = commands.check(task_path, candidate, knobs=_parse_assignments(knobs, "--knob"), flags=tuple(flags),
                            arch=arch, warm=warm, seed=seed, time=not no_time, sanitizer=sanitize)
    click.echo(json.dumps(result.data, indent=2) if as_json else result.text)
    if not result.ok:
        sys.exit(1)


@cli.command("tools")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def tools_command(as_json: bool) -> None:
    """List the micro-profiling tools: what fires them, for which roofline classes, from which metrics."""
    from kernelpro.render import render_tools_table
    from kernelpro.tools import describe

    tools = describe()
    if as_json:
        click.echo(json.dumps(tools, indent=2))
    else:
        render_tools_table(console, tools)


@cli.command("doctor")
def doctor_command() -> None:
    """Show where each CUDA tool was found and what is missing."""
    from kernelpro.toolchain import INSTALL_HINTS, describe

    for name, where in describe().items():
        mark = "[green]ok[/green]     " if where != "missing" else "[yellow]missing[/yellow]"
        hint = f"  ({INSTALL_HINTS[name]})" if where == "missing" else ""
        console.print(f"{mark} {name:<18} {where}{hint}", highlight=False)


@cli.command("export")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--repo", type=click.Path(path_type=Path), required=True, help="The repository to commit into.")
@click.option("--file", "file", metavar="PATH", help="Target file inside --repo (default: the task's [origin] path).")
@click.option("--function", metavar="NAME", help="Target __global__ function (default: the task's [origin]).")
@click.option("--branch", help="Branch to create (default: kernelpro/<task>-<run-id>).")
@click.option("--open-pr", is_flag=True, help="Push and open a pull request with gh (or print the commands).")
def export_command(run_dir: Path, repo: Path, file: str | None, function: str | None, branch: str | None,
                   open_pr: bool) -> None:
    """Commit RUN's verified winner into --repo on a new branch; write the PR description to RUN/PR.md."""
    from kernelpro import export

    result = export.export(run_dir, repo, file=file, function=function, branch=branch)
    click.echo(f"committed {result.commit[:12]} on branch {result.branch} ({result.file}); "
               f"PR description: {result.pr_file}")
    if open_pr:
        opened, text = export.open_pr(result, repo)
        click.echo(text if opened else f"gh not found; open the pull request with:\n{text}")


@cli.command("regress")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--tolerance", default="5%", show_default=True, help="Allowed slowdown of the median.")
@click.option("--junit", type=click.Path(path_type=Path), metavar="FILE", help="Write JUnit XML here.")
@click.option("--summary", type=click.Path(path_type=Path), metavar="FILE",
              help="Write a Markdown summary here (default: $GITHUB_STEP_SUMMARY when set).")
@click.option("--arch", help="Target architecture (default: the visible GPU).")
def regress_command(paths: tuple[Path, ...], tolerance: str, junit: Path | None, summary: Path | None,
                    arch: str | None) -> None:
    """Re-check and re-time the recorded baselines and winners (default: every run under results/) on this
    GPU; exit 1 on a regression or wrong results, 2 on an environment problem (no GPU, another GPU model,
    missing run files)."""
    from kernelpro import regress as rg
    from kernelpro.runner.device import require_gpu

    tol = rg.parse_tolerance(tolerance)
    try:
        runs = rg.find_runs(paths or (Path("results"),))
        require_gpu()
    except KernelproError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    measure = rg.RunnerMeasure(arch)
    try:
        report = rg.regress(runs, measure, tol)
    finally:
        measure.close()
    rg.write_outputs(report, junit=junit, summary=summary)
    click.echo(rg.markdown_summary(report))
    sys.exit(report.exit_code)


cli.add_command(init_command)


def _register_skills_commands() -> None:
    from kernelpro.skills_cli import propose_command, skills_group

    cli.add_command(propose_command)
    cli.add_command(skills_group)


_register_skills_commands()


def main() -> None:
    """Console-script entry point: run the CLI and turn errors into one-line messages."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KernelproError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a one-line report
        if os.environ.get("KERNELPRO_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with KERNELPRO_DEBUG=1 for the "
                   "traceback and please report it)", err=True)
        sys.exit(3)
    sys.exit(0)
