"""The journal (``<run_dir>/journal.jsonl``) and resuming a search from it.

Each record (see :mod:`kernelpro.search.records`) is one JSON line, flushed and fsynced before
the search goes on, so every evaluation is on disk the moment it is made. A kill -9 can leave at
most a partial last line: reading ignores it, and opening the journal for appending truncates it
off, so the next record starts on a clean line. The one evaluation that line held is lost and is
made again on resume; no journaled one is.

:func:`resume` rebuilds the tree from the journal and continues. Nothing journaled is evaluated
or diagnosed again, an interrupted proposal is finished without asking the proposer again, and
tie-breaking is seeded per iteration, so with deterministic plug-ins the resumed search ends with
the same tree as one that was never interrupted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from kernelpro.errors import KernelproError
from kernelpro.search.async_eval import AsyncEvaluator
from kernelpro.search.budget import Budget
from kernelpro.search.interfaces import Diagnoser, Evaluator, Proposer
from kernelpro.search.knobtune import KnobSpace
from kernelpro.search.mcts import MCTS, MCTSConfig, SearchResult
from kernelpro.search.parallel import ParallelMCTS
from kernelpro.search.records import Record, StartRecord, from_json, to_json
from kernelpro.search.variant import Variant

JOURNAL_NAME = "journal.jsonl"


class JournalError(KernelproError):
    """A journal that can't be resumed (corrupt before its last line, or holding no run)."""


def read_journal(path: str | Path, *, repair: bool = False) -> tuple[Record, ...]:
    """The records in a journal file, without a partial last line.

    With ``repair``, a partial last line is also cut off the file (a complete last record that only
    lacks its newline gets one), so appending after it is safe.
    """
    path = Path(path)
    if not path.exists():
        return ()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records = [_parse(line, path, number) for number, line in enumerate(data[:end].splitlines(), 1)
               if line.strip()]
    tail = data[end:]
    if tail:
        try:
            records.append(from_json(json.loads(tail)))
            kept = True
        except (ValueError, KeyError, TypeError):
            kept = False  # written halfway when the process died
        if repair:
            with path.open("r+b") as f:
                if kept:
                    f.seek(0, os.SEEK_END)
                    f.write(b"\n")
                else:
                    f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
    return tuple(records)


def _parse(line: bytes, path: Path, number: int) -> Record:
    try:
        return from_json(json.loads(line))
    except (ValueError, KeyError, TypeError) as exc:
        raise JournalError(f"line {number} is not a journal record ({exc})", file=path, line=number,
                           fix="only the last line may be damaged; start a new run directory") from exc


class Journal:
    """An append-only, fsynced journal in ``run_dir``; ``records`` is what it held when opened."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / JOURNAL_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records = read_journal(self.path, repair=True)
        self._file = self.path.open("a", encoding="utf-8")

    def append(self, record: Record) -> None:
        self._file.write(json.dumps(to_json(record), allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def start(
    run_dir: str | Path,
    baseline: Variant,
    evaluator: Evaluator | AsyncEvaluator,
    proposer: Proposer | None,
    diagnoser: Diagnoser | None = None,
    *,
    config: MCTSConfig | None = None,
    budget: Budget | None = None,
    clock: Callable[[], float] = time.monotonic,
    knob_space: KnobSpace | None = None,
) -> SearchResult:
    """Run a new journaled search in ``run_dir`` (which must not hold a journal yet); with ``knob_space``
    the knob tuner shares the expansions (:mod:`kernelpro.search.knob_expansion`). An asynchronous
    ``evaluator`` runs the parallel search (:mod:`kernelpro.search.parallel`)."""
    with Journal(run_dir) as journal:
        if journal.records:
            raise JournalError("the run directory already holds a search", file=journal.path,
                               fix="resume it with kernelpro.search.resume(), or use a new run directory")
        mcts = _search(baseline, evaluator, proposer, diagnoser=diagnoser, config=config, budget=budget,
                       journal=journal, clock=clock, knob_space=knob_space)
        return mcts.run()


def resume(
    run_dir: str | Path,
    evaluator: Evaluator | AsyncEvaluator,
    proposer: Proposer | None,
    diagnoser: Diagnoser | None = None,
    *,
    budget: Budget | None = None,
    clock: Callable[[], float] = time.monotonic,
    knob_space: KnobSpace | None = None,
) -> SearchResult:
    """Continue the search journaled in ``run_dir``, with its original config (pass the same ``knob_space``
    as the run that started it: the knob tuners are rebuilt from the journal).

    ``budget`` replaces the journaled one (e.g. to allow more evaluations); budgets count the
    whole search, earlier sessions included.
    """
    with Journal(run_dir) as journal:
        records = journal.records
        if not records or not isinstance(records[0], StartRecord):
            raise JournalError("no search to resume", file=journal.path,
                               fix="start one with kernelpro.search.start()")
        first = records[0]
        config = MCTSConfig(**first.config)
        budget = budget or Budget.from_dict(first.budget)
        mcts = _search(first.baseline, evaluator, proposer, diagnoser=diagnoser, config=config, budget=budget,
                       journal=journal, clock=clock, knob_space=knob_space)
        try:
            mcts.replay(records[1:])
        except (ValueError, KeyError) as exc:
            raise JournalError(f"the journal does not replay: {exc}", file=journal.path,
                               fix="start a new run directory") from exc
        return mcts.run()


def _search(baseline: Variant, evaluator: Evaluator | AsyncEvaluator, proposer: Proposer | None,
            **kwargs: object) -> MCTS:
    """The serial search for an :class:`Evaluator`, the parallel one for an :class:`AsyncEvaluator`."""
    if hasattr(evaluator, "submit"):
        return ParallelMCTS(baseline, evaluator, proposer, **kwargs)  # type: ignore[arg-type]
    return MCTS(baseline, evaluator, proposer, **kwargs)  # type: ignore[arg-type]
