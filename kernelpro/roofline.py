"""Device peaks, achieved throughput and the roofline verdict of one profiled kernel.

**Classification.** A kernel is ``memory``-bound, ``compute``-bound or ``latency``-bound, decided from
Nsight Compute's two speed-of-light figures: SM throughput (``sm__throughput``, the busiest SM pipeline
or issue rate) and memory throughput (``gpu__compute_memory_throughput``, the busiest of DRAM, L2 and
L1/shared), each in % of its peak. The rule is Nsight Compute's own (its SOLBottleneck rule says of a
kernel below the line: "Achieved compute throughput and/or memory bandwidth below 60.0% of peak typically
indicate latency issues"):

* at least one unit at or above :data:`BUSY_PCT` (60%): the busier one is the bound (``memory`` on a tie,
  since moving bytes is the harder cost to remove);
* both below 60%: ``latency`` -- no unit is saturated, so the kernel waits (too few warps or too few
  independent memory operations in flight, a grid that leaves SMs idle, barriers, dependent chains).

We do not add a "balanced" class: a kernel with both units above 60% is bound by the busier one, and the
tools look at both anyway. Nor do we put the latency line lower (some guides say "both below 30%"):
between 30% and 60% no unit is saturated either, and the latency tools' prescriptions (more parallelism,
more bytes in flight) are the ones that help there. The 60% line is soft, and a kernel near it (the
fixture's plain copy sits at 61%) can flip between ``memory`` and ``latency`` from one capture to the
next; the tools that act on ``latency`` prescribe more bytes in flight, which such a kernel needs too.

**Roofline.** Beyond the class, the verdict places the kernel on the classic DRAM roofline: arithmetic
intensity = FLOPs / DRAM bytes (both from ncu), attainable = min(peak FLOP/s, intensity x peak DRAM
bandwidth), and ``roofline_pct`` = achieved / attainable. ``headroom`` = 1 / that fraction: how much
faster the kernel could run *moving the same bytes and doing the same FLOPs*. With a task, its cost
expressions give a second, stricter reference: the ideal time of the task's minimum FLOPs and bytes at
peak (``task_headroom``), and how many times the minimum DRAM traffic the kernel really moved.

**Peaks.** Taken from the capture where possible (ncu's ``*.peak_sustained`` per cycle x the clock the
kernel ran at), so they match ncu's own percentages; under ``--clock-control base`` that clock is the
base clock, not the boost clock data sheets quote. :data:`KNOWN_GPUS` (data-sheet figures) fills in what
counters cannot give (tensor-core peaks) and serves when there is no capture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from kernelpro.ncu import MetricError, Value
from kernelpro.task import Task

BUSY_PCT = 60.0
BOUNDS = ("memory", "compute", "latency")

# Stage-1 metrics (speed of light + roofline + launch), exactly as ncu names them.
FLOP_COUNTERS: Mapping[str, tuple[str, int]] = MappingProxyType({
    # counter -> (precision, FLOPs per thread-instruction); a half2 FMA does 2 x 2.
    f"smsp__sass_thread_inst_executed_op_{op}_pred_on.sum.per_cycle_elapsed": (precision, flops)
    for op, precision, flops in (
        ("fadd", "fp32", 1), ("fmul", "fp32", 1), ("ffma", "fp32", 2),
        ("dadd", "fp64", 1), ("dmul", "fp64", 1), ("dfma", "fp64", 2),
        ("hadd", "fp16", 2), ("hmul", "fp16", 2), ("hfma", "fp16", 4),
    )
})
DURATION = "gpu__time_duration.sum"
SM_PCT = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
MEMORY_PCT = "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"
L1_PCT = "l1tex__throughput.avg.pct_of_peak_sustained_elapsed"
L2_PCT = "lts__throughput.avg.pct_of_peak_sustained_elapsed"
DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"
DRAM_RATE = "dram__bytes.sum.per_second"
DRAM_PEAK_PER_CYCLE = "dram__bytes.sum.peak_sustained"
DRAM_CLOCK = "dram__cycles_elapsed.avg.per_second"
SM_CLOCK = "sm__cycles_elapsed.avg.per_second"
SMSP_CLOCK = "smsp__cycles_elapsed.avg.per_second"
FFMA_PEAK = "sm__sass_thread_inst_executed_op_ffma_pred_on.sum.peak_sustained"
DFMA_PEAK = "sm__sass_thread_inst_executed_op_dfma_pred_on.sum.peak_sustained"
HFMA_PEAK = "sm__sass_thread_inst_executed_op_hfma_pred_on.sum.peak_sustained"
TENSOR_PCT = "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed"
DEVICE_NAME = "device__attribute_display_name"
MAX_CLOCK_KHZ = "device__attribute_max_gpu_frequency_khz"
L2_SIZE = "device__attribute_l2_cache_size"
SM_COUNT = "launch__sm_count"

STAGE1_METRICS: tuple[str, ...] = (
    DURATION, SM_PCT, MEMORY_PCT, L1_PCT, L2_PCT,
    DRAM_READ, DRAM_WRITE, DRAM_RATE, DRAM_PEAK_PER_CYCLE, DRAM_CLOCK, SM_CLOCK, SMSP_CLOCK,
    *FLOP_COUNTERS, FFMA_PEAK, DFMA_PEAK, HFMA_PEAK, TENSOR_PCT,
    "sm__inst_executed_pipe_tensor_op_hmma.avg.pct_of_peak_sustained_elapsed",
    "sm__inst_executed_pipe_tensor_op_gmma.avg.pct_of_peak_sustained_elapsed",
    DEVICE_NAME, MAX_CLOCK_KHZ, L2_SIZE,
    "device__attribute_compute_capability_major", "device__attribute_compute_capability_minor",
    SM_COUNT, "launch__grid_size", "launch__block_size", "launch__waves_per_multiprocessor",
    "launch__registers_per_thread", "launch__shared_mem_per_block_static",
    "launch__shared_mem_per_block_dynamic", "launch__shared_mem_config_size", "launch__barrier_count",
)


@dataclass(frozen=True)
class GpuSpec:
    """Data-sheet figures of one GPU model (dense, boost clock)."""

    name: str
    match: tuple[str, ...]  # lower-case substrings of the CUDA device name that identify it
    sm_count: int
    fp32_tflops: float
    fp64_tflops: float  # non-tensor
    tensor_fp16_tflops: float  # dense FP16/BF16 tensor core
    dram_tb_s: float
    l2_mb: int
    boost_mhz: int


# Sources: NVIDIA H100 and H200 data sheets (H100 SXM5: 132 SMs, FP32 67 / FP64 34 TFLOP/s, FP16 tensor
# 1,979 TFLOP/s with sparsity = 989 dense, HBM3 3.35 TB/s, 50 MB L2; H100 PCIe: 114 SMs, 51 / 26, 756 dense,
# HBM2e 2.0 TB/s; H200: H100 SXM compute with HBM3e 4.8 TB/s), NVIDIA A100 data sheet (80 GB SXM4: 108 SMs,
# FP32 19.5 / FP64 9.7 TFLOP/s, FP16 tensor 312 dense, HBM2e 2.039 TB/s, 40 MB L2). Boost clocks: 1,980 MHz
# for the SXM H100/H200 (matches the fixture's device__attribute_max_gpu_frequency_khz), 1,755 MHz H100
# PCIe, 1,410 MHz A100.
KNOWN_GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("H100 SXM5", ("h100 80gb hbm3", "h100 sxm"), 132, 66.9, 33.5, 989.4, 3.35, 50, 1980),
    GpuSpec("H100 PCIe", ("h100 pcie",), 114, 51.2, 25.6, 756.0, 2.0, 50, 1755),
    GpuSpec("H200", ("h200",), 132, 66.9, 33.5, 989.4, 4.8, 50, 1980),
    GpuSpec("A100 80GB SXM4", ("a100-sxm4-80gb", "a100 80gb sxm", "a100-sxm"), 108, 19.5, 9.7, 312.0, 2.039, 40,
            1410),
)


def known_gpu(device_name: str) -> GpuSpec | None:
    """The :data:`KNOWN_GPUS` row whose ``match`` occurs in ``device_name`` (case-insensitive)."""
    lowered = device_name.lower()
    return next((spec for spec in KNOWN_GPUS if any(m in lowered for m in spec.match)), None)


@dataclass(frozen=True)
class DevicePeaks:
    """Peak rates (FLOP/s, bytes/s) the roofline is drawn against."""

    name: str
    fp32: float
    dram: float
    fp64: float | None = None
    fp16: float | None = None  # non-tensor half2 arithmetic
    tensor: float | None = None  # dense FP16/BF16 tensor core
    sm_count: int | None = None
    l2_bytes: int | None = None
    sm_clock_hz: float | None = None
    source: str = "table"  # "ncu" when read from the capture (at the clock the kernel ran), else "table"

    def ridge(self, precision: str = "fp32") -> float:
        """FLOP per DRAM byte where the compute roof meets the bandwidth roof."""
        return self.flops(precision) / self.dram

    def flops(self, precision: str) -> float:
        """The compute roof for ``precision`` (fp32, fp64, fp16, tensor); FP32 when unknown."""
        value = {"fp64": self.fp64, "fp16": self.fp16, "tensor": self.tensor}.get(precision)
        return value or self.fp32

    @classmethod
    def from_spec(cls, spec: GpuSpec) -> DevicePeaks:
        return cls(spec.name, spec.fp32_tflops * 1e12, spec.dram_tb_s * 1e12, spec.fp64_tflops * 1e12,
                   2 * spec.fp32_tflops * 1e12, spec.tensor_fp16_tflops * 1e12, spec.sm_count,
                   spec.l2_mb * 1024 * 1024, spec.boost_mhz * 1e6, "table")


def _num(metrics: Mapping[str, Value], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def device_peaks(metrics: Mapping[str, Value] | None = None, device_name: str | None = None) -> DevicePeaks:
    """Peaks from a capture's ``*.peak_sustained`` x clocks, completed by the data-sheet table.

    Raises :class:`~kernelpro.ncu.MetricError` when neither the capture nor the table can give the
    FP32 and DRAM peaks.
    """
    metrics = metrics or {}
    name = device_name or str(metrics.get(DEVICE_NAME) or "unknown GPU")
    spec = known_gpu(name)
    table = DevicePeaks.from_spec(spec) if spec else None
    clock, ffma = _num(metrics, SM_CLOCK), _num(metrics, FFMA_PEAK)
    dram_cycle, dram_clock = _num(metrics, DRAM_PEAK_PER_CYCLE), _num(metrics, DRAM_CLOCK)
    if clock and ffma and dram_cycle and dram_clock:
        dfma, hfma = _num(metrics, DFMA_PEAK), _num(metrics, HFMA_PEAK)
        tensor = None
        if table and table.tensor and table.sm_clock_hz:
            tensor = table.tensor * clock / table.sm_clock_hz  # the data-sheet peak is at the boost clock
        sm_count, l2 = _num(metrics, SM_COUNT), _num(metrics, L2_SIZE)
        return DevicePeaks(
            name=name, fp32=2 * ffma * clock, dram=dram_cycle * dram_clock,
            fp64=2 * dfma * clock if dfma else None, fp16=4 * hfma * clock if hfma else None, tensor=tensor,
            sm_count=int(sm_count) if sm_count else (table.sm_count if table else None),
            l2_bytes=int(l2) if l2 else (table.l2_bytes if table else None), sm_clock_hz=clock, source="ncu",
        )
    if table:
        return table
    raise MetricError(
        f"no peak rates for {name!r}: the capture lacks {FFMA_PEAK} / {DRAM_PEAK_PER_CYCLE} and the GPU is not "
        "in roofline.KNOWN_GPUS", FFMA_PEAK)


@dataclass(frozen=True)
class SpeedOfLight:
    """The typed stage-1 record: what one kernel achieved, read from ncu's metrics."""

    duration_s: float
    sm_pct: float
    memory_pct: float
    l1_pct: float | None
    l2_pct: float | None
    dram_bytes: float | None
    dram_bytes_per_s: float | None
    flops_per_s: Mapping[str, float]  # precision (fp32, fp64, fp16) -> achieved FLOP/s
    tensor_pct: float | None

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Value]) -> SpeedOfLight:
        """Read the record; raises :class:`~kernelpro.ncu.MetricError` when a speed-of-light metric is missing."""
        required = {}
        for name in (DURATION, SM_PCT, MEMORY_PCT):
            value = _num(metrics, name)
            if value is None:
                raise MetricError(f"metric {name!r} is missing from the capture (needed for the roofline)", name)
            required[name] = value
        clock = _num(metrics, SMSP_CLOCK) or _num(metrics, SM_CLOCK)
        flops: dict[str, float] = {}
        for counter, (precision, per_inst) in FLOP_COUNTERS.items():
            rate = _num(metrics, counter)
            if rate is not None and clock:
                flops[precision] = flops.get(precision, 0.0) + rate * per_inst * clock
        read, write = _num(metrics, DRAM_READ), _num(metrics, DRAM_WRITE)
        return cls(
            duration_s=required[DURATION] * 1e-9, sm_pct=required[SM_PCT], memory_pct=required[MEMORY_PCT],
            l1_pct=_num(metrics, L1_PCT), l2_pct=_num(metrics, L2_PCT),
            dram_bytes=read + write if read is not None and write is not None else None,
            dram_bytes_per_s=_num(metrics, DRAM_RATE), flops_per_s=MappingProxyType(flops),
            tensor_pct=_num(metrics, TENSOR_PCT),
        )

    @property
    def total_flops_per_s(self) -> float:
        return sum(self.flops_per_s.values())


