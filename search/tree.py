"""The search tree: a networkx DiGraph of evaluated variants, with statistics kept incrementally.

Node ids are consecutive integers in evaluation order; node 0 is the baseline. Every node's
attributes are JSON-able (``to_node_link()`` is what ``tree.json`` holds):

``parent``, ``depth``, ``iteration``, ``key``, ``variant``, ``evaluation``, ``diagnosis``
    what the node is (dicts from the frozen objects' ``to_dict``);
``reward``
    ``ln(baseline_us / time_us)``, None for a failed node;
``visits``
    evaluations in the node's subtree, itself included (failed children count: they cost time);
``value``
    the best reward in the subtree (max backup, see ``mcts``);
``saturated``
    the proposer had nothing new for this node: it is descended through, never expanded again;
``window``, ``dead``
    whether each of the last ``m`` expansions in the subtree improved on the node it expanded;
    a node is dead (a dead end) when all ``m`` did not (never the root: that would end the search
    with budget left), or when it is saturated and has no open child left;
``failures``
    ``"'<change>' → <failure>"`` for each failed child: the proposer's feedback.

Adding a node or recording an expansion walks the path to the root once (O(depth)); nothing
walks the whole tree except ``from_node_link``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Any

import networkx as nx

from kernelpro.search.interfaces import Diagnosis, Node
from kernelpro.search.variant import Evaluation, Variant

ROOT = 0


def feedback_text(child: Node) -> str:
    """How a failed child is described to the proposer."""
    return f"'{child.variant.change}' → {child.evaluation.failure}"


class SearchTree:
    """Evaluated variants and their statistics; see the module docstring for the attributes."""

    def __init__(self, dead_end_m: int) -> None:
        if dead_end_m < 1:
            raise ValueError(f"dead_end_m must be >= 1, got {dead_end_m}")
        self.graph = nx.DiGraph(dead_end_m=dead_end_m, baseline_us=None)
        self._m = dead_end_m
        self._nodes: dict[int, Node] = {}
        self._by_key: dict[str, int] = {}
        self._best: int | None = None
        self._reward_lo = 0.0
        self._reward_hi = 0.0

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def node(self, node_id: int) -> Node:
        return self._nodes[node_id]

    def find(self, key: str) -> int | None:
        """The id of the node with this content key, if the tree has one."""
        return self._by_key.get(key)

    @property
    def keys(self) -> Set[str]:
        """Content keys in the tree (a live view: O(1) to get, always current)."""
        return self._by_key.keys()

    @property
    def root(self) -> Node:
        return self._nodes[ROOT]

    @property
    def baseline_us(self) -> float | None:
        return self.graph.graph["baseline_us"]

    @property
    def best(self) -> Node:
        """The fastest passing node (the earliest among equals); the root if nothing passed."""
        return self._nodes[ROOT if self._best is None else self._best]

    @property
    def reward_range(self) -> tuple[float, float]:
        """Lowest and highest reward of any passing node (the baseline's is 0)."""
        return self._reward_lo, self._reward_hi

    def attrs(self, node_id: int) -> dict[str, Any]:
        return self.graph.nodes[node_id]

    def visits(self, node_id: int) -> int:
        return self.graph.nodes[node_id]["visits"]

    def value(self, node_id: int) -> float:
        return self.graph.nodes[node_id]["value"]

    def is_dead(self, node_id: int) -> bool:
        return self.graph.nodes[node_id]["dead"]

    def is_saturated(self, node_id: int) -> bool:
        return self.graph.nodes[node_id]["saturated"]

    def children(self, node_id: int) -> list[int]:
        return list(self.graph.successors(node_id))

    def open_children(self, node_id: int) -> list[int]:
        """Children that passed and are not dead ends: the ones selection may descend into."""
        nodes = self.graph.nodes
        return [c for c in self.graph.successors(node_id) if self._nodes[c].ok and not nodes[c]["dead"]]

    def failures(self, node_id: int) -> tuple[str, ...]:
        return tuple(self.graph.nodes[node_id]["failures"])

    def path_to_root(self, node_id: int | None) -> Iterator[int]:
        """``node_id`` and its ancestors, nearest first."""
        nodes = self.graph.nodes
        while node_id is not None:
            yield node_id
            node_id = nodes[node_id]["parent"]

    # -- writing -------------------------------------------------------------------------------

    def add(self, parent: int | None, variant: Variant, evaluation: Evaluation, iteration: int) -> Node:
        """Add an evaluated variant under ``parent`` (None: the baseline) and back its result up."""
        if variant.key in self._by_key:
            raise ValueError(f"variant {variant.key[:12]} is already node {self._by_key[variant.key]}")
        node_id = len(self._nodes)
        if parent is None:
            if node_id != ROOT:
                raise ValueError("the tree already has a root")
            if evaluation.ok:
                self.graph.graph["baseline_us"] = evaluation.time_us
            depth = 0
        else:
            if not self._nodes[parent].ok:
                raise ValueError(f"node {parent} failed; failed nodes get no children")
            depth = self._nodes[parent].depth + 1
        node = Node(node_id, parent, depth, iteration, variant, evaluation)
        reward = None
        if evaluation.ok and self.baseline_us is not None:
            reward = math.log(self.baseline_us / evaluation.time_us)
        self._nodes[node_id] = node
        self._by_key[variant.key] = node_id
        self.graph.add_node(
            node_id, parent=parent, depth=depth, iteration=iteration, key=variant.key,
            variant=variant.to_dict(), evaluation=evaluation.to_dict(), diagnosis=None,
            reward=reward, visits=1, value=reward, saturated=False, window=[], dead=False, failures=[],
        )
        if parent is None:
            if reward is not None:
                self._best = node_id
            return node
        self.graph.add_edge(parent, node_id)
        nodes = self.graph.nodes
        for ancestor in self.path_to_root(parent):
            data = nodes[ancestor]
            data["visits"] += 1
            if reward is not None and reward > data["value"]:
                data["value"] = reward
        if reward is None:
            nodes[parent]["failures"].append(feedback_text(node))
        else:
            self._reward_lo = min(self._reward_lo, reward)
            self._reward_hi = max(self._reward_hi, reward)
            if self._best is None or evaluation.time_us < self._nodes[self._best].time_us:
                self._best = node_id
        return node

    def record_expansion(self, parent: int, children: Sequence[int]) -> bool:
        """Record that expanding ``parent`` produced ``children``; True if one beat the parent.

        The outcome enters the dead-end window of ``parent`` and every ancestor. No children (the
        proposer had nothing new) is not an outcome: it saturates ``parent`` instead.
        """
        nodes = self.graph.nodes
        if not children:
            nodes[parent]["saturated"] = True
        parent_time = self._nodes[parent].time_us
        improved = any(self._nodes[c].ok and self._nodes[c].time_us < parent_time for c in children)
        for ancestor in self.path_to_root(parent):  # nearest first, so children are settled first
            data = nodes[ancestor]
            window = data["window"]
            if children:
                window.append(improved)
                if len(window) > self._m:
                    del window[0]
            # A stagnant root would end the search with budget left; it dies only when nothing is left.
            stagnant = ancestor != ROOT and len(window) == self._m and not any(window)
            data["dead"] = stagnant or (data["saturated"] and not self.open_children(ancestor))
        return improved

    def set_diagnosis(self, node_id: int, diagnosis: Diagnosis) -> Node:
        node = dataclasses.replace(self._nodes[node_id], diagnosis=diagnosis)
        self._nodes[node_id] = node
        self.graph.nodes[node_id]["diagnosis"] = diagnosis.to_dict()
        return node

    # -- tree.json -----------------------------------------------------------------------------

    def to_node_link(self) -> dict[str, Any]:
        """The tree as networkx node-link data (JSON-able): what ``tree.json`` holds."""
        return nx.node_link_data(self.graph, edges="edges")

    @classmethod
    def from_node_link(cls, data: Mapping[str, Any]) -> SearchTree:
        """Rebuild a tree, statistics included, from :meth:`to_node_link` output."""
        graph = nx.node_link_graph(data, directed=True, edges="edges")
        tree = cls(int(graph.graph["dead_end_m"]))
        tree.graph = graph
        for node_id in sorted(graph.nodes):
            attrs = graph.nodes[node_id]
            diagnosis = attrs["diagnosis"]
            node = Node(
                node_id, attrs["parent"], attrs["depth"], attrs["iteration"],
                Variant.from_dict(attrs["variant"]), Evaluation.from_dict(attrs["evaluation"]),
                None if diagnosis is None else Diagnosis.from_dict(diagnosis),
            )
            tree._nodes[node_id] = node
            tree._by_key[node.key] = node_id
            reward = attrs["reward"]
            if reward is not None:
                tree._reward_lo = min(tree._reward_lo, reward)
                tree._reward_hi = max(tree._reward_hi, reward)
                if tree._best is None or node.time_us < tree._nodes[tree._best].time_us:
                    tree._best = node_id
        return tree
