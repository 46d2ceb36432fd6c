"""Plant a slower winner in a copy of a finished run folder (for ``kernelpro regress`` tests).

The copy's journaled winner gets a 20,000-cycle spin at the top of its kernel body: same results, much
slower, while the journal keeps the figures measured for the original. Its ``best.cu`` is re-rendered from
the changed node, as the run would have written it, so ``load_run`` still finds the winner.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from kernelpro.export import load_run
from kernelpro.report import best_file_text
from kernelpro.search.records import NodeRecord, from_json, to_json
from kernelpro.search.tree import Node

SPIN = "{ long long kp_t0 = clock64(); while (clock64() - kp_t0 < 20000) { } }"


def plant_slower_winner(run_dir: Path, dest: Path) -> Path:
    """Copy ``run_dir`` to ``dest`` with its winner slowed down (see the module docstring); return ``dest``."""
    shutil.copytree(run_dir, dest)
    run = load_run(dest)
    best = run.best
    source = best.variant.source
    body = source.index("{", source.index("__global__"))
    slow = replace(best, variant=replace(best.variant, source=source[:body + 1] + SPIN + source[body + 1:]))
    journal = dest / "journal.jsonl"
    records = [from_json(json.loads(line)) for line in journal.read_text().splitlines() if line.strip()]
    records = [slow if isinstance(r, NodeRecord) and r.id == best.id else r for r in records]
    journal.write_text("".join(json.dumps(to_json(r)) + "\n" for r in records))
    node = Node(slow.id, slow.parent, 0, slow.iteration, slow.variant, slow.evaluation)
    (dest / "best.cu").write_text(best_file_text(run.task, node))
    return dest
