"""``kernelpro optimize``: the GPU runner, the diagnosis and a proposer wired into the search.

The search (:mod:`kernelpro.search`) sees three narrow interfaces; this module implements them on the
real pipeline and runs a journaled search into a run directory:

* :class:`WallEvaluator` — compile → correctness wall → timing (the runner's supervised worker);
* :class:`ProfilingDiagnoser` — static analysis + two-stage Nsight Compute profile → prescriptions, for the
  nodes the search expands (static analysis only when ncu is missing or may not read counters);
* a proposer — the LLM (Anthropic SDK) when asked for, else the offline proposer.

``run.json`` in the run directory records what the pieces were built from, so ``--resume`` rebuilds the
same ones. The winner is re-checked under compute-sanitizer before ``best.cu`` is written.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernelpro import __version__
from kernelpro.compiler import CANDIDATE_NAME, Compiler, CompileRequest
from kernelpro.errors import KernelproError
from kernelpro.report import RunFiles, write_run
from kernelpro.search import Budget, Evaluation, MCTSConfig, Node, Proposal, ProposalRequest, Proposer, Variant
from kernelpro.search import Diagnosis as SearchDiagnosis
from kernelpro.search import resume as resume_search
from kernelpro.search import start as start_search
from kernelpro.search.mcts import SearchResult
from kernelpro.task import Task

if TYPE_CHECKING:
    from kernelpro.runner.records import WallVerdict

RUN_FILE = "run.json"
PROFILE_WARMUP_LAUNCHES = 2  # ncu profiles the launch after these (caches and clocks settled)


@dataclass(frozen=True)
class RunSettings:
    """What a run was built from (``run.json``)."""

    task_path: str
    proposer: str  # "offline" | "llm"
    model: str | None
    arch: str
    seed: int
    profile: bool
    warm: bool
    command: str
    kernelpro_version: str = __version__
    created: str = ""
    skills: tuple[str, ...] = ()  # user skills folders added to the built-in ones (optimize --skills)

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", tuple(self.skills))  # a JSON list when loaded from run.json

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> RunSettings:
        path = run_dir / RUN_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise KernelproError(f"not a kernelpro run directory ({exc})", file=path,
                                 fix="pass the folder `kernelpro optimize` created (it holds run.json)") from None


def new_run_dir(root: Path, task: Task) -> Path:
    """``root/<task>/<UTC time>-<random>``: unique, and sorted by time."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return root / task.name / f"{stamp}-{secrets.token_hex(3)}"


def baseline_variant(task: Task) -> Variant:
    """The task's kernel as written, at its default knobs: the root of every search."""
    return Variant(task.source, tuple((k, str(v)) for k, v in task.default_knobs().items()), (), "baseline", "task")


# --- evaluation ----------------------------------------------------------------------------------

def roofline_pct(task: Task, knobs: Mapping[str, Any], seconds: float, peak_bytes: float | None,
                 peak_flops: float | None) -> float | None:
    """The time the roofline allows for the task's cost over the measured time, in percent."""
    if task.cost is None or seconds <= 0:
        return None
    env = task.env(knobs=knobs)
    bound = max(task.bytes_moved(env) / peak_bytes if peak_bytes else 0.0,
                task.flops(env) / peak_flops if peak_flops else 0.0)
    return 100.0 * bound / seconds if bound > 0 else None


