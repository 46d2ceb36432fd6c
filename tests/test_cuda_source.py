"""Scanning CUDA source for kernel signatures, their extent and knob macros."""

from pathlib import Path

from kernelpro.cuda_source import blank_comments_and_strings, find_kernels, parse_param, unguarded_defines

SHARED = Path(__file__).resolve().parent / "fixtures" / "ncu-h100" / "planted.cu"

SOURCE = '''// a comment with __global__ void fake(int x) { }
#include <cuda_fp16.h>
template <int TILE>
__global__ void __launch_bounds__(256, 2) tiled(const half* __restrict__ a, float *out, unsigned int n) {
    if (n) { out[0] = __half2float(a[0]); }  /* } braces in comments are ignored { */
}
extern "C" __global__ void plain(double* x, long long n) { const char* s = "}"; }
__global__ void declared_only(int);
__global__ void no_params(void) {}
'''


def test_finds_definitions_not_comments_or_declarations() -> None:
    kernels = find_kernels(SOURCE)
    assert list(kernels) == ["tiled", "plain", "no_params"]


def test_signature_details() -> None:
    kernels = find_kernels(SOURCE)
    tiled = kernels["tiled"]
    assert tiled.line == 4 and not tiled.extern_c and tiled.launch_bounds == "256, 2"
    assert [(p.name, p.base_type, p.is_pointer, p.is_const, p.is_restrict, p.dtype) for p in tiled.params] == [
        ("a", "half", True, True, True, "float16"),
        ("out", "float", True, False, False, "float32"),
        ("n", "unsigned int", False, False, False, "uint32"),
    ]
    plain = kernels["plain"]
    assert plain.extern_c and [p.dtype for p in plain.params] == ["float64", "int64"]
    assert kernels["no_params"].params == ()


def test_extent_covers_template_and_body() -> None:
    kernels = find_kernels(SOURCE)
    tiled = kernels["tiled"]
    text = SOURCE[tiled.start : tiled.end]
    assert text.startswith("template <int TILE>") and text.endswith("*/\n}")
    plain = kernels["plain"]
    assert SOURCE[plain.start : plain.end].startswith('extern "C" __global__ void plain')
    assert SOURCE[plain.start : plain.end].endswith('"}"; }')


def test_blanking_keeps_offsets() -> None:
    blanked = blank_comments_and_strings(SOURCE)
    assert len(blanked) == len(SOURCE) and blanked.count("\n") == SOURCE.count("\n")
    assert "fake" not in blanked and 'extern "C"' in blanked


def test_param_parsing_of_unusual_spellings() -> None:
    p = parse_param("float * const __restrict__ out")
    assert (p.name, p.base_type, p.is_pointer, p.is_const) == ("out", "float", True, True)
    assert parse_param("T* data").dtype is None  # template types are not mapped


def test_unguarded_defines() -> None:
    src = "#ifndef A\n#define A 1\n#endif\n#define B 2\n#if !defined(C)\n#define C 3\n#endif\n"
    assert unguarded_defines(src, {"A", "B", "C"}) == {"B": 4}


def test_shared_fixture_kernels() -> None:
    kernels = find_kernels(SHARED.read_text())
    assert set(kernels) == {"k_copy_ok", "k_uncoalesced", "k_bank_conflict", "k_spill", "k_tiny_grid"}
    assert kernels["k_spill"].launch_bounds == "128"
