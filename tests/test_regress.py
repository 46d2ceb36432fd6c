"""``kernelpro regress``: the comparison rule, exit codes, GPU mismatch, JUnit XML and the Markdown summary.

The run folders come from the real search on the synthetic evaluator (see test_export). The measurement is
a stand-in (:class:`StandInMeasure`) that returns given figures instead of timing a kernel; the real,
runner-based measurement is the GPU-only test at the end.
"""

from __future__ import annotations

import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import gpu_available
from planted_runs import SPIN, plant_slower_winner
from test_export import STAND_IN_GPU, make_run

from kernelpro.cli import cli, regress_command
from kernelpro.errors import KernelproError
from kernelpro.export import load_run
from kernelpro.regress import (
    Measurement,
    find_runs,
    is_regression,
    junit_xml,
    markdown_summary,
    parse_tolerance,
    regress,
    write_outputs,
)

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "github-actions-gpu-regression.yml"


class StandInMeasure:
    """Stand-in for the GPU runner: returns the figures given per case ("baseline"/"best") for every run."""

    def __init__(self, run_dir: Path, **figures: Measurement) -> None:
        run = load_run(run_dir)
        self.which = {run.baseline.variant.key: "baseline", run.best.variant.key: "best"}
        self.figures = figures
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, task, variant, *, warm=False) -> Measurement:
        which = self.which[variant.key]
        self.calls.append((which, warm))
        return self.figures[which]


def recorded(run_dir: Path, which: str, scale: float = 1.0, gpu: str = STAND_IN_GPU) -> Measurement:
    """The run's stored figures for a case, scaled (as if the code got ``scale`` times slower)."""
    run = load_run(run_dir)
    t = (run.baseline if which == "baseline" else run.best).evaluation.time_us * scale
    return Measurement(gpu, True, t, t * 0.98, t * 1.02, 50)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results" / "scale" / finished_run.name
    shutil.copytree(finished_run, copy)
    return copy


def test_regression_rule() -> None:
    old = Measurement("g", True, 100.0, 98.0, 102.0, 50)
    assert not is_regression(old, Measurement("g", True, 104.0, 103.0, 105.0, 50), 0.05)  # within tolerance
    assert not is_regression(old, Measurement("g", True, 110.0, 101.0, 130.0, 50), 0.05)  # spreads overlap
    assert is_regression(old, Measurement("g", True, 110.0, 108.0, 112.0, 50), 0.05)
    assert not is_regression(old, Measurement("g", True, 110.0, 108.0, 112.0, 50), 0.12)  # looser tolerance
    assert not is_regression(old, Measurement("g", True, 50.0, 49.0, 51.0, 50), 0.05)  # faster is fine


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("5", 0.05), ("0.05", 0.05), ("12.5%", 0.125)])
def test_parse_tolerance(text: str, value: float) -> None:
    assert parse_tolerance(text) == pytest.approx(value)


def test_parse_tolerance_rejects() -> None:
    with pytest.raises(KernelproError, match="not a number"):
        parse_tolerance("five")


def test_all_hold(run_dir: Path) -> None:
    measure = StandInMeasure(run_dir, baseline=recorded(run_dir, "baseline", 1.01), best=recorded(run_dir, "best"))
    report = regress([run_dir], measure)
    assert [(c.which, c.outcome) for c in report.cases] == [("baseline", "pass"), ("best", "pass")]
    assert report.exit_code == 0 and measure.calls == [("baseline", False), ("best", False)]
    root = ET.fromstring(junit_xml(report))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["baseline", "best"]
    assert root.find("testsuite").get("failures") == "0" and not root.findall(".//failure")
    summary = markdown_summary(report)
    assert "**all recorded results hold**" in summary and summary.count("✅ pass") == 2


def test_regression_fails_with_exit_1(run_dir: Path, tmp_path: Path) -> None:
    measure = StandInMeasure(run_dir, baseline=recorded(run_dir, "baseline"), best=recorded(run_dir, "best", 1.2))
    report = regress([run_dir], measure)
    assert report.exit_code == 1
    best = report.cases[1]
    assert best.outcome == "regression" and "+20.0%" in best.message and "5% tolerance" in best.message
    write_outputs(report, junit=tmp_path / "regress.xml", summary=tmp_path / "summary.md")
    root = ET.parse(tmp_path / "regress.xml").getroot()
    failures = root.findall(".//testcase[@name='best']/failure")
    assert len(failures) == 1 and failures[0].get("type") == "regression" and "+20.0%" in failures[0].get("message")
    assert root.find("testsuite").get("failures") == "1" and root.find("testsuite").get("tests") == "2"
    summary = (tmp_path / "summary.md").read_text()
    assert "**regression or correctness failure**" in summary and "❌ regression" in summary


def test_correctness_failure_fails_with_exit_1(run_dir: Path) -> None:
    broken = Measurement(STAND_IN_GPU, False, failure="mismatch: output y differs at index 17")
    report = regress([run_dir], StandInMeasure(run_dir, baseline=recorded(run_dir, "baseline"), best=broken))
    assert report.exit_code == 1 and report.cases[1].outcome == "failure"
    assert "index 17" in report.cases[1].message
    assert ET.fromstring(junit_xml(report)).find(".//failure").get("type") == "failure"


