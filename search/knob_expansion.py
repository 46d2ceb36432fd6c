"""Knob tuning inside the MCTS: one :class:`KnobTuner` per kernel source (and flags), fed every node.

A node's *family* is its source and nvcc flags: its members differ only in knobs, which is exactly the
freedom a knob tuner searches. Every evaluated node is told to its family's tuner (whichever proposer
made it, the baseline included), so the tuner's model holds everything known about that source.

**Sharing the budget** (the rule in one sentence): an expansion goes to the knob tuner of the selected
node's family when that family has configurations not tried yet and knob-tuned evaluations are fewer than
``share`` of all evaluations so far (always, when there is no source-level proposer), and to the
source-level proposer otherwise; whichever is asked second gets the expansion when the first has nothing.

**Resume.** The tuners hold no state beyond what they were told and asked: the search tells them every
node record and every knob-tuning proposal record in journal order, live or on replay, so a resumed
search asks exactly what the uninterrupted one would have.
"""

from __future__ import annotations

from kernelpro.search.interfaces import Node
from kernelpro.search.knobtune import Config, KnobSpace, KnobTuner
from kernelpro.search.variant import Variant

ORIGIN = "knob-tune"


class KnobExpansion:
    """The knob tuners of one search, by family (see the module docstring)."""

    def __init__(self, space: KnobSpace, *, seed: int = 0, share: float = 0.5) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"the knob-tuning share must be in (0, 1], got {share}")
        self.space = space
        self.seed = seed
        self.share = share
        self.evaluations = 0  # nodes this search added
        self.tuned = 0  # of which the knob tuner proposed
        self._tuners: dict[tuple[str, tuple[str, ...]], KnobTuner] = {}

    def _tuner(self, variant: Variant) -> KnobTuner:
        family = (variant.source, variant.flags)
        if family not in self._tuners:
            self._tuners[family] = KnobTuner(self.space, seed=self.seed)
        return self._tuners[family]

    def _config(self, variant: Variant) -> Config | None:
        knobs = variant.knob_values
        if any(n not in knobs for n in self.space.names):
            return None
        config = self.space.config(knobs)
        return config if config in self.space.valid else None

    # -- fed by the search, live and on replay --------------------------------------------------------

    def observe(self, node: Node) -> None:
        """Tell the node's family tuner its result (a failure is told as a failure)."""
        self.evaluations += 1
        self.tuned += node.variant.origin == ORIGIN
        config = self._config(node.variant)
        if config is not None:
            self._tuner(node.variant).tell(config, node.time_us if node.ok else None)

    def asked(self, variants: tuple[Variant, ...]) -> None:
        """Replay of a journaled knob-tuning proposal: its configurations were asked, in this order."""
        for variant in variants:
            config = self._config(variant)
            if variant.origin == ORIGIN and config is not None:
                self._tuner(variant).mark_asked(config)

    # -- asked by the search --------------------------------------------------------------------------

    def has_room(self, parent: Node) -> bool:
        """Whether the parent's family has configurations not tried yet."""
        return self._config(parent.variant) is not None and not self._tuner(parent.variant).exhausted

    def first(self, parent: Node, has_proposer: bool) -> bool:
        """Whether this expansion goes to the knob tuner first (the sharing rule)."""
        if not self.has_room(parent):
            return False
        return not has_proposer or self.tuned < self.share * self.evaluations

    def propose(self, parent: Node, n: int) -> tuple[Variant, ...]:
        """Up to ``n`` children of ``parent``: its source and flags at the knobs its family's tuner asks for."""
        if not self.has_room(parent):
            return ()
        current = parent.variant.knob_values
        children = []
        for config in self._tuner(parent.variant).ask(n):
            new = self.space.as_dict(config)
            change = ", ".join(f"{k} {current[k]}→{v}" for k, v in new.items() if current[k] != v)
            children.append(parent.variant.with_knobs(new, change=f"knobs: {change}", origin=ORIGIN))
        return tuple(children)
