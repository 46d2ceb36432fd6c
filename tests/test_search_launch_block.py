"""The search side of candidate-owned launches: the LLM prompt shows the launch block's syntax, the reply
extractor keeps a model's launch block (and checks it), and the offline proposer's children of a parent
with its own launch keep that block byte for byte and still compile and resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.candidate_launch import candidate_plan, launch_block_text
from kernelpro.compiler import Compiler
from kernelpro.search import Evaluation, Node, ProposalRequest, Variant, prompt
from kernelpro.search.extract import MalformedReply, extract_kernel
from kernelpro.search.offline import OfflineProposer
from kernelpro.task_loader import load_task
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
V2 = ROOT / "tests" / "kernels" / "v2"


def fused_layernorm() -> tuple:
    task = load_task(ROOT / "tasks" / "layernorm_two_pass.cu")
    return task, task.source + "\n" + (V2 / "layernorm_fused.cuh").read_text()


def reply(source: str) -> str:
    return f"Fusing the two kernels.\n```cuda\n{source}```\nCHANGE: fuse statistics and normalise\n"


def test_prompt_says_the_launch_may_change_and_shows_the_syntax() -> None:
    task = load_task(ROOT / "tasks" / "layernorm_two_pass.cu")
    rules = prompt.rules_card(task)
    assert "The launch may change" in rules and "/* kernelpro launch" in rules and "[[launch]]" in rules
    assert 'args = ["x", "gamma", "beta", "y", "mean", "rstd", "cols"]' in rules
    assert "SM_COUNT" in rules and "null" in rules
    assert "layernorm_stats with grid = (ROWS)" in rules and "then layernorm_apply with grid" in rules
    block = prompt.task_block(task)
    assert "Launch (in order): layernorm_stats" in block and "mean: float32 buffer [ROWS], output" in block


def test_extract_keeps_the_models_launch_block() -> None:
    task, source = fused_layernorm()
    got = extract_kernel(reply(source), task)
    assert launch_block_text(got.source) == launch_block_text(source) and not got.metadata_restored
    # the model dropped the task's metadata: it is put back, and the launch block stays as written
    body = source.split("*/", 1)[1]
    restored = extract_kernel(reply(body), task)
    assert restored.metadata_restored and launch_block_text(restored.source) == launch_block_text(source)
    assert [launch.kernel for launch in candidate_plan(task, restored.source)] == ["layernorm_fused"]


def test_extract_rejects_a_wrong_launch_block_with_a_correction() -> None:
    task, source = fused_layernorm()
    with pytest.raises(MalformedReply, match="the launch block: .*'layernorm_fusd' is not a __global__"):
        extract_kernel(reply(source.replace('kernel = "layernorm_fused"', 'kernel = "layernorm_fusd"')), task)
    with pytest.raises(MalformedReply, match="buffer mean is passed twice to layernorm_fused"):
        extract_kernel(reply(source.replace('"mean", "rstd", "cols", "0.00001"', '"mean", "mean", "cols", '
                                            '"0.00001"')), task)


@pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")
@pytest.mark.parametrize(("task_name", "extra"), [("softmax", "softmax_rows_warp.cuh"),
                                                  ("layernorm_two_pass", "layernorm_fused.cuh"),
                                                  ("layernorm_two_pass", None)])
def test_offline_children_keep_the_launch_block(task_name: str, extra: str | None, tmp_path: Path) -> None:
    task = load_task(ROOT / "tasks" / f"{task_name}.cu")
    source = task.source + ("\n" + (V2 / extra).read_text() if extra else "")
    variant = Variant(source, tuple((k, str(v)) for k, v in task.default_knobs().items()), (), "parent", "test")
    node = Node(0, None, 0, 0, variant, Evaluation.passed(100.0), None)
    proposer = OfflineProposer(task, compiler=Compiler(cache_dir=tmp_path), arch="sm_90")
    children = proposer.propose(ProposalRequest(node, 3, (), "", frozenset({node.key}), 100.0)).variants
    assert children, "the offline proposer found no move"
    for child in children:
        assert launch_block_text(child.source) == launch_block_text(source)
        assert candidate_plan(task, child.source) == candidate_plan(task, source)
