"""The main jobs end to end on a GPU, as a user runs them: analyze, optimize, then regress the run.

Every test here is ``gpu``-marked (skipped where no GPU is visible) and runs the real CLI in a child
process: CuPy, the worker, Nsight Compute, compute-sanitizer and nvcc all take part.

* ``kernelpro analyze`` on the naive transpose profiles it with ncu (two stages) and fires the
  uncoalesced-access tool, whose prescription names no counter.
* ``kernelpro optimize`` with the offline proposer on vector_add (``--time 3m``, so the stage fits in 8
  minutes) writes a verified, sanitizer-checked winner that is not slower than the baseline.
* ``kernelpro regress`` on that run passes (exit 0); on a copy whose winner was planted slower (a
  20,000-cycle spin per thread, same results) it fails (exit 1); both JUnit files parse.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from planted_runs import plant_slower_winner

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks"
pytestmark = pytest.mark.gpu


def kernelpro(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kernelpro", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def junit_counts(path: Path) -> tuple[int, int]:
    """(test cases, failures + errors) of a JUnit file."""
    root = ET.parse(path).getroot()
    cases = root.findall(".//testcase")
    return len(cases), sum(len(c.findall("failure")) + len(c.findall("error")) for c in cases)


@pytest.fixture(scope="module")
def vector_add_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "vector_add"
    done = kernelpro("optimize", str(TASKS / "vector_add.cu"), "--proposer", "offline", "--budget", "8",
                     "--time", "3m", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_analyze_profiles_and_prescribes(tmp_path: Path) -> None:
    plot = tmp_path / "roofline.png"
    done = kernelpro("analyze", str(TASKS / "transpose.cu"), "--json", "--plot", str(plot))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    diagnosis = report["diagnosis"]
    assert diagnosis["bound"] in ("memory", "latency", "compute") and not diagnosis["errors"]
    assert "uncoalesced" in diagnosis["fired"], diagnosis["fired"]
    text = json.dumps([{k: p[k] for k in ("change", "why")} for p in diagnosis["prescriptions"]])
    assert "__" not in text  # ncu metric names all contain "__"; prescriptions speak in words
    assert plot.stat().st_size > 0


def test_optimize_writes_a_verified_winner(vector_add_run: Path) -> None:
    from kernelpro.export import load_run

    for name in ("best.cu", "journal.jsonl", "tree.json", "report.md", "convergence.png", "run.json"):
        assert (vector_add_run / name).is_file(), name
    run = load_run(vector_add_run)
    assert run.best.evaluation.ok and run.baseline.evaluation.ok
    assert run.best.evaluation.time_us <= run.baseline.evaluation.time_us
    assert "- final check:" in run.report


def test_regress_passes_the_true_winner(vector_add_run: Path, tmp_path: Path) -> None:
    junit = tmp_path / "regress.xml"
    done = kernelpro("regress", str(vector_add_run), "--junit", str(junit))
    assert done.returncode == 0, done.stdout + done.stderr
    assert junit_counts(junit) == (2, 0)


def test_regress_fails_a_planted_slower_winner(vector_add_run: Path, tmp_path: Path) -> None:
    from kernelpro.export import load_run

    planted = plant_slower_winner(vector_add_run, tmp_path / "planted")
    run = load_run(planted)
    junit = tmp_path / "regress.xml"
    done = kernelpro("regress", str(planted), "--junit", str(junit))
    assert done.returncode == 1, done.stdout + done.stderr
    # The baseline still holds and the winner regressed (both, when the search kept the baseline as winner).
    assert junit_counts(junit) == (2, 1 if run.best.id != run.baseline.id else 2)
