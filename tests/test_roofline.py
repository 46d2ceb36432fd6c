"""Roofline verdicts of the five kernels in the REAL H100 capture (tests/fixtures/ncu-h100/planted_raw.csv).

Every counter read here was measured by Nsight Compute on an H100 80GB HBM3 (see the fixture's README).
The tasks built below only describe the kernels' launches and algorithmic costs (FLOPs and minimum bytes
from planted.cu); they are inputs, not measurements.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from stream_task import stream_meta

from kernelpro.ncu import MetricError, load_raw_csv
from kernelpro.roofline import (
    BUSY_PCT,
    STAGE1_METRICS,
    DevicePeaks,
    classify,
    device_peaks,
    known_gpu,
    plot_roofline,
    roofline_verdict,
)
from kernelpro.task_loader import parse_task

FIXTURE = Path(__file__).parent / "fixtures" / "ncu-h100"
N = 1 << 24


@pytest.fixture(scope="module")
def kernels():
    return {k.name: k for k in load_raw_csv(FIXTURE / "planted_raw.csv")}


def planted_task(kernel: str, grid: str, block: str, flops: str, moved: str):
    """A task for one planted kernel: its launch from planted.cu's main() and its cost by hand-count."""
    meta = stream_meta(kernel, grid=grid, block=block, n=N, extra=f'[cost]\nflops = "{flops}"\nbytes = "{moved}"')
    return parse_task(meta + (FIXTURE / "planted.cu").read_text(), "planted.cu")


def test_stage1_metrics_are_real_ncu_names(kernels) -> None:
    header = set(kernels["k_copy_ok"].metrics)
    assert [m for m in STAGE1_METRICS if m not in header] == []
    assert all(re.fullmatch(r"[a-z0-9]+__[a-z0-9_.]+", m) for m in STAGE1_METRICS)  # collectable with --metrics


def test_the_five_planted_kernels_are_classified(kernels) -> None:
    verdicts = {name: roofline_verdict(k.metrics) for name, k in kernels.items()}
    # Memory throughput 61.1% (DRAM), 83.5%, 98.2% (shared-memory wavefronts), 74.4%; the tiny grid 0.55%.
    assert {name: v.bound for name, v in verdicts.items()} == {
        "k_copy_ok": "memory", "k_uncoalesced": "memory", "k_bank_conflict": "memory", "k_spill": "memory",
        "k_tiny_grid": "latency",
    }
    assert verdicts["k_bank_conflict"].memory_unit == "L1/shared"
    assert verdicts["k_bank_conflict"].dram_pct < 2  # bound by shared memory, not by DRAM
    copy = verdicts["k_copy_ok"]
    assert copy.memory_pct == pytest.approx(61.09) and copy.roofline_pct == pytest.approx(61.08, abs=0.05)
    assert copy.headroom == pytest.approx(1.64, abs=0.01) and copy.intensity == 0 and copy.memory_side
    tiny = verdicts["k_tiny_grid"]
    assert tiny.sm_pct < 1 and tiny.memory_pct < 1 and tiny.headroom > 100
    # The bank-conflict kernel does real math: 13.6 FLOP per DRAM byte, below the FP32 ridge (~16 at base clock).
    bank = verdicts["k_bank_conflict"]
    assert bank.precision == "fp32" and bank.intensity == pytest.approx(13.6, abs=0.1) and bank.memory_side


def test_classification_thresholds() -> None:
    assert BUSY_PCT == 60.0
    assert classify(59.9, 59.9) == "latency"
    assert classify(10.0, 60.0) == "memory"
    assert classify(75.0, 65.0) == "compute"
    assert classify(70.0, 70.0) == "memory"  # a tie goes to memory


