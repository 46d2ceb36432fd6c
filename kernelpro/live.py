"""The live display of ``kernelpro optimize`` and its final summary table (rich)."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kernelpro.search import Evaluation, Proposal, Variant
from kernelpro.search.mcts import SearchResult


class LiveStatus:
    """Tracks evaluations and proposals as they happen and redraws one status panel."""

    def __init__(self, console: Console, task: str) -> None:
        self.task = task
        self.evaluations = 0
        self.failed = 0
        self.baseline_us: float | None = None
        self.best_us: float | None = None
        self.last = "evaluating the baseline"
        self.tokens = 0
        self.dollars = 0.0
        self.notes: list[str] = []  # what the run must know (ncu switched off, a node's profile failed)
        self.gpus: list[str] = []  # the GPU of each slot
        self.busy_s: dict[int, float] = {}  # per slot
        self.started = time.monotonic()
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveStatus:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)

    def evaluated(self, variant: Variant, evaluation: Evaluation) -> None:
        self.evaluations += 1
        if evaluation.ok:
            if self.baseline_us is None:
                self.baseline_us = evaluation.time_us
            if self.best_us is None or evaluation.time_us < self.best_us:
                self.best_us = evaluation.time_us
            verdict = f"[green]pass[/green] {evaluation.time_us:,.2f} µs"
        else:
            self.failed += 1
            verdict = f"[red]fail[/red] {(evaluation.failure or '')[:90]}"
        self.last = f"{variant.change or 'baseline'} → {verdict}"
        self.live.update(self._render())

    def finished(self, variant: Variant, evaluation: Evaluation, slot: int, busy_s: float) -> None:
        """An evaluation finished on ``slot`` after ``busy_s`` seconds there (for the utilisation line)."""
        self.busy_s[slot] = self.busy_s.get(slot, 0.0) + busy_s
        self.evaluated(variant, evaluation)

    def throughput(self) -> str:
        """Evaluations per minute and each GPU's busy fraction so far."""
        wall = max(time.monotonic() - self.started, 1e-9)
        gpus = "  ".join(f"GPU {self.gpus[slot] if slot < len(self.gpus) else slot} {100 * busy / wall:.0f}%"
                         for slot, busy in sorted(self.busy_s.items()))
        return f"{60 * self.evaluations / wall:.1f} evaluations/min" + (f"  busy: {gpus}" if gpus else "")

    def note(self, message: str) -> None:
        """Show ``message`` under the status line (the three latest distinct notes stay)."""
        if message not in self.notes:
            self.notes.append(message)
        self.live.update(self._render())

    def proposed(self, proposal: Proposal) -> None:
        self.tokens += proposal.usage.tokens
        self.dollars += proposal.usage.cost_usd
        self.live.update(self._render())

    def _render(self) -> Group:
        speedup = (self.baseline_us / self.best_us) if self.baseline_us and self.best_us else None
        line = Text.from_markup(
            f"[bold]{self.task}[/bold]  evaluations {self.evaluations} ({self.failed} failed)  "
            f"best {'-' if speedup is None else f'{speedup:.3f}x'}  tree {self.evaluations} nodes  "
            f"tokens {self.tokens:,}  ${self.dollars:.2f}")
        notes = [Text(f"note: {note}", style="yellow") for note in self.notes[-3:]]
        return Group(line, Text(self.throughput()), Text.from_markup(f"last: {self.last}"), *notes)


def summary_table(result: SearchResult, run_dir: str) -> Table:
    """The final summary: baseline vs best, throughput, time split, usage, where the files are."""
    table = Table(title="kernelpro optimize", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    base, best = result.baseline, result.best
    table.add_row("baseline", f"{base.time_us:,.2f} µs" if base.time_us else "failed")
    table.add_row("best", f"{best.time_us:,.2f} µs (node {best.id}: {escape(best.variant.change or 'baseline')})"
                  if best.time_us else "-")
    table.add_row("speedup", f"{result.speedup:.3f}x" if result.speedup else "-")
    pct = best.evaluation.summary.get("roofline_pct")
    if isinstance(pct, int | float):
        table.add_row("% of roofline", f"{pct:.1f}%")
    table.add_row("evaluations", f"{result.evaluations} in {result.elapsed_s / 60:.1f} min "
                  f"({result.evaluations_per_minute:.1f}/min), stop: {result.stop_reason.value}")
    if result.gpu_utilisation:
        busy = (f"slot {slot} {100 * u:.0f}%" for slot, u in result.gpu_utilisation.items())
        table.add_row("GPU busy", ", ".join(busy))
    split = ", ".join(f"{stage} {seconds:.0f}s" for stage, seconds in result.stage_seconds.items())
    table.add_row("time split", split or "-")
    usage = result.usage
    table.add_row("LLM usage", f"{usage.tokens_in:,} in / {usage.tokens_out:,} out tokens, ${usage.cost_usd:.2f}")
    table.add_row("results", run_dir)
    return table
