"""kernelpro.sass: disassembly, SASS parsing, instruction classes and loop detection.

The kernels under tests/kernels/sass/ are compiled with nvcc (no GPU needed) and disassembled with
every disassembler that is installed; tests that need a tool skip where it is missing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import kernelpro.sass as sass
from kernelpro import toolchain
from kernelpro.errors import KernelproError, ToolchainError
from kernelpro.sass import (
    CLASSES,
    KernelSass,
    OpcodeHistogram,
    classify,
    disassemble,
    parse_sass,
    sass_for_cubin,
)

KERNELS = Path(__file__).parent / "kernels" / "sass"
ARCH = {"wgmma.cu": "sm_90a"}  # wgmma exists only on the arch-specific target
TOOLS = ("cuobjdump", "nvdisasm")


@pytest.fixture(scope="module")
def cubins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test kernel compiled with ``nvcc -cubin -O3``, keyed by file stem."""
    nvcc = toolchain.find_tool("nvcc", required=False)
    if nvcc is None:
        pytest.skip("nvcc not installed")
    out = tmp_path_factory.mktemp("sass_cubins")
    built = {}
    for source in sorted(KERNELS.glob("*.cu")):
        cubin = out / f"{source.stem}.cubin"
        arch = ARCH.get(source.name, "sm_90")
        proc = subprocess.run(
            [str(nvcc), "-cubin", f"-arch={arch}", "-O3", "-o", str(cubin), str(source)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"nvcc failed on {source.name}: {proc.stderr}"
        built[source.stem] = cubin
    return built


@pytest.fixture(scope="module", params=TOOLS)
def kernels(request: pytest.FixtureRequest, cubins: dict[str, Path]) -> dict[str, dict[str, KernelSass]]:
    """{file stem: {function name: KernelSass}}, once per installed disassembler."""
    if toolchain.find_tool(request.param, required=False) is None:
        pytest.skip(f"{request.param} not installed")
    return {stem: sass_for_cubin(path, tool=request.param) for stem, path in cubins.items()}


# --- compiled kernels -------------------------------------------------------------------------


def test_scalar_vs_float4_widths(kernels):
    scalar = kernels["vector_width"]["scale_scalar"]
    vector = kernels["vector_width"]["scale_float4"]

    assert scalar.histogram["global_load_32"] >= 1
    assert scalar.histogram["global_load_128"] == 0
    assert scalar.histogram["global_store_32"] >= 1
    assert scalar.histogram["global_store_128"] == 0

    assert vector.histogram["global_load_128"] >= 1
    assert vector.histogram["global_load_32"] == 0
    assert vector.histogram["global_store_128"] >= 1
    assert vector.histogram["global_store_32"] == 0

    # The spellings behind the classes: a const __restrict__ load goes through the constant cache.
    assert [i.modifiers for i in scalar.find("LDG")] == [("E", "CONSTANT")]
    assert [i.modifiers for i in vector.find("LDG")] == [("E", "128", "CONSTANT")]
    assert [i.modifiers for i in vector.find("STG")] == [("E", "128")]


def test_scalar_load_inside_grid_stride_loop(kernels):
    looped = kernels["vector_width"]["scale_scalar_loop"]
    straight = kernels["vector_width"]["scale_scalar"]

    assert looped.loops
    assert looped.histogram_in_loops["global_load_32"] >= 1
    assert all(i.in_loop for i in looped.find("LDG"))

    assert straight.loops == ()
    assert not any(straight.histogram_in_loops.values())


def test_narrow_and_64_bit_widths(kernels):
    hist = kernels["widths"]["copy_widths"].histogram
    assert hist["global_load_narrow"] == 2  # u8 and s16
    assert hist["global_load_64"] == 1  # double
    assert hist["global_store_narrow"] == 2
    assert hist["global_store_64"] == 1
    assert hist["global_load_32"] == hist["global_store_32"] == 0


def test_double_literal_and_promoted_sqrt_show_fp64(kernels):
    fp64 = kernels["fp64"]
    accidental = fp64["half_double_literal"].histogram
    promoted = fp64["promoted_sqrt"].histogram
    clean = fp64["half_float_literal"]

    assert accidental["fp64"] > 0
    assert accidental["fp64_conversion"] >= 2  # float → double and back
    assert promoted["fp64"] > 0
    assert promoted["fp64_conversion"] > 0

    assert clean.histogram["fp64"] == 0
    assert clean.histogram["fp64_conversion"] == 0
    assert clean.histogram["ffma"] == 1
    # The 0.5f constant is materialised with HFMA2.MMA R, -RZ, RZ, ...: a move, not half arithmetic.
    assert clean.find("HFMA2")
    assert clean.histogram["fp16"] == 0


def test_local_array_uses_local_memory_inside_loop(kernels):
    kernel = kernels["local_memory"]["local_array"]
    assert kernel.histogram["local_store"] > 0
    assert kernel.histogram["local_load"] > 0
    assert kernel.loops
    assert kernel.histogram_in_loops["local_load"] > 0
    assert any(i.in_loop for i in kernel.find("LDL"))
    for ins in kernel.instructions:
        assert ins.in_loop == any(loop.start <= ins.offset <= loop.end for loop in kernel.loops)
    for loop in kernel.loops:
        closing = next(i for i in kernel.instructions if i.offset == loop.end)
        assert closing.opcode == "BRA" and closing.target == loop.start and closing.predicate is not None


def test_shuffle_barrier_atomic_tensor(kernels):
    ops = kernels["sync_ops"]
    warp_sum = ops["warp_sum"]
    assert warp_sum.histogram["shuffle"] >= 1
    assert warp_sum.histogram["atomic"] >= 1
    # Convergence points around the divergent load are not block barriers.
    assert warp_sum.histogram["barrier"] == 0
    assert warp_sum.histogram["convergence"] > 0

    block_reverse = ops["block_reverse"].histogram
    assert block_reverse["barrier"] == 1
    assert block_reverse["shared_store"] >= 1 and block_reverse["shared_load"] >= 1

    wmma = ops["wmma_16x16x16"]
    assert wmma.histogram["tensor"] >= 1
    assert {i.opcode for i in wmma.instructions if i.op_class == "tensor"} == {"HMMA"}


def test_wgmma_counts_as_tensor(kernels):
    kernel = kernels["wgmma"]["wgmma_m64n8k16"]
    assert kernel.arch == "sm_90a"
    assert [i.opcode for i in kernel.instructions if i.op_class == "tensor"] == ["HGMMA"]
    assert kernel.find("WARPGROUP")  # the fences around it are present but not counted as tensor


def test_primary_classes_cover_every_instruction(kernels):
    tags = set(sass.OPCODE_TAGS.values())
    for functions in kernels.values():
        for kernel in functions.values():
            primaries = sum(n for cls, n in kernel.histogram.items() if cls not in tags)
            assert primaries == len(kernel.instructions)
            assert kernel.arch in ("sm_90", "sm_90a")


def test_mangled_names(kernels):
    functions = kernels["mangled"]
    assert list(functions) == ["_ZN4demo5twiceIfEEvPT_"]
    kernel = functions["_ZN4demo5twiceIfEEvPT_"]
    if toolchain.find_tool("cu++filt", required=False) or toolchain.find_tool("c++filt", required=False):
        assert kernel.demangled == "void demo::twice<float>(float*)"
        assert kernel.base_name == "demo::twice"
    else:
        assert kernel.demangled == kernel.name


def test_cuobjdump_and_nvdisasm_agree(cubins):
    for tool in TOOLS:
        if toolchain.find_tool(tool, required=False) is None:
            pytest.skip(f"{tool} not installed")

    def summary(kernel: KernelSass):
        fields = [
            (i.offset, i.predicate, i.opcode, i.modifiers, i.classes, i.in_loop, i.target)
            for i in kernel.instructions
        ]
        return (
            fields,
            kernel.loops,
            dict(kernel.histogram),
            dict(kernel.histogram_in_loops),
        )

    for cubin in cubins.values():
        by_cuobjdump = sass_for_cubin(cubin, tool="cuobjdump")
        by_nvdisasm = sass_for_cubin(cubin, tool="nvdisasm")
        assert by_cuobjdump.keys() == by_nvdisasm.keys()
        for name, kernel in by_cuobjdump.items():
            assert summary(kernel) == summary(by_nvdisasm[name]), name


def test_falls_back_to_nvdisasm(cubins, monkeypatch):
    if toolchain.find_tool("nvdisasm", required=False) is None:
        pytest.skip("nvdisasm not installed")
    real_find_tool = sass.find_tool

    def without_cuobjdump(name: str, required: bool = True):
        return None if name == "cuobjdump" else real_find_tool(name, required)

    monkeypatch.setattr(sass, "find_tool", without_cuobjdump)
    text = disassemble(cubins["vector_width"])
    assert ".section\t.text.scale_scalar" in text or ".section .text.scale_scalar" in text
    assert "Function :" not in text
    assert set(parse_sass(text)) == {"scale_scalar", "scale_float4", "scale_scalar_loop"}


def test_demangled_falls_back_to_raw_name_without_filt(monkeypatch):
    monkeypatch.setattr(sass, "find_tool", lambda name, required=True: None)
    text = "\tcode for sm_90\n\t\tFunction : _ZN4demo5twiceIfEEvPT_\n        /*0000*/  EXIT ;\n"
    kernel = parse_sass(text)["_ZN4demo5twiceIfEEvPT_"]
    assert kernel.demangled == kernel.name == kernel.base_name == "_ZN4demo5twiceIfEEvPT_"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", [None, "cuobjdump", "nvdisasm"])
def test_missing_disassembler_names_tool_and_extra(tmp_path, monkeypatch, tool):
    cubin = tmp_path / "k.cubin"
    cubin.write_bytes(b"\x7fELF")
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(toolchain, "search_dirs", lambda: [])
    with pytest.raises(ToolchainError) as info:
        disassemble(cubin, tool=tool)
    message = str(info.value)
    assert f"`{tool or 'cuobjdump'}`" in message
    assert "kernelpro[toolchain]" in message


# What each tool printed on stderr for a file that is not a cubin (CUDA 13.0).
@pytest.mark.parametrize(("tool", "words"), [("cuobjdump", "device code"), ("nvdisasm", "Elf")])
def test_tool_failure_reports_its_stderr(tmp_path, tool, words):
    if toolchain.find_tool(tool, required=False) is None:
        pytest.skip(f"{tool} not installed")
    junk = tmp_path / "junk.cubin"
    junk.write_bytes(bytes(range(256)))
    with pytest.raises(KernelproError) as info:
        disassemble(junk, tool=tool)
    assert not isinstance(info.value, ToolchainError)
    assert f"`{tool}` failed (exit" in str(info.value)
    assert words in str(info.value)
    assert info.value.file == str(junk)


def test_missing_cubin(tmp_path):
    with pytest.raises(KernelproError, match="cubin not found"):
        disassemble(tmp_path / "nope.cubin")


def test_unknown_tool_name(tmp_path):
    cubin = tmp_path / "k.cubin"
    cubin.write_bytes(b"")
    with pytest.raises(ValueError):
        disassemble(cubin, tool="objdump")


# --- parser on text ----------------------------------------------------------------------------

# The tail of `cuobjdump -sass` for tests/kernels/sass/local_memory.cu (CUDA 13.0, sm_90), copied
# from a run and cut down: the header, then 0x3f30-0x4050 (the second loop and the function end).
CUOBJDUMP_TAIL = """
\tcode for sm_90
\t.target\tsm_90

\t\tFunction : local_array
\t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*3f30*/              @!P1 BRA 0x4000 ;                                    /* 0x0000000000309947 */
                                                                                   /* 0x000fea0003800000 */
        /*3f40*/                   IMAD R6, R6, 0x7, R3 ;                          /* 0x0000000706067824 */
                                                                                   /* 0x000fce00078e0203 */
        /*3f50*/                   SHF.R.S32.HI R5, RZ, 0x1f, R6 ;                 /* 0x0000001fff057819 */
                                                                                   /* 0x000fc80000011406 */
        /*3f60*/                   LEA.HI R5, R5, R6, RZ, 0x6 ;                    /* 0x0000000605057211 */
                                                                                   /* 0x000fc800078f30ff */
        /*3f70*/                   LOP3.LUT R5, R5, 0xffffffc0, RZ, 0xc0, !PT ;    /* 0xffffffc005057812 */
                                                                                   /* 0x000fca00078ec0ff */
        /*3f80*/                   IMAD.IADD R0, R6, 0x1, -R5 ;                    /* 0x0000000106007824 */
                                                                                   /* 0x000fc800078e0a05 */
        /*3f90*/                   IMAD R0, R0, 0x4, R1 ;                          /* 0x0000000400007824 */
                                                                                   /* 0x000fca00078e0201 */
        /*3fa0*/                   LDL R5, [R0] ;                                  /* 0x0000000000057983 */
                                                                                   /* 0x000ea20000100800 */
        /*3fb0*/                   IADD3 R4, R4, -0x1, RZ ;                        /* 0xffffffff04047810 */
                                                                                   /* 0x000fe20007ffe0ff */
        /*3fc0*/                   VIADD R6, R6, 0x7 ;                             /* 0x0000000706067836 */
                                                                                   /* 0x000fc60000000000 */
        /*3fd0*/                   ISETP.NE.AND P0, PT, R4, RZ, PT ;               /* 0x000000ff0400720c */
                                                                                   /* 0x000fe20003f05270 */
        /*3fe0*/                   FADD R2, R5, R2 ;                               /* 0x0000000205027221 */
                                                                                   /* 0x004fd80000000000 */
        /*3ff0*/               @P0 BRA 0x3f50 ;                                    /* 0xfffffffc00d40947 */
                                                                                   /* 0x000fea000383ffff */
        /*4000*/                   LDC.64 R4, c[0x0][0x218] ;                      /* 0x00008600ff047b82 */
                                                                                   /* 0x001e240000000a00 */
        /*4010*/                   IMAD.WIDE R4, R3, 0x4, R4 ;                     /* 0x0000000403047825 */
                                                                                   /* 0x001fca00078e0204 */
        /*4020*/                   STG.E desc[UR4][R4.64], R2 ;                    /* 0x0000000204007986 */
                                                                                   /* 0x000fe2000c101904 */
        /*4030*/                   EXIT ;                                          /* 0x000000000000794d */
                                                                                   /* 0x000fea0003800000 */
        /*4040*/                   BRA 0x4040;                                     /* 0xfffffffc00fc7947 */
                                                                                   /* 0x000fc0000383ffff */
        /*4050*/                   NOP;                                            /* 0x0000000000007918 */
                                                                                   /* 0x000fc00000000000 */
\t\t..........
"""

# The same stretch from `nvdisasm -c` on the same cubin: labels instead of branch offsets.
NVDISASM_TAIL = """
\t.target\tsm_90

\t.elftype\t@"ET_EXEC"


//--------------------- .text.local_array         --------------------------
\t.section\t.text.local_array,"ax",@progbits
\t.align\t128
        .global         local_array
        .type           local_array,@function
        .size           local_array,(.L_x_7 - local_array)
        .other          local_array,@"STO_CUDA_ENTRY STV_DEFAULT"
local_array:
.text.local_array:
.L_x_1:
        /*3f30*/              @!P1 BRA `(.L_x_0) ;
        /*3f40*/                   IMAD R6, R6, 0x7, R3 ;
.L_x_3:
        /*3f50*/                   SHF.R.S32.HI R5, RZ, 0x1f, R6 ;
        /*3f60*/                   LEA.HI R5, R5, R6, RZ, 0x6 ;
        /*3f70*/                   LOP3.LUT R5, R5, 0xffffffc0, RZ, 0xc0, !PT ;
        /*3f80*/                   IMAD.IADD R0, R6, 0x1, -R5 ;
        /*3f90*/                   IMAD R0, R0, 0x4, R1 ;
        /*3fa0*/                   LDL R5, [R0] ;
        /*3fb0*/                   IADD3 R4, R4, -0x1, RZ ;
        /*3fc0*/                   VIADD R6, R6, 0x7 ;
        /*3fd0*/                   ISETP.NE.AND P0, PT, R4, RZ, PT ;
        /*3fe0*/                   FADD R2, R5, R2 ;
        /*3ff0*/               @P0 BRA `(.L_x_3) ;
.L_x_0:
        /*4000*/                   LDC.64 R4, c[0x0][0x218] ;
        /*4010*/                   IMAD.WIDE R4, R3, 0x4, R4 ;
        /*4020*/                   STG.E desc[UR4][R4.64], R2 ;
.L_x_6:
        /*4030*/                   EXIT ;
.L_x_4:
        /*4040*/                   BRA `(.L_x_4);
        /*4050*/                   NOP;
.L_x_7:
"""


@pytest.mark.parametrize("text", [CUOBJDUMP_TAIL, NVDISASM_TAIL], ids=TOOLS)
def test_parse_tail_of_local_array(text):
    functions = parse_sass(text, demangle=False)
    assert list(functions) == ["local_array"]
    kernel = functions["local_array"]
    assert kernel.arch == "sm_90"
    assert [i.offset for i in kernel.instructions] == list(range(0x3F30, 0x4060, 0x10))

    first = kernel.instructions[0]
    assert (first.predicate, first.opcode, first.modifiers) == ("@!P1", "BRA", ())
    assert first.target == 0x4000

    shf = kernel.instructions[2]
    assert (shf.opcode, shf.modifiers) == ("SHF", ("R", "S32", "HI"))
    assert shf.operands == ("R5", "RZ", "0x1f", "R6")
    assert shf.text == "SHF.R.S32.HI R5, RZ, 0x1f, R6"

    store = kernel.find("STG")[0]
    assert store.operands == ("desc[UR4][R4.64]", "R2")
    assert store.op_class == "global_store_32"

    # One loop, 0x3f50..0x3ff0; the trailing BRA-to-itself is not a loop.
    assert [(loop.start, loop.end) for loop in kernel.loops] == [(0x3F50, 0x3FF0)]
    assert [i.offset for i in kernel.instructions if i.in_loop] == list(range(0x3F50, 0x4000, 0x10))
    assert kernel.histogram_in_loops["local_load"] == 1
    assert kernel.histogram_in_loops["fadd"] == kernel.histogram_in_loops["fp32"] == 1
    assert kernel.histogram["branch"] == 4  # two BRA, EXIT, the trap BRA
    assert kernel.histogram["nop"] == 1
    assert kernel.instructions[-2].target == 0x4040


# Single lines copied from `cuobjdump -sass` of the test kernels (CUDA 13.0), gathered into one
# function so each predicate form and classification corner case appears once.
MIXED = """
\t\tFunction : mixed
        /*0000*/              @!PT LDS RZ, [RZ] ;                                 /* 0x00000000fffff984 */
        /*0010*/                   HFMA2.MMA R9, -RZ, RZ, 1.75, 0 ;               /* 0x3f000000ff097435 */
        /*0020*/                   F2F.F64.F32 R4, R2 ;                           /* 0x0000000200047310 */
        /*0030*/                   MUFU.RSQ64H R7, R5 ;                           /* 0x0000000500077308 */
        /*0040*/               @P0 REDG.E.ADD.STRONG.GPU desc[UR4][R2.64], R5 ;   /* 0x000000050200098e */
        /*0050*/                   LDG.E.128.CONSTANT R8, desc[UR4][R2.64] ;      /* 0x0000000402087981 */
        /*0060*/                   HMMA.16816.F32 R16, R4.reuse, R12, RZ ;        /* 0x0000000c0410723c */
        /*0070*/                   SHFL.DOWN PT, R3, R2, 0x10, 0x1f ;             /* 0x0e001f0002037f89 */
        /*0080*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;                  /* 0x0000000000007b1d */
        /*0090*/                   BSYNC B0 ;                                     /* 0x0000000000007941 */
        /*00a0*/              @!P0 CALL.REL.NOINC 0x0 ;                           /* 0x0000000000208944 */
        /*00b0*/                   RET.REL.NODEC R2 0x0 ;                         /* 0xfffffff802c07950 */
        /*00c0*/              @!P0 BRA 0xc0 ;                                     /* 0xfffffffc00008947 */
"""


def test_parse_predicates_and_classes():
    kernel = parse_sass(MIXED, demangle=False)["mixed"]
    by_offset = {i.offset: i for i in kernel.instructions}
    assert kernel.arch is None
    assert by_offset[0x00].predicate == "@!PT" and by_offset[0x00].op_class == "nop"
    assert by_offset[0x10].op_class == "other"
    assert by_offset[0x20].op_class == "fp64_conversion"
    assert by_offset[0x30].op_class == "fp64"
    assert by_offset[0x40].predicate == "@P0" and by_offset[0x40].op_class == "atomic"
    assert by_offset[0x40].modifiers == ("E", "ADD", "STRONG", "GPU")
    assert by_offset[0x50].op_class == "global_load_128"
    assert by_offset[0x60].op_class == "tensor" and by_offset[0x60].operands[1] == "R4.reuse"
    assert by_offset[0x70].op_class == "shuffle"
    assert by_offset[0x80].op_class == "barrier"
    assert by_offset[0x90].op_class == "convergence"
    assert by_offset[0xA0].target == 0x0 and by_offset[0xA0].op_class == "branch"
    assert by_offset[0xB0].target is None  # RET's operand is a register, not a target
    assert by_offset[0xB0].operands == ("R2 0x0",)
    # CALL backwards is not a loop; a predicated branch to itself (a spin) is.
    assert [(loop.start, loop.end) for loop in kernel.loops] == [(0xC0, 0xC0)]


def test_duplicate_function_is_an_error():
    text = "\t\tFunction : k\n        /*0000*/  EXIT ;\n\t\tFunction : k\n        /*0000*/  EXIT ;\n"
    with pytest.raises(KernelproError, match="appears twice"):
        parse_sass(text, demangle=False)


def test_empty_text_has_no_functions():
    assert parse_sass("", demangle=False) == {}


# --- classification table ----------------------------------------------------------------------


# Spellings seen in the CUDA 13.0 output for the test kernels, plus some written by hand (marked) for
# rules those kernels don't reach.
@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("LDG.E R0, desc[UR4][R2.64]", ("global_load_32",)),
        ("LDG.E.CONSTANT R0, desc[UR4][R2.64]", ("global_load_32",)),
        ("LDG.E.64.CONSTANT R4, desc[UR4][R4.64]", ("global_load_64",)),
        ("LDG.E.LTC128B R0, desc[UR4][R2.64]", ("global_load_32",)),  # hand-written: cache hint, not width
        ("LDG.E.128 R8, desc[UR4][R2.64]", ("global_load_128",)),  # hand-written
        ("LDG.E.U8.CONSTANT R6, desc[UR4][R6.64]", ("global_load_narrow",)),
        ("LDG.E.S16 R2, desc[UR4][R2.64]", ("global_load_narrow",)),  # hand-written
        ("STG.E.U16 desc[UR4][R2.64], R17", ("global_store_narrow",)),
        ("STG.E.64 desc[UR4][R4.64], R16", ("global_store_64",)),
        ("STG.E.128 desc[UR4][R4.64], R8", ("global_store_128",)),
        ("LDL R5, [R0]", ("local_load",)),
        ("STL.128 [R1], R4", ("local_store",)),
        ("LDSM.16.M88.4 R4, [R2]", ("shared_load",)),  # hand-written
        ("STS [R9], R0", ("shared_store",)),
        ("LDGSTS.E.BYPASS.128 [R7], desc[UR6][R2.64]", ("async_copy",)),
        ("FFMA R7, R2, R9, 1", ("fp32", "ffma")),
        ("FADD R3, R3, R2", ("fp32", "fadd")),
        ("FMUL R11, R11, UR6", ("fp32", "fmul")),
        ("MUFU.RCP R0, R0", ("fp32",)),
        ("MUFU.RCP64H R7, R5", ("fp64",)),  # hand-written
        ("DFMA R4, R4, R6, 1", ("fp64",)),
        ("DSETP.GT.AND P0, PT, R4, RZ, PT", ("fp64",)),
        ("F2F.F32.F64 R5, R4", ("fp64_conversion",)),
        ("I2F.F64.S64 R4, R2", ("fp64_conversion",)),  # hand-written
        ("F2I.F64.TRUNC R3, R4", ("fp64_conversion",)),  # hand-written
        ("F2I.FTZ.U32.TRUNC.NTZ R5, R4", ("other",)),
        ("HFMA2 R0, R1, R2, R3", ("fp16",)),  # hand-written
        ("HFMA2.MMA R2, -RZ, RZ, 0, 0", ("other",)),
        ("HGMMA.64x8x16.F32 R24, gdesc[UR4], RZ, !UPT, gsb0", ("tensor",)),
        ("WARPGROUP.ARRIVE", ("other",)),
        ("ATOMS.ADD RZ, [R2], R3", ("atomic",)),  # hand-written
        ("SYNCS.ARRIVE.TRANS64.A1T0 RZ, [UR4], RZ", ("barrier",)),  # hand-written
        ("WARPSYNC 0xffffffff", ("convergence",)),  # hand-written
        ("EXIT", ("branch",)),
        ("NOP", ("nop",)),
        ("IMAD.WIDE R2, R7, 0x4, R2", ("other",)),
        ("@!PT FFMA R0, R0, R0, R0", ("nop",)),  # hand-written
    ],
)
def test_classification_rules(instruction, expected):
    kernel = parse_sass(f"\t\tFunction : k\n        /*0000*/  {instruction} ;\n", demangle=False)["k"]
    (ins,) = kernel.instructions
    assert ins.classes == expected
    assert classify(ins.opcode, ins.modifiers, ins.operands, ins.predicate) == expected


def test_histogram_mapping():
    hist = OpcodeHistogram({"fp32": 2, "ffma": 1})
    assert list(hist) == list(CLASSES)
    assert hist["fp32"] == 2 and hist["tensor"] == 0
    assert hist.nonzero() == {"fp32": 2, "ffma": 1}
    with pytest.raises(KeyError):
        hist["fp33"]
    with pytest.raises(ValueError):
        OpcodeHistogram({"fp33": 1})
