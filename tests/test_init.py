"""``kernelpro init``: a draft from each suite task's kernel (its metadata removed) fails to load
naming every TODO; filled in with the task's own values, as a user would, it loads and describes
the same arguments, sizes and launch as the task it came from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernelpro.cli import cli
from kernelpro.errors import KernelproError, TaskError
from kernelpro.init_task import draft_task
from kernelpro.task import Task
from kernelpro.task_loader import load_task, parse_task

ROOT = Path(__file__).resolve().parents[1]
SUITE = sorted((ROOT / "tasks").glob("*.cu"))
_BLOCK = re.compile(r"/\*[ \t]*kernelpro\b(?![ \t]+launch).*?\*/\n?", re.DOTALL)


def kernel_only(task: Task) -> str:
    """The task's file without its metadata: the kernel as a user would have it."""
    return _BLOCK.sub("", task.source, count=1)


def _q(text: str) -> str:
    return f'"{text}"'


def fill(draft: str, task: Task) -> str:
    """Replace every TODO the way the task's author would (values taken from ``task``)."""
    out, table, arg = [], "", None
    skipping = False
    for line in draft.splitlines():
        header = re.match(r"^\[\[?([a-z]+)\]\]?", line)
        if header:
            table, skipping = header.group(1), False
            if table == "params":
                out.append("[params]")
                out += [f"{k} = {v}" for k, v in task.params.items()]
                skipping = True
                continue
        elif skipping:
            continue
        name = re.match(r'^name = "(\w+)"', line)
        if name and table == "args":
            arg = task.arg(name.group(1))
        if table == "args" and arg is not None and arg.value is not None and line.startswith("value = "):
            out.append(f"value = {_q(arg.value.text)}")  # the author's param names may differ from the guess
            continue
        if "TODO" not in line or line.lstrip().startswith("#"):
            out.append(line)
            continue
        key = line.split("=", 1)[0].strip()
        launch = task.plan[0]
        values = {
            ("task", "kernel"): _q(launch.kernel),
            ("args", "dtype"): _q(arg.dtype) if arg else None,
            ("args", "shape"): "[" + ", ".join(_q(d.text) for d in arg.shape) + "]" if arg and arg.shape else None,
            ("args", "intent"): _q(arg.intent) if arg else None,
            ("args", "value"): _q(arg.value.text) if arg and arg.value else None,
            ("launch", "grid"): "[" + ", ".join(_q(e.text) for e in launch.grid) + "]",
            ("launch", "block"): "[" + ", ".join(_q(e.text) for e in launch.block) + "]",
            ("launch", "shared_mem"): _q(launch.shared_mem.text),
            ("cost", "flops"): _q(task.cost.flops.text) if task.cost else '"1"',
            ("cost", "bytes"): _q(task.cost.bytes.text) if task.cost else '"1"',
        }
        out.append(f"{key} = {values[(table, key)]}")
    text = "\n".join(out) + "\n"
    # the block knob and the shared memory come from the task when the draft could not know them
    launch = task.plan[0]
    text = re.sub(r'^block = \[.*\]$', "block = [" + ", ".join(_q(e.text) for e in launch.block) + "]", text,
                  count=1, flags=re.MULTILINE)
    if "shared_mem" not in text and launch.shared_mem.text.strip() != "0":
        text = text.replace("\n[knobs]", f'\nshared_mem = "{launch.shared_mem.text}"\n\n[knobs]', 1) \
            if "\n[knobs]" in text else text.replace("\n[correctness]", f'\nshared_mem = "{launch.shared_mem.text}"'
                                                     "\n\n[correctness]", 1)
    return text


