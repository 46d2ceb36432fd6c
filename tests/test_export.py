"""``kernelpro export`` against real git repositories in tmp_path.

The run folders come from the real journaled search and ``finish_run`` on the synthetic evaluator (an
analytic time model, not a measurement). A stand-in evaluator adds the timing figures a GPU run journals
(median/p20/p80, seed, GPU name), and a stand-in proposer also edits the kernel's body, so the winner differs
from the baseline in its function text as well as its knobs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report import TASK

from kernelpro.cli import cli
from kernelpro.cuda_source import find_kernels
from kernelpro.errors import KernelproError
from kernelpro.export import export, load_run
from kernelpro.optimize import RunSettings, finish_run, run_search
from kernelpro.report import best_file_text
from kernelpro.search import Budget, Variant
from kernelpro.search.synthetic import SyntheticEvaluator, SyntheticProposer
from kernelpro.task_loader import load_task

STAND_IN_GPU = "Stand-in GPU (synthetic evaluator)"
OLD_BODY = "y[i + u] = 2.0f * x[i + u];"
NEW_BODY = "y[i + u] = x[i + u] + x[i + u];  // kernelpro: add instead of multiply"
TASK_WITH_ORIGIN = TASK.replace("*/\n", '[origin]\npath = "src/ops.cu"\nfunction = "scale"\n*/\n', 1)
PASSED = "passed the wall again and compute-sanitizer"

TARGET = '''// ops.cu: the project's kernels
#include <cuda_runtime.h>
#ifndef BLOCK
#define BLOCK 32
#endif

__device__ float twice(float v) { return 2.0f * v; }

extern "C" __global__ void scale(const float* x, float* y, int n) {
    int i = (blockIdx.x * BLOCK + threadIdx.x) * VEC * UNROLL;
    for (int u = 0; u < UNROLL * VEC; ++u) if (i + u < n) y[i + u] = 2.0f * x[i + u];
}

void launch_scale(const float* x, float* y, int n) {
    scale<<<(n + BLOCK - 1) / BLOCK, BLOCK>>>(x, y, n);  // host code stays as it is
}
'''


class FiguresEvaluator(SyntheticEvaluator):
    """Stand-in: the synthetic time model, plus the summary figures a GPU evaluation journals."""

    def evaluate(self, variant):
        result = super().evaluate(variant)
        if not result.ok:
            return result
        t = result.time_us * (0.5 if NEW_BODY in variant.source else 1.0)  # the edit pays: the winner has it
        summary = {"median_us": t, "p20_us": t * 0.98, "p80_us": t * 1.02, "std_us": t * 0.01, "n": 50,
                   "method": "graph", "l2": "rotated", "seed": 1234, "gpu": STAND_IN_GPU}
        return type(result).passed(t, stage_seconds=result.stage_seconds, summary=summary)


class EditingProposer(SyntheticProposer):
    """Stand-in: the synthetic neighbour moves, each also carrying an edit of the kernel body."""

    def propose(self, request):
        proposal = super().propose(request)
        variants = tuple(Variant(v.source.replace(OLD_BODY, NEW_BODY), v.knobs, v.flags, v.change, v.origin)
                         for v in proposal.variants)
        return type(proposal)(variants, proposal.usage)


def make_run(root: Path, *, budget: int = 40, check=lambda node: (True, PASSED)) -> Path:
    """A finished run folder of the real search (synthetic evaluator) on a task with an [origin]."""
    root.mkdir(parents=True, exist_ok=True)
    task_path = root / "scale.cu"
    task_path.write_text(TASK_WITH_ORIGIN)
    task = load_task(task_path)
    run_dir = root / "results" / "scale" / "20250101-000000-abcdef"
    settings = RunSettings(str(task_path), "offline", None, "sm_90", 3, False, False,
                           f"kernelpro optimize {task_path} --proposer offline --seed 3")
    settings.save(run_dir)
    result = run_search(run_dir, task, evaluator=FiguresEvaluator(), proposer=EditingProposer(), diagnoser=None,
                        budget=Budget(max_evaluations=budget), seed=3, resume=False)
    finish_run(run_dir, task, result, settings, check, {"GPU": STAND_IN_GPU})
    return run_dir


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, text: str = TARGET) -> Path:
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "ops.cu").write_text(text)
    (repo / "README").write_text("a project\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "commit.gpgsign", "false")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the finished run (export writes PR.md into it); the task file stays where it was."""
    copy = tmp_path / "run-copy" / finished_run.name
    shutil.copytree(finished_run, copy)
    return copy