class WallEvaluator:
    """The search's evaluator on the real pipeline: compile, correctness wall, timing (runner worker)."""

    def __init__(self, task: Task, runner: Any, *, warm: bool = False,
                 observer: Callable[[Variant, Evaluation], None] | None = None) -> None:
        from kernelpro.runner.evaluate import WallOptions
        from kernelpro.runner.timing import TimingOptions

        self.task = task
        self.runner = runner  # kernelpro.runner.evaluate.Evaluator
        self.options = WallOptions(timing=TimingOptions(warm=warm))
        self.observer = observer

    def evaluate(self, variant: Variant) -> Evaluation:
        from kernelpro.runner.commands import achieved_rates

        knobs = self.task.parse_knobs(variant.knob_values)
        started = time.perf_counter()
        self.runner.compiler.compile(CompileRequest(variant.source, self.runner.arch, self.task.defines(knobs),
                                                    variant.flags, source_name=CANDIDATE_NAME))
        compile_s = time.perf_counter() - started
        verdict = self.runner.check(self.task, variant.source, knobs=knobs, flags=variant.flags,
                                    options=self.options, source_name=CANDIDATE_NAME)
        timing_s = verdict.timing.elapsed_s if verdict.timing else 0.0
        stages = {"compile": compile_s, "wall": max(verdict.seconds - timing_s, 0.0), "timing": timing_s}
        if not verdict.ok or verdict.timing is None:
            failure = verdict.failures[0] if verdict.failures else None
            stage = "compile" if failure and failure.check == "compile" else "wall"
            message = f"{failure.check}: {failure.message}" if failure else "no timing"
            evaluation = Evaluation.failed(stage, message.replace("\n", " | "), stage_seconds=stages,
                                           summary={"seed": verdict.seed})
        else:
            t = verdict.timing
            rates = achieved_rates(self.task, verdict, knobs)
            summary: dict[str, object] = {
                "median_us": t.median_s * 1e6, "p20_us": t.p20_s * 1e6, "p80_us": t.p80_s * 1e6,
                "std_us": t.std_s * 1e6, "n": t.n, "method": t.method, "l2": t.l2, "seed": verdict.seed,
                "flags": [f.check for f in verdict.flags],
            }
            pct = roofline_pct(self.task, knobs, t.median_s, rates.get("peak_bytes_per_s"),
                               rates.get("peak_flops_per_s"))
            if pct is not None:
                summary["roofline_pct"] = pct
            if verdict.device is not None:
                summary["gpu"] = verdict.device.name
            evaluation = Evaluation.passed(t.median_s * 1e6, stage_seconds=stages, summary=summary)
        if self.observer:
            self.observer(variant, evaluation)
        return evaluation


class ProfilingDiagnoser:
    """Static analysis plus a two-stage Nsight Compute profile, digested into prescriptions.

    ncu profiles a standalone worker that launches the node's kernel at the benchmark size. When ncu is
    missing or may not read counters, the diagnosis falls back to static analysis and says so once.
    """

    def __init__(self, task: Task, compiler: Compiler, arch: str, *, use_ncu: bool = True,
                 warn: Callable[[str], None] | None = None) -> None:
        self.task = task
        self.compiler = compiler
        self.arch = arch
        self.use_ncu = use_ncu
        self.warn = warn or (lambda message: print(message, file=sys.stderr))

    def analyze(self, variant: Variant) -> tuple[Any, Any, Any]:
        """``(diagnosis, static report, diagnosis context)`` of a variant (also for ``kernelpro analyze``)."""
        from kernelpro.diagnosis import build_context, diagnose
        from kernelpro.static_analysis import analyze_static

        knobs = self.task.parse_knobs(variant.knob_values)
        static = analyze_static(self.task, source=variant.source, arch=self.arch, knobs=knobs,
                                flags=variant.flags, compiler=self.compiler)
        profile = self._profile(variant, knobs, static) if self.use_ncu and static.compiled else None
        ctx = build_context(profile, task=self.task, static=static, knobs=knobs)
        return diagnose(ctx), static, ctx

    def diagnose(self, node: Node) -> SearchDiagnosis:
        result, _, _ = self.analyze(node.variant)
        return SearchDiagnosis(text=result.render(), actions=result.actions, details=result.to_dict())

    def _profile(self, variant: Variant, knobs: Mapping[str, Any], static: Any) -> Any:
        from kernelpro.profile import NcuOptions, ProfileError, profile_two_stage
        from kernelpro.runner.profiled_program import launch_once_program

        entry = static.entry
        result = self.compiler.compile(CompileRequest(variant.source, self.arch, self.task.defines(knobs),
                                                      variant.flags, source_name=CANDIDATE_NAME))
        try:
            with launch_once_program(self.task, result.cubin, entry.symbol, knobs,
                                     PROFILE_WARMUP_LAUNCHES + 1) as program:
                return profile_two_stage(program, NcuOptions(kernel=self.task.kernel,
                                                             launch_skip=PROFILE_WARMUP_LAUNCHES)).profile
        except (ProfileError, KernelproError) as exc:
            self.warn(f"profiling unavailable, diagnosing from static analysis only: {exc}")
            self.use_ncu = False
            return None


