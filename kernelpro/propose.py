"""``kernelpro propose``: what the offline proposer would try first, and what the LLM would be taught, without a GPU.

From a static diagnosis (compile, ptxas, SASS; no counters) of the task's kernel (or a candidate), this
runs the offline proposer's first round, and for each proposal shows its diff and the SASS evidence of
its effect: the instruction classes whose counts changed (``global_load_128 0→2``, ``shuffle 0→10``,
``barrier 5→0``) and, for a structural rewrite, whether the change its registry entry intends is there.
It also lists the skills an LLM proposer would receive in full for this diagnosis (the catalog of all
skill descriptions is always in its prompt).

The roofline class of a task without counters comes from its ``[cost]``: arithmetic intensity (FLOP per
DRAM byte) at the benchmark size against the ridge point of an H100 SXM (FP32: 66.9 TFLOP/s over
3.35 TB/s = 20 FLOP/B): below the ridge is ``memory``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kernelpro.compiler import CANDIDATE_NAME, Compiler, CompileRequest
from kernelpro.rewrites.launch import launch_text
from kernelpro.rewrites.registry import REWRITES, sass_counts
from kernelpro.roofline import KNOWN_GPUS, DevicePeaks
from kernelpro.sass import KernelSass, sass_for_cubin
from kernelpro.search.interfaces import Diagnosis as SearchDiagnosis
from kernelpro.search.interfaces import Node, ProposalRequest
from kernelpro.search.records import Evaluation
from kernelpro.search.variant import Variant
from kernelpro.skill_library import Skill, load_skills, select, signals_of
from kernelpro.task import Task

EVIDENCE_CLASSES = ("global_load_narrow", "global_load_32", "global_load_64", "global_load_128", "global_store_narrow",
                    "global_store_32", "global_store_64", "global_store_128", "shared_load", "shared_store", "shuffle",
                    "barrier", "barrier_in_loops", "atomic_shared", "atomic_global", "tensor")
REFERENCE_GPU = KNOWN_GPUS[0]  # H100 SXM5: the ridge the [cost] classification uses


@dataclass(frozen=True)
class Proposed:
    """One first-round proposal: what changed, its diff, and what the SASS says about it."""

    variant: Variant
    structural: bool
    diff: str
    counts: tuple[tuple[str, int, int], ...]  # (instruction class, before, after) for the classes that changed
    intended: str | None  # the SASS change a structural rewrite aims at (None for knobs and flags)
    shows_intended: bool | None  # whether the SASS shows it (None when not structural or not compiled)
    launch: str | None  # the candidate's own launch block, when the proposal carries one

    @property
    def evidence(self) -> str:
        """``global_load_128 0→3, shuffle 0→10`` (or ``no SASS change``)."""
        return ", ".join(f"{c} {a}→{b}" for c, a, b in self.counts) or "no SASS change"


@dataclass(frozen=True)
class ProposeReport:
    """The static diagnosis, the first round of proposals and the skills an LLM would receive."""

    task: Task
    bound: str | None  # "memory"/"compute" from [cost], None without one
    intensity: float | None
    diagnosis: str
    signals: tuple[str, ...]
    proposals: tuple[Proposed, ...]
    skills: tuple[Skill, ...]  # all skills (their descriptions are always in the LLM's prompt)
    selected: tuple[Skill, ...]  # those whose full body the LLM would receive


def cost_bound(task: Task) -> tuple[str | None, float | None]:
    """``("memory" | "compute", FLOP per byte)`` from the task's ``[cost]`` at the benchmark size."""
    env = task.env()
    flops, moved = task.flops(env), task.bytes_moved(env)
    if flops is None or not moved:
        return None, None
    intensity = flops / moved
    return ("memory" if intensity < DevicePeaks.from_spec(REFERENCE_GPU).ridge("fp32") else "compute"), intensity


def _entry_sass(compiler: Compiler, task: Task, variant: Variant, arch: str) -> KernelSass | None:
    config = {**task.default_knobs(), **task.parse_knobs(dict(variant.knobs))}
    result = compiler.compile(CompileRequest(variant.source, arch, task.defines(config), variant.flags,
                                             source_name=CANDIDATE_NAME))
    if not result.ok or result.cubin is None:
        return None
    return next((k for k in sass_for_cubin(result.cubin).values() if k.base_name == task.kernel), None)


def evidence(compiler: Compiler, task: Task, parent: Variant, child: Variant, arch: str,
             before: KernelSass | None = None) -> tuple[tuple[tuple[str, int, int], ...], bool | None]:
    """The changed instruction-class counts from ``parent`` to ``child``, and whether the structural
    rewrite that made ``child`` (its origin) shows its intended change."""
    before = before or _entry_sass(compiler, task, parent, arch)
    after = _entry_sass(compiler, task, child, arch)
    if before is None or after is None:
        return (), None
    old, new = sass_counts(before), sass_counts(after)
    counts = tuple((c, old[c], new[c]) for c in EVIDENCE_CLASSES if old[c] != new[c])
    rewrite = next((r for r in REWRITES if child.origin == f"offline:{r.name}"), None)
    shows = None if rewrite is None else rewrite.shows(old, new)
    return counts, shows


def propose(task: Task, *, source: str | None = None, arch: str = "sm_90", n: int = 8,
            user_skills: Iterable[Path] = (), compiler: Compiler | None = None) -> ProposeReport:
    """The offline proposer's first round for ``source`` (default: the task's kernel), with evidence."""
    from kernelpro.optimize import ProfilingDiagnoser
    from kernelpro.search.offline import OfflineProposer

    compiler = compiler or Compiler()
    parent = Variant(task.source if source is None else source,
                     tuple((k, str(v)) for k, v in task.default_knobs().items()), (), "baseline", "task")
    result, static, _ = ProfilingDiagnoser(task, compiler, arch, use_ncu=False).analyze(parent)
    details = {**result.to_dict(), "static_findings": [f.code for f in static.findings]}
    diagnosis = SearchDiagnosis(result.render(), result.actions, details)
    node = Node(0, None, 0, 0, parent, Evaluation.passed(1.0), diagnosis)
    proposer = OfflineProposer(task, max_per_expansion=n, compiler=compiler, arch=arch)
    proposal = proposer.propose(ProposalRequest(node, n, (), "", frozenset(), 1.0))
    base = _entry_sass(compiler, task, parent, arch)
    names = {r.name: r for r in REWRITES}
    proposed = []
    for variant in proposal.variants:
        rewrite = names.get(variant.origin.removeprefix("offline:"))
        counts, shows = evidence(compiler, task, parent, variant, arch, base)
        diff = "".join(difflib.unified_diff(parent.source.splitlines(True), variant.source.splitlines(True),
                                            "task.cu", "proposal.cu", n=1))
        proposed.append(Proposed(variant, rewrite is not None, diff, counts, rewrite.intended if rewrite else None,
                                 shows, launch_text(variant.source)))
    skills = load_skills(user_skills)
    signals = signals_of(details, [a.kind for a in result.actions])
    bound, intensity = cost_bound(task)
    return ProposeReport(task, bound, intensity, result.render(), signals, tuple(proposed), skills,
                         select(skills, signals, parent.source))
