"""compute-sanitizer: the command line, reading its summary, and what the verdict gets from it.

The outputs below are written for these tests in the tool's documented format (``=========``
prefixed reports, an ``ERROR SUMMARY`` / ``RACECHECK SUMMARY`` line); they were not captured
from a run. The GPU tests run the real tool.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from kernelpro.runner.sanitizer import parse_sanitizer_output, report_findings, run_sanitizer, sanitizer_command

MEMCHECK_CLEAN = """\
========= COMPUTE-SANITIZER
{"launched": true}
========= ERROR SUMMARY: 0 errors
"""
MEMCHECK_ERRORS = """\
========= COMPUTE-SANITIZER
========= Invalid __global__ write of size 4 bytes
=========     at scale+0x90 in scale_out_of_bounds.cu:7
=========     by thread (231,0,0) in block (3,0,0)
=========     Address 0x7f3a2e000fa0 is out of bounds
=========     and is 1 bytes after the nearest allocation at 0x7f3a2e000000 of size 4000 bytes
=========
========= Invalid __global__ write of size 4 bytes
=========     at scale+0x90 in scale_out_of_bounds.cu:7
=========     by thread (232,0,0) in block (3,0,0)
=========
========= ERROR SUMMARY: 2 errors
"""
RACECHECK_HAZARD = """\
========= COMPUTE-SANITIZER
========= Error: Race reported between Write access at rowsum+0x1a0 in rowsum_racy.cu:12
=========     and Read access at rowsum+0x1d0 in rowsum_racy.cu:14 [248 hazards]
=========
========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)
"""


def test_clean_memcheck() -> None:
    report = parse_sanitizer_output(MEMCHECK_CLEAN, "memcheck", 0)
    assert report.conclusive and report.ok and report.errors == 0 and report.messages == ()
    assert report_findings(report) == (None, None)


def test_memcheck_errors_with_their_first_location() -> None:
    report = parse_sanitizer_output(MEMCHECK_ERRORS, "memcheck", 0)
    assert report.errors == 2 and not report.ok
    assert report.messages[0] == "Invalid __global__ write of size 4 bytes | at scale+0x90 in scale_out_of_bounds.cu:7"
    assert len(report.messages) == 2
    failure, flag = report_findings(report)
    assert flag is None and failure.check == "memcheck"
    assert "found 2 error(s): Invalid __global__ write" in failure.message


def test_racecheck_summary() -> None:
    report = parse_sanitizer_output(RACECHECK_HAZARD, "racecheck", 0)
    assert (report.errors, report.warnings) == (1, 0)
    assert report.messages[0].startswith("Error: Race reported between Write access")
    failure, _ = report_findings(report)
    assert failure.check == "racecheck"
    warnings_only = parse_sanitizer_output(
        "========= RACECHECK SUMMARY: 2 hazards displayed (0 errors, 2 warnings)\n", "racecheck")
    assert report_findings(warnings_only)[0] is None and report_findings(warnings_only)[1].check == "sanitizer"


def test_no_summary_is_inconclusive() -> None:
    report = parse_sanitizer_output("Traceback (most recent call last):\n  ...\nImportError: no cupy\n", "memcheck", 1)
    assert not report.conclusive and not report.ok
    failure, flag = report_findings(report)
    assert failure is None and flag.check == "sanitizer" and "inconclusive" in flag.message


def test_the_not_printed_line_is_neither_the_total_nor_a_report() -> None:
    text = ("========= Invalid __global__ write of size 4 bytes\n"
            "=========     at scale+0x90 in scale_out_of_bounds.cu:7\n"
            "========= ERROR SUMMARY: 177 errors\n"
            "========= ERROR SUMMARY: 157 errors were not printed. Use --print-limit option to adjust the number "
            "of printed errors\n")
    report = parse_sanitizer_output(text, "memcheck", 0)
    assert report.errors == 177 and len(report.messages) == 1


def test_clean_summary_from_a_failed_program_is_inconclusive() -> None:
    # compute-sanitizer still prints "0 errors" when the worker died before launching the kernel.
    report = parse_sanitizer_output(MEMCHECK_CLEAN, "memcheck", 1)
    failure, flag = report_findings(report)
    assert failure is None and flag.check == "sanitizer"
    assert "exited with status 1: inconclusive" in flag.message


def test_command_line() -> None:
    command = sanitizer_command("/opt/cuda/bin/compute-sanitizer", "racecheck", "/tmp/job.json", python="python3")
    assert command == ["/opt/cuda/bin/compute-sanitizer", "--tool", "racecheck", "--print-limit", "20",
                       "--report-api-errors", "no",
                       "python3", "-m", "kernelpro.runner.worker", "--job", "/tmp/job.json"]
    with pytest.raises(ValueError):
        sanitizer_command("cs", "initcheck", "job.json")


def test_run_with_a_stand_in_sanitizer(tmp_path: Path) -> None:
    """A script in compute-sanitizer's place: it runs the target command and prints a summary."""
    script = tmp_path / "compute-sanitizer"
    script.write_text(f"""#!{sys.executable}
import subprocess, sys
args = sys.argv[1:]
assert args[:2] == ["--tool", "memcheck"], args
target = args[args.index("--report-api-errors") + 2:]
code = subprocess.call(target)
print("========= Target exit status", code)
print("========= ERROR SUMMARY: 0 errors" if code == 0 else "========= ERROR SUMMARY: 1 error")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    ok = run_sanitizer("memcheck", {"kind": "selftest.echo", "params": {}}, timeout_s=60, sanitizer=script)
    assert ok.ok and ok.exit_code == 0
    failing = run_sanitizer("memcheck", {"kind": "selftest.raise", "params": {}}, timeout_s=60, sanitizer=script)
    assert failing.errors == 1  # the worker's one-shot mode exits 1 when its job raises


def test_a_timed_out_sanitizer_whose_output_stays_open_is_not_waited_for(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """After the timeout's SIGKILL, reading the rest of the output is bounded too: here a process outside the
    killed group (as a lingering driver teardown would) keeps the pipe open for 30 s."""
    import time

    from kernelpro.runner import sanitizer as module

    monkeypatch.setattr(module, "REAP_TIMEOUT_S", 0.5)
    script = tmp_path / "compute-sanitizer"
    script.write_text("#!/bin/sh\nsetsid sleep 30 &\nsleep 3600\n")
    script.chmod(0o755)
    started = time.monotonic()
    report = run_sanitizer("memcheck", {"kind": "selftest.echo", "params": {}}, timeout_s=1, sanitizer=script)
    assert time.monotonic() - started < 10
    assert report.timed_out and not report.conclusive
