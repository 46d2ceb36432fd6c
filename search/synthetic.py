"""A synthetic evaluator, proposer and diagnoser: CPU test fixtures, demo and benchmark.

The "kernel" is a fixed source with knobs; its time is an analytic function of the knobs with a
known optimum (BLOCK=256, UNROLL=4, VEC=4 in the default space, 100 us; the baseline is 6x
slower), plus optional deterministic noise. Some configurations fail, like real ones:

- ``VEC=4`` with ``UNROLL=8`` fails the wall (next to the optimum, so the search will hit it);
- ``BLOCK=1024`` with ``UNROLL=8`` fails to compile;
- ``VEC=4`` with ``BLOCK >= 512`` passes but is 1.5x slower (register pressure): a trap.

The proposer makes neighbour moves (one knob one step), prescribed moves first; it is stateless,
so the same request always gets the same proposal (which resume tests rely on).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Mapping

from kernelpro.actions import set_knob
from kernelpro.search.interfaces import Diagnosis, Node, Proposal, ProposalRequest, Usage
from kernelpro.search.knobtune import KnobSpace
from kernelpro.search.variant import Evaluation, Variant

Space = tuple[tuple[str, tuple[str, ...]], ...]

DEFAULT_SPACE: Space = (
    ("BLOCK", ("32", "64", "128", "256", "512", "1024")),
    ("UNROLL", ("1", "2", "4", "8")),
    ("VEC", ("1", "2", "4")),
)
BEST_INDEX = {"BLOCK": 3, "UNROLL": 2, "VEC": 2}  # other knobs: the middle value
ORIGIN = "synthetic:neighbour"
WEIGHT = 0.15  # time grows by WEIGHT * (steps from the best value)**2 per knob

SOURCE = """\
// synthetic kernel: BLOCK, UNROLL and VEC arrive as -D macros
__global__ void scale(const float* __restrict__ x, float* __restrict__ y, float a, int n) {
    int i = (blockIdx.x * BLOCK + threadIdx.x) * VEC * UNROLL;
    #pragma unroll
    for (int u = 0; u < UNROLL * VEC; ++u) if (i + u < n) y[i + u] = a * x[i + u];
}
"""


def wide_space(extra_knobs: int, values: int = 8) -> Space:
    """The default space plus ``extra_knobs`` knobs of ``values`` values each (for long runs)."""
    extra = tuple((f"K{i}", tuple(str(v) for v in range(values))) for i in range(extra_knobs))
    return DEFAULT_SPACE + extra


def knob_space(space: Space = DEFAULT_SPACE) -> KnobSpace:
    """The space as the knob tuner's (every combination is valid: failures are found by evaluating)."""
    return KnobSpace.from_configs(dict(space), (dict(zip([n for n, _ in space], combo, strict=True))
                                                for combo in itertools.product(*(v for _, v in space))))


