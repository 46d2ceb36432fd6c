"""Search memory: a short text of what was tried where and what it did, for the proposer.

Example (speedups are over the baseline)::

    node 7 (BLOCK=128 UNROLL=2, 1.20x): 'unroll 4' → 1.31x; 'float4 loads' → wall: output mismatch…
    node 0 (BLOCK=64, 1.00x): 'BLOCK 64→128' → 1.20x

Each evaluated child is one entry. Entries are ranked by the best kernel they involve: the
reward ``ln(baseline/time)`` of the child if it beat its parent, else of the parent. So the
changes that produced the fastest kernels come first, then what was tried on those kernels and
failed or regressed (what the proposer should not repeat); early steps away from the baseline,
long since built upon, come last. On equal scores a win comes first, then the newer entry.

Only the top ``keep`` entries are kept (a bounded heap; an entry's score never changes), so adding
an entry and rendering the text cost the same however large the tree grows. Entries are grouped
under their parent, groups in order of their best entry, and the text stops at ``max_chars``.
"""

from __future__ import annotations

import heapq
import math
from typing import NamedTuple

from kernelpro.search.interfaces import Node


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def node_label(node: Node, speedup: float) -> str:
    """``node 7 (BLOCK=128 UNROLL=2, 1.20x)``: the knobs, or the change when there are none."""
    what = " ".join(f"{k}={v}" for k, v in node.variant.knobs) or node.variant.change or "baseline"
    return f"node {node.id} ({_clip(what, 60)}, {speedup:.2f}x)"


class _Entry(NamedTuple):  # a tuple, so the heap compares entries in C: score, then win, then seq
    score: float
    win: bool
    seq: int
    parent_id: int
    header: str
    item: str


class SearchMemory:
    """The ranked, bounded memory of expansion outcomes (see the module docstring)."""

    def __init__(self, max_chars: int = 1500, keep: int = 64) -> None:
        self.max_chars = max_chars
        self.keep = keep
        self._heap: list[_Entry] = []
        self._seq = 0
        self._text: str | None = ""  # None: the heap changed since the text was rendered

    def add(self, parent: Node, child: Node, baseline_us: float) -> None:
        """Remember what ``child`` did relative to ``parent`` (both already evaluated)."""
        win = child.ok and child.time_us < parent.time_us
        if child.ok:
            score = math.log(baseline_us / min(parent.time_us, child.time_us))
            outcome = f"{baseline_us / child.time_us:.2f}x"
        else:
            score = math.log(baseline_us / parent.time_us)
            outcome = _clip(child.evaluation.failure or "failed", 100)
        header = node_label(parent, baseline_us / parent.time_us)
        item = f"'{_clip(child.variant.change, 80)}' → {outcome}"
        entry = _Entry(score, win, self._seq, parent.id, header, item)
        self._seq += 1
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)
        else:
            return
        self._text = None

    def text(self) -> str:
        """The memory as at most ``max_chars`` characters, most informative first."""
        if self._text is None:
            self._text = self._render()
        return self._text

    def _render(self) -> str:
        groups: dict[int, list[str]] = {}
        headers: dict[int, str] = {}
        used = 0
        for entry in sorted(self._heap, reverse=True):
            if entry.parent_id in groups:
                cost = len("; ") + len(entry.item)
            else:
                cost = len(entry.header) + len(": ") + len(entry.item) + (1 if groups else 0)
            if used + cost > self.max_chars:
                continue  # a shorter entry further down may still fit
            used += cost
            headers.setdefault(entry.parent_id, entry.header)
            groups.setdefault(entry.parent_id, []).append(entry.item)
        return "\n".join(f"{headers[p]}: " + "; ".join(items) for p, items in groups.items())