class ObservedProposer:
    """Wraps a proposer to report each proposal's usage (for the live display)."""

    def __init__(self, inner: Proposer, observer: Callable[[Proposal], None]) -> None:
        self.inner = inner
        self.observer = observer

    def propose(self, request: ProposalRequest) -> Proposal:
        proposal = self.inner.propose(request)
        self.observer(proposal)
        return proposal


def make_proposer(kind: str, task: Task, model: str | None, *, compiler: Compiler | None = None,
                  arch: str | None = None, skills: tuple[str, ...] = ()) -> Proposer:
    """The LLM proposer (needs ANTHROPIC_API_KEY) or the offline one (which compiles its candidates with
    ``compiler`` for ``arch`` to drop no-ops before they cost a GPU evaluation)."""
    if kind == "llm":
        from kernelpro.search.llm import LLMProposer
        from kernelpro.skill_library import load_skills

        loaded = load_skills(Path(d) for d in skills)  # built-in skills plus the user's
        return LLMProposer(task, model=model, skills=loaded) if model else LLMProposer(task, skills=loaded)
    if kind == "offline":
        from kernelpro.search.offline import OfflineProposer

        return OfflineProposer(task, compiler=compiler, arch=arch)
    raise KernelproError(f"unknown proposer {kind!r}", fix="use --proposer llm or --proposer offline")


def default_proposer() -> str:
    """``llm`` when an Anthropic key is set, else ``offline`` (so everything works without a network)."""
    return "llm" if os.environ.get("ANTHROPIC_API_KEY") else "offline"


# --- the run ---------------------------------------------------------------------------------------

def final_check_outcome(verdict: WallVerdict) -> tuple[bool, str]:
    """Whether a winner passed its final check (wall + compute-sanitizer), and the report's line about it.

    The line claims a clean compute-sanitizer run only when one happened: an inconclusive run (timed out,
    no summary, the checked program failed) or one that could not start is said as such.
    """
    if not verdict.ok:
        return False, f"failed the final check: {verdict.failures[0]}"
    inconclusive = [f.message for f in verdict.flags if f.check == "sanitizer"]
    if inconclusive:
        return True, f"passed the wall again; compute-sanitizer gave no verdict: {inconclusive[0]}"
    not_run = [n for n in verdict.notes if "compute-sanitizer" in n]
    if not_run:
        return True, f"passed the wall again; {not_run[0]}"
    notes = f" ({'; '.join(verdict.notes)})" if verdict.notes else ""
    return True, f"passed the wall again and compute-sanitizer{notes}"



def verify_winner(task: Task, result: SearchResult, check: Callable[[Node], tuple[bool, str]],
                  tries: int = 3) -> tuple[Node, list[str]]:
    """The fastest node that passes ``check`` (compute-sanitizer), trying the ``tries`` fastest; the baseline
    when none does. Returns the node and what happened, for the report."""
    notes: list[str] = []
    ranked = sorted((n for n in result.tree if n.ok), key=lambda n: n.time_us)
    for node in ranked[:tries]:
        ok, message = check(node)
        notes.append(f"node {node.id}: {message}")
        if ok:
            return node, notes
    notes.append("no candidate passed the final check: the baseline is reported")
    return result.baseline, notes


