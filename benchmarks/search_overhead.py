"""Does the search's own cost per iteration stay flat as the tree grows?

Runs MCTS on the synthetic evaluator and proposer (a wide knob space, so the search never runs
out) for 200 iterations and prints the mean seconds per iteration for iterations 10-20 and
190-200 (half-open windows) and their ratio. The synthetic plug-ins take microseconds, so what is
timed is the search itself: selection, backup, memory, duplicate checks. An iteration is timed
from one proposer call to the next. Each window's mean is the median over ``--repeats`` runs.

    python benchmarks/search_overhead.py [--iterations 200] [--repeats 5] [--journal]

``--journal`` also journals every record to a temporary directory (one fsync per record).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from kernelpro.search import MCTS, Budget, MCTSConfig, Proposal, ProposalRequest
from kernelpro.search.journal import Journal
from kernelpro.search.synthetic import SyntheticEvaluator, SyntheticProposer, baseline_variant, wide_space

SPACE = wide_space(4)


class TimedProposer:
    """The synthetic proposer, noting when each call starts."""

    def __init__(self) -> None:
        self.inner = SyntheticProposer(SPACE)
        self.stamps: list[float] = []

    def propose(self, request: ProposalRequest) -> Proposal:
        self.stamps.append(time.perf_counter())
        return self.inner.propose(request)


def iteration_seconds(iterations: int, journal_dir: Path | None, seed: int) -> tuple[list[float], int]:
    """Seconds per iteration (index 0 is iteration 1) and the final tree size."""
    proposer = TimedProposer()
    journal = Journal(journal_dir) if journal_dir is not None else None
    budget = Budget(max_evaluations=None, max_iterations=iterations + 1)
    mcts = MCTS(baseline_variant(SPACE), SyntheticEvaluator(SPACE, noise=0.02, seed=seed), proposer,
                config=MCTSConfig(seed=seed), budget=budget, journal=journal)
    try:
        result = mcts.run()
    finally:
        if journal is not None:
            journal.close()
    if result.iterations < iterations + 1:
        raise SystemExit(f"the search stopped early ({result.stop_reason.value}) after {result.iterations}")
    stamps = proposer.stamps
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)], result.evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--journal", action="store_true", help="journal to a temporary directory too")
    args = parser.parse_args()
    last = args.iterations
    early_window, late_window = (10, 20), (last - 10, last)

    early, late, sizes = [], [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, size = iteration_seconds(last, Path(tmp) if args.journal else None, seed=repeat)
        early.append(statistics.mean(seconds[early_window[0] - 1 : early_window[1] - 1]))
        late.append(statistics.mean(seconds[late_window[0] - 1 : late_window[1] - 1]))
        sizes.append(size)

    early_s, late_s = statistics.median(early), statistics.median(late)
    print(f"search overhead, synthetic evaluator, {args.repeats} runs of {last} iterations "
          f"(tree of ~{statistics.median(sizes):.0f} nodes){', journaled' if args.journal else ''}")
    print(f"  iterations {early_window[0]}-{early_window[1]}:   {early_s * 1e3:8.3f} ms/iteration")
    print(f"  iterations {late_window[0]}-{late_window[1]}: {late_s * 1e3:8.3f} ms/iteration")
    print(f"  ratio late/early: {late_s / early_s:.2f}")


if __name__ == "__main__":
    main()
