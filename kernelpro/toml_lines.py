"""Line numbers for keys of a TOML document, so validation errors can name a line.

``tomllib`` returns plain dicts with no positions. :class:`TomlLines` scans the text once and
records the line of every table header and ``key =`` line under its table path, e.g.
``("args", 2, "dtype")`` for the ``dtype`` key of the third ``[[args]]`` table.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*((?:[A-Za-z0-9_\-]+|"[^"]*")(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"))*)\s*=')


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"') for part in text.split("."))


class TomlLines:
    """Map table/key paths of a TOML text to 1-based line numbers (offset by ``first_line - 1``)."""

    def __init__(self, text: str, first_line: int = 1) -> None:
        self._lines: dict[tuple, int] = {(): first_line}
        table: tuple = ()
        array_counts: dict[tuple[str, ...], int] = {}
        depth = 0  # open brackets of a multi-line array: keys inside are values, not keys
        for number, line in enumerate(text.splitlines(), start=first_line):
            if depth == 0:
                header = _HEADER.match(line)
                if header:
                    path = _split_key(header.group(2))
                    if header.group(1) == "[[":
                        index = array_counts.get(path, 0)
                        array_counts[path] = index + 1
                        table = path + (index,)
                        self._lines.setdefault(path, number)
                    else:
                        table = path
                    self._lines.setdefault(table, number)
                    continue
                key = _KEY.match(line)
                if key:
                    self._lines.setdefault(table + _split_key(key.group(1)), number)
            depth += _bracket_balance(line)
            depth = max(depth, 0)

    def line(self, *path: str | int) -> int | None:
        """Line of ``path``, or of its nearest recorded ancestor; None if nothing matches."""
        for end in range(len(path), -1, -1):
            found = self._lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return None


def _bracket_balance(line: str) -> int:
    """Net ``[`` minus ``]`` on a line, ignoring strings and comments."""
    balance, quote = 0, ""
    for ch in line:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            balance += 1
        elif ch in "]}":
            balance -= 1
    # A header line like `[task]` is handled before this is called.
    return balance