def run_search(run_dir: Path, task: Task, *, evaluator: Any, proposer: Proposer, diagnoser: Any,
               budget: Budget, seed: int, resume: bool) -> SearchResult:
    """Start (or resume) the journaled search in ``run_dir``."""
    if resume:
        return resume_search(run_dir, evaluator, proposer, diagnoser, budget=budget)
    return start_search(run_dir, baseline_variant(task), evaluator, proposer, diagnoser,
                        config=MCTSConfig(seed=seed), budget=budget)


def finish_run(run_dir: Path, task: Task, result: SearchResult, settings: RunSettings,
               check: Callable[[Node], tuple[bool, str]] | None = None,
               extra_header: Mapping[str, str] | None = None) -> tuple[RunFiles, Node, list[str]]:
    """Verify the winner (when ``check`` is given) and write the result files."""
    best, notes = (result.best, []) if check is None else verify_winner(task, result, check)
    if best.id != result.best.id:
        result = SearchResult(best, result.baseline, result.stop_reason, result.evaluations, result.iterations,
                              result.elapsed_s, result.stage_seconds, result.usage, result.tree)
    header = {"task": f"{task.name} ({settings.task_path})", "kernelpro": settings.kernelpro_version,
              "proposer": settings.proposer + (f" ({settings.model})" if settings.model else ""),
              "arch": settings.arch, "seed": str(settings.seed), "command": f"`{settings.command}`",
              **dict(extra_header or {})}
    if notes:
        header["final check"] = "; ".join(notes)
    return write_run(run_dir, task, result, header=header), best, notes


@dataclass(frozen=True)
class OptimizeOutcome:
    """What one ``kernelpro optimize`` run produced."""

    result: SearchResult
    files: RunFiles
    best: Node  # the verified winner (may differ from result.best when that failed the final check)


def optimize_task(task: Task, settings: RunSettings, run_dir: Path, *, budget: Budget, resume: bool,
                  console: Any) -> OptimizeOutcome:
    """Run (or resume) the search for ``task`` on this machine's GPU, verify the winner, write the run folder.

    Ctrl-C propagates as KeyboardInterrupt after the journal holds every evaluated node.
    """
    from kernelpro.live import LiveStatus
    from kernelpro.runner.device import require_gpu
    from kernelpro.runner.evaluate import Evaluator, WallOptions
    from kernelpro.toolchain import find_tool

    compiler = Compiler()
    proposer = make_proposer(settings.proposer, task, settings.model, compiler=compiler, arch=settings.arch,
                             skills=tuple(settings.skills))
    require_gpu()  # after the proposer, so a missing API key is reported even on a machine without a GPU
    use_ncu = settings.profile and find_tool("ncu", required=False) is not None
    if settings.profile and not use_ncu:
        console.print("[yellow]ncu not found: diagnosing from static analysis only[/yellow]")
    if not resume:
        settings.save(run_dir)
    with Evaluator(compiler=compiler, arch=settings.arch) as runner:
        with LiveStatus(console, task.name) as status:
            evaluator = WallEvaluator(task, runner, warm=settings.warm, observer=status.evaluated)
            diagnoser = ProfilingDiagnoser(task, compiler, settings.arch, use_ncu=use_ncu,
                                           warn=lambda m: console.print(f"[yellow]{m}[/yellow]"))
            observed = ObservedProposer(proposer, status.proposed)
            result = run_search(run_dir, task, evaluator=evaluator, proposer=observed, diagnoser=diagnoser,
                                budget=budget, seed=settings.seed, resume=resume)

        def final_check(node: Node) -> tuple[bool, str]:  # the winner must also be clean under compute-sanitizer
            verdict = runner.check(task, node.variant.source, knobs=task.parse_knobs(node.variant.knob_values),
                                   flags=node.variant.flags, options=WallOptions(time=False, sanitizer=True),
                                   source_name=CANDIDATE_NAME)
            return final_check_outcome(verdict)

        gpu = str(result.best.evaluation.summary.get("gpu", "unknown"))
        files, best, _ = finish_run(run_dir, task, result, settings, final_check, {"GPU": gpu})
    return OptimizeOutcome(result, files, best)
