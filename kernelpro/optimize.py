"""``kernelpro optimize``: the GPU runner, the diagnosis and a proposer wired into the search.

The search (:mod:`kernelpro.search`) sees three narrow interfaces; this module implements them on the
real pipeline and runs a journaled search into a run directory:

* :class:`WallEvaluator` — compile → correctness wall → timing (the runner's supervised worker);
* :class:`ProfilingDiagnoser` — static analysis + two-stage Nsight Compute profile → prescriptions, for the
  nodes the search expands (static analysis only when ncu is missing or may not read counters);
* a proposer — the LLM (Anthropic SDK) when asked for, else the offline proposer.

``run.json`` in the run directory records what the pieces were built from, so ``--resume`` rebuilds the
same ones. The winner is re-checked under compute-sanitizer (memcheck at the smallest and the benchmark
size, racecheck, synccheck) before ``best.cu`` is written; where the tool cannot run, the report says
"NOT SANITIZED".
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
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
from kernelpro.parallel_run import Devices, ObservedAsync, search_evaluator
from kernelpro.report import RunFiles, write_run
from kernelpro.runner.gpu_pool import ExclusiveDiagnoser, pin_tools_to
from kernelpro.search import Budget, Evaluation, MCTSConfig, Node, Proposal, ProposalRequest, Proposer, Variant
from kernelpro.search import Diagnosis as SearchDiagnosis
from kernelpro.search import resume as resume_search
from kernelpro.search import start as start_search
from kernelpro.search.knobtune import KnobSpace
from kernelpro.search.mcts import SearchResult
from kernelpro.task import Task

if TYPE_CHECKING:
    from kernelpro.runner.records import WallVerdict

RUN_FILE = "run.json"
MAX_KNOB_CONFIGS = 200_000  # knob combinations enumerated for the knob tuner (constraints checked on each)
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
                                           summary={"seed": verdict.seed, **wall_evidence(verdict)})
        else:
            t = verdict.timing
            rates = achieved_rates(self.task, verdict, knobs)
            summary: dict[str, object] = {
                "median_us": t.median_s * 1e6, "p20_us": t.p20_s * 1e6, "p80_us": t.p80_s * 1e6,
                "std_us": t.std_s * 1e6, "n": t.n, "method": t.method, "l2": t.l2, "seed": verdict.seed,
                "flags": [f.check for f in verdict.flags], **wall_evidence(verdict),
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


def wall_slot(task: Task, arch: str, warm: bool, supervisor: Any) -> WallEvaluator:
    """One GPU's evaluator for the parallel search: its own supervised worker, the same wall (picklable as a
    ``functools.partial`` for Ray actors)."""
    from kernelpro.runner.evaluate import Evaluator

    return WallEvaluator(task, Evaluator(supervisor, Compiler(), arch), warm=warm)


def compile_to_files(task: Task, arch: str, variant: Variant) -> dict[str, bytes]:
    """Compile ``variant`` into this machine's compile cache and return the entry's files as bytes (the compile
    pool's job: on this machine the bytes are dropped, on a Ray cluster they travel to the GPU's node)."""
    compiler = Compiler()
    knobs = task.parse_knobs(variant.knob_values)
    result = compiler.compile(CompileRequest(variant.source, arch, task.defines(knobs), variant.flags,
                                             source_name=CANDIDATE_NAME))
    entry = compiler.cache_dir / result.key
    if not entry.is_dir():  # not cached (a compile that timed out): the GPU's side compiles it again
        return {}
    return {f"{result.key}/{p.name}": p.read_bytes() for p in sorted(entry.iterdir()) if p.is_file()}


class ProfilingDiagnoser:
    """Static analysis plus a two-stage Nsight Compute profile, digested into prescriptions.

    ncu profiles a standalone worker that launches the node's kernel at the benchmark size. Profiling
    failures are of two kinds:

    * **permanent** (ncu missing, no permission to read counters, the profiler cannot start here):
      ncu is switched off for the rest of the run, said once through ``warn`` and kept in
      ``disabled`` (for ``report.md``); every later diagnosis comes from static analysis only;
    * **anything else** (an ncu timeout or crash, the kernel not profiled, a metric the roofline or the
      device peaks need missing): only this node's diagnosis fails over to static analysis; its
      details carry ``profile_error``, ``node_failures`` counts it, and the next node is profiled again.
    """

    def __init__(self, task: Task, compiler: Compiler, arch: str, *, use_ncu: bool = True,
                 warn: Callable[[str], None] | None = None) -> None:
        self.task = task
        self.compiler = compiler
        self.arch = arch
        self.use_ncu = use_ncu
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.disabled: str | None = None  # why ncu was switched off for the run (a permanent cause)
        self.last_error: Exception | None = None  # the last analyze()'s profiling error, None when it profiled
        self.node_failures: dict[int, str] = {}  # node id -> its profiling error (that node only)

    def analyze(self, variant: Variant) -> tuple[Any, Any, Any]:
        """``(diagnosis, static report, diagnosis context)`` of a variant (also for ``kernelpro analyze``).

        After it, ``last_error`` is the profiling error when profiling was tried and failed.
        """
        from kernelpro.diagnosis import build_context, diagnose
        from kernelpro.static_analysis import analyze_static

        knobs = self.task.parse_knobs(variant.knob_values)
        static = analyze_static(self.task, source=variant.source, arch=self.arch, knobs=knobs,
                                flags=variant.flags, compiler=self.compiler)
        self.last_error = None
        if len(static.launches) > 1:  # a launch sequence: each kernel profiled and diagnosed on its own
            from kernelpro.sequence_diagnosis import diagnose_sequence

            profiles = [self._profile(variant, knobs, static, i) if self.use_ncu else None
                        for i in range(len(static.launches))]
            result = diagnose_sequence(self.task, static, profiles, knobs)
            return result, static, result.dominant.context
        profile = self._profile(variant, knobs, static) if self.use_ncu and static.compiled else None
        ctx = build_context(profile, task=self.task, static=static, knobs=knobs)
        return diagnose(ctx), static, ctx

    def diagnose(self, node: Node) -> SearchDiagnosis:
        result, _, _ = self.analyze(node.variant)
        text, details = result.render(), result.to_dict()
        if self.last_error is not None and self.use_ncu:  # this node's profile failed; the next is tried again
            reason = profile_error_text(self.last_error)
            self.node_failures[node.id] = reason
            details["profile_error"] = reason
            text = f"(Nsight Compute failed on this kernel; static analysis only: {reason[:200]})\n{text}"
            self.warn(f"profiling node {node.id} failed, static analysis only for it: {reason}")
        return SearchDiagnosis(text=text, actions=result.actions, details=details)

    def report_line(self) -> str:
        """What ``report.md`` says about profiling in this run."""
        if self.disabled:
            line = self.disabled
        elif not self.use_ncu:
            line = "off: static analysis only"
        else:
            line = "Nsight Compute, two stages"
        if self.node_failures:
            nodes = ", ".join(str(n) for n in sorted(self.node_failures))
            first = next(iter(self.node_failures.values()))
            line += f"; failed on node(s) {nodes} (static analysis only for those; first: {first})"
        return line

    def _profile(self, variant: Variant, knobs: Mapping[str, Any], static: Any, index: int = 0) -> Any:
        """ncu's profile of launch ``index`` of the variant's sequence (the whole sequence runs each time)."""
        from kernelpro.candidate_launch import candidate_plan
        from kernelpro.errors import ToolchainError
        from kernelpro.instantiate import plan_symbols, with_instantiations
        from kernelpro.profile import NcuOptions, ProfilerUnavailable, profile_two_stage
        from kernelpro.runner.profiled_program import launch_once_program

        try:
            plan = candidate_plan(self.task, variant.source, knobs=knobs)
            result = self.compiler.compile(CompileRequest(with_instantiations(variant.source, plan), self.arch,
                                                          self.task.defines(knobs), variant.flags,
                                                          source_name=CANDIDATE_NAME))
            symbols, _ = plan_symbols(result, plan, dict(self.task.defines(knobs)))
            name = plan[index].kernel_name
            # ncu counts launches of the filtered kernel: skip the warm-up sequences, then earlier launches of it
            earlier = sum(1 for launch in plan[:index] if launch.kernel_name == name)
            per_sequence = sum(1 for launch in plan if launch.kernel_name == name)
            with launch_once_program(self.task, result.cubin, static.entry.symbol, knobs,
                                     PROFILE_WARMUP_LAUNCHES + 1, source=variant.source, symbols=symbols) as program:
                options = NcuOptions(kernel=name, launch_skip=PROFILE_WARMUP_LAUNCHES * per_sequence + earlier)
                return profile_two_stage(program, options).profile
        except (ToolchainError, ProfilerUnavailable) as exc:  # permanent: no tool, no permission
            self.last_error = exc
            self.use_ncu = False
            self.disabled = f"Nsight Compute disabled for the rest of the run: {profile_error_text(exc)}"
            self.warn(f"{self.disabled}; diagnosing from static analysis only")
            return None
        except Exception as exc:  # noqa: BLE001 - ProfileError, MetricError, OSError...: this node only
            self.last_error = exc
            return None


def profile_error_text(exc: BaseException) -> str:
    """A profiling error in one line, with the ncu command that failed when known."""
    from kernelpro.profile import ProfileError

    if isinstance(exc, ProfileError):
        text = exc.with_command()
    elif isinstance(exc, KernelproError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


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

def wall_evidence(verdict: WallVerdict) -> dict[str, object]:
    """What the journal keeps of the wall's run besides the seed: the drawn size and the timed launches verified."""
    return {key: verdict.checked[key] for key in ("drawn_size", "timed_launches") if key in verdict.checked}


