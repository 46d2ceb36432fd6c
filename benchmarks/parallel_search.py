"""Evaluations per minute and GPU busy fraction of the parallel search, on a simulated clock (CPU only).

The synthetic evaluator with realistic latencies: nvcc 1.5 s on a CPU compile worker, the wall plus timing
2 s on a GPU, an LLM proposal 20 s (the proposer advances the simulated clock while evaluations in flight
go on). The knob tuner shares the expansions (its proposals cost no LLM time), as in a real run of a task
with knobs. Rows: the serial search (today: compile, check and propose one after the other), then the
parallel search with 1, 2, 4 and 8 GPU slots, each with as many compile workers and one candidate compiling
ahead per GPU. Run: ``python benchmarks/parallel_search.py [--evaluations 200] [--llm 20]``.

One proposal is in flight at a time (the proposer runs in its own thread while the GPUs work and the driver
journals what finishes), so with a 20 s LLM the search is bound by the proposer, not the GPUs (about
7 evaluations/min at 1 to 8 slots); ``--llm 0`` (the offline proposer and the knob tuner cost milliseconds)
shows how evaluations scale with GPU slots (30 at 1 slot to 210 at 8).
"""

from __future__ import annotations

import argparse
import tempfile

from kernelpro.search import Budget, MCTSConfig, Proposal, ProposalRequest, Variant, start
from kernelpro.search.async_eval import Latencies, SerialEvaluator, SimClock, SimulatedEvaluator
from kernelpro.search.synthetic import (
    SyntheticDiagnoser,
    SyntheticEvaluator,
    SyntheticProposer,
    baseline_variant,
    knob_space,
    wide_space,
)
from kernelpro.search.variant import Evaluation

SPACE = wide_space(3)


class SlowProposer:
    """The synthetic proposer, taking ``seconds`` of simulated time per call (an LLM round trip)."""

    def __init__(self, clock: SimClock, seconds: float) -> None:
        self.inner, self.clock, self.seconds = SyntheticProposer(SPACE), clock, seconds

    def propose(self, request: ProposalRequest) -> Proposal:
        self.clock.advance_to(self.clock.now + self.seconds)
        return self.inner.propose(request)


class SerialSimulated:
    """Today's evaluator on the simulated clock: compile, then wall and timing, one after the other."""

    def __init__(self, clock: SimClock, latencies: Latencies) -> None:
        self.inner, self.clock, self.latencies = SyntheticEvaluator(SPACE), clock, latencies
        self.busy_s = 0.0

    def evaluate(self, variant: Variant) -> Evaluation:
        evaluation = self.inner.evaluate(variant)
        gpu = 0.0 if (evaluation.failure or "").startswith("compile") else self.latencies.gpu_s
        self.clock.advance_to(self.clock.now + self.latencies.compile_s + gpu)
        self.busy_s += gpu
        return evaluation


def run(slots: int | None, evaluations: int, llm_s: float, latencies: Latencies, seed: int) -> dict[str, float]:
    """One search; ``slots`` None is the serial search."""
    clock = SimClock()
    serial = SerialSimulated(clock, latencies)
    if slots is None:
        evaluator = SerialEvaluator(serial, clock=clock)
    else:
        evaluator = SimulatedEvaluator(SyntheticEvaluator(SPACE), clock, gpus=slots, latencies=latencies)
    with tempfile.TemporaryDirectory() as run_dir:
        result = start(run_dir, baseline_variant(SPACE), evaluator, SlowProposer(clock, llm_s),
                       SyntheticDiagnoser(SPACE), config=MCTSConfig(seed=seed),
                       budget=Budget(max_evaluations=evaluations), clock=clock, knob_space=knob_space(SPACE))
    busy = result.gpu_utilisation
    # The serial evaluation's slot time includes its compile: count the GPU's part only, as for the others.
    mean_busy = serial.busy_s / result.elapsed_s if slots is None else sum(busy.values()) / max(len(busy), 1)
    return {"slots": slots or 1, "evaluations": result.evaluations, "minutes": result.elapsed_s / 60,
            "per_minute": result.evaluations_per_minute, "busy": mean_busy,
            "speedup": result.speedup or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--llm", type=float, default=20.0, help="simulated seconds per LLM proposal")
    parser.add_argument("--compile", type=float, default=1.5)
    parser.add_argument("--gpu", type=float, default=2.0, help="simulated seconds of wall plus timing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    latencies = Latencies(args.compile, args.gpu)
    print(f"synthetic search, {args.evaluations} evaluations, compile {args.compile} s, wall+timing {args.gpu} s, "
          f"LLM {args.llm} s per proposal (simulated clock)\n")
    print("| search | GPU slots | simulated minutes | evaluations/min | GPU busy (mean over slots) | best speedup |")
    print("|---|---|---|---|---|---|")
    rows = [("serial (today)", run(None, args.evaluations, args.llm, latencies, args.seed))]
    rows += [("parallel", run(n, args.evaluations, args.llm, latencies, args.seed)) for n in (1, 2, 4, 8)]
    for name, row in rows:
        print(f"| {name} | {row['slots']:.0f} | {row['minutes']:.1f} | {row['per_minute']:.1f} | "
              f"{100 * row['busy']:.0f}% | {row['speedup']:.2f}x |")


if __name__ == "__main__":
    main()