def test_peaks_from_the_capture_match_the_h100_data_sheet(kernels) -> None:
    metrics = kernels["k_copy_ok"].metrics
    peaks = device_peaks(metrics)
    sheet = known_gpu(str(metrics["device__attribute_display_name"]))
    assert peaks.source == "ncu" and sheet is not None and sheet.name == "H100 SXM5"
    assert peaks.dram == pytest.approx(sheet.dram_tb_s * 1e12, rel=0.01)  # 1280 B/cycle x 2.62 GHz
    assert peaks.sm_count == sheet.sm_count == 132 and peaks.l2_bytes == 50 * 1024 * 1024
    # ncu ran at the locked base clock; at the 1.98 GHz boost clock the FMA peak is the data sheet's 67 TFLOP/s.
    boost = metrics["device__attribute_max_gpu_frequency_khz"] * 1e3
    assert peaks.fp32 * boost / peaks.sm_clock_hz == pytest.approx(sheet.fp32_tflops * 1e12, rel=0.01)
    assert peaks.fp32 / peaks.fp64 == pytest.approx(2.0)


def test_known_gpu_table() -> None:
    assert known_gpu("NVIDIA H100 PCIe").dram_tb_s == 2.0
    assert known_gpu("NVIDIA H200").dram_tb_s == 4.8
    assert known_gpu("NVIDIA GeForce GTX 1080") is None
    table = DevicePeaks.from_spec(known_gpu("NVIDIA H100 80GB HBM3"))
    assert table.source == "table" and table.ridge() == pytest.approx(66.9 / 3.35, rel=1e-3)
    assert device_peaks({}, "NVIDIA H200").dram == pytest.approx(4.8e12)
    with pytest.raises(MetricError):
        device_peaks({}, "unknown GPU")


def test_ncu_flops_agree_with_the_task_cost(kernels) -> None:
    # k_bank_conflict: 32 iterations of one FFMA and one FADD per element = 96 FLOPs; reads x, writes y.
    task = planted_task("k_bank_conflict", "N / 1024", "1024", "96 * N", "8 * N")
    verdict = roofline_verdict(kernels["k_bank_conflict"].metrics, task=task)
    assert verdict.flops_per_s == pytest.approx(task.flops() / verdict.duration_s, rel=0.01)
    # k_spill: 64 FADDs per element.
    spill = planted_task("k_spill", "N / 128", "128", "64 * N", "8 * N")
    verdict = roofline_verdict(kernels["k_spill"].metrics, task=spill)
    assert verdict.flops_per_s == pytest.approx(spill.flops() / verdict.duration_s, rel=0.01)


def test_task_cross_check_exposes_wasted_traffic(kernels) -> None:
    copy_task = planted_task("k_copy_ok", "N / 256", "256", "0", "8 * N")
    copy = roofline_verdict(kernels["k_copy_ok"].metrics, task=copy_task)
    # 118 MB measured for a 134 MB minimum: part of y was still in L2 when the kernel ended.
    assert copy.traffic_ratio == pytest.approx(0.88, abs=0.01)
    assert copy.task_headroom == pytest.approx(1.44, abs=0.02)
    gather = roofline_verdict(kernels["k_uncoalesced"].metrics,
                              task=planted_task("k_uncoalesced", "N / 256", "256", "0", "8 * N"))
    assert gather.traffic_ratio > 8 and gather.task_headroom > 10  # 84% of the DRAM roof, but mostly waste
    assert "its minimum" in gather.line()


def test_verdict_line_is_prompt_ready(kernels) -> None:
    for kernel in kernels.values():
        line = roofline_verdict(kernel.metrics).line()
        assert "__" not in line and len(line) < 300
    assert roofline_verdict(kernels["k_tiny_grid"].metrics).line().startswith("latency-bound: no unit busy")


def test_missing_speed_of_light_metric_is_named(kernels) -> None:
    metrics = dict(kernels["k_copy_ok"].metrics)
    del metrics["sm__throughput.avg.pct_of_peak_sustained_elapsed"]
    with pytest.raises(MetricError, match="sm__throughput"):
        roofline_verdict(metrics)


def test_plot_writes_a_png(kernels, tmp_path: Path) -> None:
    points = [(name, roofline_verdict(k.metrics)) for name, k in kernels.items()]
    path = plot_roofline(points, tmp_path / "roofline.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
