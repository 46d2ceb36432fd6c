"""Physical speed limits: a timing faster than the device can possibly run is a failure, not a win.

The task's ``[cost]`` gives the minimum DRAM bytes and useful FLOPs of one launch. Divided by the
measured median they give the achieved rates, which cannot exceed the device's peaks:

* **DRAM**: ``2 x memory clock x bus width / 8`` (HBM and GDDR transfer twice per clock), e.g.
  H100 SXM: 2 x 2619 MHz x 5120 bit / 8 = 3.35 TB/s. Checked on cold timings only: with a warm L2
  the bytes need not come from DRAM.
* **L2** (warm timings, where the data may sit in L2): ``SMs x max SM clock x`` the L2 bytes per
  clock per SM of :data:`L2_BYTES_PER_CLOCK_PER_SM`. Data a kernel reads from the previous
  launch's L2 lines is bounded by L2 bandwidth (L1 is not kept across launches). The table errs
  high, about twice what microbenchmarks measure (H100 SXM: 132 x 1.98 GHz x 64 B = 16.7 TB/s
  against ~7-10 TB/s measured), so it rejects a kernel that skips most of its work under ``--warm``
  (a 20x "speed-up") without rejecting an honest L2-resident one.
* **FLOP/s**: ``SMs x max SM clock x FLOPs per clock per SM`` of the fastest unit the task's dtypes
  may use (:data:`PER_SM_PER_CLOCK`): tensor cores for float16/bfloat16 (and int8), FP32 cores for
  float32 (TF32 tensor cores too when ``allow_lower_precision``), the FP64 tensor/FMA rate for
  float64. The table errs high: an unknown architecture gets the largest figure.

A rate above peak x ``slack`` (1.05: clocks above the nominal boost, rounding) fails the
``roofline`` check. Its cause is one of: the kernel skips work the reference does (and the wall
missed it), the timing is wrong, or ``[cost]`` overstates the minimum work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kernelpro.runner.records import CheckFailure, DeviceInfo, Timing
from kernelpro.task import Task

# FLOPs per clock per SM by compute capability: FP32 cores, FP16/BF16 dense tensor cores, FP64.
PER_SM_PER_CLOCK: dict[str, dict[str, float]] = {
    "7.0": {"fp32": 128, "fp16": 1024, "fp64": 64},
    "7.5": {"fp32": 128, "fp16": 1024, "fp64": 4},
    "8.0": {"fp32": 128, "fp16": 2048, "fp64": 128},
    "8.6": {"fp32": 256, "fp16": 1024, "fp64": 4},
    "8.7": {"fp32": 256, "fp16": 1024, "fp64": 4},
    "8.9": {"fp32": 256, "fp16": 1024, "fp64": 4},
    "9.0": {"fp32": 256, "fp16": 4096, "fp64": 256},
    "10.0": {"fp32": 256, "fp16": 8192, "fp64": 256},
    "12.0": {"fp32": 256, "fp16": 2048, "fp64": 4},
}
# L2 bytes per clock per SM by compute capability, erring high (see the module docstring).
L2_BYTES_PER_CLOCK_PER_SM: dict[str, float] = {
    "7.0": 64, "7.5": 64, "8.0": 64, "8.6": 64, "8.7": 64, "8.9": 64, "9.0": 64, "10.0": 96, "12.0": 64,
}
_UNKNOWN = {unit: max(rates[unit] for rates in PER_SM_PER_CLOCK.values()) for unit in ("fp32", "fp16", "fp64")}
DEFAULT_SLACK = 1.05


@dataclass(frozen=True)
class Peaks:
    """Peak DRAM bandwidth (bytes/s) and FLOP/s for a task on a device; None where unknown."""

    dram_bytes_per_s: float | None
    flops_per_s: float | None
    flop_unit: str  # which unit's rate ``flops_per_s`` is, e.g. "fp32" or "fp16 tensor"
    l2_bytes_per_s: float | None = None  # the warm ceiling


def dram_peak(device: DeviceInfo) -> float | None:
    """Peak DRAM bandwidth in bytes/s, from the memory clock and bus width."""
    if not device.memory_clock_khz or not device.memory_bus_bits:
        return None
    return 2.0 * device.memory_clock_khz * 1e3 * device.memory_bus_bits / 8.0


def l2_peak(device: DeviceInfo) -> float | None:
    """Peak L2 bandwidth in bytes/s (erring high), from the SM count and clock."""
    if not device.sm_clock_khz:
        return None
    per_sm = L2_BYTES_PER_CLOCK_PER_SM.get(device.compute_capability, max(L2_BYTES_PER_CLOCK_PER_SM.values()))
    return device.sm_count * device.sm_clock_khz * 1e3 * per_sm


def flop_unit(dtypes: Iterable[str], allow_lower_precision: bool = False) -> tuple[str, float]:
    """The fastest unit a task over ``dtypes`` may use, and its multiplier on the table's rate."""
    dtypes = set(dtypes)
    if dtypes & {"int8", "uint8"}:
        return "fp16", 2.0  # int8 tensor cores run at twice the FP16 rate
    if dtypes & {"float16", "bfloat16"} or (allow_lower_precision and "float32" in dtypes):
        return "fp16", 1.0
    if "float64" in dtypes and "float32" not in dtypes:
        return "fp64", 1.0
    return "fp32", 1.0