def classify(sm_pct: float, memory_pct: float) -> str:
    """``memory``, ``compute`` or ``latency`` by the rule in the module docstring."""
    if sm_pct < BUSY_PCT and memory_pct < BUSY_PCT:
        return "latency"
    return "memory" if memory_pct >= sm_pct else "compute"


@dataclass(frozen=True)
class RooflineVerdict:
    """Where one kernel stands: its class, its place on the roofline and its headroom."""

    bound: str  # one of BOUNDS
    sm_pct: float
    memory_pct: float
    memory_unit: str  # the busiest memory unit: "DRAM", "L2" or "L1/shared"
    unit_pct: Mapping[str, float]  # memory unit -> % of its peak
    duration_s: float
    precision: str  # the compute roof used: fp32, fp64, fp16 or tensor
    flops_per_s: float
    dram_bytes_per_s: float
    intensity: float | None  # FLOP per DRAM byte; None when no DRAM traffic was measured
    ridge: float
    roofline_pct: float  # achieved / attainable at this intensity, in %
    peaks: DevicePeaks
    task_flops: float | None = None
    task_bytes: float | None = None
    task_headroom: float | None = None  # duration / ideal time of the task's minimum cost at peak
    traffic_ratio: float | None = None  # measured DRAM bytes / the task's minimum bytes

    @property
    def headroom(self) -> float | None:
        """Speed-up to the roof at the measured traffic (1 / roofline fraction); None when nothing moved."""
        return 100.0 / self.roofline_pct if self.roofline_pct > 0 else None

    @property
    def dram_pct(self) -> float:
        return self.unit_pct.get("DRAM", 0.0)

    @property
    def memory_side(self) -> bool:
        """True when the intensity is below the ridge: the DRAM roof is the one that binds."""
        return self.intensity is None or self.intensity < self.ridge

    def line(self) -> str:
        """The verdict as one prompt-ready sentence (no counter names)."""
        if self.bound == "memory":
            head = f"memory-bound: {self.memory_unit} at {_pct(self.unit_pct[self.memory_unit])} of peak " \
                   f"(SM {_pct(self.sm_pct)})"
        elif self.bound == "compute":
            head = f"compute-bound: SM at {_pct(self.sm_pct)} of peak (memory {_pct(self.memory_pct)})"
        else:
            head = f"latency-bound: no unit busy (SM {_pct(self.sm_pct)}, memory {_pct(self.memory_pct)} of peak)"
        roof = "DRAM" if self.memory_side else self.precision.upper()
        text = f"{head}; {_pct(self.roofline_pct)} of the {roof} roofline"
        if self.intensity is not None:
            text += f" at {self.intensity:.3g} FLOP/byte (ridge {self.ridge:.3g})"
        if self.headroom is not None:
            text += f", up to {self.headroom:.3g}x headroom"
        if self.task_headroom is not None:
            text += f"; {_pct(100 / self.task_headroom)} of the task's ideal time"
            if self.traffic_ratio is not None:
                text += f", DRAM traffic {self.traffic_ratio:.3g}x its minimum"
        return text + "."


