"""Taking one kernel out of a model reply: the accepted forms and every way a reply is rejected."""

from __future__ import annotations

import pytest
from anthropic_stub import edited_source, reply, vector_add_task

from kernelpro.cuda_source import find_kernels
from kernelpro.search.extract import MalformedReply, extract_kernel, fenced_blocks, restore_metadata

TASK = vector_add_task()
FAST = edited_source(TASK, """\
    int i = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i + 3 < n) {
        float4 x = *reinterpret_cast<const float4*>(a + i), y = *reinterpret_cast<const float4*>(b + i);
        *reinterpret_cast<float4*>(c + i) = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    } else {
        for (; i < n; ++i) c[i] = a[i] + b[i];
    }""")
METADATA = TASK.source[: TASK.source.index("*/") + 2]


def test_a_good_reply_gives_the_file_and_the_change():
    got = extract_kernel(reply(FAST, "float4 loads and stores"), TASK)
    assert got.source == FAST
    assert got.change == "float4 loads and stores"
    assert got.knobs == {}
    assert not got.metadata_restored
    assert find_kernels(got.source)["vector_add"].params == TASK.signature.params


@pytest.mark.parametrize("language", ["cuda", "cu", "cpp", "c++", ""])
def test_kernel_languages_are_accepted(language):
    assert extract_kernel(reply(FAST, language=language), TASK).source == FAST


def test_blocks_in_other_languages_are_ignored():
    text = "Build it with:\n```bash\nnvcc -O3 x.cu\n```\n" + reply(FAST)
    assert extract_kernel(text, TASK).source == FAST


def test_no_block_is_malformed():
    with pytest.raises(MalformedReply, match="no ```cuda block"):
        extract_kernel("I would vectorize the loads.\nCHANGE: float4 loads", TASK)


def test_two_blocks_are_malformed():
    text = reply(FAST) + "\nOr, alternatively:\n```cuda\n" + TASK.source + "```\n"
    with pytest.raises(MalformedReply, match="2 code blocks"):
        extract_kernel(text, TASK)


def test_an_unclosed_block_is_malformed():
    with pytest.raises(MalformedReply, match="never closed"):
        extract_kernel("```cuda\n" + FAST, TASK)


def test_a_changed_parameter_list_is_malformed():
    wrong = FAST.replace("const float* b, float* c, int n", "const float* b, float* c, long n")
    with pytest.raises(MalformedReply, match=r"parameter list of vector_add changed.*int n.*long n"):
        extract_kernel(reply(wrong), TASK)


def test_a_renamed_kernel_is_malformed():
    with pytest.raises(MalformedReply, match="no longer defines the entry kernel"):
        extract_kernel(reply(FAST.replace("void vector_add(", "void vector_add_v2(")), TASK)


def test_dropping_extern_c_is_malformed():
    with pytest.raises(MalformedReply, match='extern "C"'):
        extract_kernel(reply(FAST.replace('extern "C" __global__', "__global__")), TASK)


def test_adding_restrict_keeps_the_signature():
    restricted = FAST.replace("const float* a, const float* b, float* c",
                              "const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c")
    assert restricted != FAST
    assert extract_kernel(reply(restricted), TASK).source == restricted


def test_dropped_metadata_is_reattached_at_the_top():
    bare = FAST.replace(METADATA, "").lstrip()
    assert "/* kernelpro" not in bare
    got = extract_kernel(reply(bare), TASK)
    assert got.metadata_restored
    assert got.source.startswith(METADATA + "\n")
    assert got.source.endswith(bare)


def test_edited_metadata_is_replaced_by_the_original():
    edited = FAST.replace("N = 67108864", "N = 1024")
    got = extract_kernel(reply(edited), TASK)
    assert got.metadata_restored
    assert got.source == FAST
    assert restore_metadata(FAST, TASK.source) == (FAST, False)


def test_knobs_line_sets_listed_values_only():
    assert extract_kernel(reply(FAST, extra="KNOBS: BLOCK=512"), TASK).knobs == {"BLOCK": "512"}
    assert extract_kernel(reply(FAST, extra="KNOBS: none"), TASK).knobs == {}
    with pytest.raises(MalformedReply, match="not one of its values"):
        extract_kernel(reply(FAST, extra="KNOBS: BLOCK=300"), TASK)
    with pytest.raises(MalformedReply, match="unknown knob 'UNROLL'"):
        extract_kernel(reply(FAST, extra="KNOBS: UNROLL=4"), TASK)


def test_missing_change_line_gets_a_placeholder_and_long_ones_are_clipped():
    text = f"```cuda\n{FAST}```\n"
    assert "no CHANGE" in extract_kernel(text, TASK).change
    long = extract_kernel(reply(FAST, "x" * 500), TASK).change
    assert len(long) == 200 and "\n" not in long


def test_fenced_blocks_reports_languages_and_bodies():
    assert fenced_blocks("a\n```CUDA\nint x;\n```\n```\ny\n```") == [("cuda", "int x;\n"), ("", "y\n")]
