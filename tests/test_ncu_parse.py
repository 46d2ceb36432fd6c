"""Parsing `ncu --csv --page raw`: the recorded H100 report, and the odd cases on small strings."""

from pathlib import Path

import pytest

from kernelpro.errors import KernelproError
from kernelpro.ncu import MetricError, NcuParseError, load_raw_csv, parse_raw_csv, parse_value

FIXTURE = Path(__file__).parent / "fixtures" / "ncu-h100" / "planted_raw.csv"

HEADER = (
    '"ID","Process ID","Kernel Name","Block Size","Grid Size",'
    '"dram__bytes.sum","gpu__time_duration.sum","note"'
)
UNITS = '"","","","","","byte","usecond",""'


@pytest.fixture(scope="module")
def kernels():
    return load_raw_csv(FIXTURE)


def test_fixture_has_the_five_planted_kernels(kernels) -> None:
    assert [(k.id, k.name) for k in kernels] == [
        (0, "k_copy_ok"),
        (1, "k_uncoalesced"),
        (2, "k_bank_conflict"),
        (6, "k_spill"),
        (8, "k_tiny_grid"),
    ]
    assert all(len(k.metrics) == 2238 for k in kernels)


def test_fixture_launch_shapes_match_planted_cu(kernels) -> None:
    # planted.cu launches <<<g, 256>>> with g = 2^24 / 256, <<<2^24 / 1024, 1024>>>, <<<2^24 / 128, 128>>>
    # and <<<4, 256>>>.
    shapes = {k.name: (k.grid, k.block) for k in kernels}
    assert shapes == {
        "k_copy_ok": ((65536, 1, 1), (256, 1, 1)),
        "k_uncoalesced": ((65536, 1, 1), (256, 1, 1)),
        "k_bank_conflict": ((16384, 1, 1), (1024, 1, 1)),
        "k_spill": ((131072, 1, 1), (128, 1, 1)),
        "k_tiny_grid": ((4, 1, 1), (256, 1, 1)),
    }


def test_fixture_values_are_converted(kernels) -> None:
    spill = kernels[3]
    assert spill.number("launch__grid_size") == 131072  # printed "131,072"
    assert spill.number("launch__thread_count") == 16777216  # printed "16,777,216"
    assert isinstance(spill.number("launch__registers_per_thread"), int)
    assert spill.number("launch__waves_per_multiprocessor") == pytest.approx(62.06)
    assert spill.get("CC") == pytest.approx(9.0)
    assert spill.get("launch__func_cache_config") == "CachePreferNone"
    assert spill.get("device__attribute_display_name") == "NVIDIA H100 80GB HBM3"
    assert spill.get("Block Size") == "(128, 1, 1)"  # tuples stay strings
    # "no data", "nan" and empty cells have no value.
    assert spill.metrics["sass__inst_executed_register_spilling_mem_local"] is None
    assert kernels[0].metrics["derived_tempMetric4"] is None
    assert spill.metrics["derived_tempMetric4"] == 0
    assert kernels[0].get("FBSP.TriageCompute.dramc__throughput.avg.pct_of_peak_sustained_elapsed") is None


def test_fixture_units(kernels) -> None:
    units = kernels[0].units
    assert units["launch__shared_mem_config_size"] == "byte"
    assert units["launch__registers_per_thread"] == "register/thread"
    assert "Kernel Name" not in units  # identity columns have no unit


def test_prefix_lines_before_the_header_are_skipped() -> None:
    text = "\n".join(
        [
            "==PROF== Connected to process 468 (/tmp/planted)",
            '"ID" is how the profiled program starts a line of its own output',
            "==WARNING== Found outstanding GPU clock reset",
            "done: no error",
            HEADER,
            UNITS,
            '"0","468","k","(256, 1, 1)","(4, 1, 1)","1,024","3.50","x"',
            "==PROF== Disconnected from process 468",
        ]
    )
    [kernel] = parse_raw_csv(text)
    assert (kernel.id, kernel.name, kernel.block, kernel.grid) == (0, "k", (256, 1, 1), (4, 1, 1))
    assert kernel.metrics["dram__bytes.sum"] == 1024
    assert kernel.units == {"dram__bytes.sum": "byte", "gpu__time_duration.sum": "usecond"}


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("65,536", 65536),
        ("1,024.50", 1024.5),
        ("16,777,216", 16777216),
        ("-3", -3),
        ("0.00", 0.0),
        ("1.5e+06", 1.5e6),
        ("n/a", None),
        ("N/A", None),
        ("", None),
        ("nan", None),
        ("no data", None),
        ("(256, 1, 1)", "(256, 1, 1)"),
        ("1,2", "1,2"),  # not a thousands separator
        ("CachePreferNone", "CachePreferNone"),
    ],
)
def test_parse_value(cell, expected) -> None:
    value = parse_value(cell)
    assert value == expected
    assert type(value) is type(expected)


