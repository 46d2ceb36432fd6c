"""The pattern-matching helpers of :mod:`kernelpro.transforms`, shared by the rewrites.

One import point, so the rewrites depend on a named set of helpers rather than on ``transforms``'
private names scattered through each module.
"""

from __future__ import annotations

from kernelpro.transforms import (  # noqa: F401  (re-exported)
    _DECL,
    _GLOBAL_INDEX,
    _IDENT,
    _accesses,
    _as_grid_stride,
    _assigned,
    _definitions,
    _guarded_elementwise,
    _indent_of,
    _Kernel,
    _locate,
    _Loop,
    _loops,
    _matching,
    _normalise,
    _reindent,
    _resolve,
    _skip_space,
    _splice,
    _statement_end,
    _statements,
    _strided,
    _uses,
)

__all__ = [
    "_DECL", "_GLOBAL_INDEX", "_IDENT", "_Kernel", "_Loop", "_accesses", "_as_grid_stride", "_assigned", "_definitions",
    "_guarded_elementwise", "_indent_of", "_locate", "_loops", "_matching", "_normalise", "_reindent",
    "_resolve", "_skip_space", "_splice", "_statement_end", "_statements", "_strided", "_uses",
]


def line_of(source: str, offset: int) -> int:
    """1-based line number of ``offset``."""
    return source.count("\n", 0, offset) + 1
