"""Read what ``ncu --csv --page raw`` prints.

The raw page is one CSV table: a header row (``"ID","Process ID",...,"Kernel Name",...`` followed by
one column per metric), a units row whose identity cells are empty, then one row per profiled
kernel. Before the header there may be anything the profiled program or ncu itself printed
(``==PROF==`` and ``==WARNING==`` lines, program output); it is skipped.

Cell values are converted like this:

* integers and decimals, with or without thousands separators (``"65,536"``, ``"1,024.50"``), become
  ``int`` when the text is integral and ``float`` otherwise;
* ``""``, ``"n/a"``, ``"nan"`` and ``"no data"`` (ncu's ways of saying "no value") become ``None``;
* everything else, including tuples such as ``"(256, 1, 1)"``, stays a string.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from kernelpro.errors import KernelproError

Value = float | int | str | None

# Cells ncu prints when a metric has no value for a kernel.
_NO_VALUE = frozenset({"", "n/a", "nan", "no data"})
# Strict number shapes, so that "(256, 1, 1)" or "1,2" are never mistaken for numbers.
_INT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)")
_FLOAT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?\.\d+(?:[eE][+-]?\d+)?|[+-]?\d+(?:\.\d*)?[eE][+-]?\d+")
_DIM3 = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")

ID_COLUMN = "ID"
NAME_COLUMN = "Kernel Name"


class NcuParseError(ValueError):
    """Text that is not ``ncu --csv --page raw`` output; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


class MetricError(KeyError):
    """A metric a caller needs is missing from the report, has no value, or is not a number."""

    def __init__(self, message: str, metric: str) -> None:
        self.message = message
        self.metric = metric
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return self.message


@dataclass(frozen=True)
class NcuKernel:
    """One profiled kernel launch: its row of the raw page, with its identity pulled out.

    ``metrics`` maps every column (identity columns such as ``"Process ID"`` included) to its
    converted value; ``units`` maps each column that has a unit to it (``"byte"``, ``"%"``, ...).
    """

    id: int
    name: str
    block: tuple[int, int, int]
    grid: tuple[int, int, int]
    metrics: Mapping[str, Value]
    units: Mapping[str, str]

    def get(self, name: str, default: Value = None) -> Value:
        """The value of column ``name``; ``default`` when the column is absent or has no value."""
        value = self.metrics.get(name)
        return default if value is None else value

    def number(self, name: str) -> float:
        """The numeric value of ``name`` (an ``int`` when ncu printed an integral number).

        Raises :class:`MetricError` (a ``KeyError``) naming the metric when it is absent, has no
        value, or is not a number.
        """
        if name not in self.metrics:
            raise MetricError(
                f"metric {name!r} is not in the ncu report for kernel {self.name!r} (ID {self.id}); "
                "profile with a section set that collects it (e.g. --set full) or add --metrics " + name,
                name,
            )
        value = self.metrics[name]
        if value is None:
            raise MetricError(f"metric {name!r} has no value for kernel {self.name!r} (ID {self.id})", name)
        if isinstance(value, str):
            raise MetricError(
                f"metric {name!r} of kernel {self.name!r} (ID {self.id}) is not a number: {value!r}", name
            )
        return value


def parse_value(text: str) -> Value:
    """Convert one cell as described in the module docstring."""
    cell = text.strip()
    if cell.lower() in _NO_VALUE:
        return None
    if _INT.fullmatch(cell):
        return int(cell.replace(",", ""))
    if _FLOAT.fullmatch(cell):
        return float(cell.replace(",", ""))
    return cell


def _header_line(lines: list[str]) -> int:
    for index, line in enumerate(lines):
        if line.lstrip().startswith(f'"{ID_COLUMN}",'):
            return index
    raise NcuParseError(
        f'no header row starting with "{ID_COLUMN}" found; expected the output of `ncu --csv --page raw`'
    )


def _dim3(cell: str, metrics: Mapping[str, Value], prefix: str, line: int) -> tuple[int, int, int]:
    """``(x, y, z)`` from a "(256, 1, 1)" cell, else from the ``launch__<prefix>_dim_{x,y,z}`` metrics."""
    match = _DIM3.fullmatch(cell.strip())
    if match:
        return int(match[1]), int(match[2]), int(match[3])
    x, y, z = (metrics.get(f"launch__{prefix}_dim_{axis}") for axis in "xyz")
    if isinstance(x, int) and isinstance(y, int) and isinstance(z, int):
        return x, y, z
    raise NcuParseError(f"cannot read the {prefix} size from {cell!r}", line)


def parse_raw_csv(text: str) -> list[NcuKernel]:
    """Parse the text of ``ncu --csv --page raw``; one :class:`NcuKernel` per profiled launch.

    Raises :class:`NcuParseError` (a ``ValueError``) when the text has no header row, a row has the
    wrong number of cells, or a kernel row lacks an integer ID.
    """
    lines = text.splitlines(keepends=True)
    start = _header_line(lines)
    reader = csv.reader(io.StringIO("".join(lines[start:])))
    header = next(reader)
    if NAME_COLUMN not in header:
        raise NcuParseError(f"the header row has no {NAME_COLUMN!r} column", start + 1)
    name_index = header.index(NAME_COLUMN)
    block_index = header.index("Block Size") if "Block Size" in header else None
    grid_index = header.index("Grid Size") if "Grid Size" in header else None

    units: dict[str, str] = {}
    kernels: list[NcuKernel] = []
    for row in reader:
        line = start + reader.line_num
        if len(row) <= 1 or row[0].startswith("=="):
            continue  # a blank line, or a message ncu or the program printed after the table
        if len(row) != len(header):
            raise NcuParseError(f"row has {len(row)} cells but the header has {len(header)}", line)
        if not row[0].strip():
            if kernels or units:
                raise NcuParseError("row without a kernel ID", line)
            units = {column: unit for column, unit in zip(header, row, strict=True) if unit}
            continue
        ident = parse_value(row[0])
        if not isinstance(ident, int):
            raise NcuParseError(f"kernel ID {row[0]!r} is not an integer", line)
        metrics = {column: parse_value(cell) for column, cell in zip(header, row, strict=True)}
        block_cell = row[block_index] if block_index is not None else ""
        grid_cell = row[grid_index] if grid_index is not None else ""
        kernels.append(
            NcuKernel(
                id=ident,
                name=row[name_index],
                block=_dim3(block_cell, metrics, "block", line),
                grid=_dim3(grid_cell, metrics, "grid", line),
                metrics=MappingProxyType(metrics),
                units=MappingProxyType(units),
            )
        )
    return kernels


def load_raw_csv(path: str | Path) -> list[NcuKernel]:
    """Read and parse a saved ``ncu --csv --page raw`` file; problems raise :class:`KernelproError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise KernelproError(
            f"cannot read the ncu report: {error.strerror or error}",
            file=path,
            fix="pass the path of a file saved from `ncu --csv --page raw ...`",
        ) from error
    try:
        return parse_raw_csv(text)
    except (NcuParseError, csv.Error) as error:
        line = error.line if isinstance(error, NcuParseError) else None
        message = error.message if isinstance(error, NcuParseError) else f"malformed CSV: {error}"
        raise KernelproError(
            f"not a raw ncu CSV report: {message}",
            file=path,
            line=line,
            fix="save the report with `ncu --csv --page raw ... > report.csv` (or `ncu --import x.ncu-rep "
            "--csv --page raw`)",
        ) from error