def final_check_outcome(verdict: WallVerdict) -> tuple[bool, str]:
    """Whether a winner passed its final check (wall + compute-sanitizer), and the report's line about it.

    The line claims a clean compute-sanitizer run only when one happened: an inconclusive run (timed out,
    no summary, the checked program failed) or one that could not start is said as such.
    """
    if not verdict.ok:
        return False, f"failed the final check: {verdict.failures[0]}"
    inconclusive = [f.message for f in verdict.flags if f.check in ("sanitizer", "not-sanitized")]
    if inconclusive:
        return True, f"passed the wall again; NOT SANITIZED: {inconclusive[0]}"
    not_run = [n for n in verdict.notes if "compute-sanitizer" in n]
    if not_run:
        return True, f"passed the wall again; {not_run[0]}"
    notes = f" ({'; '.join(verdict.notes)})" if verdict.notes else ""
    return True, f"passed the wall again and compute-sanitizer (memcheck, racecheck, synccheck){notes}"



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


def task_knob_space(task: Task) -> KnobSpace | None:
    """The task's valid knob configurations for the search's knob tuner; None when the task has no knob with
    two values, or more than ``MAX_KNOB_CONFIGS`` combinations to enumerate (the offline proposer's knob
    steps are then the only knob moves)."""
    combinations = math.prod(len(k.values) for k in task.knobs.values())
    if combinations > MAX_KNOB_CONFIGS or not any(len(k.values) > 1 for k in task.knobs.values()):
        return None
    return KnobSpace.from_configs({n: k.values for n, k in task.knobs.items()}, task.knob_space())


