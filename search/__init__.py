"""Search: MCTS over evaluated kernel variants, and the proposers (installed as ``kernelpro.search``).

The search sees candidates only through :class:`Evaluator` (variant in, pass/fail and time out);
:class:`Proposer` supplies new variants and :class:`Diagnoser` (optional) profiles the nodes the
search is about to expand. :func:`start` and :func:`resume` run a journaled search in a run
directory; :class:`MCTS` is the search itself.
"""

from kernelpro.search.budget import Budget, StopReason
from kernelpro.search.interfaces import (
    Action,
    Diagnoser,
    Diagnosis,
    Evaluator,
    Node,
    Proposal,
    ProposalRequest,
    Proposer,
    Usage,
)
from kernelpro.search.journal import Journal, JournalError, read_journal, resume, start
from kernelpro.search.knobtune import KnobSpace, KnobTuner
from kernelpro.search.mcts import MCTS, MCTSConfig, SearchResult
from kernelpro.search.tree import SearchTree
from kernelpro.search.variant import Evaluation, Variant

__all__ = [
    "MCTS",
    "Action",
    "Budget",
    "Diagnoser",
    "Diagnosis",
    "Evaluation",
    "Evaluator",
    "Journal",
    "JournalError",
    "KnobSpace",
    "KnobTuner",
    "MCTSConfig",
    "Node",
    "Proposal",
    "ProposalRequest",
    "Proposer",
    "SearchResult",
    "SearchTree",
    "StopReason",
    "Usage",
    "Variant",
    "read_journal",
    "resume",
    "start",
]