def test_export_replaces_only_the_function_and_knob_defines(run_dir: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    run = load_run(run_dir)
    knobs = run.best.variant.knob_values
    assert knobs["BLOCK"] != "32" and NEW_BODY in run.best.variant.source  # the winner changed both

    result = export(run_dir, repo)

    after = (repo / "src" / "ops.cu").read_bytes()
    before = TARGET.encode()
    span = find_kernels(TARGET)["scale"]
    head, tail = TARGET[:span.start].encode(), TARGET[span.end:].encode()
    winner_source = run.best.variant.source
    winner = find_kernels(winner_source)["scale"]
    function = winner_source[winner.start:winner.end].encode()
    expected_head = head.replace(b"#define BLOCK 32", f"#define BLOCK {knobs['BLOCK']}".encode())
    assert after == expected_head + function + tail
    assert after[-len(tail):] == before[-len(tail):]  # every byte after the function is untouched
    assert sum(a != b for a, b in zip(head.splitlines(), expected_head.splitlines(), strict=True)) == 1

    assert result.branch == f"kernelpro/scale-{run_dir.name}"
    assert git(repo, "branch", "--show-current").strip() == result.branch
    assert git(repo, "rev-list", "--count", f"main..{result.branch}").strip() == "1"
    assert git(repo, "diff", "--name-only", "main", result.branch).split() == ["src/ops.cu"]
    assert git(repo, "status", "--porcelain") == ""
    message = git(repo, "log", "-1", "--format=%B", result.branch)
    assert message.startswith("kernelpro: scale ") and f"faster on {STAND_IN_GPU}" in message
    base_us, best_us = run.baseline.evaluation.time_us, run.best.evaluation.time_us
    assert f"| before (baseline) | {base_us:,.2f} | {base_us * 0.98:,.2f}–{base_us * 1.02:,.2f} |" in message
    assert f"| after (node {run.best.id}) | {best_us:,.2f} |" in message
    assert f"**{base_us / best_us:.2f}x**" in message


def test_pr_md_lives_in_the_run_folder_and_holds_the_evidence(run_dir: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    result = export(run_dir, repo)
    assert result.pr_file == (run_dir / "PR.md").resolve()
    assert "PR.md" not in git(repo, "ls-files") and not (repo / "PR.md").exists()
    body = result.pr_file.read_text()
    run = load_run(run_dir)
    assert body.startswith(f"# kernelpro: scale {run.baseline.evaluation.time_us / run.best.evaluation.time_us:.2f}x")
    assert f"on {STAND_IN_GPU}" in body and "| before (baseline) |" in body and "–" in body
    assert "input seeds: 1234" in body and f"final check: {PASSED}" in body
    assert "correctness wall" in body and "the original kernel" in body
    knobs = run.best.variant.knob_values
    assert f"`BLOCK={knobs['BLOCK']}`" in body  # set in the file's #define
    assert f"`-DUNROLL={knobs['UNROLL']}`" in body and "knobs to set in your build" in body
    assert "## How the winner was reached" not in body and "\n1. node " in body  # report's path section
    assert f"kernelpro optimize {run.settings.task_path} --proposer offline --seed 3" in body
    knob_args = " ".join(f"--knob={k}={v}" for k, v in sorted(knobs.items()))
    assert f"kernelpro check {run.settings.task_path} {run_dir / 'best.cu'} {knob_args} --sanitize" in body


def test_file_and_function_options_rename_the_winner(run_dir: Path, tmp_path: Path) -> None:
    text = "// no knob defines here\n" + TARGET.split("#endif\n", 1)[1].replace("void scale(", "void scale_v1(")
    repo = make_repo(tmp_path, text)
    git(repo, "mv", "src/ops.cu", "src/other.cu")
    git(repo, "commit", "-q", "-m", "rename")
    result = export(run_dir, repo, file="src/other.cu", function="scale_v1", branch="perf/scale")
    after = (repo / "src" / "other.cu").read_text()
    old, new = find_kernels(text)["scale_v1"], find_kernels(after)["scale_v1"]
    assert after[:new.start] == text[:old.start] and after[new.end:] == text[old.end:]
    assert NEW_BODY in after[new.start:new.end] and "scale(" not in after[new.start:new.end]
    assert result.branch == "perf/scale" and "scale" not in find_kernels(after)
    body = result.pr_file.read_text()
    assert "`-DBLOCK=" in body  # nothing #defined in the file: every changed knob is for the build


def test_refuses_a_dirty_working_tree(run_dir: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "scratch.txt").write_text("work in progress\n")
    with pytest.raises(KernelproError, match="uncommitted changes"):
        export(run_dir, repo)
    assert git(repo, "branch", "--show-current").strip() == "main"
    assert (repo / "src" / "ops.cu").read_text() == TARGET


def test_refuses_a_missing_file_or_function(run_dir: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    with pytest.raises(KernelproError, match="does not exist") as missing:
        export(run_dir, repo, file="src/nope.cu")
    assert "src/nope.cu" in str(missing.value) and "fix:" in str(missing.value)
    with pytest.raises(KernelproError, match="no __global__ function 'nope'.*found: scale"):
        export(run_dir, repo, function="nope")
    assert git(repo, "branch", "--list").split() == ["*", "main"]


def test_refuses_an_existing_branch(run_dir: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "branch", "taken")
    with pytest.raises(KernelproError, match="branch 'taken' already exists"):
        export(run_dir, repo, branch="taken")
    export(run_dir, repo, branch="free")
    with pytest.raises(KernelproError, match="identical to the code in the target"):
        export(run_dir, repo, branch="again")  # the checkout now holds the winner


def test_refuses_a_winner_that_never_passed_the_wall(run_dir: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    run = load_run(run_dir)
    tree_failed = [r for r in _journal_nodes(run_dir) if not r.evaluation.ok]
    assert tree_failed, "the synthetic search always hits failing configurations"
    from kernelpro.search.interfaces import Node

    failed = tree_failed[0]
    (run_dir / "best.cu").write_text(best_file_text(run.task, Node(failed.id, failed.parent, 0, failed.iteration,
                                                                    failed.variant, failed.evaluation)))
    with pytest.raises(KernelproError, match=f"node {failed.id}\\) never passed the correctness wall"):
        export(run_dir, repo)


def test_refuses_a_run_whose_final_check_failed(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "r", budget=15, check=lambda node: (False, "failed the final check: memcheck"))
    repo = make_repo(tmp_path)
    with pytest.raises(KernelproError, match="never passed the final check.*baseline is reported"):
        export(run_dir, repo)


def test_refuses_a_winner_that_is_the_baseline(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "r", budget=1)
    repo = make_repo(tmp_path)
    with pytest.raises(KernelproError, match="the winner is the baseline: nothing to export"):
        export(run_dir, repo)


def test_refuses_a_hand_edited_best_file(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / "best.cu").write_text((run_dir / "best.cu").read_text() + "// tweaked\n")
    with pytest.raises(KernelproError, match="matches no candidate in the journal"):
        export(run_dir, make_repo(tmp_path))


def test_cli_open_pr_prints_the_command_without_gh(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    repo = make_repo(tmp_path)
    bin_dir = tmp_path / "bin"  # PATH with git and nothing else, so gh is hidden even where installed
    bin_dir.mkdir()
    os.symlink(shutil.which("git"), bin_dir / "git")
    monkeypatch.setenv("PATH", str(bin_dir))
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--repo", str(repo), "--branch", "kp/pr",
                                      "--open-pr"])
    assert result.exit_code == 0, result.output
    assert "gh not found" in result.output
    assert f"git -C {repo.resolve()} push -u origin kp/pr" in result.output
    assert "gh pr create --title 'kernelpro: scale " in result.output
    assert f"--body-file {(run_dir / 'PR.md').resolve()} --head kp/pr" in result.output


def test_cli_refusal_is_one_line(run_dir: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    done = subprocess.run(["kernelpro", "export", str(run_dir), "--repo", str(repo), "--function", "nope"],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "src/ops.cu" in done.stderr


def _journal_nodes(run_dir: Path):
    from kernelpro.search import read_journal
    from kernelpro.search.records import NodeRecord

    return [r for r in read_journal(run_dir / "journal.jsonl") if isinstance(r, NodeRecord)]
