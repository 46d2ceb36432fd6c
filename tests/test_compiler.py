"""The compiler pipeline with the real nvcc: resources, knobs, the cache, diagnostics, parallel builds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from kernelpro import compiler as compiler_module
from kernelpro import toolchain
from kernelpro.compiler import (
    Compiler,
    CompileRequest,
    CompileResult,
    Diagnostic,
    default_arch,
    default_cache_dir,
    format_diagnostics_for_model,
)
from kernelpro.errors import CompileError, ToolchainError

KERNELS = Path(__file__).resolve().parent / "kernels" / "compile"
RESOURCES = (KERNELS / "resources.cu").read_text()
SPILL = (KERNELS / "spill.cu").read_text()
ERRORS = (KERNELS / "errors.cu").read_text()
TOO_MUCH_SHARED = (KERNELS / "too_much_shared.cu").read_text()
BAD_ASM = (KERNELS / "bad_asm.cu").read_text()
TINY = 'extern "C" __global__ void tiny(float* y) { y[threadIdx.x] = 1.0f; }\n'

needs_nvcc = pytest.mark.skipif(
    toolchain.find_tool("nvcc", required=False) is None,
    reason="needs nvcc (pip install 'kernelpro[toolchain]')",
)


def resources_request(block: int, arch: str = "sm_90") -> CompileRequest:
    return CompileRequest(RESOURCES, arch, defines=(("BLOCK", str(block)),), source_name="tasks/resources.cu")


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    """One compiler and cache for the tests that don't need isolation."""
    return Compiler(cache_dir=tmp_path_factory.mktemp("compile-cache"))


@pytest.fixture(scope="session")
def resources_128(shared: Compiler) -> CompileResult:
    return shared.compile(resources_request(128))