def run_search(run_dir: Path, task: Task, *, evaluator: Any, proposer: Proposer, diagnoser: Any,
               budget: Budget, seed: int, resume: bool) -> SearchResult:
    """Start (or resume) the journaled search in ``run_dir``; the knob tuner shares its expansions with the
    proposer (:mod:`kernelpro.search.knob_expansion`) and is rebuilt from the journal on resume."""
    space = task_knob_space(task)
    if resume:
        return resume_search(run_dir, evaluator, proposer, diagnoser, budget=budget, knob_space=space)
    return start_search(run_dir, baseline_variant(task), evaluator, proposer, diagnoser,
                        config=MCTSConfig(seed=seed), budget=budget, knob_space=space)


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
                  console: Any, devices: Devices | None = None) -> OptimizeOutcome:
    """Run (or resume) the search for ``task`` on this machine's GPU (or ``devices``: several GPUs, a Ray
    cluster, see :mod:`kernelpro.parallel_run`), verify the winner, write the run folder.

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
    if not resume:
        settings.save(run_dir)
    with Evaluator(compiler=compiler, arch=settings.arch) as runner:
        with LiveStatus(console, task.name) as status:
            evaluator = WallEvaluator(task, runner, warm=settings.warm)
            diagnoser = ProfilingDiagnoser(task, compiler, settings.arch, use_ncu=use_ncu, warn=status.note)
            if settings.profile and not use_ncu:
                diagnoser.disabled = "Nsight Compute not found (ncu): static analysis only"
                status.note(diagnoser.disabled)
            elif not settings.profile:
                diagnoser.disabled = "off (--no-profile): static analysis only"
            observed = ObservedProposer(proposer, status.proposed)

            slot = functools.partial(wall_slot, task, settings.arch, settings.warm)
            precompile = functools.partial(compile_to_files, task, settings.arch)
            with search_evaluator(devices or Devices(), slot, precompile, evaluator) as (pool, gpus, lock):
                status.gpus = gpus
                profiler = diagnoser if lock is None else ExclusiveDiagnoser(diagnoser, lock)
                result = run_search(run_dir, task, evaluator=ObservedAsync(pool, status.finished), proposer=observed,
                                    diagnoser=profiler, budget=budget, seed=settings.seed, resume=resume)

        def final_check(node: Node) -> tuple[bool, str]:  # the winner must also be clean under compute-sanitizer
            verdict = runner.check(task, node.variant.source, knobs=task.parse_knobs(node.variant.knob_values),
                                   flags=node.variant.flags,
                                   options=WallOptions(time=False, sanitizer=True, sanitize_all=True),
                                   source_name=CANDIDATE_NAME)
            return final_check_outcome(verdict)

        gpu = str(result.best.evaluation.summary.get("gpu", "unknown"))
        # The final check's compute-sanitizer runs on the first GPU the search used (--gpus 2,3: GPU 2).
        with pin_tools_to(gpus[0]) if devices is not None and devices.gpus else contextlib.nullcontext():
            files, best, _ = finish_run(run_dir, task, result, settings, final_check,
                                        {"GPU": gpu, "GPUs (by slot)": ", ".join(gpus),
                                         "profiling": diagnoser.report_line()})
    return OptimizeOutcome(result, files, best)