def _pct(value: float) -> str:
    return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"


def roofline_verdict(
    metrics: Mapping[str, Value],
    *,
    peaks: DevicePeaks | None = None,
    task: Task | None = None,
    env: Mapping[str, int | float | str] | None = None,
) -> RooflineVerdict:
    """Classify one kernel from its ncu metrics (see the module docstring); ``task`` adds the cost cross-check."""
    sol = SpeedOfLight.from_metrics(metrics)
    peaks = peaks or device_peaks(metrics)
    dram_rate = sol.dram_bytes_per_s or 0.0
    units = {"DRAM": 100.0 * dram_rate / peaks.dram}
    if sol.l2_pct is not None:
        units["L2"] = sol.l2_pct
    if sol.l1_pct is not None:
        units["L1/shared"] = sol.l1_pct
    busiest = max(units, key=units.__getitem__)

    precision = _precision(sol, peaks)
    flops = sol.total_flops_per_s
    if precision == "tensor" and peaks.tensor and sol.tensor_pct:
        flops += sol.tensor_pct / 100 * peaks.tensor  # tensor-core FLOPs have no thread-instruction counter
    roof = peaks.flops(precision)
    intensity = flops / dram_rate if dram_rate > 0 else None
    if intensity is None:
        fraction = flops / roof
    else:
        fraction = flops / min(roof, intensity * peaks.dram) if flops > 0 else dram_rate / peaks.dram
    task_flops = task_bytes = task_headroom = traffic = None
    if task is not None and task.cost is not None:
        task_flops, task_bytes = task.flops(env), task.bytes_moved(env)
        ideal = max(task_flops / roof, task_bytes / peaks.dram)
        task_headroom = sol.duration_s / ideal if ideal > 0 else None
        traffic = sol.dram_bytes / task_bytes if sol.dram_bytes is not None and task_bytes else None
    return RooflineVerdict(
        bound=classify(sol.sm_pct, sol.memory_pct), sm_pct=sol.sm_pct, memory_pct=sol.memory_pct,
        memory_unit=busiest, unit_pct=MappingProxyType(units), duration_s=sol.duration_s, precision=precision,
        flops_per_s=flops, dram_bytes_per_s=dram_rate, intensity=intensity, ridge=peaks.ridge(precision),
        roofline_pct=100.0 * fraction, peaks=peaks, task_flops=task_flops, task_bytes=task_bytes,
        task_headroom=task_headroom, traffic_ratio=traffic,
    )


