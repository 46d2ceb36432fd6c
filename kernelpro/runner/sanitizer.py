"""Run a candidate under compute-sanitizer (memcheck, racecheck, synccheck) and read the tool's summary.

The target is a small standalone worker process, ``python -m kernelpro.runner.worker --job FILE``
with a ``launch-once`` job: one launch at a problem size (the evaluator runs memcheck at the
smallest and at the benchmark size: a read or write past the end of a buffer that only happens at
full size, or lands beyond the wall's guard bytes, shows up there), buffers allocated one
``cudaMalloc`` each with no guard bytes, so an out-of-bounds access leaves the allocation and
memcheck sees it. ``--report-api-errors no`` keeps CUDA API errors that CuPy provokes and handles
itself out of the count.

The verdict comes from the summary line:

* memcheck and synccheck: ``========= ERROR SUMMARY: 2 errors``
* racecheck: ``========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)``

No summary (the tool or the target died first, or the device refused the tool) makes the report
*inconclusive*: a ``sanitizer`` flag saying "not sanitized", not a failure. Racecheck warnings are
reported but do not fail the check.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelpro.runner.records import CheckFailure
from kernelpro.runner.supervisor import REAP_TIMEOUT_S
from kernelpro.toolchain import find_tool

TOOLS = ("memcheck", "racecheck", "synccheck")
MAX_MESSAGES = 5
_PREFIX = re.compile(r"^========= ?(.*)$")
_ERROR_SUMMARY = re.compile(r"ERROR SUMMARY:\s*(\d+)\s+errors?", re.IGNORECASE)
_RACE_SUMMARY = re.compile(
    r"RACECHECK SUMMARY:\s*(\d+)\s+hazards?\s+displayed\s*\((\d+)\s+errors?,\s*(\d+)\s+warnings?\)", re.IGNORECASE)
_REPORT_START = re.compile(r"^(Invalid|Race reported|Error|Warning|Program hit|Misaligned|Out-of-range|Barrier|"
                           r"Uninitialized|Malloc|Cuda|Leaked)", re.IGNORECASE)


@dataclass(frozen=True)
class SanitizerReport:
    """What one compute-sanitizer run found."""

    tool: str
    errors: int | None  # None: no summary line (inconclusive)
    warnings: int
    messages: tuple[str, ...]  # the first reports, each with its first location line
    exit_code: int | None
    timed_out: bool = False

    @property
    def conclusive(self) -> bool:
        return self.errors is not None

    @property
    def ok(self) -> bool:
        return self.errors == 0


def parse_sanitizer_output(text: str, tool: str, exit_code: int | None = None,
                           timed_out: bool = False) -> SanitizerReport:
    """Read compute-sanitizer's output: the summary counts and the first few reports."""
    errors: int | None = None
    warnings = 0
    messages: list[str] = []
    for line in text.splitlines():
        match = _PREFIX.match(line)
        if not match:
            continue
        body = match.group(1)
        if race := _RACE_SUMMARY.search(body):
            errors, warnings = int(race.group(2)), int(race.group(3))
        elif summary := _ERROR_SUMMARY.search(body):
            # Over --print-limit a second line follows, "ERROR SUMMARY: N errors were not printed": not the total.
            errors = int(summary.group(1)) if errors is None else errors
        elif _REPORT_START.match(body) and len(messages) < MAX_MESSAGES:
            messages.append(body.strip())
        elif body.startswith((" ", "\t")) and messages and "|" not in messages[-1] and body.strip().startswith("at "):
            messages[-1] += " | " + body.strip()
    return SanitizerReport(tool, errors, warnings, tuple(messages), exit_code, timed_out)


def sanitizer_command(sanitizer: str | Path, tool: str, job_file: str | Path,
                      python: str = sys.executable) -> list[str]:
    """The compute-sanitizer command line that runs ``job_file`` in a worker under ``tool``."""
    if tool not in TOOLS:
        raise ValueError(f"tool must be one of {TOOLS}, not {tool!r}")
    return [str(sanitizer), "--tool", tool, "--print-limit", "20", "--report-api-errors", "no",
            python, "-m", "kernelpro.runner.worker", "--job", str(job_file)]


def run_sanitizer(tool: str, job: Mapping[str, Any], timeout_s: float = 600.0,
                  sanitizer: str | Path | None = None) -> SanitizerReport:
    """Run ``job`` (``{"kind": "launch-once", "params": ...}``) under ``tool``.

    Raises :class:`~kernelpro.errors.ToolchainError` when compute-sanitizer is not installed.
    """
    exe = sanitizer or find_tool("compute-sanitizer")
    with tempfile.TemporaryDirectory(prefix="kernelpro-sanitizer-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(dict(job)))
        command = sanitizer_command(exe, tool, job_file)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout_s)
            return parse_sanitizer_output(output, tool, proc.returncode)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            try:
                output, _ = proc.communicate(timeout=REAP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # A hung context's teardown can outlast SIGKILL: never wait on it unbounded (as the supervisor).
                threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
                output = ""
            return parse_sanitizer_output(output or "", tool, proc.returncode, timed_out=True)


def report_findings(report: SanitizerReport) -> tuple[CheckFailure | None, CheckFailure | None]:
    """``(failure, flag)``: a failure of check ``report.tool`` when it found errors, a flag when inconclusive."""
    where = {"tool": report.tool, "errors": report.errors, "warnings": report.warnings,
             "messages": list(report.messages), "exit_code": report.exit_code}
    if not report.conclusive:
        why = "timed out" if report.timed_out else f"printed no summary (exit code {report.exit_code})"
        return None, CheckFailure("sanitizer", f"not sanitized: compute-sanitizer {report.tool} {why}: inconclusive",
                                  where)
    if report.errors:
        first = f": {report.messages[0]}" if report.messages else ""
        return CheckFailure(report.tool, f"compute-sanitizer {report.tool} found {report.errors} error(s){first}",
                            where), None
    if report.warnings:
        return None, CheckFailure("sanitizer", f"compute-sanitizer {report.tool}: {report.warnings} warning(s)", where)
    if report.exit_code not in (0, None):
        # "0 errors" from a worker that failed before or instead of launching the kernel checked nothing.
        return None, CheckFailure("sanitizer", f"not sanitized: compute-sanitizer {report.tool}: the checked program "
                                  f"exited with status {report.exit_code}: inconclusive", where)
    return None, None