def peaks(device: DeviceInfo, dtypes: Iterable[str], allow_lower_precision: bool = False) -> Peaks:
    """The device's peaks for a task whose buffers have ``dtypes``."""
    unit, factor = flop_unit(dtypes, allow_lower_precision)
    rates = PER_SM_PER_CLOCK.get(device.compute_capability, _UNKNOWN)
    flops = None
    if device.sm_clock_khz:
        flops = device.sm_count * device.sm_clock_khz * 1e3 * rates[unit] * factor
    label = {"fp16": "tensor-core", "fp64": "fp64", "fp32": "fp32"}[unit]
    return Peaks(dram_peak(device), flops, label if factor == 1.0 else "int8 tensor-core", l2_peak(device))


def roofline_failure(bytes_moved: float | None, flops: float | None, seconds: float, limits: Peaks,
                     cold: bool, slack: float = DEFAULT_SLACK) -> CheckFailure | None:
    """A ``roofline`` failure when the achieved rate exceeds a peak times ``slack``, else None."""
    if seconds <= 0:
        return CheckFailure("roofline", f"non-positive time {seconds!r} s", {"seconds": seconds})
    if cold and bytes_moved and limits.dram_bytes_per_s:
        rate = bytes_moved / seconds
        if rate > limits.dram_bytes_per_s * slack:
            return CheckFailure(
                "roofline",
                f"{rate / 1e9:.1f} GB/s from [cost] bytes ({bytes_moved:.4g} B in {seconds * 1e6:.3f} us) exceeds "
                f"the peak DRAM bandwidth {limits.dram_bytes_per_s / 1e9:.1f} GB/s x {slack:g}: the kernel skips "
                "work, the timing is wrong, or [cost] bytes overstates the minimum traffic",
                {"achieved_bytes_per_s": rate, "peak_bytes_per_s": limits.dram_bytes_per_s, "slack": slack},
            )
    if not cold and bytes_moved and limits.l2_bytes_per_s:
        rate = bytes_moved / seconds
        if rate > limits.l2_bytes_per_s * slack:
            return CheckFailure(
                "roofline",
                f"{rate / 1e9:.1f} GB/s from [cost] bytes ({bytes_moved:.4g} B in {seconds * 1e6:.3f} us, warm) "
                f"exceeds the L2 bandwidth ceiling {limits.l2_bytes_per_s / 1e9:.1f} GB/s x {slack:g}: the kernel "
                "skips work, the timing is wrong, or [cost] bytes overstates the minimum traffic",
                {"achieved_bytes_per_s": rate, "peak_l2_bytes_per_s": limits.l2_bytes_per_s, "slack": slack},
            )
    if flops and limits.flops_per_s:
        rate = flops / seconds
        if rate > limits.flops_per_s * slack:
            return CheckFailure(
                "roofline",
                f"{rate / 1e12:.2f} TFLOP/s from [cost] flops exceeds the peak {limits.flop_unit} rate "
                f"{limits.flops_per_s / 1e12:.2f} TFLOP/s x {slack:g}: the kernel skips work, the timing is "
                "wrong, or [cost] flops overstates the useful work",
                {"achieved_flops_per_s": rate, "peak_flops_per_s": limits.flops_per_s, "slack": slack},
            )
    return None


def check_timing(task: Task, env: Mapping[str, int | float | str], timing: Timing, device: DeviceInfo,
                 slack: float = DEFAULT_SLACK) -> CheckFailure | None:
    """:func:`roofline_failure` for a task's timing at the problem size of ``env``."""
    if task.cost is None:
        return None
    limits = peaks(device, (a.dtype for a in task.buffers), task.correctness.allow_lower_precision)
    return roofline_failure(task.bytes_moved(env), task.flops(env), timing.median_s, limits,
                            cold=not timing.warm, slack=slack)