def test_integral_text_is_int_and_decimal_text_is_float() -> None:
    text = "\n".join([HEADER, UNITS, '"3","1","k","(32, 2, 1)","(1, 1, 1)","2,048","2,048.0","n/a"'])
    [kernel] = parse_raw_csv(text)
    assert type(kernel.metrics["dram__bytes.sum"]) is int
    assert type(kernel.metrics["gpu__time_duration.sum"]) is float
    assert kernel.metrics["note"] is None
    assert kernel.block == (32, 2, 1)


def test_block_and_grid_fall_back_to_launch_dims_without_size_columns() -> None:
    dims = [f'"launch__{kind}_dim_{axis}"' for kind in ("block", "grid") for axis in "xyz"]
    header = '"ID","Kernel Name",' + ",".join(dims)
    text = "\n".join([header, '"","","","","","","",""', '"5","k","64","2","1","1,000","3","1"'])
    [kernel] = parse_raw_csv(text)
    assert (kernel.block, kernel.grid) == ((64, 2, 1), (1000, 3, 1))


def test_units_row_is_optional() -> None:
    [kernel] = parse_raw_csv("\n".join([HEADER, '"7","1","k","(1, 1, 1)","(1, 1, 1)","1","2","x"']))
    assert kernel.id == 7
    assert kernel.units == {}


def test_number_and_get_errors_name_the_metric() -> None:
    text = "\n".join([HEADER, UNITS, '"0","1","k","(1, 1, 1)","(1, 1, 1)","n/a","2","x"'])
    [kernel] = parse_raw_csv(text)
    with pytest.raises(MetricError, match="'sm__throughput' is not in the ncu report") as missing:
        kernel.number("sm__throughput")
    assert isinstance(missing.value, KeyError)
    assert missing.value.metric == "sm__throughput"
    with pytest.raises(KeyError, match="'dram__bytes.sum' has no value"):
        kernel.number("dram__bytes.sum")
    with pytest.raises(KeyError, match="'note' .* is not a number: 'x'"):
        kernel.number("note")
    assert kernel.get("dram__bytes.sum", -1) == -1
    assert kernel.get("sm__throughput") is None
    assert kernel.get("gpu__time_duration.sum", -1) == 2


def test_no_header_is_an_error() -> None:
    with pytest.raises(NcuParseError, match='no header row starting with "ID"'):
        parse_raw_csv("==PROF== Connected\nhello\n")


def test_short_row_is_an_error_with_its_line() -> None:
    text = "\n".join(["==PROF== x", HEADER, UNITS, '"0","1","k","(1, 1, 1)"'])
    with pytest.raises(NcuParseError, match="row has 4 cells but the header has 8") as error:
        parse_raw_csv(text)
    assert error.value.line == 4


def test_non_integer_id_is_an_error() -> None:
    with pytest.raises(NcuParseError, match="kernel ID 'x' is not an integer"):
        parse_raw_csv("\n".join([HEADER, '"x","1","k","(1, 1, 1)","(1, 1, 1)","1","2","x"']))


def test_load_wraps_parse_problems_naming_the_file(tmp_path) -> None:
    bad = tmp_path / "report.csv"
    bad.write_text("\n".join([HEADER, UNITS, '"0","1"']))
    with pytest.raises(KernelproError) as error:
        load_raw_csv(bad)
    assert error.value.file == str(bad)
    assert error.value.line == 3
    assert "--page raw" in str(error.value)

    with pytest.raises(KernelproError, match="cannot read the ncu report") as missing:
        load_raw_csv(tmp_path / "absent.csv")
    assert missing.value.file == str(tmp_path / "absent.csv")