@pytest.fixture
def nvcc_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every nvcc compile command started during the test (a spy on subprocess.Popen)."""
    runs: list[list[str]] = []
    real_popen: Callable[..., subprocess.Popen[str]] = subprocess.Popen

    def spy(cmd: list[str], *args: object, **kwargs: object) -> subprocess.Popen[str]:
        if "-cubin" in cmd:
            runs.append(list(cmd))
        return real_popen(cmd, *args, **kwargs)

    monkeypatch.setattr(compiler_module.subprocess, "Popen", spy)
    return runs


# --- resources --------------------------------------------------------------------------------


@needs_nvcc
def test_resources_of_real_kernels(resources_128: CompileResult) -> None:
    result = resources_128
    assert result.ok and not result.cache_hit and not result.errors
    assert result.cubin is not None and result.cubin.read_bytes()[:4] == b"\x7fELF"
    by_name = {r.name: r for r in result.resources.values()}
    assert set(by_name) == {"transpose32", "local_array", "block_reduce", "scale"}
    assert all(r.registers > 0 and r.arch == "sm_90" for r in by_name.values())

    transpose = by_name["transpose32"]
    assert (transpose.shared_static_bytes, transpose.barriers) == (4224, 1)  # float[32][33], __syncthreads
    local = by_name["local_array"]
    assert local.stack_frame_bytes == 256 and local.shared_static_bytes == 0 and local.barriers == 0

    scale = by_name["scale"]  # C++ linkage: mangled symbol, plain name; launch bounds from the PTX
    assert scale.symbol.startswith("_Z5scale") and scale.symbol in result.resources
    assert (scale.max_threads, scale.min_blocks) == (128, 4)
    assert transpose.max_threads is None


@needs_nvcc
def test_register_cap_causes_spills(shared: Compiler) -> None:
    plain, capped = shared.compile_many(
        [
            CompileRequest(SPILL, "sm_90", source_name="spill.cu"),
            CompileRequest(SPILL, "sm_90", flags=("-maxrregcount=24",), source_name="spill.cu"),
        ]
    )
    assert plain.ok and capped.ok and plain.key != capped.key
    assert not plain.resources["heavy"].spills and plain.resources["heavy"].registers > 24
    heavy = capped.resources["heavy"]
    assert heavy.registers <= 24
    assert heavy.spill_store_bytes > 0 and heavy.spill_load_bytes > 0
    assert heavy.stack_frame_bytes > plain.resources["heavy"].stack_frame_bytes


@needs_nvcc
def test_defines_reach_the_source(shared: Compiler, resources_128: CompileResult) -> None:
    result_256 = shared.compile(resources_request(256))
    assert result_256.key != resources_128.key
    assert "-DBLOCK=256" in result_256.command
    assert resources_128.resources["block_reduce"].shared_static_bytes == 128 * 4
    assert result_256.resources["block_reduce"].shared_static_bytes == 256 * 4


# --- the cache --------------------------------------------------------------------------------


@needs_nvcc
def test_second_compile_is_a_cache_hit(
    shared: Compiler, resources_128: CompileResult, nvcc_runs: list[list[str]]
) -> None:
    # A fresh compiler object on the same folder: the hit comes from disk, not from memory.
    again = Compiler(cache_dir=shared.cache_dir).compile(resources_request(128))
    assert again.cache_hit and again.ok and nvcc_runs == []
    assert again.key == resources_128.key and again.cubin == resources_128.cubin
    assert again.resources == resources_128.resources
    assert again.command == resources_128.command and again.log == resources_128.log
    assert again.seconds < 0.5 * resources_128.seconds


@needs_nvcc
def test_cache_key_covers_every_input(shared: Compiler) -> None:
    base = CompileRequest(TINY, "sm_90", defines=(("A", "1"),), flags=("-Xptxas -dlcm=cg",))
    variants = [
        replace(base, source=TINY + "\n"),
        replace(base, arch="sm_80"),
        replace(base, defines=(("A", "2"),)),
        replace(base, flags=("--use_fast_math",)),
        replace(base, include_dirs=("/x",)),
        replace(base, source_name="b.cu"),
    ]
    keys = {shared.cache_key(r) for r in [base, *variants]}
    assert len(keys) == 1 + len(variants)
    other_flags = Compiler(cache_dir=shared.cache_dir, extra_flags=("-O2",))
    assert other_flags.cache_key(base) != shared.cache_key(base)
    # Spelling that doesn't change the command doesn't change the key.
    same = CompileRequest(TINY, "sm_90", defines={"A": 1}, flags=("-Xptxas", "-dlcm=cg"))
    assert shared.cache_key(same) == shared.cache_key(base)


@needs_nvcc
def test_different_arch_is_a_miss(shared: Compiler, nvcc_runs: list[list[str]]) -> None:
    result = shared.compile(resources_request(128, arch="sm_80"))
    assert result.ok and not result.cache_hit and len(nvcc_runs) == 1
    assert "-arch=sm_80" in nvcc_runs[0]
    transpose = next(r for r in result.resources.values() if r.name == "transpose32")
    assert transpose.arch == "sm_80" and transpose.constant_bytes.get(0, 0) > 0  # sm_80 reports cmem[0]


@needs_nvcc
def test_corrupt_entries_are_misses_and_get_rewritten(tmp_path: Path, nvcc_runs: list[list[str]]) -> None:
    comp = Compiler(cache_dir=tmp_path)
    req = CompileRequest(TINY, "sm_90")
    first = comp.compile(req)
    entry = tmp_path / first.key
    assert first.ok and sorted(p.name for p in entry.iterdir()) == ["kernel.cubin", "result.json"]

    (entry / "result.json").write_text('{"format": 1, "ok": tr')  # a torn write
    second = comp.compile(req)
    assert not second.cache_hit and second.ok and len(nvcc_runs) == 2
    assert json.loads((entry / "result.json").read_text())["ok"] is True

    (entry / "kernel.cubin").write_bytes(b"\x7fELF truncated")  # json fine, cubin damaged
    third = comp.compile(req)
    assert not third.cache_hit and len(nvcc_runs) == 3
    cubin = (entry / "kernel.cubin").read_bytes()
    assert third.cubin == entry / "kernel.cubin" and cubin[:4] == b"\x7fELF" and len(cubin) > 1000
    recorded = json.loads((entry / "result.json").read_text())["cubin_sha256"]
    assert recorded == hashlib.sha256(cubin).hexdigest()

    assert comp.compile(req).cache_hit and len(nvcc_runs) == 3
    assert [p.name for p in tmp_path.iterdir()] == [first.key]  # no temporary or moved-aside folders


@needs_nvcc
def test_failed_compiles_are_cached(tmp_path: Path, nvcc_runs: list[list[str]]) -> None:
    comp = Compiler(cache_dir=tmp_path)
    req = CompileRequest(ERRORS, "sm_90", source_name="tasks/broken.cu")
    first, second = comp.compile(req), comp.compile(req)
    assert not first.ok and second.cache_hit and not second.ok and len(nvcc_runs) == 1
    assert second.diagnostics == first.diagnostics and second.cubin is None
    assert not (tmp_path / first.key / "kernel.cubin").exists()


@needs_nvcc
def test_changed_header_invalidates_the_entry(tmp_path: Path, nvcc_runs: list[list[str]]) -> None:
    headers = tmp_path / "include"
    headers.mkdir()
    (headers / "tile.h").write_text("#define TILE 16\n")
    source = '#include "tile.h"\nextern "C" __global__ void k(float* y) { __shared__ float s[TILE]; '
    source += "s[threadIdx.x] = 1.0f; __syncthreads(); y[threadIdx.x] = s[threadIdx.x ^ 1]; }\n"
    comp = Compiler(cache_dir=tmp_path / "cache")
    req = CompileRequest(source, "sm_90", include_dirs=(str(headers),))
    assert comp.compile(req).resources["k"].shared_static_bytes == 64
    assert comp.compile(req).cache_hit
    (headers / "tile.h").write_text("#define TILE 32\n")
    changed = comp.compile(req)
    assert not changed.cache_hit and changed.resources["k"].shared_static_bytes == 128
    assert len(nvcc_runs) == 2


@needs_nvcc
def test_two_compilers_writing_one_key_at_once(tmp_path: Path) -> None:
    req = CompileRequest(TINY, "sm_90", source_name="race.cu")
    barrier = threading.Barrier(2)

    def build(_: int) -> CompileResult:
        comp = Compiler(cache_dir=tmp_path)  # separate objects, as two processes would have
        barrier.wait()
        return comp.compile(req)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build, range(2)))
    assert all(r.ok for r in results) and results[0].key == results[1].key
    assert [p.name for p in tmp_path.iterdir()] == [results[0].key]
    assert sorted(p.name for p in (tmp_path / results[0].key).iterdir()) == ["kernel.cubin", "result.json"]
    assert Compiler(cache_dir=tmp_path).compile(req).cache_hit


@needs_nvcc
def test_timeout_is_an_uncached_failure(tmp_path: Path) -> None:
    comp = Compiler(cache_dir=tmp_path, timeout=0.05)
    result = comp.compile(CompileRequest(RESOURCES, "sm_90", source_name="slow.cu"))
    assert not result.ok and not result.cache_hit
    assert [str(d) for d in result.diagnostics] == ["slow.cu: error: nvcc did not finish within 0.05 s"]
    assert not (tmp_path / result.key).exists()


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERNELPRO_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert Compiler().cache_dir == tmp_path / "c"
    monkeypatch.delenv("KERNELPRO_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "kernelpro" / "compile"


# --- compile_many -----------------------------------------------------------------------------


@needs_nvcc
def test_compile_many_keeps_order_and_compiles_duplicates_once(
    tmp_path: Path, nvcc_runs: list[list[str]]
) -> None:
    comp = Compiler(cache_dir=tmp_path)
    source = "#ifndef N\n#define N 1\n#endif\n"
    source += 'extern "C" __global__ void k(float* y) { __shared__ float s[N]; s[threadIdx.x] = 1.0f; '
    source += "__syncthreads(); y[threadIdx.x] = s[(threadIdx.x + 1) % N]; }\n"
    sizes = [8, 16, 8, 32]  # the third repeats the first
    reqs = [CompileRequest(source, "sm_90", defines=(("N", str(n)),)) for n in sizes]
    results = comp.compile_many(reqs, workers=2)
    assert len(nvcc_runs) == 3
    assert [r.resources["k"].shared_static_bytes for r in results] == [4 * n for n in sizes]
    assert results[0] is results[2] and len({r.key for r in results}) == 3
    assert comp.compile_many([]) == []


# --- diagnostics ------------------------------------------------------------------------------


@needs_nvcc
def test_front_end_errors_are_located_in_the_users_file(shared: Compiler) -> None:
    result = shared.compile(CompileRequest(ERRORS, "sm_90", source_name="tasks/broken.cu"))
    assert not result.ok and result.cubin is None and result.resources == {}
    undefined, semicolon = result.errors
    assert undefined == Diagnostic(
        file="tasks/broken.cu",
        line=5,
        column=23,
        severity="error",
        message='identifier "xx" is undefined',
        source_line="    if (i < n) y[i] = xx * 2.0f;",
    )
    assert str(undefined) == 'tasks/broken.cu:5:23: error: identifier "xx" is undefined'
    assert (semicolon.line, semicolon.column, semicolon.message) == (7, 5, 'expected a ";"')
    warnings = [d for d in result.diagnostics if d.severity == "warning"]
    assert [(w.line, w.column) for w in warnings] == [(4, 9), (6, 11)]
    assert "declared but never referenced" in warnings[0].message
    assert "tasks/broken.cu(5): error" in result.log
    assert "kernelpro-nvcc-" not in result.log and "/tmp" not in result.log


@needs_nvcc
def test_compile_or_raise_names_the_first_error(shared: Compiler, resources_128: CompileResult) -> None:
    with pytest.raises(CompileError) as info:
        shared.compile_or_raise(CompileRequest(ERRORS, "sm_90", source_name="tasks/broken.cu"))
    assert str(info.value) == 'tasks/broken.cu:5: identifier "xx" is undefined (and 1 more)'
    assert (info.value.file, info.value.line) == ("tasks/broken.cu", 5)
    assert len(info.value.diagnostics) == 4
    assert shared.compile_or_raise(resources_request(128)).ok


@needs_nvcc
def test_template_error_column_maps_through_macro_expansion(shared: Compiler) -> None:
    source = (
        "template <typename T>\n"
        "__device__ T get(T x) { return x.nope; }\n"
        "__global__ void k(float* y) {\n"
        "\ty[0] = get(2.0f);\n"
        "}\n"
    )
    (diag,) = shared.compile(CompileRequest(source, "sm_90", source_name="t.cu")).errors
    # nvcc echoes "__attribute__((device)) T get(...)"; the column is that of "x" in the user's line.
    assert (diag.line, diag.column) == (2, source.splitlines()[1].index("x.nope") + 1)
    assert diag.message.startswith('expression must have class type but it has type "float"')
    assert "detected during instantiation" in diag.message and "at line 4" in diag.message


@needs_nvcc
def test_preprocessor_errors(shared: Compiler) -> None:
    source = '#include "missing_header.h"\n__global__ void k() {}\n'
    (diag,) = shared.compile(CompileRequest(source, "sm_90", source_name="tasks/inc.cu")).errors
    assert (diag.file, diag.line, diag.column) == ("tasks/inc.cu", 1, 10)
    assert diag.message == "missing_header.h: No such file or directory"


@needs_nvcc
def test_ptxas_resource_error(shared: Compiler) -> None:
    result = shared.compile(CompileRequest(TOO_MUCH_SHARED, "sm_90", source_name="tasks/big.cu"))
    assert not result.ok
    (diag,) = result.errors
    assert diag.file == "tasks/big.cu" and diag.line == 2  # the kernel's definition
    assert diag.message == (
        "ptxas: Entry function 'too_big' uses too much shared data (0x10000 bytes, 0xc000 max)"
    )
    assert result.resources["too_big"].shared_static_bytes == 65536  # ptxas still reports it


@needs_nvcc
def test_ptxas_error_in_inline_asm_maps_to_the_asm_line(shared: Compiler) -> None:
    result = shared.compile(CompileRequest(BAD_ASM, "sm_90", source_name="tasks/asm.cu"))
    assert not result.ok and result.errors
    assert all(d.file == "tasks/asm.cu" and d.line == 5 for d in result.errors)
    assert any("bogus" in d.message for d in result.errors)
    assert not any("aborted" in d.message for d in result.diagnostics)


@needs_nvcc
def test_unsupported_arch(shared: Compiler) -> None:
    result = shared.compile(CompileRequest(TINY, "sm_1", source_name="tasks/tiny.cu"))
    assert not result.ok
    (diag,) = result.diagnostics
    assert str(diag) == "tasks/tiny.cu: error: nvcc: Unsupported gpu architecture 'sm_1'"
    with pytest.raises(CompileError, match="nvcc --list-gpu-arch"):
        shared.compile_or_raise(CompileRequest(TINY, "sm_1", source_name="tasks/tiny.cu"))


def test_format_for_model_puts_errors_first_with_their_lines() -> None:
    source = "int a;\n\tfloat b = c;\nint d\n"
    diags = [
        Diagnostic("k.cu", 1, 5, "warning", "variable a unused", "int a;"),
        Diagnostic("k.cu", 2, 12, "error", 'identifier "c" is undefined'),
        Diagnostic("k.cu", None, None, "error", "ptxas: something global"),
        Diagnostic("k.cu", 3, 5, "remark", "remarks are left out"),
    ]
    text = format_diagnostics_for_model(diags, source)
    assert text == (
        'k.cu:2:12: error: identifier "c" is undefined\n'
        "    2 | \tfloat b = c;\n"
        "      | \t          ^\n"
        "k.cu: error: ptxas: something global\n"
        "k.cu:1:5: warning: variable a unused\n"
        "    1 | int a;\n"
        "      |     ^"
    )
    short = format_diagnostics_for_model(diags, source, max_chars=120)
    assert len(short) <= 120
    assert short.startswith('k.cu:2:12: error: identifier "c" is undefined')
    assert short.endswith("... 2 more diagnostic(s) not shown")


def test_bad_defines_are_rejected() -> None:
    with pytest.raises(CompileError, match="invalid macro name"):
        CompileRequest(TINY, "sm_90", defines=(("BAD NAME", "1"),))
    with pytest.raises(CompileError, match="defined twice"):
        CompileRequest(TINY, "sm_90", defines=(("A", "1"), ("A", "2")))


# --- the toolchain ----------------------------------------------------------------------------


def test_missing_nvcc_raises_toolchain_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(toolchain.shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setattr(toolchain, "search_dirs", lambda: [tmp_path])
    comp = Compiler(cache_dir=tmp_path)  # constructing one needs no nvcc
    with pytest.raises(ToolchainError) as info:
        comp.compile(CompileRequest(TINY, "sm_90"))
    assert "`nvcc` not found" in str(info.value)
    assert info.value.fix == toolchain.INSTALL_HINTS["nvcc"]
    assert not any(tmp_path.iterdir())


def _fake_nvidia_smi(folder: Path, script: str) -> None:
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script)
    smi.chmod(0o755)


def test_default_arch_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    _fake_nvidia_smi(tmp_path, 'echo "8.6"\necho "8.6"\n')
    assert default_arch() == "sm_86"
    _fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed" >&2\nexit 9\n')
    assert default_arch() == "sm_90"
    _fake_nvidia_smi(tmp_path, "echo garbage\n")
    assert default_arch() == "sm_90"


def test_default_arch_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert default_arch() == "sm_90"