def best_index(name: str, values: tuple[str, ...]) -> int:
    return BEST_INDEX.get(name, len(values) // 2)


def baseline_variant(space: Space = DEFAULT_SPACE) -> Variant:
    """Every knob at its first value: BLOCK=32, UNROLL=1, VEC=1 in the default space."""
    return Variant(SOURCE, tuple((name, values[0]) for name, values in space), ("-O3",), "baseline", "task")


def model(knobs: Mapping[str, str], space: Space = DEFAULT_SPACE, base_us: float = 100.0) -> Evaluation:
    """The noiseless synthetic evaluation of a knob setting."""
    block, unroll, vec = knobs["BLOCK"], knobs["UNROLL"], knobs["VEC"]
    if block == "1024" and unroll == "8":
        return Evaluation.failed("compile", "ptxas error: entry function uses too many registers",
                                 stage_seconds={"compile": 0.5})
    if vec == "4" and unroll == "8":
        return Evaluation.failed("wall", "output mismatch at index 17 (reads past the end of the row)",
                                 stage_seconds={"compile": 0.5, "wall": 0.2})
    time_us = base_us
    for name, values in space:
        time_us *= 1 + WEIGHT * (values.index(knobs[name]) - best_index(name, values)) ** 2
    if vec == "4" and int(block) >= 512:
        time_us *= 1.5
    return Evaluation.passed(time_us, stage_seconds={"compile": 0.5, "wall": 0.2, "timing": 0.1},
                             summary={"model_us": round(time_us, 3)})


class SyntheticEvaluator:
    """Evaluates variants with :func:`model`; ``noise`` scales a deterministic per-variant error."""

    def __init__(self, space: Space = DEFAULT_SPACE, *, noise: float = 0.0, seed: int = 0) -> None:
        self.space = space
        self.noise = noise
        self.seed = seed
        self.calls = 0

    def evaluate(self, variant: Variant) -> Evaluation:
        self.calls += 1
        result = model(variant.knob_values, self.space)
        if not result.ok or self.noise == 0:
            return result
        digest = hashlib.sha256(f"{self.seed}:{variant.key}".encode()).digest()
        unit = int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1  # in [-1, 1)
        return Evaluation.passed(result.time_us * (1 + self.noise * unit), stage_seconds=result.stage_seconds,
                                 summary=result.summary)

    def optimum(self) -> dict[str, str]:
        """The fastest passing knob setting (noiseless), by brute force."""
        names = [name for name, _ in self.space]
        settings = (dict(zip(names, combo, strict=True))
                    for combo in itertools.product(*(values for _, values in self.space)))
        passing = ((model(s, self.space).time_us, s) for s in settings if model(s, self.space).ok)
        return min(passing, key=lambda pair: pair[0])[1]


class SyntheticProposer:
    """Proposes neighbour moves of the parent (one knob one step), prescribed actions first."""

    def __init__(
        self, space: Space = DEFAULT_SPACE, *, seed: int = 0, usage_per_call: Usage | None = None
    ) -> None:
        self.space = space
        self.seed = seed
        self.usage_per_call = Usage(1000, 250, 0.01) if usage_per_call is None else usage_per_call

    def propose(self, request: ProposalRequest) -> Proposal:
        parent = request.parent.variant
        moves = self._neighbours(parent)
        # Seeded from the request alone, so the proposer keeps no state between calls.
        random.Random(f"{self.seed}/{parent.key}/{len(request.seen_keys)}").shuffle(moves)
        chosen: dict[str, Variant] = {}
        for variant in self._prescribed(request.parent) + moves:
            if len(chosen) == request.n:
                break
            if variant.key not in request.seen_keys:
                chosen.setdefault(variant.key, variant)
        return Proposal(tuple(chosen.values()), self.usage_per_call)

    def _neighbours(self, parent: Variant) -> list[Variant]:
        knobs = parent.knob_values
        moves = []
        for name, values in self.space:
            i = values.index(knobs[name])
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    change = f"{name} {values[i]}→{values[j]}"
                    moves.append(parent.with_knobs({name: values[j]}, change=change, origin=ORIGIN))
        return moves

    def _prescribed(self, node: Node) -> list[Variant]:
        if node.diagnosis is None:
            return []
        knobs = node.variant.knob_values
        return [
            node.variant.with_knobs({name: value},
                                    change=f"{name} {knobs.get(name)}→{value}",
                                    origin="synthetic:prescription")
            for action in node.diagnosis.actions if action.kind == "set_knob"
            for name, value in [(action.params["name"], action.params["value"])]
        ]


class SyntheticDiagnoser:
    """Points at the knob furthest from its best value and prescribes one step towards it."""

    def __init__(self, space: Space = DEFAULT_SPACE) -> None:
        self.space = space

    def diagnose(self, node: Node) -> Diagnosis:
        knobs = node.variant.knob_values
        distances = [(abs(values.index(knobs[name]) - best_index(name, values)), name, values)
                     for name, values in self.space]
        distance, name, values = max(distances, key=lambda d: d[0])
        if distance == 0:
            return Diagnosis("synthetic: every knob is at its best value")
        i, best = values.index(knobs[name]), best_index(name, values)
        step = values[i + (1 if best > i else -1)]
        reason = f"{name}={knobs[name]} is {distance} step(s) from its best value"
        return Diagnosis(f"synthetic: {reason}", (set_knob(name, step),),
                         {"distance": distance})
