"""What the LLM prompt holds: the task, the pinned rules card, the current kernel, the prescriptions, a
short history, and never raw profiler counters."""

from __future__ import annotations

import re

from anthropic_stub import DIAGNOSIS_TEXT, RAW_COUNTERS, edited_source, node, request, vector_add_task

from kernelpro.search import prompt
from kernelpro.task_loader import load_task

TASK = vector_add_task()
# ncu metric names join a unit and a counter with a double underscore: dram__bytes_read.sum, sm__throughput...
METRIC_NAME = re.compile(r"\b[a-z][a-z0-9_]*?[a-z0-9]__[a-z]")


def full_prompt(req, attempt: int = 0) -> str:
    return "\n".join([*prompt.fixed_blocks(TASK), prompt.context_block(req),
                      prompt.ask_block(req.parent.diagnosis, attempt, req.n)])


def test_the_prompt_holds_the_prescriptions_and_no_counter_names():
    text = full_prompt(request(node(TASK)))
    assert DIAGNOSIS_TEXT in text
    for name in RAW_COUNTERS:
        assert name not in text
    assert METRIC_NAME.search(text) is None
    # The pattern does catch counter names (and not __global__ or __restrict__).
    assert METRIC_NAME.search("limited by dram__bytes_read.sum") is not None
    assert METRIC_NAME.search('extern "C" __global__ void f(float* __restrict__ x)') is None


def test_the_rules_card_is_in_the_fixed_part_and_names_the_signature_knobs_and_wall():
    rules = prompt.fixed_blocks(TASK)[0]
    assert 'extern "C" __global__ void vector_add(const float* a, const float* b, float* c, int n)' in rules
    assert "Device code only" in rules and "no streams" in rules and "no global or static state" in rules
    assert "grid = (ceil_div(N, BLOCK)), block = (BLOCK)" in rules
    assert "BLOCK in {64, 128, 256, 512, 1024} (baseline: 256)" in rules
    for check in ("several distributions", "(N=1000003), (N=17)", "poisoned", "guard regions",
                  "inputs must be left unchanged", "bit-identical", "checked again", "FP16"):
        assert check in rules, check
    assert "exactly one ```cuda fenced block" in rules and "CHANGE:" in rules


def test_the_task_block_describes_arguments_sizes_and_launch():
    task_text = prompt.fixed_blocks(TASK)[1]
    assert "TASK: vector_add" in task_text and TASK.description in task_text
    assert "- a: float32 buffer [N], input, read-only" in task_text
    assert "- c: float32 buffer [N], output (poisoned" in task_text
    assert "- n: int32 scalar, passed by value = N" in task_text
    assert "Benchmark size (timed): N=67108864" in task_text
    assert "Useful work: N FLOPs, at least 12 * N bytes" in task_text


def test_the_fixed_part_depends_on_the_task_only():
    other = node(TASK, id=4, source=edited_source(TASK, "    // nothing"), knobs={"BLOCK": "512"})
    assert prompt.fixed_blocks(TASK) == prompt.fixed_blocks(vector_add_task())
    assert prompt.context_block(request(node(TASK))) != prompt.context_block(request(other))


def test_the_rules_card_follows_the_task():
    softmax = load_task(TASK.path.parent / "softmax.cu")
    rules = prompt.rules_card(softmax)
    assert "void softmax_rows(" in rules
    assert "(ROWS=7, COLS=1000)" in rules


def test_the_context_holds_the_current_kernel_knobs_and_speed():
    source = edited_source(TASK, "    // a faster body")
    parent = node(TASK, id=3, source=source, knobs={"BLOCK": "512"}, time_us=80.0, change="grid-stride loop")
    text = prompt.context_block(request(parent, baseline_us=100.0))
    assert "CURRENT KERNEL (node 3): 80 us, 1.25x the baseline's speed" in text
    assert "Knobs: BLOCK=512. nvcc flags: -O3." in text
    assert "Last change that produced it: grid-stride loop" in text
    assert f"```cuda\n{source.rstrip()}\n```" in text


def test_an_undiagnosed_kernel_says_it_was_not_profiled():
    text = prompt.context_block(request(node(TASK, with_diagnosis=False)))
    assert "Not profiled" in text
    assert "Nothing tried yet." in text


def test_the_history_is_short():
    feedback = tuple(f"'try {i}' → wall: output mismatch " + "x" * 400 for i in range(10))
    text = prompt.context_block(request(node(TASK), feedback=feedback, memory="m" * 5000))
    assert "'try 9'" in text and "'try 3'" not in text  # the latest failures
    assert "(4 earlier failures not shown)" in text
    assert max(len(line) for line in text.splitlines() if line.startswith("- '")) <= 2 + prompt.MAX_FEEDBACK_CHARS
    assert "m" * prompt.MAX_MEMORY_CHARS not in text and "m" * (prompt.MAX_MEMORY_CHARS - 1) in text


def test_each_attempt_gets_its_own_nudge():
    diag = node(TASK).diagnosis
    asks = [prompt.ask_block(diag, k, 3) for k in range(3)]
    assert "prescription #1" in asks[0] and "float4" in asks[0]
    assert "prescription #2" in asks[1] and "grid-stride" in asks[1]
    assert "don't cover" in asks[2]
    assert len(set(asks)) == 3
    assert prompt.prescriptions(diag)[0].startswith("Load a and b as float4")
    bare = [prompt.ask_block(None, k, 2) for k in range(2)]
    assert "gain most" in bare[0] and "different change" in bare[1]
