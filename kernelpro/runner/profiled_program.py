"""A standalone program that launches one compiled kernel: the target for Nsight Compute and compute-sanitizer.

Both tools watch a whole process, so a kernel that the runner otherwise launches inside its supervised worker
is wrapped as ``python -m kernelpro.runner.worker --job FILE.json``, where the file holds a
``launch-once`` job (:func:`kernelpro.runner.jobs.launch_once_job`): allocate the task's buffers at
one problem size, launch the kernel ``launches`` times back to back, synchronize and exit. The
first launches are warm-up for ncu to skip (``--launch-skip``).

:func:`launch_once_program` writes that job file and deletes it when the ``with`` block ends.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from kernelpro.task import Task


def make_launch_once_job(task: Task, cubin: str | Path, symbol: str, knobs: Mapping[str, Any], launches: int,
                         size_index: int | None = 0, seed: int = 0, source: str | None = None,
                         symbols: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``launch-once`` job (``{"kind", "params"}``) for ``symbol`` in ``cubin`` with ``knobs``.

    ``size_index`` picks the problem size (0: the benchmark size; None: the smallest, as for the
    sanitizers); ``launches`` is how many times the kernel is launched. With the candidate's ``source`` and
    ``symbols`` (launch kernel text → symbol), its launch sequence is what is launched.
    """
    if launches < 1:
        raise ValueError(f"launches must be at least 1, not {launches}")
    return {"kind": "launch-once", "params": {
        "task_source": task.source, "task_path": str(task.path), "knobs": dict(knobs),
        "candidate_cubin": str(cubin), "candidate_symbol": symbol, "seed": seed,
        "size_index": size_index, "launches": launches,
        **({"candidate_source": source, "candidate_symbols": dict(symbols)} if source is not None and symbols else {})}}


@contextmanager
def launch_once_program(task: Task, cubin: str | Path, symbol: str, knobs: Mapping[str, Any], launches: int,
                        size_index: int | None = 0, seed: int = 0, source: str | None = None,
                        symbols: Mapping[str, str] | None = None) -> Iterator[list[str]]:
    """The argv of a worker that launches ``symbol`` ``launches`` times, valid inside the ``with`` block.

    Writes the :func:`make_launch_once_job` to a temporary JSON file, yields
    ``[sys.executable, "-m", "kernelpro.runner.worker", "--job", path]`` and deletes the file afterwards
    (also when the block raises).
    """
    text = json.dumps(make_launch_once_job(task, cubin, symbol, knobs, launches, size_index, seed, source, symbols))
    with tempfile.NamedTemporaryFile("w", prefix="kernelpro-launch-", suffix=".json", delete=False) as handle:
        handle.write(text)
    try:
        yield [sys.executable, "-m", "kernelpro.runner.worker", "--job", handle.name]
    finally:
        with suppress(FileNotFoundError):
            os.unlink(handle.name)
