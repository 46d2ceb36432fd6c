"""``kernelpro init``: a draft from each suite task's kernel (its metadata removed) fails to load
naming every TODO; filled in with the task's own values, as a user would, it loads and describes
the same arguments, sizes and launch as the task it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernelpro.c_types import resolve
from kernelpro.cli import cli
from kernelpro.cuda_source import find_kernels
from kernelpro.errors import KernelproError, TaskError
from kernelpro.init_task import draft_task
from kernelpro.task import Launch, Task
from kernelpro.task_loader import load_task, parse_task

ROOT = Path(__file__).resolve().parents[1]
SUITE = sorted((ROOT / "tasks").glob("*.cu"))
_BLOCK = re.compile(r"/\*[ \t]*kernelpro\b(?![ \t]+launch).*?\*/\n?", re.DOTALL)


def kernel_only(task: Task) -> str:
    """The task's file without its metadata: the kernel as a user would have it."""
    return _BLOCK.sub("", task.source, count=1)


def _q(text: str) -> str:
    return f'"{text}"'


@dataclass(frozen=True)
class ParamSpec:
    """What the task's author knows about one kernel parameter, from the task it came from."""

    dtype: str
    shape: tuple[str, ...] | None
    intent: str | None
    value: str | None


def param_specs(task: Task, launch: Launch) -> dict[str, ParamSpec]:
    """Each parameter of the launch's kernel as the task passes it (alone, a kernel writing scratch writes out)."""
    sig = find_kernels(task.source)[launch.kernel_name]
    sources = [("arg", a.name) for a in task.args] if launch.args is None else [(a.kind, a.text) for a in launch.args]
    specs = {}
    for param, (kind, text) in zip(sig.params, sources, strict=True):
        if kind == "arg":
            arg = task.arg(text)
            intent = "in" if param.is_const else {"scratch": "out"}.get(arg.intent, arg.intent)
            specs[param.name] = ParamSpec(arg.dtype, tuple(d.text for d in arg.shape) if arg.is_buffer else None,
                                          intent if arg.is_buffer else None, arg.value.text if arg.value else None)
        else:
            specs[param.name] = ParamSpec(resolve(param.base_type, {}).dtype, None, None, text)
    return specs


def fill(draft: str, task: Task, launch: Launch) -> str:
    """Replace every TODO the way the task's author would (values taken from ``task`` and ``launch``)."""
    specs = param_specs(task, launch)
    out, table, spec = [], "", None
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
            spec = specs[name.group(1)]
        if table == "args" and spec is not None and spec.value is not None and line.startswith("value = "):
            out.append(f"value = {_q(spec.value)}")  # the author's param names may differ from the guess
            continue
        if "TODO" not in line or line.lstrip().startswith("#"):
            out.append(line)
            continue
        key = line.split("=", 1)[0].strip()
        values = {
            ("task", "kernel"): _q(launch.kernel),
            ("args", "dtype"): _q(spec.dtype) if spec else None,
            ("args", "shape"): "[" + ", ".join(map(_q, spec.shape)) + "]" if spec and spec.shape else None,
            ("args", "intent"): _q(spec.intent) if spec else None,
            ("launch", "grid"): "[" + ", ".join(_q(e.text) for e in launch.grid) + "]",
            ("launch", "block"): "[" + ", ".join(_q(e.text) for e in launch.block) + "]",
            ("launch", "shared_mem"): _q(launch.shared_mem.text),
            ("cost", "flops"): _q(task.cost.flops.text) if task.cost else '"1"',
            ("cost", "bytes"): _q(task.cost.bytes.text) if task.cost else '"1"',
        }
        out.append(f"{key} = {values[(table, key)]}")
    text = "\n".join(out) + "\n"
    # the block and the shared memory come from the task when the draft could not know them
    text = re.sub(r'^block = \[.*\]$', "block = [" + ", ".join(_q(e.text) for e in launch.block) + "]", text,
                  count=1, flags=re.MULTILINE)
    if "shared_mem" not in text and launch.shared_mem.text.strip() != "0":
        text = text.replace("\n[knobs]", f'\nshared_mem = "{launch.shared_mem.text}"\n\n[knobs]', 1)
    return text


CASES = [(path, launch.kernel_name) for path in SUITE for launch in load_task(path).plan]


@pytest.mark.parametrize(("path", "kernel"), CASES, ids=[f"{p.stem}:{k}" for p, k in CASES])
def test_init_round_trips_on_every_suite_kernel(path: Path, kernel: str, tmp_path: Path) -> None:
    task = load_task(path)
    launch = next(launch for launch in task.plan if launch.kernel_name == kernel)
    kernel_file = tmp_path / f"{path.stem}.cu"
    kernel_file.write_text(kernel_only(task))
    draft = draft_task(kernel_file.read_text(), kernel_file, kernel)
    todos = draft.count('"TODO"')
    with pytest.raises(TaskError) as info:
        parse_task(draft, tmp_path / "draft.cu")
    assert f"{todos} TODO(s)" in info.value.message
    for line_number, line in enumerate(draft.splitlines(), 1):
        if '"TODO"' in line:
            assert f"line {line_number}:" in info.value.message
    filled = parse_task(fill(draft, task, launch), tmp_path / "filled.cu")
    specs = param_specs(task, launch)
    assert [(a.name, a.dtype, a.intent if a.is_buffer else None) for a in filled.args] == [
        (name, spec.dtype, spec.intent) for name, spec in specs.items()]
    sig = find_kernels(task.source)[kernel]
    for param in sig.params:  # const buffers were inferred as inputs without help
        if param.is_const and param.is_pointer:
            assert re.search(rf'name = "{param.name}"\ndtype = "\w+"\nshape = \["TODO"\][^\n]*\nintent = "in"', draft)
    env, env2 = task.env(), filled.env(knobs=task.default_knobs())
    assert filled.plan[0].grid_dims(env2) == launch.grid_dims(env)
    assert filled.plan[0].block_dims(env2) == launch.block_dims(env)
    assert filled.buffer_bytes(env2) == sum(task.nbytes(task.arg(n), env) for n in launch.arg_names(task.args)
                                            if task.arg(n).is_buffer)


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
