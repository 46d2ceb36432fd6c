"""Task format v2 in the loader: launch sequences, scratch buffers, NULL pointers, device values,
template kernels, ``reference = "comparator"``, stricter type checks and a malformed case for each."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.device_values import default_device_values
from kernelpro.errors import TaskError
from kernelpro.task_loader import load_task, parse_task

# A two-kernel operator: row statistics into scratch, then normalise; a template kernel, a NULL bias,
# device-dependent geometry.
SEQ = '''/* kernelpro
[task]
name = "norm2"
kernel = "stats"

[params]
ROWS = 64
COLS = 1000

[[args]]
name = "x"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["ROWS", "COLS"]
intent = "out"

[[args]]
name = "mean"
dtype = "float32"
shape = ["ROWS"]
intent = "scratch"

[[args]]
name = "cols"
dtype = "int32"
value = "COLS"

[[launch]]
kernel = "stats<float, BLOCK>"
grid = ["min(ROWS, 2 * SM_COUNT)"]
block = ["BLOCK"]
args = ["x", "mean", "ROWS", "cols"]

[[launch]]
kernel = "normalize"
grid = ["ROWS"]
block = ["256"]
args = ["x", "mean", "null", "y", "cols"]

[knobs]
BLOCK = { values = [128, 256], default = 256 }

[correctness]
sizes = [{ ROWS = 3, COLS = 17 }]
*/
#ifndef BLOCK
#define BLOCK 256
#endif
template <typename T, int B>
__global__ void stats(const T* x, T* mean, int rows, int cols) {
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        if (threadIdx.x == 0) { T s = 0; for (int c = 0; c < cols; ++c) s += x[r * cols + c]; mean[r] = s / cols; }
    }
}
extern "C" __global__ void normalize(const float* x, const float* mean, const float* bias, float* y, int cols) {
    int r = blockIdx.x;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        y[r * cols + c] = x[r * cols + c] - mean[r] + (bias ? bias[c] : 0.0f);
}
'''


def line_with(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_sequence_task_loads_with_scratch_null_template_and_device_values() -> None:
    task = parse_task(SEQ, "norm2.cu")
    assert [launch.kernel for launch in task.plan] == ["stats<float, BLOCK>", "normalize"]
    assert task.plan[0].kernel_name == "stats" and task.plan[0].template_args == "float, BLOCK"
    assert [a.kind for a in task.plan[1].args] == ["arg", "arg", "null", "arg", "arg"]
    assert [a.kind for a in task.plan[0].args] == ["arg", "arg", "expr", "arg"]
    assert task.arg("mean").is_scratch and not task.arg("mean").is_output and not task.arg("mean").is_input
    assert [a.name for a in task.outputs] == ["y"]
    env = task.env()
    assert env["SM_COUNT"] == default_device_values()["SM_COUNT"] == 132
    assert task.plan[0].grid_dims(env) == (64, 1, 1)  # min(64, 264)
    assert task.plan[0].grid_dims(task.env(sizes={"ROWS": 1000})) == (264, 1, 1)
    assert task.is_sequence and task.buffer_bytes(env) == 4 * (64 * 1000 * 2 + 64)


def test_v1_task_plan_is_one_launch_of_the_entry_kernel() -> None:
    task = load_task(Path(__file__).resolve().parents[1] / "tasks" / "softmax.cu")
    assert len(task.plan) == 1 and task.plan[0].kernel == task.kernel and task.plan[0].args is None
    assert not task.is_sequence


def test_template_entry_kernel_in_v1_task() -> None:
    text = SEQ.split("[[launch]]")[0].replace('kernel = "stats"', 'kernel = "stats<float, 256>"')
    text = text.replace('[[args]]\nname = "y"\ndtype = "float32"\nshape = ["ROWS", "COLS"]\nintent = "out"\n\n', "")
    text = text.replace('intent = "scratch"', 'intent = "out"').replace('[[args]]\nname = "cols"',
                                                                        '[[args]]\nname = "rows"\ndtype = "int32"\n'
                                                                        'value = "ROWS"\n\n[[args]]\nname = "cols"')
    text += '[launch]\ngrid = ["ROWS"]\nblock = ["32"]\n*/\n' + SEQ.split("*/", 1)[1]
    task = parse_task(text.replace("[knobs]\nBLOCK", "[knobs]\nBLOCK") if "[knobs]" in text else text, "t.cu")
    assert task.kernel == "stats" and task.plan[0].template_args == "float, 256"


def test_reference_comparator_is_accepted_with_a_comparator() -> None:
    text = SEQ.replace("[correctness]", '[comparator]\nlibrary = "numpy"\nexpr = "y[...] = x - x.mean(axis=1, '
                       'keepdims=True)"\n\n[correctness]\nreference = "comparator"')
    task = parse_task(text, "t.cu")
    assert task.reference_is_comparator


def _swap(old: str, new: str, count: int = 1):
    def mutate(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, count)
    return mutate


LONG_SCALAR = SEQ.replace("int rows, int cols) {\n    for", "int rows, long cols) {\n    for")
# (case, base text, mutation, words in the message, needle on the error's line or None)
MALFORMED_V2 = [
    ("kernel-is-a-list", SEQ, _swap('kernel = "stats"', 'kernel = ["stats", "normalize"]'), "must be one string",
     'kernel = ["stats"'),
    ("dtype-is-a-list", SEQ, _swap('dtype = "float32"', 'dtype = ["float32"]'), "must be one string",
     'dtype = ["float32"]'),
    ("reference-is-a-list", SEQ, _swap("[correctness]", '[correctness]\nreference = ["a"]'), "must be one string",
     'reference = ["a"]'),
    ("long-declared-int32", LONG_SCALAR, lambda t: t, "declares `long cols` (int64)", None),
    ("vector-by-value", SEQ, lambda t: t.replace("const float* bias, float* y, int cols", "const float* bias, "
                                                 "float* y, float4 cols"), "struct by value", None),
    ("typedef-bf16-as-float32", SEQ, lambda t: t.replace("const float* bias,", "const bf16* bias,").replace(
        '"x", "mean", "null"', '"x", "mean", "b"').replace('[[args]]\nname = "cols"', '[[args]]\nname = "b"\ndtype = '
        '"float32"\nshape = ["COLS"]\nintent = "in"\n\n[[args]]\nname = "cols"').replace(
        "template <typename T", "typedef __nv_bfloat16 bf16;\ntemplate <typename T"),
     "bf16 = __nv_bfloat16: bfloat16", None),
    ("scalar-out-of-range", SEQ, _swap("COLS = 1000", "COLS = 99999999999"), "does not fit int32", 'value = "COLS"'),
    ("launch-expression-out-of-range", SEQ, _swap("ROWS = 64\nCOLS = 1000", "ROWS = 3000000000\nCOLS = 1"),
     "argument ROWS = 3000000000 does not fit int32", None),
    ("buffers-exceed-gpu-memory", SEQ, _swap("ROWS = 64\nCOLS = 1000", "ROWS = 10000000\nCOLS = 1000000"),
     "more than the GPU's 80.0 GiB", "[params]"),
    ("todo-left", SEQ, _swap('shape = ["ROWS"]', 'shape = ["TODO"]  # rows'), "TODO(s) left", 'shape = ["TODO"]'),
    ("launch-arg-unknown-buffer", SEQ, _swap('args = ["x", "mean", "null", "y"', 'args = ["x", "meen", "null", "y"'),
     "'meen' is not a task buffer", None),
    ("aliased-buffer", SEQ, _swap('args = ["x", "mean", "null", "y"', 'args = ["x", "mean", "null", "x"'),
     "passed twice", None),
    ("null-to-scalar", SEQ, _swap('"null", "y", "cols"]', '"null", "y", "null"]'), "not a pointer", None),
    ("sequence-launch-without-kernel", SEQ, _swap('kernel = "normalize"\n', ""), "names no kernel", None),
    ("template-without-arguments", SEQ, _swap('kernel = "stats<float, BLOCK>"', 'kernel = "stats"'),
     "is a template <T, B>", None),
    ("buffer-passed-to-no-launch", SEQ, _swap('[[args]]\nname = "cols"', '[[args]]\nname = "extra"\ndtype = '
                                              '"float32"\nshape = ["COLS"]\nintent = "in"\n\n[[args]]\nname = "cols"'),
     "buffer extra is passed to no launch", 'name = "extra"'),
    ("reference-comparator-without-comparator", SEQ, _swap("[correctness]", '[correctness]\nreference = '
                                                           '"comparator"'), "has no [comparator]", "reference ="),
    ("reference-kernel-in-sequence", SEQ, _swap("[correctness]", '[correctness]\nreference = "normalize"'),
     "in a task with a launch sequence", "reference ="),
    ("launch-arg-count", SEQ, _swap('args = ["x", "mean", "ROWS", "cols"]', 'args = ["x", "mean", "ROWS"]'),
     "passes 3 arguments but stats takes 4", None),
    ("unknown-launch-key", SEQ, _swap('block = ["256"]', 'blok = ["256"]'), "unknown key 'blok'", 'blok ='),
    ("scratch-with-init", SEQ, _swap('intent = "scratch"', 'intent = "scratch"\ninit = "zeros"'),
     "scratch argument mean has an init", 'init = "zeros"'),
    ("grid-too-large-y", SEQ, _swap('grid = ["ROWS"]', 'grid = ["1", "ROWS * 2000"]'), "grid (1, 128000, 1)",
     'grid = ["1"'),
    ("device-name-typo", SEQ, _swap("2 * SM_COUNT", "2 * SM_CONT"), "unknown name 'SM_CONT'", "SM_CONT"),
    ("expr-to-template-type", SEQ, _swap('"x", "mean", "ROWS", "cols"', '"x", "mean", "ROWS", "COLS"'),
     None, None),
]


@pytest.mark.parametrize(("case", "base", "mutate", "words", "needle"), MALFORMED_V2,
                         ids=[m[0] for m in MALFORMED_V2])
def test_malformed_v2_task_gives_specific_error(tmp_path: Path, case, base, mutate, words, needle) -> None:
    text = mutate(base)
    path = tmp_path / f"{case}.cu"
    path.write_text(text)
    if words is None:  # a control: the mutation is valid
        assert load_task(path).name == "norm2"
        return
    with pytest.raises(TaskError) as info:
        load_task(path)
    error = info.value
    assert words in error.message, str(error)
    assert error.file == str(path) and error.fix and error.line is not None, str(error)
    if needle is not None:
        assert error.line == line_with(text, needle), str(error)
    assert str(error).startswith(f"{path}:{error.line}: ") and "fix:" in str(error)


def test_todo_error_names_every_todo_with_its_line() -> None:
    text = SEQ.replace('shape = ["ROWS"]', 'shape = ["TODO"]').replace("ROWS = 64", 'ROWS = "TODO"')
    with pytest.raises(TaskError) as info:
        parse_task(text, "draft.cu")
    message = info.value.message
    assert "2 TODO(s)" in message
    assert f"line {line_with(text, 'ROWS = ' + chr(34))}: params.ROWS" in message
    assert f"line {line_with(text, 'shape = [' + chr(34) + 'TODO')}: args[mean].shape" in message


def test_documented_candidate_launch_block_parses_for_the_softmax_task() -> None:
    from kernelpro.candidate_launch import candidate_plan

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "task-format.md").read_text()
    blocks = [part.split("```", 1)[0] for part in doc.split("```cuda\n")[1:]]
    block = next(b for b in blocks if b.startswith("/* kernelpro launch"))
    task = load_task(root / "tasks" / "softmax.cu")
    warp = (root / "tests" / "kernels" / "v2" / "softmax_rows_warp.cuh").read_text().split("/* kernelpro launch")[0]
    plan = candidate_plan(task, task.source + warp + block)
    assert plan[0].kernel == "softmax_rows_warp" and plan[0].grid_dims(task.env()) == (-(-task.params["ROWS"] // 8),
                                                                                      1, 1)


def test_a_description_may_mention_todo() -> None:
    text = SEQ.replace('name = "norm2"', 'name = "norm2"\ndescription = "TODO: fuse the two kernels"')
    task = parse_task(text, "t.cu")
    assert task.description.startswith("TODO")
