"""Parsing ``ptxas -v`` output: real CUDA 13 logs, and older formats quoted from public posts."""

from __future__ import annotations

import shutil

import pytest

from kernelpro import ptxas
from kernelpro.ptxas import KernelResources, demangle_names, parse_ptx_launch_bounds, parse_ptxas_verbose

# Captured with nvcc 13.0.88 (V13.0.88):
#   nvcc -cubin -arch=sm_90 -Xptxas -v -O3 -lineinfo tests/kernels/compile/resources.cu
RESOURCES_SM90 = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z5scaleIfEvPKT_PS0_S0_i' for 'sm_90'
ptxas info    : Function properties for _Z5scaleIfEvPKT_PS0_S0_i
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
ptxas info    : Compile time = 2.908 ms
ptxas info    : Compiling entry function 'block_reduce' for 'sm_90'
ptxas info    : Function properties for block_reduce
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 1 barriers, 1024 bytes smem
ptxas info    : Compile time = 3.653 ms
ptxas info    : Compiling entry function 'local_array' for 'sm_90'
ptxas info    : Function properties for local_array
    256 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers, 256 bytes cumulative stack size
ptxas info    : Compile time = 62.072 ms
ptxas info    : Compiling entry function 'transpose32' for 'sm_90'
ptxas info    : Function properties for transpose32
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 1 barriers, 4224 bytes smem
ptxas info    : Compile time = 2.120 ms
"""

# The same file for sm_80: there CUDA 13 also reports the kernel-parameter constant bank.
RESOURCES_SM80 = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z5scaleIfEvPKT_PS0_S0_i' for 'sm_80'
ptxas info    : Function properties for _Z5scaleIfEvPKT_PS0_S0_i
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers, 376 bytes cmem[0]
ptxas info    : Compile time = 2.349 ms
ptxas info    : Compiling entry function 'transpose32' for 'sm_80'
ptxas info    : Function properties for transpose32
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 1 barriers, 4224 bytes smem, 372 bytes cmem[0]
ptxas info    : Compile time = 1.529 ms
"""

# nvcc -cubin -arch=sm_90 -Xptxas -v -O3 -lineinfo -maxrregcount=16 tests/kernels/compile/spill.cu
# A warning and "Overriding" notes come first; the non-entry device function pick() comes last.
SPILL_MAXRREG16 = """\
ptxas warning : For profile sm_90 adjusting per thread register count of 16 to lower bound of 24
ptxas info    : Overriding maximum register limit 256 for 'heavy' with  24 of maxrregcount option
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'heavy' for 'sm_90'
ptxas info    : Function properties for heavy
    656 bytes stack frame, 516 bytes spill stores, 1836 bytes spill loads
ptxas info    : Used 24 registers, used 0 barriers, 656 bytes cumulative stack size
ptxas info    : Compile time = 51.736 ms
ptxas info    : Function properties for _Z4pickPKfi
    0 bytes stack frame, 0 bytes spill stores, 4 bytes spill loads
"""

# nvcc -cubin -arch=sm_90 -Xptxas -v -G tests/kernels/compile/spill.cu
# Here the device function (with a 128-byte frame) is reported before the entry that calls it.
SPILL_DEBUG = """\
ptxas info    : 0 bytes gmem
ptxas info    : Function properties for _Z4pickPKfi
    128 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compile time = 3.765 ms
ptxas info    : Compiling entry function 'heavy' for 'sm_90'
ptxas info    : Function properties for heavy
    256 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers, 384 bytes cumulative stack size
ptxas info    : Compile time = 3.309 ms
"""