def test_other_gpu_is_not_compared(run_dir: Path) -> None:
    other = "NVIDIA A100-SXM4-80GB"
    measure = StandInMeasure(run_dir, baseline=recorded(run_dir, "baseline", 3.0, other),
                             best=recorded(run_dir, "best", 3.0, other))
    report = regress([run_dir], measure)
    assert report.exit_code == 2 and {c.outcome for c in report.cases} == {"environment"}
    assert f"recorded on {STAND_IN_GPU}, this GPU is {other}: not compared" in report.cases[0].message
    root = ET.fromstring(junit_xml(report))
    assert len(root.findall(".//error")) == 2 and root.find("testsuite").get("errors") == "2"
    assert "⚠️ not compared" in markdown_summary(report) and "environment problem" in markdown_summary(report)


def test_missing_run_files_are_an_environment_problem(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / "best.cu").unlink()
    report = regress([run_dir], StandInMeasure.__new__(StandInMeasure))  # never called
    assert report.exit_code == 2 and all("cannot read the run" in c.message for c in report.cases)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KernelproError, match="no run folders"):
        find_runs([tmp_path / "empty"])


def test_regression_outranks_environment(run_dir: Path, tmp_path: Path) -> None:
    second = tmp_path / "results" / "scale" / "second"
    shutil.copytree(run_dir, second)
    (second / "journal.jsonl").unlink()
    measure = StandInMeasure(run_dir, baseline=recorded(run_dir, "baseline"), best=recorded(run_dir, "best", 2.0))
    runs = find_runs([tmp_path / "results"])
    assert runs == sorted([run_dir, second])
    report = regress(runs, measure)
    assert report.exit_code == 1 and report.count("environment") == 2 and report.count("regression") == 1


def test_summary_goes_to_github_step_summary(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    step = tmp_path / "step-summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    measure = StandInMeasure(run_dir, baseline=recorded(run_dir, "baseline"), best=recorded(run_dir, "best"))
    write_outputs(regress([run_dir], measure))
    text = step.read_text()
    assert text.startswith("earlier step\n## kernelpro regress") and "| run | case |" in text


@pytest.mark.skipif(gpu_available(), reason="checks the no-GPU path")
def test_cli_without_gpu_exits_2(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["regress", str(run_dir)])
    assert result.exit_code == 2
    assert "no CUDA GPU visible" in result.output or "CuPy is not installed" in result.output
    result = CliRunner().invoke(cli, ["regress", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such folder" in result.output


def test_workflow_parses_and_its_regress_line_is_accepted() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = next(iter(workflow["jobs"].values()))
    assert job["runs-on"] == ["self-hosted", "gpu"]
    steps = job["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/checkout@") for u in uses) and any(u.startswith("actions/setup-python@")
                                                                        for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@v4"))
    assert "regress.xml" in upload["with"]["path"] and "results" in upload["with"]["path"]
    assert upload.get("if") == "always()"
    runs = [line for s in steps for line in s.get("run", "").splitlines()]
    assert any("pip install $KERNELPRO" in line for line in runs)
    install = next(step for step in job["steps"] if "KERNELPRO" in step.get("env", {}))
    assert install["env"]["KERNELPRO"] == "-e .[cuda12]"
    line = next(line for line in runs if line.strip().startswith("kernelpro regress"))
    args = shlex.split(line.replace("$GITHUB_STEP_SUMMARY", "/tmp/summary.md"))
    assert args[:2] == ["kernelpro", "regress"] and cli.get_command(None, "regress") is regress_command
    ctx = regress_command.make_context("regress", args[2:])
    assert ctx.params["paths"] == (Path("results/"),) and ctx.params["junit"] == Path("regress.xml")
    assert ctx.params["summary"] == Path("/tmp/summary.md") and ctx.params["tolerance"] == "5%"


def test_planted_slower_winner_is_still_a_readable_run(finished_run: Path, tmp_path: Path) -> None:
    """What test_end_to_end_gpu regresses: the same run, its winner's code slowed, its figures kept."""
    original, planted = load_run(finished_run), load_run(plant_slower_winner(finished_run, tmp_path / "planted"))
    assert SPIN in planted.best.variant.source and SPIN not in original.best.variant.source
    assert planted.best.id == original.best.id and planted.best.evaluation == original.best.evaluation
    assert planted.baseline == original.baseline
    assert planted.best_text != original.best_text


@pytest.mark.gpu
def test_runner_measure_on_the_gpu() -> None:
    from kernelpro.optimize import baseline_variant
    from kernelpro.regress import RunnerMeasure
    from kernelpro.task_loader import load_task

    task = load_task(Path(__file__).resolve().parents[1] / "tasks" / "vector_add.cu")
    measure = RunnerMeasure()
    try:
        m = measure(task, baseline_variant(task))
    finally:
        measure.close()
    assert m.ok and m.gpu and 0 < m.p20_us <= m.median_us <= m.p80_us and m.n >= 10
