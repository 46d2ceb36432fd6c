"""Shared helpers of the readers of TOML-in-comment blocks (the task's metadata, a candidate's launch).

Both report problems as :class:`~kernelpro.errors.TaskError` with the file, the line of the key
(from :class:`~kernelpro.toml_lines.TomlLines`) and a fix, and both parse expressions the same way.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from kernelpro.device_values import DEVICE_NAMES
from kernelpro.errors import TaskError
from kernelpro.expr import Expr, ExprError
from kernelpro.toml_lines import TomlLines


def did_you_mean(word: Any, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(sorted(map(str, options)))}"


class TomlReader:
    """Errors with file:line:fix and expression parsing for one TOML block of ``path``."""

    def __init__(self, source: str, path: Path) -> None:
        self.source = source
        self.path = path
        self.lines: TomlLines | None = None

    def error(self, message: str, *where: str | int, fix: str | None = None, line: int | None = None) -> TaskError:
        if line is None and self.lines is not None:
            line = self.lines.line(*where)
        return TaskError(message, file=self.path, line=line, fix=fix)

    def expr(self, text: Any, names: set[str], *where: str | int, what: str) -> Expr:
        """Parse an expression field and check that it only reads known names."""
        if isinstance(text, bool) or not isinstance(text, str | int | float):
            raise self.error(f"{what} must be an expression string or a number, got {text!r}", *where,
                             fix='write it as a string, e.g. "ceil_div(N, BLOCK)"')
        expr = Expr(str(text))
        try:
            expr.validate()
        except ExprError as exc:
            raise self.error(f"{what}: {exc}", *where, fix="use arithmetic over params and knobs") from None
        unknown = sorted(expr.names - names - set(DEVICE_NAMES))
        if unknown:
            raise self.error(
                f"{what} {expr.text!r} uses unknown name {unknown[0]!r}", *where,
                fix=f"{did_you_mean(unknown[0], names | set(DEVICE_NAMES))} (names are the [params], the [knobs] "
                "and the device values SM_COUNT, L2_BYTES, ...)",
            )
        return expr

    def text(self, table: dict, key: str, *where: str | int, required: bool = False) -> str | None:
        """A string-valued key; a list, number or table there is an error, not a crash later."""
        value = table.get(key)
        if value is None:
            if required:
                raise self.error(f"missing {key}", *where, fix=f'add {key} = "..."')
            return None
        if not isinstance(value, str):
            raise self.error(f"{key} must be one string, got {value!r}", *where, key,
                             fix=f'write {key} = "..." (one name; a launch sequence is [[launch]] tables)')
        return value
