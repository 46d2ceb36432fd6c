"""GPU clocks, temperature and throttling through NVML (``pynvml`` from the nvidia-ml-py package).

:class:`NvmlMonitor` reads the state of the GPU a measurement runs on, once per timing sample.
NVML is optional: without pynvml (or without a driver) :meth:`NvmlMonitor.open` returns None and
timings carry no clock summary. The device is found by PCI bus id, because CUDA and NVML may
number GPUs differently (``CUDA_VISIBLE_DEVICES``, PCI vs. fastest-first order).

A sample counts as *throttled* when one of :data:`THROTTLE_MASK`'s reasons is active: software
power cap, hardware slowdown, software or hardware thermal slowdown, hardware power brake. Idle,
application clocks, sync boost and display clocks are not throttling. The reading comes right
after the sample, so it describes the clocks at the end of the sample, not every instant of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from kernelpro.runner.records import ClockSummary, GpuState

# nvmlClocksEventReason* bits (nvml.h), by name.
REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clocks",
}
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


def reason_names(mask: int) -> tuple[str, ...]:
    """The names of the reasons set in ``mask`` (unknown bits as hex)."""
    names = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            names.append(REASONS.get(bit, hex(bit)))
        bit <<= 1
    return tuple(names)


def is_throttled(mask: int) -> bool:
    """True when a reason that slows the clocks down is set."""
    return bool(mask & THROTTLE_MASK)


def summarize_states(states: Sequence[GpuState]) -> ClockSummary | None:
    """The readings of one measurement in a few numbers (None without readings)."""
    if not states:
        return None
    sm = [s.sm_clock_mhz for s in states if s.sm_clock_mhz is not None]
    mem = [s.memory_clock_mhz for s in states if s.memory_clock_mhz is not None]
    temps = [s.temperature_c for s in states if s.temperature_c is not None]
    mask = 0
    for state in states:
        mask |= state.reasons
    return ClockSummary(
        readings=len(states),
        sm_clock_mhz_min=min(sm) if sm else None,
        sm_clock_mhz_median=float(np.median(sm)) if sm else None,
        sm_clock_mhz_max=max(sm) if sm else None,
        memory_clock_mhz=int(np.median(mem)) if mem else None,
        temperature_c_max=max(temps) if temps else None,
        reasons=tuple(n for n in reason_names(mask) if n != "gpu_idle"),
    )


def _bus_key(bus_id: Any) -> tuple[int, str]:
    text = bus_id.decode() if isinstance(bus_id, bytes) else str(bus_id)
    domain, _, rest = text.strip().lower().partition(":")
    return int(domain or "0", 16), rest


class NvmlMonitor:
    """Reads one GPU's clocks, temperature and clock event reasons."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle
        get = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        self._reasons = get or nvml.nvmlDeviceGetCurrentClocksThrottleReasons  # older nvidia-ml-py
        # nvmlDeviceGetTemperature is deprecated from CUDA 13 (NVML_ERROR_DEPRECATED once removed); older drivers
        # lack the V call. Each is tried in turn.
        self._temperature_calls = [c for c in (getattr(nvml, "nvmlDeviceGetTemperatureV", None),
                                               getattr(nvml, "nvmlDeviceGetTemperature", None)) if c is not None]

    @classmethod
    def open(cls, pci_bus_id: str | None = None) -> NvmlMonitor | None:
        """A monitor of the GPU at ``pci_bus_id`` (the only GPU when None), or None when NVML is unavailable."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001 - no driver / no NVML library: run without clocks
            return None
        try:
            return cls(pynvml, _find_handle(pynvml, pci_bus_id))
        except Exception:  # noqa: BLE001
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
            return None

    def read(self) -> GpuState:
        """The state now; fields NVML cannot give are None."""
        nvml, handle = self._nvml, self._handle
        sm = _try(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)))
        mem = _try(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)))
        temp = self._temperature(handle)
        mask = _try(lambda: int(self._reasons(handle))) or 0
        return GpuState(sm, mem, temp, mask, is_throttled(mask))

    def _temperature(self, handle: Any) -> int | None:
        """The GPU temperature in C from the first call that answers, or None."""
        for call in self._temperature_calls:
            value = _try(lambda call=call: int(call(handle, self._nvml.NVML_TEMPERATURE_GPU)))
            if value is not None:
                return value
        return None

    def max_clocks(self) -> tuple[int | None, int | None]:
        """The maximum SM and memory clocks in MHz (None where NVML does not say)."""
        nvml, handle = self._nvml, self._handle
        sm = _try(lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)))
        mem = _try(lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM)))
        return sm, mem

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


def _find_handle(nvml: Any, pci_bus_id: str | None) -> Any:
    if pci_bus_id is None:
        if nvml.nvmlDeviceGetCount() != 1:
            raise LookupError("several GPUs and no PCI bus id")
        return nvml.nvmlDeviceGetHandleByIndex(0)
    with contextlib.suppress(Exception):
        return nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
    wanted = _bus_key(pci_bus_id)
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        if _bus_key(nvml.nvmlDeviceGetPciInfo(handle).busId) == wanted:
            return handle
    raise LookupError(f"no NVML device at PCI bus id {pci_bus_id}")


def _try(read: Any) -> Any:
    try:
        return read()
    except Exception:  # noqa: BLE001 - a field this GPU or driver does not report
        return None


def driver_version() -> str | None:
    """The NVIDIA driver version from NVML; None where NVML is unavailable (results then say "unknown")."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - no NVML library, no driver: both mean "unknown"
        return None
