"""NvmlMonitor's reading logic on a stand-in for the pynvml module (no GPU, no NVML library).

The stand-in is a namespace with the pynvml names the monitor calls; it checks our fallbacks and
masks, not NVML itself (the GPU test in test_runner_gpu.py reads a real device).
"""

from __future__ import annotations

import types

from kernelpro.runner.nvml import NvmlMonitor, is_throttled, reason_names


class NvmlError(Exception):
    pass


def stand_in(**calls) -> types.SimpleNamespace:
    names = {"NVML_CLOCK_SM": 0, "NVML_CLOCK_MEM": 1, "NVML_TEMPERATURE_GPU": 0,
             "nvmlDeviceGetClockInfo": lambda handle, clock: 1980 if clock == 0 else 2619,
             "nvmlDeviceGetCurrentClocksEventReasons": lambda handle: 0}
    return types.SimpleNamespace(**{**names, **calls})


def failing(*args):
    raise NvmlError("NVML_ERROR_FUNCTION_NOT_FOUND")


def test_temperature_prefers_the_versioned_call_and_falls_back() -> None:
    both = stand_in(nvmlDeviceGetTemperatureV=lambda h, s: 61, nvmlDeviceGetTemperature=lambda h, s: 99)
    assert NvmlMonitor(both, None).read().temperature_c == 61
    old_driver = stand_in(nvmlDeviceGetTemperatureV=failing, nvmlDeviceGetTemperature=lambda h, s: 55)
    assert NvmlMonitor(old_driver, None).read().temperature_c == 55
    deprecated = stand_in(nvmlDeviceGetTemperatureV=lambda h, s: 47, nvmlDeviceGetTemperature=failing)
    assert NvmlMonitor(deprecated, None).read().temperature_c == 47
    neither = stand_in(nvmlDeviceGetTemperatureV=failing, nvmlDeviceGetTemperature=failing)
    state = NvmlMonitor(neither, None).read()
    assert state.temperature_c is None and state.sm_clock_mhz == 1980 and state.memory_clock_mhz == 2619


def test_clock_event_reasons() -> None:
    hot = stand_in(nvmlDeviceGetTemperature=lambda h, s: 90, nvmlDeviceGetCurrentClocksEventReasons=lambda h: 0x20)
    state = NvmlMonitor(hot, None).read()
    assert state.throttled and state.reasons == 0x20
    assert not is_throttled(0x1) and is_throttled(0x20) and reason_names(0x0) == ()
