"""The offline proposer: children made by executing the diagnosis' actions, then a fixed ladder of moves.

No model and no network: this is the default proposer when no API key is set. For a parent it lists
candidate moves in a fixed order, builds each one (a source transform from :mod:`kernelpro.transforms`,
a knob change inside the task's constraints, or an nvcc flag), skips those that don't apply, are
already in the tree (``seen_keys``) or already failed as the same change on this parent (``feedback``),
and returns the first ``n``. The order is deterministic, so the same request always gets the same
proposal; a parent whose moves are all used gets an empty proposal, which the search treats as
saturated.

**Order.** First the parent's diagnosis actions, best first as ranked (each action kind becomes a
transform, a knob change or a flag). Then the ladder, by typical gain on real first-version kernels:

1. *Structural rewrites* (:data:`kernelpro.rewrites.registry.REWRITES`, each explained by a skill):
   16-byte loads/stores of any element type (most first versions are memory-bound streaming loops;
   128-bit accesses cut load/store instructions 4-8x), shared-memory tree reductions → warp shuffles,
   block-per-row → warp-per-row (with the candidate's own launch).
2. *Wider block x at the same thread count* (2-D blocks): a warp that reads 32 consecutive floats
   moves whole 128-byte lines; 16x16 blocks split warps over two rows (naive GEMM, stencils).
3. *__restrict__ / const* (``add_restrict``): read-only loads take the non-coherent path
   (``LDG.CONSTANT``) and the compiler may reorder loads past stores.
4. *Fast transcendentals* (``fast_math_intrinsics``): ``__expf`` is a scale and an ``EX2``, ``expf``
   about ten instructions of range reduction around it: the arithmetic of softmax- and GELU-like kernels.
5. *Knob neighbours*: each knob one step up, then down (block-size knobs first), within the
   constraints: the levers the task author exposed.
6. *Unroll stride loops by 4*, then *fully unroll constant-trip loops*: more independent loads in
   flight per thread; nvcc leaves block- and grid-stride loops rolled.
7. ``--use_fast_math``: approximate division and square root, flush denormals, for the whole unit.
8. ``__launch_bounds__(block)``, then ``__launch_bounds__(block, full occupancy)``: register budget
   known to ptxas; the second caps registers for full occupancy.
9. ``-Xptxas -dlcm=cg``: streaming loads bypass L1 (helps when L1 thrashes, rarely much).
10. ``-maxrregcount`` at the next occupancy step (only with a compiler, which tells the registers).

Each child's ``origin`` is ``offline:<action kind>`` (``offline:fast_math_intrinsics`` for the one
ladder move no action kind names) and its ``change`` says exactly what was edited.

**Compile check** (``verify=True``, the default): candidates are compiled, a batch at a time in
parallel threads, through the compile cache (by default the evaluator's, whose own compile may then be a
cache hit), and dropped when they do not compile, when they newly spill registers, or when they are no-ops:
the entry kernel's SASS, resources and launch geometry equal the parent's (a ``__launch_bounds__``
ptxas did not need, an unroll nvcc had already done). That costs a fraction of a second per candidate
and saves a GPU evaluation per no-op. The results are memoized by variant key; being a pure function of
the key, the memo does not make proposals depend on earlier calls.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kernelpro.actions import Action
from kernelpro.candidate_launch import candidate_plan, launch_block_text
from kernelpro.compiler import CANDIDATE_NAME, Compiler, CompileRequest, default_arch
from kernelpro.errors import KernelproError
from kernelpro.instantiate import launch_symbol, with_instantiations
from kernelpro.occupancy import arch_limits, what_if
from kernelpro.rewrites.registry import REWRITES, StructuralRewrite
from kernelpro.rewrites.vectorize import vectorize
from kernelpro.sass import sass_for_cubin
from kernelpro.search.interfaces import Node, Proposal, ProposalRequest
from kernelpro.search.variant import Variant
from kernelpro.task import Launch, Task
from kernelpro.transforms import (
    Rewrite,
    TransformError,
    add_restrict,
    fast_math_intrinsics,
    grid_stride_loop,
    pad_shared,
    set_launch_bounds,
    unroll_loops,
    vectorize_elementwise,
)

ORIGIN = "offline"
_MEMO_SIZE = 4096  # compile checks remembered (each holds one kernel's SASS text)
_C_EXPR = re.compile(r"[\w\s*+()-]+")  # a launch expression that is also valid C
_IDENT_ONLY = re.compile(r"\s*(?:[A-Za-z_]\w*|\d+)\s*")  # needs no parentheses in a product
_FEEDBACK = re.compile(r"^'(.*)' → ", re.DOTALL)


class _Skip(Exception):
    """A move that does not apply to this parent."""


@dataclass(frozen=True)
class _Built:
    """What a compile check keeps of a variant: whether it built, spills, and what the GPU would run."""

    ok: bool
    spills: bool = False
    registers: int = 0
    static_shared: int = 0
    barriers: int = 1
    fingerprint: tuple[Any, ...] = ()


class OfflineProposer:
    """Proposes children by executing the diagnosis' actions, then the ladder in the module docstring.

    ``max_per_expansion`` caps the variants per proposal (the search asks for ``n``; the smaller wins).
    ``verify`` compiles each candidate with ``compiler`` (default: a :class:`Compiler` on the shared
    cache) for ``arch`` (default: the visible GPU's, else sm_90) and drops failures, new spills and
    no-ops; without it nothing is compiled and the ``-maxrregcount`` step is not proposed.
    """

    def __init__(self, task: Task, *, max_per_expansion: int = 8, verify: bool = True,
                 compiler: Compiler | None = None, arch: str | None = None) -> None:
        if max_per_expansion < 1:
            raise ValueError(f"max_per_expansion must be >= 1, got {max_per_expansion}")
        self.task = task
        self.max_per_expansion = max_per_expansion
        self.verify = verify
        self.compiler = compiler or (Compiler() if verify else None)
        self.arch = arch or default_arch()
        self._built: dict[str, _Built] = {}  # variant key → compile check (a pure function of the key)

    # -- the protocol --------------------------------------------------------------------------------

    def propose(self, request: ProposalRequest) -> Proposal:
        parent = request.parent.variant
        wanted = min(request.n, self.max_per_expansion)
        fresh = self._fresh(request)
        chosen: list[Variant] = []
        while len(chosen) < wanted:
            batch = list(itertools.islice(fresh, wanted - len(chosen)))
            if not batch:
                break
            if self.verify:  # compiled together, in parallel; the order stays the ladder's
                self._build_all([parent, *batch])
                batch = [v for v in batch if self._worth_evaluating(parent, v)]
            chosen += batch
        return Proposal(tuple(chosen))

    def _fresh(self, request: ProposalRequest) -> Iterator[Variant]:
        """Candidates not in the tree, not repeated, and not a change that already failed on this parent."""
        failed = {m.group(1) for text in request.feedback if (m := _FEEDBACK.match(text))}
        keys: set[str] = set()
        for variant in self.candidates(request.parent):
            if variant.key not in request.seen_keys and variant.key not in keys and variant.change not in failed:
                keys.add(variant.key)
                yield variant

    def candidates(self, node: Node) -> Iterator[Variant]:
        """Every move for ``node`` in order (diagnosis actions, then the ladder), unfiltered but applicable."""
        parent = node.variant
        actions = node.diagnosis.actions if node.diagnosis else ()
        moves = [lambda a=a: self._from_action(parent, a) for a in actions if a.applicable_offline]
        for build in moves + self._ladder(parent):
            try:
                yield from build()
            except (_Skip, TransformError):
                continue

    # -- diagnosis actions ---------------------------------------------------------------------------

    def _from_action(self, parent: Variant, action: Action) -> list[Variant]:
        p, kind = action.params, action.kind
        if kind == "set_knob":
            return [self._knobs(parent, {p["name"]: p["value"]}, kind)]
        if kind == "block_size":
            return [self._block_threads(parent, int(p["new"]), p.get("knob"), kind)]
        if kind == "increase_grid":
            return [self._grid_at_least(parent, int(p["min_blocks"]), p.get("knob"), kind)]
        if kind == "launch_bounds":
            threads = self._threads(parent)
            if int(p["max_threads"]) < threads:
                raise _Skip  # the launch would fail with this block size
            max_threads = self._block_expr(parent) if int(p["max_threads"]) == threads else p["max_threads"]
            return [self._rewrite(parent, kind, set_launch_bounds, max_threads, p.get("min_blocks"))]
        if kind == "maxrregcount":
            return [self._flag(parent, f"-maxrregcount={int(p['registers'])}", kind)]
        if kind == "nvcc_flag":
            return [self._flag(parent, p["flag"], kind)]
        if kind == "vectorize_loads":
            width = int(p.get("width", 128))
            return [self._rewrite(parent, kind, vectorize if width == 128 else vectorize_elementwise,
                                  *(() if width == 128 else (width,)))]
        if kind == "pad_shared":
            return [self._rewrite(parent, kind, pad_shared, p["array"], p["cols"])]
        if kind == "unroll":
            return [self._rewrite(parent, kind, unroll_loops, p.get("factor"))]
        if kind == "add_restrict":
            return [self._rewrite(parent, kind, add_restrict)]
        if kind == "grid_stride_loop":
            return [self._rewrite(parent, kind, grid_stride_loop)]
        raise _Skip  # use_tensor_cores and anything newer: not a mechanical edit

    # -- the ladder ----------------------------------------------------------------------------------

    def _ladder(self, parent: Variant) -> list[Callable[[], list[Variant]]]:
        """The generic moves in the order (and for the reasons) of the module docstring.

        Moves that are no action kind take their origin from the transform: ``offline:fast_math_intrinsics``.
        """
        def strided_unroll(source: str, kernel: str) -> Rewrite:
            return unroll_loops(source, kernel, 4, strided_only=True)

        return [
            *(lambda r=r: [self._structural(parent, r)] for r in REWRITES),
            lambda: self._block_reshapes(parent),
            lambda: [self._rewrite(parent, "add_restrict", add_restrict)],
            lambda: [self._rewrite(parent, "fast_math_intrinsics", fast_math_intrinsics)],
            lambda: self._knob_neighbours(parent),
            lambda: [self._rewrite(parent, "unroll", strided_unroll)],
            lambda: [self._rewrite(parent, "unroll", unroll_loops, None)],
            lambda: [self._flag(parent, "--use_fast_math", "nvcc_flag")],
            lambda: [self._launch_bounds(parent, full_occupancy=False)],
            lambda: [self._launch_bounds(parent, full_occupancy=True)],
            lambda: [self._flag(parent, "-Xptxas -dlcm=cg", "nvcc_flag")],
            lambda: [self._register_step(parent)],
        ]

    # -- knobs and launch geometry -------------------------------------------------------------------

    def _config(self, variant: Variant) -> dict[str, Any]:
        """The variant's full knob configuration, typed like the task's knob values."""
        config = self.task.default_knobs()
        for name, text in variant.knobs:
            if name in self.task.knobs:
                config[name] = self.task.parse_knob(name, text)
        return config

    def _threads(self, variant: Variant, config: Mapping[str, Any] | None = None) -> int:
        return self.task.threads_per_block(self.task.env(knobs=config or self._config(variant)))

    def _block_knobs(self) -> list[str]:
        names = set().union(*(e.names for e in self.task.launch.block))
        return [name for name in self.task.knobs if name in names]

    def _knobs(self, parent: Variant, updates: Mapping[str, Any], kind: str) -> Variant:
        """``parent`` with knobs set to allowed values that keep the constraints, or _Skip."""
        config = self._config(parent)
        new = dict(config)
        for name, value in updates.items():
            knob = self.task.knobs.get(name)
            match = next((v for v in knob.values if str(v) == str(value)), None) if knob else None
            if match is None:
                raise _Skip
            new[name] = match
        if new == config or not self.task.satisfies_constraints(new):
            raise _Skip
        changed = [n for n in self.task.knobs if new[n] != config[n]]
        change = ", ".join(f"{n} {config[n]}→{new[n]}" for n in changed)
        return parent.with_knobs({n: str(new[n]) for n in changed}, change=change, origin=f"{ORIGIN}:{kind}")

    def _knob_neighbours(self, parent: Variant) -> list[Variant]:
        """Each knob one step up, then one step down; block-size knobs first."""
        config, moves = self._config(parent), []
        block = self._block_knobs()
        for name in block + [n for n in self.task.knobs if n not in block]:
            values = self.task.knobs[name].values
            if config[name] not in values:
                continue
            i = values.index(config[name])
            for j in (i + 1, i - 1):
                if 0 <= j < len(values):
                    try:
                        moves.append(self._knobs(parent, {name: values[j]}, "set_knob"))
                    except _Skip:
                        continue
        return moves

    def _block_configs(self, parent: Variant, threads: int) -> list[dict[str, Any]]:
        """Configurations differing from ``parent``'s only in block knobs that launch ``threads`` threads,
        fewest knobs changed first, then the smallest steps, then the widest x dimension."""
        config, block = self._config(parent), self._block_knobs()
        found = []
        for values in itertools.product(*(self.task.knobs[n].values for n in block)):
            new = {**config, **dict(zip(block, values, strict=True))}
            if new == config or not self.task.satisfies_constraints(new) or self._threads(parent, new) != threads:
                continue
            steps = [abs(self.task.knobs[n].values.index(new[n]) - self._index(n, config[n])) for n in block]
            found.append((sum(s > 0 for s in steps), sum(steps), -self.task.block(self.task.env(knobs=new))[0], new))
        return [new for *_, new in sorted(found, key=lambda f: f[:3])]

    def _index(self, name: str, value: Any) -> int:
        values = self.task.knobs[name].values
        return values.index(value) if value in values else 0

    def _block_threads(self, parent: Variant, threads: int, knob: str | None, kind: str) -> Variant:
        config, configs = self._config(parent), self._block_configs(parent, threads)
        closest = ""
        if not configs:  # no knob value gives exactly `threads`: the closest one on the asked side
            threads, closest = self._closest_threads(parent, threads)
            configs = self._block_configs(parent, threads)
        if knob:  # the prescription named the knob: prefer moves through it alone (a stable sort)
            configs.sort(key=lambda c: any(c[n] != config[n] for n in self._block_knobs() if n != knob))
        if not configs:
            raise _Skip
        variant = self._knobs(parent, configs[0], kind)
        return variant if not closest else Variant(variant.source, variant.knobs, variant.flags,
                                                   f"{variant.change} ({closest})", variant.origin)

    def _closest_threads(self, parent: Variant, wanted: int) -> tuple[int, str]:
        """The block size nearest ``wanted`` that the block knobs can give, moving from the parent's toward it."""
        current, config, block = self._threads(parent), self._config(parent), self._block_knobs()
        sizes = set()
        for values in itertools.product(*(self.task.knobs[n].values for n in block)):
            new = {**config, **dict(zip(block, values, strict=True))}
            if self.task.satisfies_constraints(new):
                sizes.add(self._threads(parent, new))
        toward = [t for t in sizes if (t - current) * (wanted - current) > 0]
        if not toward:
            raise _Skip
        best = min(toward, key=lambda t: abs(t - wanted))
        return best, f"closest to the {wanted} threads asked for"

    def _block_reshapes(self, parent: Variant) -> list[Variant]:
        """Same threads per block, wider in x: for 2-D blocks set by knobs."""
        env = self.task.env(knobs=self._config(parent))
        width = self.task.block(env)[0]
        if len(self.task.launch.block) < 2 or width >= 32:
            return []
        wider = [c for c in self._block_configs(parent, self._threads(parent))
                 if self.task.block(self.task.env(knobs=c))[0] > width]
        return [self._knobs(parent, wider[0], "block_size")] if wider else []

    def _grid_at_least(self, parent: Variant, blocks: int, knob: str | None, kind: str) -> Variant:
        if not knob or knob not in self.task.knobs:
            raise _Skip  # the grid is a launch expression of the task file: not ours to change
        config = self._config(parent)

        def count(value: Any) -> int:
            grid = self.task.grid(self.task.env(knobs={**config, knob: value}))
            return grid[0] * grid[1] * grid[2]

        allowed = [v for v in self.task.knobs[knob].values if self.task.satisfies_constraints({**config, knob: v})]
        for value in allowed:
            if count(value) >= blocks and value != config[knob]:
                return self._knobs(parent, {knob: value}, kind)
        more = [v for v in allowed if count(v) > count(config[knob])]  # none reaches it: the closest value
        if not more:
            raise _Skip
        value = max(more, key=count)
        variant = self._knobs(parent, {knob: value}, kind)
        return Variant(variant.source, variant.knobs, variant.flags,
                       f"{variant.change} (closest to {blocks} blocks: {count(value)})", variant.origin)

    def _block_expr(self, parent: Variant) -> str:
        """Threads per block as a C constant expression: over knob macros, so a bound follows knob moves,
        or a number for a constant block; _Skip when the block depends on the problem size."""
        exprs = self.task.launch.block
        names = set().union(*(e.names for e in exprs))
        if not names <= set(self.task.knobs) or not all(_C_EXPR.fullmatch(e.text) for e in exprs):
            raise _Skip
        if not names:
            return str(self._threads(parent))
        return " * ".join(e.text if _IDENT_ONLY.fullmatch(e.text) else f"({e.text})" for e in exprs)

    def _launch_bounds(self, parent: Variant, full_occupancy: bool) -> Variant:
        threads = self._threads(parent)
        expr = self._block_expr(parent)
        min_blocks = None
        if full_occupancy:
            try:
                per_sm = arch_limits(self.arch).max_warps_per_sm * 32
            except KernelproError as exc:
                raise _Skip from exc
            if per_sm // threads < 2:
                raise _Skip
            min_blocks = f"{per_sm} / ({expr})" if expr != str(threads) else str(per_sm // threads)
        return self._rewrite(parent, "launch_bounds", set_launch_bounds, expr, min_blocks)

    # -- flags ---------------------------------------------------------------------------------------

    def _flag(self, parent: Variant, flag: str, kind: str) -> Variant:
        """``parent`` compiled with ``flag`` (nvcc words), replacing another value of the same option."""
        words = shlex.split(flag)
        option = _option(words[-1])
        old = [w for entry in parent.flags for w in shlex.split(entry)]
        kept: list[str] = []
        replaced = None
        for word in old:
            if _option(word) == option:
                replaced = word
                if kept and kept[-1] in ("-Xptxas", "--ptxas-options"):
                    kept.pop()
            else:
                kept.append(word)
        new = tuple(kept + words)
        if new == tuple(old) or replaced == words[-1]:
            raise _Skip
        change = f"compile with {flag}" + (f" instead of {replaced}" if replaced else "")
        return Variant(parent.source, parent.knobs, new, change, f"{ORIGIN}:{kind}")

    def _register_step(self, parent: Variant) -> Variant:
        """``-maxrregcount`` at the largest register count that fits one more block per SM."""
        built = self._build(parent) if self.verify else None
        if built is None or not built.ok:
            raise _Skip
        config = self._config(parent)
        env = self.task.env(knobs=config)
        try:
            rows = what_if(self.arch, self._threads(parent, config), built.registers, built.static_shared,
                           self.task.dynamic_shared_bytes(env), built.barriers)
        except KernelproError as exc:
            raise _Skip from exc
        fewer = [r for r in rows if r.change == "registers" and r.after < r.before]
        if not fewer:
            raise _Skip
        return self._flag(parent, f"-maxrregcount={fewer[0].after}", "maxrregcount")

    # -- source transforms ---------------------------------------------------------------------------

    def _rewrite(self, parent: Variant, kind: str, transform: Callable[..., Rewrite], *args: Any) -> Variant:
        rewrite = transform(parent.source, self._entry(parent).kernel_name, *args)
        return Variant(rewrite.source, parent.knobs, parent.flags, rewrite.change, f"{ORIGIN}:{kind}")

    def _structural(self, parent: Variant, rewrite: StructuralRewrite) -> Variant:
        # The rewrites read the task's entry kernel and launch. A variant that launches its own sequence (a launch
        # block, or a multi-kernel task) keeps it: a rewrite may edit its entry kernel in place, never replace the
        # sequence with a launch of its own.
        own = self.task.is_sequence or launch_block_text(parent.source) is not None
        if own and self._entry(parent).kernel_name != self.task.kernel:
            raise TransformError(f"{rewrite.name}: the variant launches {self._entry(parent).kernel_name}, "
                                 f"not the task's {self.task.kernel}")
        done = rewrite.apply(parent.source, self.task)
        if own and launch_block_text(done.source) != launch_block_text(parent.source):
            raise TransformError(f"{rewrite.name} would replace the variant's own launch sequence")
        return Variant(done.source, parent.knobs, parent.flags, done.change, f"{ORIGIN}:{rewrite.name}")

    # -- the compile check ---------------------------------------------------------------------------

    def _worth_evaluating(self, parent: Variant, candidate: Variant) -> bool:
        built, base = self._build(candidate), self._build(parent)
        if not built.ok:
            return False
        if not base.ok:
            return True
        return not (built.spills and not base.spills) and built.fingerprint != base.fingerprint

    def _build(self, variant: Variant) -> _Built:
        if variant.key not in self._built:
            self._build_all([variant])
        return self._built[variant.key]

    def _build_all(self, variants: list[Variant]) -> None:
        """Compile-check the variants not checked yet, in parallel threads (nvcc and cuobjdump run outside)."""
        todo = list({v.key: v for v in variants if v.key not in self._built}.values())
        with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as pool:
            for variant, built in zip(todo, pool.map(self._compile_check, todo), strict=True):
                if len(self._built) >= _MEMO_SIZE:
                    del self._built[next(iter(self._built))]
                self._built[variant.key] = built

    def _entry(self, variant: Variant) -> Launch:
        """The first launch the variant makes: its own ``/* kernelpro launch */`` block's, else the task's."""
        try:
            return candidate_plan(self.task, variant.source)[0]
        except KernelproError:
            return self.task.plan[0]

    def _compile_check(self, variant: Variant) -> _Built:
        assert self.compiler is not None
        config = self._config(variant)
        entry = self._entry(variant)
        result = self.compiler.compile(CompileRequest(with_instantiations(variant.source, (entry,)), self.arch,
                                                      self.task.defines(config), variant.flags,
                                                      source_name=CANDIDATE_NAME))
        symbol = launch_symbol(result, entry, dict(self.task.defines(config))) if result.ok else None
        if not result.ok or symbol is None or result.cubin is None:
            return _Built(False)
        res = result.resources[symbol]
        try:
            kernels = sass_for_cubin(result.cubin)
        except KernelproError:  # no disassembler: the compile key stands in, so nothing counts as a no-op
            kernels = {}
        sass = kernels.get(symbol)
        env = self.task.env(knobs=config)
        launch = (entry.grid_dims(env), entry.block_dims(env), entry.shared_bytes(env))
        code = tuple(ins.text for ins in sass.instructions) if sass else (result.key,)
        fingerprint = (code, res.registers, res.shared_static_bytes, res.stack_frame_bytes, launch)
        barriers = res.barriers if res.barriers is not None else 1
        return _Built(True, res.spills, res.registers, res.shared_static_bytes, barriers, fingerprint)


def _option(word: str) -> str:
    """The option a flag word sets: ``-dlcm=cg`` → ``-dlcm``, ``--use_fast_math`` → itself."""
    return word.split("=", 1)[0]
