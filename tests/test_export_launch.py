"""``kernelpro export`` of a winner that owns its launch (real search on the synthetic evaluator, real git).

Two winners: one that only changes the block size, which the target's host code takes from a
``#define`` (the commit sets it; PR.md says no host change is needed), and one that launches another
kernel with another grid (the commit puts that kernel in place of the target's function; PR.md says
plainly that the host code must change, with the new launch and the line of the old call)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from test_export import OLD_BODY, STAND_IN_GPU, TASK_WITH_ORIGIN, EditingProposer, FiguresEvaluator, git, make_repo

from kernelpro.export import export
from kernelpro.optimize import RunSettings, finish_run, run_search
from kernelpro.search import Budget, Variant
from kernelpro.task_loader import load_task

BLOCK_ONLY = '''
/* kernelpro launch
[[launch]]
grid = ["ceil_div(N, BLOCK * UNROLL * VEC)"]
block = ["64"]
*/
'''
WIDE = '''
extern "C" __global__ void scale_wide(const float* x, float* y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = 2.0f * x[i];
}

/* kernelpro launch
[[launch]]
kernel = "scale_wide"
grid = ["4 * SM_COUNT"]
block = ["256"]
args = ["x", "y", "n"]
*/
'''
TARGET = '''// ops.cu
#ifndef BLOCK
#define BLOCK 32
#endif
#define THREADS 32

extern "C" __global__ void scale(const float* x, float* y, int n) {
    int i = (blockIdx.x * BLOCK + threadIdx.x) * VEC * UNROLL;
    for (int u = 0; u < UNROLL * VEC; ++u) if (i + u < n) y[i + u] = 2.0f * x[i + u];
}

void launch_scale(const float* x, float* y, int n) {
    scale<<<(n + BLOCK - 1) / BLOCK, THREADS>>>(x, y, n);
}
'''


class LaunchingProposer(EditingProposer):
    """Stand-in: the editing proposer's variants, each with the given launch block appended."""

    def __init__(self, block: str) -> None:
        super().__init__()
        self.block = block

    def propose(self, request):
        proposal = super().propose(request)
        variants = tuple(Variant(v.source if self.block in v.source else v.source + self.block, v.knobs, v.flags,
                                 v.change, v.origin) for v in proposal.variants)
        return type(proposal)(variants, proposal.usage)


def make_run(root: Path, block: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    task_path = root / "scale.cu"
    task_path.write_text(TASK_WITH_ORIGIN)
    task = load_task(task_path)
    run_dir = root / "results" / "scale" / "20250101-000000-launch"
    settings = RunSettings(str(task_path), "offline", None, "sm_90", 3, False, False, f"kernelpro optimize {task_path}")
    settings.save(run_dir)
    result = run_search(run_dir, task, evaluator=FiguresEvaluator(), proposer=LaunchingProposer(block),
                        diagnoser=None, budget=Budget(max_evaluations=20), seed=3, resume=False)
    finish_run(run_dir, task, result, settings, lambda node: (True, "passed the wall again and compute-sanitizer"),
               {"GPU": STAND_IN_GPU})
    return run_dir


def test_block_only_launch_is_set_through_the_hosts_define(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", BLOCK_ONLY)
    assert BLOCK_ONLY.strip() in (run_dir / "best.cu").read_text()  # best.cu carries the launch
    for name in ("journal.jsonl", "tree.json"):  # so do the journal and the tree, as source text
        assert json.dumps(BLOCK_ONLY.strip())[1:-1] in (run_dir / name).read_text(), name
    repo = make_repo(tmp_path, TARGET)
    result = export(run_dir, repo)
    text = result.file.read_text()
    assert "#define THREADS 64" in text and "scale<<<(n + BLOCK - 1) / BLOCK, THREADS>>>" in text
    pr = result.pr_file.read_text()
    assert "no host code change needed" in pr and "`#define THREADS`" in pr and "ops.cu:13" in pr
    assert "host code must change" not in pr.lower().replace("no host code change", "")


def test_other_kernel_and_grid_say_host_code_must_change(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", WIDE)
    repo = make_repo(tmp_path, TARGET)
    result = export(run_dir, repo)
    text = result.file.read_text()
    assert "scale_wide(const float* x, float* y, int n)" in text and OLD_BODY not in text
    assert "void launch_scale" in text  # the rest of the file is untouched
    pr = result.pr_file.read_text()
    assert "**host code must change**" in pr and "`ops.cu:13`" in pr
    assert "scale_wide<<<4 * SM_COUNT, 256, 0>>>(x, y, n);" in pr and "grid [528]" in pr
    assert "SM_COUNT: the GPU's values" in pr
    assert 'kernel = "scale_wide"' in pr  # the launch block as kernelpro ran it
    report = (run_dir / "report.md").read_text()
    assert "## Launches" in report and "scale_wide<<<(4 * SM_COUNT), (256), 0>>>(x, y, n)" in report
    assert "host code that launches the kernel must change" in report
    message = git(repo, "log", "-1", "--format=%B")
    assert "Host code must change" in message
    assert subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True,
                          text=True).stdout == ""
