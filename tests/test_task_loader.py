"""Task loading: the real tasks load, and each kind of malformed task gives a specific error
that names the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.errors import TaskError
from kernelpro.task_loader import load_task, parse_task

ROOT = Path(__file__).resolve().parents[1]

BASE = '''/* kernelpro
[task]
kernel = "scale"

[params]
N = 4096

[[args]]
name = "x"
dtype = "float32"
shape = ["N"]
intent = "in"

[[args]]
name = "y"
dtype = "float32"
shape = ["N"]
intent = "out"

[[args]]
name = "n"
dtype = "int32"
value = "N"

[launch]
grid = ["ceil_div(N, BLOCK)"]
block = ["BLOCK"]

[knobs]
BLOCK = { values = [128, 256], default = 256 }

[correctness]
sizes = [{ N = 1001 }]

[cost]
flops = "N"
bytes = "8 * N"
*/
#ifndef BLOCK
#define BLOCK 256
#endif
extern "C" __global__ void scale(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i];
}
'''


def line_with(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def test_base_task_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "scale.cu"
    path.write_text(BASE)
    task = load_task(path)
    assert task.name == "scale"
    assert [a.name for a in task.args] == ["x", "y", "n"]
    assert [a.intent for a in task.args] == ["in", "out", "scalar"]
    env = task.env()
    assert task.grid(env) == (16, 1, 1) and task.block(env) == (256, 1, 1)
    assert task.grid(task.env(knobs={"BLOCK": 128})) == (32, 1, 1)
    assert task.problem_sizes() == [{"N": 4096}, {"N": 1001}]
    assert task.defines({"BLOCK": 128}) == (("BLOCK", "128"),)
    assert task.bytes_moved() == 8 * 4096
    assert task.tolerance_for(task.args[1]).rtol == 1e-4  # float32 default


# (id, text transformation, words the message must contain, needle locating the expected line or None)
MALFORMED = [
    ("no-metadata", lambda t: t.split("*/", 1)[1], "no kernelpro metadata block", None),
    ("bad-toml", lambda t: t.replace('kernel = "scale"', "kernel = scale"), "bad TOML", 'kernel = scale'),
    ("unknown-table", lambda t: t.replace("[launch]", "[lanch]"), "unknown table [lanch]", "[lanch]"),
    ("unknown-key", lambda t: t.replace("intent = \"out\"", "intnet = \"out\""), "unknown key 'intnet'",
     "intnet"),
    ("missing-kernel-key", lambda t: t.replace('kernel = "scale"', 'name = "x"', 1), "missing entry kernel",
     "[task]"),
    ("kernel-not-in-source", lambda t: t.replace('kernel = "scale"', 'kernel = "scael"'),
     "entry kernel 'scael' is not a __global__ function", 'kernel = "scael"'),
    ("unknown-dtype", lambda t: t.replace('dtype = "float32"', 'dtype = "flaot32"', 1), "unknown dtype 'flaot32'",
     "flaot32"),
    ("dtype-mismatch-signature", lambda t: t.replace('dtype = "float32"', 'dtype = "float64"', 1),
     "declares `const float* x` (float32)", "float64"),
    ("too-few-args", lambda t: t.replace('[[args]]\nname = "n"\ndtype = "int32"\nvalue = "N"\n', ""),
     "2 [[args]] declared but kernel scale takes 3 parameters", None),
    ("args-out-of-order", lambda t: t.replace('name = "x"', 'name = "TMP"').replace('name = "y"', 'name = "x"')
     .replace('name = "TMP"', 'name = "y"'), "argument 1 is named 'y' but parameter 1 of scale is 'x'",
     'name = "y"'),
    ("shape-unknown-param", lambda t: t.replace('shape = ["N"]', 'shape = ["M"]', 1),
     "uses unknown name 'M'", 'shape = ["M"]'),
    ("knob-without-values", lambda t: t.replace("values = [128, 256], ", "values = [], "), "knob BLOCK has no values",
     "BLOCK = {"),
    ("knob-default-not-in-values", lambda t: t.replace("default = 256 }", "default = 512 }"),
     "default 512 is not among its values", "BLOCK = {"),
    ("unknown-intent", lambda t: t.replace('intent = "out"', 'intent = "output"'), "intent 'output'",
     'intent = "output"'),
    ("unknown-initializer", lambda t: t.replace('intent = "in"', 'intent = "in"\ninit = "gaussian(0, 1)"'),
     "unknown initializer 'gaussian(0, 1)'", "gaussian"),
    ("initializer-arity", lambda t: t.replace('intent = "in"', 'intent = "in"\ninit = "uniform(0)"'),
     "initializer uniform takes 0 or 2 parameters, got 1", "uniform(0)"),
    ("scalar-with-shape", lambda t: t.replace('value = "N"', 'value = "N"\nshape = ["N"]'),
     "scalar argument n (int n) cannot have 'shape'", None),
    ("pointer-with-value", lambda t: t.replace('intent = "in"', 'intent = "in"\nvalue = "N"'),
     "is a pointer (const float* x) but has a scalar value", 'value = "N"'),
    ("const-written", lambda t: t.replace('intent = "in"', 'intent = "inout"'),
     "declared const (const float* x) but has intent 'inout'", 'intent = "inout"'),
    ("no-output", lambda t: t.replace('intent = "out"', 'intent = "in"'), "no output argument", None),
    ("missing-launch", lambda t: t.replace('[launch]\ngrid = ["ceil_div(N, BLOCK)"]\nblock = ["BLOCK"]\n', ""),
     "missing [launch] table", None),
    ("block-too-large", lambda t: t.replace('block = ["BLOCK"]', 'block = ["BLOCK * 8"]'),
     "block has 2048 threads", 'block = ["BLOCK * 8"]'),
    ("bad-function-in-expr", lambda t: t.replace("ceil_div(N, BLOCK)", "__import__('os')"),
     "unknown function '__import__'", "__import__"),
    ("expr-syntax", lambda t: t.replace('flops = "N"', 'flops = "N *"'), "cannot parse expression", 'flops = "N *"'),
    ("size-unknown-param", lambda t: t.replace("{ N = 1001 }", "{ M = 1001 }"),
     "correctness size 1 sets unknown parameter 'M'", "sizes ="),
    ("reference-missing", lambda t: t.replace("[correctness]", '[correctness]\nreference = "scale_ref"'),
     "reference kernel 'scale_ref' is not a __global__ function", "reference ="),
    ("knob-unused", lambda t: t.replace("BLOCK = { values", "TILE = { values = [1, 2], default = 1 }\nBLOCK = "
                                        "{ values"), "knob TILE never appears in the source", "TILE = {"),
    ("knob-unguarded-define", lambda t: t.replace("#ifndef BLOCK\n", "").replace("#endif\n", ""),
     "knob BLOCK is #defined without an #ifndef guard", "#define BLOCK"),
    ("knob-default-differs-from-source", lambda t: t.replace("#define BLOCK 256", "#define BLOCK 128"),
     "differs from the source's `#define BLOCK 128`", "BLOCK = {"),
    ("constraint-violated-by-default", lambda t: t.replace("[correctness]", '[tuning]\nconstraints = ["BLOCK <= 128"]'
                                                           "\n\n[correctness]"),
     "violate a [tuning] constraint", "constraints ="),
    ("negative-param", lambda t: t.replace("N = 4096", "N = -1"), "N = -1 is not a non-negative integer", "N = -1"),
    ("negative-tolerance", lambda t: t.replace("[correctness]", "[correctness]\natol = -1.0"),
     "atol = -1.0 is not a non-negative number", "atol = -1.0"),
    ("knob-duplicate-value", lambda t: t.replace("values = [128, 256]", "values = [128, 256, 128]"),
     "knob BLOCK lists a value twice", "BLOCK = {"),
    ("comparator-unknown-library", lambda t: t.replace("[cost]", '[comparator]\nlibrary = "cublas"\n'
                                                       'expr = "x"\n\n[cost]'),
     "unknown comparator library 'cublas'", 'library = "cublas"'),
]


@pytest.mark.parametrize(("case", "mutate", "words", "needle"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_task_gives_specific_error(tmp_path: Path, case, mutate, words, needle) -> None:
    text = mutate(BASE)
    assert text != BASE, f"mutation {case} changed nothing"
    path = tmp_path / f"{case}.cu"
    path.write_text(text)
    with pytest.raises(TaskError) as info:
        load_task(path)
    error = info.value
    assert words in error.message
    assert error.file == str(path)
    assert error.fix, "every task error must say how to fix it"
    if needle is not None:
        assert error.line == line_with(text, needle), str(error)
    else:
        assert error.line is not None
    rendered = str(error)
    assert rendered.startswith(f"{path}:{error.line}: ") and "fix:" in rendered


def test_there_are_at_least_fifteen_distinct_malformed_cases() -> None:
    assert len({m[2] for m in MALFORMED}) >= 15


def test_missing_file_is_a_task_error(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="cannot read task file"):
        load_task(tmp_path / "nope.cu")


def test_reference_kernel_with_other_signature_is_rejected() -> None:
    text = BASE.replace("[correctness]", '[correctness]\nreference = "ref"') + (
        'extern "C" __global__ void ref(const float* x, float* y) { }\n'
    )
    with pytest.raises(TaskError, match="reference kernel ref takes"):
        parse_task(text, "t.cu")


def test_reference_kernel_with_same_signature_is_accepted() -> None:
    text = BASE.replace("[correctness]", '[correctness]\nreference = "ref"') + (
        'extern "C" __global__ void ref(const float* x, float* y, int n) { }\n'
    )
    assert parse_task(text, "t.cu").correctness.reference == "ref"


def test_knob_space_respects_constraints() -> None:
    task = load_task(ROOT / "tasks" / "sgemm.cu")
    configs = list(task.knob_space())
    assert configs and all(64 <= c["BLOCK_X"] * c["BLOCK_Y"] <= 1024 for c in configs)
    assert {"BLOCK_X": 16, "BLOCK_Y": 16} in configs
    assert {"BLOCK_X": 64, "BLOCK_Y": 32} not in configs  # 2048 threads


@pytest.mark.parametrize("name", ["vector_add", "softmax", "sgemm"])
def test_suite_tasks_load(name: str) -> None:
    task = load_task(ROOT / "tasks" / f"{name}.cu")
    assert task.outputs and task.cost is not None and task.knobs
    for sizes in task.problem_sizes():
        env = task.env(sizes=sizes)
        assert 1 <= task.threads_per_block(env) <= 1024
        assert all(d > 0 for arg in task.buffers for d in task.shape(arg, env))


def test_documented_example_is_a_valid_task(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "task-format.md").read_text()
    example = doc.split("```cuda\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "rms_scale.cu"
    path.write_text(example)
    task = load_task(path)
    assert task.name == "rms_scale" and task.correctness.reference == "rms_scale_ref"
    assert task.origin is not None and task.origin.function == "rms_scale"
    assert task.comparator is not None and task.comparator.library == "cupy"
    assert task.tolerance_for(task.args[2]).rtol == 2e-4
    assert task.dynamic_shared_bytes(task.env()) == 256 * 4


@pytest.mark.parametrize(("line", "message"), [
    ('drawn_size = { M = [1, 9] }', "drawn_size sets unknown parameter 'M'"),
    ('drawn_size = { N = [9, 1] }', "is not a range"),
    ('drawn_size = [1, 9]', "drawn_size must be a table"),
    ('exclude_distributions = { ofset = "log" }', "unknown input distribution 'ofset'"),
    ('exclude_distributions = { offset = "" }', "exclude_distributions offset needs a reason"),
])
def test_v2_correctness_keys_are_validated_with_file_and_line(line: str, message: str) -> None:
    text = BASE.replace("[correctness]", f"[correctness]\n{line}")
    with pytest.raises(TaskError, match=message) as caught:
        parse_task(text, "t.cu")
    assert caught.value.line == text.splitlines().index(line) + 1
    assert "t.cu" in str(caught.value)


def test_v2_correctness_keys_load() -> None:
    text = BASE.replace("[correctness]", '[correctness]\ndrawn_size = { N = [17, 9999] }\n'
                        'exclude_distributions = { offset = "log of negatives" }')
    correctness = parse_task(text, "t.cu").correctness
    assert correctness.drawn_size == {"N": (17, 9999)}
    assert correctness.exclude_distributions == {"offset": "log of negatives"}