def _precision(sol: SpeedOfLight, peaks: DevicePeaks) -> str:
    """The roof that applies: tensor when the tensor pipe worked, else the precision doing most FLOPs."""
    if sol.tensor_pct and sol.tensor_pct > 1.0 and peaks.tensor:
        return "tensor"
    if not sol.flops_per_s or not any(sol.flops_per_s.values()):
        return "fp32"
    return max(sol.flops_per_s, key=sol.flops_per_s.__getitem__)


def plot_roofline(points: Sequence[tuple[str, RooflineVerdict]], path: str | Path) -> Path:
    """Draw the DRAM roofline of the first point's device with every ``(label, verdict)`` on it; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points:
        raise ValueError("nothing to plot")
    peaks = points[0][1].peaks
    fig, ax = plt.subplots(figsize=(7, 4.5))
    intensities = [v.intensity for _, v in points if v.intensity]
    low = min([0.01, *intensities]) / 2
    high = max([4 * peaks.ridge(), *intensities]) * 2
    xs = [low * (high / low) ** (i / 200) for i in range(201)]
    for precision in sorted({v.precision for _, v in points} | {"fp32"}):
        roof = peaks.flops(precision)
        ax.plot(xs, [min(roof, x * peaks.dram) for x in xs], label=f"{precision.upper()} roof")
    for label, verdict in points:
        x = verdict.intensity if verdict.intensity else low
        y = max(verdict.flops_per_s, x * verdict.dram_bytes_per_s, 1.0)
        ax.scatter([x], [y], zorder=3)
        ax.annotate(f"{label} ({verdict.bound})", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / DRAM byte)")
    ax.set_ylabel("FLOP/s")
    ax.set_title(f"Roofline: {peaks.name} ({peaks.source} peaks)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