@pytest.mark.parametrize("path", SUITE, ids=[p.stem for p in SUITE])
def test_init_round_trips_on_every_suite_kernel(path: Path, tmp_path: Path) -> None:
    task = load_task(path)
    if task.is_sequence:
        pytest.skip("init drafts single-kernel tasks; sequences are written by hand")
    kernel_file = tmp_path / f"{path.stem}.cu"
    kernel_file.write_text(kernel_only(task))
    draft = draft_task(kernel_file.read_text(), kernel_file, task.kernel)
    todos = draft.count('"TODO"')
    with pytest.raises(TaskError) as info:
        parse_task(draft, tmp_path / "draft.cu")
    assert f"{todos} TODO(s)" in info.value.message
    for line_number, line in enumerate(draft.splitlines(), 1):
        if '"TODO"' in line:
            assert f"line {line_number}:" in info.value.message
    filled = parse_task(fill(draft, task), tmp_path / "filled.cu")
    assert [(a.name, a.dtype, a.intent) for a in filled.args] == [(a.name, a.dtype, a.intent) for a in task.args]
    # const buffers were inferred as inputs without help
    for arg, param in zip(task.args, task.signature.params, strict=True):
        if param.is_const and param.is_pointer:
            assert re.search(rf'name = "{arg.name}"\ndtype = "\w+"\nshape = \["TODO"\][^\n]*\nintent = "in"', draft)
    env, env2 = task.env(), filled.env(knobs=task.default_knobs())
    assert filled.plan[0].grid_dims(env2) == task.plan[0].grid_dims(env)
    assert filled.plan[0].block_dims(env2) == task.plan[0].block_dims(env)
    assert filled.buffer_bytes(env2) == task.buffer_bytes(env)


def test_cli_init_writes_the_draft_and_reports_the_todos(tmp_path: Path) -> None:
    kernel = tmp_path / "saxpy.cu"
    kernel.write_text("#define BLOCK 128\ntypedef float real;\n"
                      "__global__ void saxpy(const real* x, real* y, float a, int n) {\n"
                      "  int i = blockIdx.x * BLOCK + threadIdx.x; if (i < n) y[i] = a * x[i] + y[i]; }\n"
                      "void run(const float* x, float* y, float a, int n) { saxpy<<<(n + BLOCK - 1) / BLOCK, BLOCK>>>"
                      "(x, y, a, n); }\n")
    result = CliRunner().invoke(cli, ["init", str(kernel)])
    assert result.exit_code == 0, result.output
    draft = (tmp_path / "saxpy.task.cu").read_text()
    assert 'BLOCK = { values = [64, 128, 256], default = 128 }' in draft
    assert "#ifndef BLOCK\n#define BLOCK 128\n#endif" in draft  # the knob got its guard
    assert 'block = ["BLOCK"]' in draft and "<<<(n + BLOCK - 1) / BLOCK, BLOCK>>>" in draft
    assert 'name = "n"\ndtype = "int32"\nvalue = "N"' in draft
    assert "TODO(s) left" in result.output and "args[y].intent" in result.output
    again = CliRunner().invoke(cli, ["init", str(kernel)])
    assert again.exit_code != 0 and "exists" in str(again.exception)


@pytest.mark.parametrize(("source", "kernel", "words"), [
    ("int x;", None, "no __global__ kernel"),
    ("__global__ void a(float* y) {}\n__global__ void b(float* y) {}\n", None, "defines 2 kernels"),
    ("__global__ void a(float* y) {}\n", "c", "no __global__ kernel 'c'"),
    ('/* kernelpro\n[task]\nkernel = "a"\n*/\n__global__ void a(float* y) {}\n', None, "already has"),
])
def test_init_errors(source: str, kernel: str | None, words: str, tmp_path: Path) -> None:
    with pytest.raises(KernelproError, match=words) as info:
        draft_task(source, tmp_path / "k.cu", kernel)
    assert info.value.fix


def test_template_kernel_draft_asks_for_template_arguments(tmp_path: Path) -> None:
    source = "template <typename T, int B>\n__global__ void k(const T* x, T* y, int n) {}\n"
    draft = draft_task(source, tmp_path / "k.cu")
    assert 'kernel = "k<TODO>"' in draft and 'dtype = "TODO"' in draft
