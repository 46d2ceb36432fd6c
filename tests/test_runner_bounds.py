"""Physical bounds: device peaks from attributes and the roofline check's arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.runner.bounds import check_timing, dram_peak, flop_unit, peaks, roofline_failure
from kernelpro.runner.records import DeviceInfo, Timing
from kernelpro.task_loader import load_task

WALL = Path(__file__).resolve().parent / "kernels" / "wall"
# An H100 SXM's attributes: 2619 MHz HBM3 on a 5120-bit bus, 132 SMs at up to 1980 MHz.
H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 132, 1_980_000, 2_619_000, 5120, 52_428_800, 85_000_000_000)


def test_h100_peaks() -> None:
    assert dram_peak(H100) == pytest.approx(3.352e12, rel=1e-3)  # the data sheet's 3.35 TB/s
    fp32 = peaks(H100, ["float32"])
    assert fp32.flops_per_s == pytest.approx(132 * 1.98e9 * 256)  # 66.9 TFLOP/s of FP32 FMA
    assert fp32.flop_unit == "fp32"
    fp16 = peaks(H100, ["float16", "float32"])
    assert fp16.flops_per_s == pytest.approx(132 * 1.98e9 * 4096) and fp16.flop_unit == "tensor-core"
    assert peaks(H100, ["float32"], allow_lower_precision=True).flop_unit == "tensor-core"
    assert peaks(H100, ["int8", "int32"]).flop_unit == "int8 tensor-core"


def test_unknown_devices_get_generous_or_no_peaks() -> None:
    future = DeviceInfo("GPU from the future", "99.0", 100, 2_000_000, None, None, 1 << 20, 1 << 30)
    assert dram_peak(future) is None
    assert peaks(future, ["float16"]).flops_per_s == pytest.approx(100 * 2e9 * 8192)


def test_flop_units() -> None:
    assert flop_unit(["float64"]) == ("fp64", 1.0)
    assert flop_unit(["float64", "float32"]) == ("fp32", 1.0)
    assert flop_unit(["bfloat16"]) == ("fp16", 1.0)
    assert flop_unit(["int32"]) == ("fp32", 1.0)


def test_roofline_bandwidth_rule() -> None:
    limits = peaks(H100, ["float32"])
    bytes_moved = 1e9
    at_peak = bytes_moved / limits.dram_bytes_per_s
    assert roofline_failure(bytes_moved, None, at_peak / 1.04, limits, cold=True) is None  # 4 % above: slack
    failure = roofline_failure(bytes_moved, None, at_peak / 1.06, limits, cold=True)
    assert failure.check == "roofline" and "exceeds the peak DRAM bandwidth" in failure.message
    assert failure.where["achieved_bytes_per_s"] == pytest.approx(1.06 * limits.dram_bytes_per_s)
    assert roofline_failure(bytes_moved, None, at_peak / 2, limits, cold=False) is None  # warm L2 may beat DRAM


def test_roofline_flop_rule() -> None:
    limits = peaks(H100, ["float32"])
    flops = 1e12
    assert roofline_failure(None, flops, flops / limits.flops_per_s, limits, cold=True) is None
    failure = roofline_failure(None, flops, flops / (1.1 * limits.flops_per_s), limits, cold=False)
    assert failure is not None and "TFLOP/s" in failure.message


def test_check_timing_uses_the_task_cost() -> None:
    task = load_task(WALL / "scale.cu")  # bytes = 8 N = 32768 at N = 4096
    def timing(seconds: float, l2: str = "flushed") -> Timing:
        return Timing(seconds, seconds, seconds, 0.0, seconds, 10, "graph", 100, l2, 100, True, "converged", 0,
                      False, 0.2)
    assert check_timing(task, task.env(), timing(5e-6), H100) is None  # 6.6 GB/s
    assert check_timing(task, task.env(), timing(5e-9), H100).check == "roofline"  # 6.6 TB/s
    assert check_timing(task, task.env(), timing(5e-9, "warm"), H100) is None