# nvcc -cubin -arch=sm_80 -Xptxas -v -O3 -lineinfo tests/kernels/compile/spill.cu
# The __constant__ array is module-wide (on the gmem line), not part of the kernel's cmem.
SPILL_SM80 = """\
ptxas info    : 0 bytes gmem, 256 bytes cmem[3]
ptxas info    : Compiling entry function 'heavy' for 'sm_80'
ptxas info    : Function properties for heavy
    128 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 72 registers, used 0 barriers, 128 bytes cumulative stack size, 372 bytes cmem[0]
ptxas info    : Compile time = 28.875 ms
ptxas info    : Function properties for _Z4pickPKfi
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""

# Quoted from "Interpreting the verbose output of ptxas, part II" (Stack Overflow question 69174105,
# copy at https://manongdao.com/article-1265924.html): sm_20, one space in "ptxas info :",
# demangled names, no indentation of the frame line, no barriers.
SEARCHKERNEL = "searchkernel(octree, int*, double, int, double*, double*, double*)"
OLD_SM20_DEMANGLED = f"""\
ptxas info : Compiling entry function '{SEARCHKERNEL}' for 'sm_20'
ptxas info : Function properties for {SEARCHKERNEL}
72 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info : Used 46 registers, 176 bytes cmem[0], 16 bytes cmem[14]
"""

# The "Function properties" and "Used" lines are quoted from the NVIDIA forum thread "Decoding Fermi
# PTXinfo" (https://forums.developer.nvidia.com/t/decoding-fermi-ptxinfo/132682), including the "4+0
# bytes lmem" (user+system) spelling and the stray "*" of the post; the post quotes no "Compiling
# entry function" line, so the first line is ours.
OLD_FERMI_LMEM = """\
ptxas info    : Compiling entry function 'progno_cloud' for 'sm_20'
 ptxas info    : Function properties for progno_cloud
     1000 bytes stack frame, 1192 bytes spill stores, 1776 bytes spill loads
*ptxas info    : Used 63 registers, 4+0 bytes lmem, 64 bytes cmem[0], 4 bytes cmem[14], 276 bytes cmem[16]
"""

# Quoted from the same Stack Overflow question: a "Used" line with smem and no barriers.
OLD_SMEM_LINE = "ptxas info : Used 6 registers, 16 bytes smem, 328 bytes cmem[0]"


def test_cuda13_entries_and_their_resources() -> None:
    res = parse_ptxas_verbose(RESOURCES_SM90)
    assert list(res) == ["_Z5scaleIfEvPKT_PS0_S0_i", "block_reduce", "local_array", "transpose32"]
    transpose = res["transpose32"]
    assert transpose == KernelResources(
        symbol="transpose32",
        name="transpose32",
        demangled="transpose32",
        arch="sm_90",
        registers=12,
        shared_static_bytes=4224,
        barriers=1,
    )
    local = res["local_array"]
    assert (local.registers, local.stack_frame_bytes, local.cumulative_stack_bytes) == (32, 256, 256)
    assert (local.shared_static_bytes, local.barriers, local.spills) == (0, 0, False)
    assert res["block_reduce"].shared_static_bytes == 1024
    assert all(r.constant_bytes == {} and r.local_bytes is None for r in res.values())


def test_mangled_cpp_kernel_gets_its_plain_name() -> None:
    scale = parse_ptxas_verbose(RESOURCES_SM90)["_Z5scaleIfEvPKT_PS0_S0_i"]
    assert scale.name == "scale"
    if shutil.which("cu++filt") or shutil.which("c++filt"):
        assert scale.demangled == "void scale<float>(float const*, float*, float, int)"


def test_demangling_without_a_demangler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ptxas.shutil, "which", lambda name: None)
    names = demangle_names(["_Z5scaleIfEvPKT_PS0_S0_i", "_ZN2ns6kernelILi4EEEvPf", "_Z4pickPKfi", "plain_c"])
    assert {s: base for s, (base, _) in names.items()} == {
        "_Z5scaleIfEvPKT_PS0_S0_i": "scale",
        "_ZN2ns6kernelILi4EEEvPf": "kernel",
        "_Z4pickPKfi": "pick",
        "plain_c": "plain_c",
    }


@pytest.mark.skipif(not (shutil.which("cu++filt") or shutil.which("c++filt")), reason="no demangler")
def test_namespaced_template_kernel_base_name() -> None:
    base, full = demangle_names(["_ZN2ns6kernelILi4EEEvPf"])["_ZN2ns6kernelILi4EEEvPf"]
    assert (base, full) == ("kernel", "void ns::kernel<4>(float*)")


def test_constant_banks_on_sm80() -> None:
    res = parse_ptxas_verbose(RESOURCES_SM80)
    assert res["_Z5scaleIfEvPKT_PS0_S0_i"].constant_bytes == {0: 376}
    transpose = res["transpose32"]
    assert (transpose.arch, transpose.registers, transpose.shared_static_bytes) == ("sm_80", 10, 4224)
    assert transpose.constant_bytes == {0: 372}
    heavy = parse_ptxas_verbose(SPILL_SM80)["heavy"]
    assert heavy.constant_bytes == {0: 372}  # not the module's cmem[3] from the gmem line


def test_spills_and_device_function_blocks() -> None:
    res = parse_ptxas_verbose(SPILL_MAXRREG16)
    assert list(res) == ["heavy"]  # pick() is a device function, not an entry
    heavy = res["heavy"]
    assert heavy.registers == 24
    assert (heavy.stack_frame_bytes, heavy.spill_store_bytes, heavy.spill_load_bytes) == (656, 516, 1836)
    assert heavy.spills and heavy.cumulative_stack_bytes == 656


def test_device_function_reported_before_the_entry() -> None:
    heavy = parse_ptxas_verbose(SPILL_DEBUG)["heavy"]
    # The callee's 128-byte frame shows up only in the cumulative stack, not in the entry's frame.
    assert (heavy.registers, heavy.stack_frame_bytes, heavy.cumulative_stack_bytes) == (30, 256, 384)
    assert not heavy.spills


def test_old_format_with_demangled_names() -> None:
    res = parse_ptxas_verbose(OLD_SM20_DEMANGLED)
    kernel = res[SEARCHKERNEL]
    assert (kernel.name, kernel.arch, kernel.registers) == ("searchkernel", "sm_20", 46)
    assert kernel.stack_frame_bytes == 72
    assert kernel.constant_bytes == {0: 176, 14: 16}
    assert kernel.barriers is None  # not printed before CUDA 12


def test_old_format_with_lmem_and_plus_sizes() -> None:
    kernel = parse_ptxas_verbose(OLD_FERMI_LMEM)["progno_cloud"]
    assert (kernel.registers, kernel.local_bytes) == (63, 4)
    assert (kernel.stack_frame_bytes, kernel.spill_store_bytes, kernel.spill_load_bytes) == (1000, 1192, 1776)
    assert kernel.constant_bytes == {0: 64, 14: 4, 16: 276}


def test_old_smem_line_and_user_plus_system_sizes() -> None:
    text = "ptxas info : Compiling entry function 'k'\n" + OLD_SMEM_LINE + "\n"
    kernel = parse_ptxas_verbose(text)["k"]
    assert (kernel.arch, kernel.registers, kernel.shared_static_bytes) == (None, 6, 16)
    plus = "ptxas info : Compiling entry function 'k'\nptxas info : Used 4 registers, 44+40 bytes smem\n"
    assert parse_ptxas_verbose(plus)["k"].shared_static_bytes == 84


def test_round_trip_through_json_shapes() -> None:
    kernel = parse_ptxas_verbose(RESOURCES_SM80)["transpose32"]
    data = kernel.to_dict()
    data["constant_bytes"] = {str(k): v for k, v in data["constant_bytes"].items()}  # as JSON keeps it
    assert KernelResources.from_dict(data) == kernel


def test_nothing_to_parse() -> None:
    assert parse_ptxas_verbose("") == {}
    assert parse_ptxas_verbose("nvcc fatal   : Unsupported gpu architecture 'sm_1'\n") == {}


def test_launch_bounds_from_ptx() -> None:
    # Excerpt of the PTX nvcc 13.0 keeps (-keep) for resources.cu and a __maxnreg__ kernel.
    ptx = """
.visible .entry _Z5scaleIfEvPKT_PS0_S0_i(
\t.param .u64 .ptr .align 1 _Z5scaleIfEvPKT_PS0_S0_i_param_0,
\t.param .u32 _Z5scaleIfEvPKT_PS0_S0_i_param_3
)
.maxntid 128, 1, 1
.minnctapersm 4
{
\tret;
}
.visible .entry transpose32(
\t.param .u32 transpose32_param_2
)
{
\tret;
}
.visible .entry _Z6k_maxnPf(
\t.param .u64 .ptr .align 1 _Z6k_maxnPf_param_0
)
.maxnreg 40
{
\tret;
}
.visible .entry tiled(
\t.param .u32 tiled_param_0
)
.reqntid 16, 8
{
\tret;
}
"""
    assert parse_ptx_launch_bounds(ptx) == {"_Z5scaleIfEvPKT_PS0_S0_i": (128, 4), "tiled": (128, None)}
