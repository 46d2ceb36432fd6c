"""The CuPy backend: load cubins, launch on one stream, time with CUDA events, flush L2, capture graphs.

This is the only module that imports CuPy, and only when a :class:`CupyBackend` is made, so the
runner imports (and its CPU tests run) without CuPy or a GPU.

Choices that matter:

* Cubins are loaded with ``cupy.cuda.Module`` (``cuModuleLoad``), not ``cupy.RawModule(path=...)``:
  RawModule memoizes the module per process and never unloads it, so a candidate's ``__device__``
  variables would survive into the next evaluation of the same cubin, and every evaluation would
  leak a module. Here each job loads its own module and unloads it in :meth:`CupyBackend.close`.
* Everything (uploads, poisoning, launches, events, the L2 flush, graph capture) runs on one
  non-blocking stream made current for the job, so CuPy's own operations are ordered with the
  launches; a non-blocking stream is also what graph capture needs.
* Static plus dynamic shared memory above 48 KiB needs the kernel's ``MAX_DYNAMIC_SHARED_SIZE_BYTES``
  attribute raised first (``cuFuncSetAttribute``). The launch sets it to the dynamic size whenever
  that grows, since only the kernel's static size decides where the 48 KiB line falls.
* Scalars reach the kernel as numpy scalars of the argument's dtype (``numpy.int32(n)``); a Python
  int would be passed as 64 bits.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Sequence
from typing import Any

import numpy as np

from kernelpro.errors import KernelproError
from kernelpro.runner.backend import Geometry, KernelFault, LaunchRejected
from kernelpro.runner.nvml import NvmlMonitor
from kernelpro.runner.records import DeviceInfo, GpuState
from kernelpro.runner.sequence import BoundSequence

# CUfunction_attribute CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (cuda.h), when CuPy does not export it.
_MAX_DYNAMIC_SHARED_ATTRIBUTE = 8
# cudaDevAttrComputeCapabilityMajor / Minor (driver_types.h). CuPy leaves both out of ``Device.attributes``
# and does not export the names, so they are read with ``cudaDeviceGetAttribute`` by number.
_COMPUTE_CAPABILITY_MAJOR, _COMPUTE_CAPABILITY_MINOR = 75, 76
# Errors after which the CUDA context is lost (cudaError_t: 700 illegal address, 710 assert, 714 hardware
# stack error, 715 illegal instruction, 716 misaligned address, 719 launch failure). A launch queued after
# an asynchronous fault returns the fault's code: that is the kernel's fault, not a rejected launch.
_CONTEXT_LOST = frozenset({700, 710, 714, 715, 716, 719})


def import_cupy() -> Any:
    """CuPy, or a :class:`KernelproError` saying how to install it."""
    try:
        import cupy
    except ImportError as exc:
        raise KernelproError(
            f"CuPy is not installed ({exc})",
            fix="install the GPU runtime: pip install 'kernelpro[cuda12]' (or [cuda13] for CUDA 13 drivers)",
        ) from None
    return cupy


def require_gpu() -> None:
    """Raise a one-line :class:`KernelproError` unless CuPy is installed and sees a CUDA device."""
    cupy = import_cupy()
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, no device and a broken install all land here
        raise KernelproError(f"no CUDA GPU visible ({exc})",
                             fix="run on a machine with an NVIDIA GPU and driver (`nvidia-smi` lists it)") from None
    if count < 1:
        raise KernelproError("no CUDA GPU visible", fix="run on a machine with an NVIDIA GPU and driver")


def cuda_errors(cupy: Any) -> tuple[type[BaseException], ...]:
    """The exception types CuPy raises for CUDA runtime and driver errors."""
    return (cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.driver.CUDADriverError)


class _Kernel:
    """A loaded kernel: the function and the module that must stay loaded while it is used."""

    def __init__(self, function: Any, module: Any, symbol: str) -> None:
        self.function = function
        self.module = module
        self.symbol = symbol
        self.max_dynamic_shared = 0  # what MAX_DYNAMIC_SHARED_SIZE_BYTES was last set to by us


class CupyBackend:
    """A :class:`~kernelpro.runner.backend.Backend` on CUDA device ``device_id`` through CuPy.

    ``use_pool=False`` allocates every buffer with its own ``cudaMalloc`` (for compute-sanitizer,
    which only sees accesses outside whole allocations, not outside pool sub-blocks).
    """

    def __init__(self, device_id: int = 0, use_pool: bool = True) -> None:
        cupy = import_cupy()
        self.cp = cupy
        self.xp = cupy
        self._errors = cuda_errors(cupy)
        self.device_id = device_id
        try:
            self._device = cupy.cuda.Device(device_id)
            self._device.use()
            if not use_pool:
                cupy.cuda.set_allocator(None)
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.stream.use()
        except self._errors as exc:
            raise KernelproError(f"cannot use CUDA device {device_id}: {exc}",
                                 fix="check `nvidia-smi` and CUDA_VISIBLE_DEVICES") from None
        self._kernels: list[_Kernel] = []
        self._flush_buffer: Any = None
        self._flush_value = 0
        self._info: DeviceInfo | None = None
        self._monitor = NvmlMonitor.open(self._pci_bus_id())

    # --- kernels and launches -----------------------------------------------------------------
    def load_kernel(self, cubin: str, symbol: str) -> _Kernel:
        module = self.cp.cuda.Module()
        try:
            module.load_file(str(cubin))
            function = module.get_function(symbol)
        except self._errors as exc:
            raise LaunchRejected(f"cannot load kernel {symbol!r} from {cubin}: {exc}") from None
        kernel = _Kernel(function, module, symbol)
        self._kernels.append(kernel)
        return kernel

    def launch(self, kernel: _Kernel | BoundSequence, geometry: Geometry | None, args: Sequence[Any]) -> None:
        if isinstance(kernel, BoundSequence):  # a launch sequence: each step comes back here
            kernel.issue(self, args)
            return
        try:
            if geometry.shared_mem > kernel.max_dynamic_shared:
                attribute = getattr(self.cp.cuda.driver, "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES",
                                    _MAX_DYNAMIC_SHARED_ATTRIBUTE)
                self.cp.cuda.driver.funcSetAttribute(kernel.function.ptr, attribute, geometry.shared_mem)
                kernel.max_dynamic_shared = geometry.shared_mem
            kernel.function(geometry.grid, geometry.block, tuple(args), shared_mem=geometry.shared_mem,
                            stream=self.stream)
        except self._errors as exc:
            if getattr(exc, "status", None) in _CONTEXT_LOST:
                raise KernelFault(str(exc)) from None
            raise LaunchRejected(f"launch of {kernel.symbol} with grid {geometry.grid}, block {geometry.block}, "
                                 f"{geometry.shared_mem} B dynamic shared memory failed: {exc}") from None

    def synchronize(self) -> None:
        try:
            self.stream.synchronize()
        except self._errors as exc:
            raise KernelFault(str(exc)) from None

    # --- buffers --------------------------------------------------------------------------------
    def to_host(self, array: Any) -> np.ndarray:
        try:
            return array.get(stream=self.stream)
        except self._errors as exc:
            raise KernelFault(str(exc)) from None

    def copy(self, array: Any) -> Any:
        return array.copy()

    def flush_l2(self) -> None:
        """Overwrite a buffer of twice the L2 size on the stream, evicting whatever L2 held."""
        try:
            if self._flush_buffer is None:
                size = max(2 * self.device_info().l2_bytes, 8 << 20)
                self._flush_buffer = self.cp.empty(size, dtype=self.cp.uint8)
            self._flush_value ^= 0x5A  # alternate the value so no write can be skipped as redundant
            self._flush_buffer.fill(np.uint8(self._flush_value))
        except self._errors as exc:  # a fault of the kernel queued before the flush surfaces here
            raise KernelFault(str(exc)) from None

    # --- timing ---------------------------------------------------------------------------------
    def timed_runner(self, kernel: _Kernel, geometry: Geometry, arg_sets: Sequence[Sequence[Any]],
                     launches_per_sample: int, flush_l2: bool, use_graph: bool) -> _EventTimer:
        return _EventTimer(self, kernel, geometry, arg_sets, launches_per_sample, flush_l2, use_graph)

    def gpu_state(self) -> GpuState | None:
        return self._monitor.read() if self._monitor else None

    def device_info(self) -> DeviceInfo:
        if self._info is None:
            self._info = self._read_device_info()
        return self._info

    def memory_stats(self) -> dict[str, int]:
        return gpu_memory_stats(self.cp)

    def close(self) -> None:
        """Free buffers, unload modules, drop the stream; safe after a fault and when called twice."""
        with contextlib.suppress(Exception):  # a faulted context fails here; everything is freed anyway
            self.stream.synchronize()
        self._flush_buffer = None
        self._kernels.clear()
        self.cp.cuda.Stream.null.use()
        gc.collect()  # drop the arrays the job still referenced before returning blocks to the driver
        try:
            self.cp.get_default_memory_pool().free_all_blocks()
            self.cp.get_default_pinned_memory_pool().free_all_blocks()
        except self._errors:
            pass
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None

    # --- internals ------------------------------------------------------------------------------
    def _pci_bus_id(self) -> str | None:
        try:
            return str(self._device.pci_bus_id)
        except Exception:  # noqa: BLE001 - not fatal: NVML then looks for the only GPU
            return None

    def _read_device_info(self) -> DeviceInfo:
        attributes = self._device.attributes
        props = self.cp.cuda.runtime.getDeviceProperties(self.device_id)
        name = props.get("name", b"")
        major = self.cp.cuda.runtime.deviceGetAttribute(_COMPUTE_CAPABILITY_MAJOR, self.device_id)
        minor = self.cp.cuda.runtime.deviceGetAttribute(_COMPUTE_CAPABILITY_MINOR, self.device_id)
        sm_clock = attributes.get("ClockRate") or None
        memory_clock = attributes.get("MemoryClockRate") or None
        if (sm_clock is None or memory_clock is None) and self._monitor is not None:
            max_sm, max_memory = self._monitor.max_clocks()
            sm_clock = sm_clock or (max_sm * 1000 if max_sm else None)
            memory_clock = memory_clock or (max_memory * 1000 if max_memory else None)
        return DeviceInfo(
            name=name.decode() if isinstance(name, bytes) else str(name),
            compute_capability=f"{major}.{minor}",
            sm_count=int(attributes["MultiProcessorCount"]),
            sm_clock_khz=sm_clock,
            memory_clock_khz=memory_clock,
            memory_bus_bits=attributes.get("GlobalMemoryBusWidth") or None,
            l2_bytes=int(attributes["L2CacheSize"]),
            total_memory_bytes=int(props.get("totalGlobalMem", 0)),
            pci_bus_id=self._pci_bus_id() or "",
        )


class _EventTimer:
    """Times samples of ``launches`` launches with a CUDA event pair on the backend's stream.

    With one launch per sample the events bracket that launch (``events``). With more, the launches
    are captured once into a CUDA graph that each sample replays (``graph``), or issued one by one
    between the events when capture fails (``batch``). Launch ``i`` uses ``arg_sets[i % len]``.
    """

    def __init__(self, backend: CupyBackend, kernel: _Kernel, geometry: Geometry,
                 arg_sets: Sequence[Sequence[Any]], launches: int, flush_l2: bool, use_graph: bool) -> None:
        cp = backend.cp
        self.backend, self.kernel, self.geometry = backend, kernel, geometry
        self.arg_sets = [tuple(a) for a in arg_sets]
        self.launches_per_sample = launches
        self.flush_l2 = flush_l2
        self.start, self.end = cp.cuda.Event(), cp.cuda.Event()
        self.graph: Any = None
        self.method = "events" if launches == 1 else "batch"
        if launches > 1 and use_graph:
            self.graph = self._capture()
            if self.graph is not None:
                self.method = "graph"

    def _capture(self) -> Any:
        stream = self.backend.stream
        try:
            stream.begin_capture()
            try:
                self._issue()
            finally:
                graph = stream.end_capture()
            return graph
        except (*self.backend._errors, LaunchRejected, RuntimeError):
            return None  # the batch method times the same launches without a graph

    def _issue(self) -> None:
        for i in range(self.launches_per_sample):
            self.backend.launch(self.kernel, self.geometry, self.arg_sets[i % len(self.arg_sets)])

    def sample(self) -> float:
        backend = self.backend
        if self.flush_l2:
            backend.flush_l2()
        self.start.record(backend.stream)
        if self.graph is not None:
            self.graph.launch(stream=backend.stream)
        else:
            self._issue()
        self.end.record(backend.stream)
        try:
            self.end.synchronize()
            return backend.cp.cuda.get_elapsed_time(self.start, self.end) / 1e3
        except backend._errors as exc:
            raise KernelFault(str(exc)) from None

    def close(self) -> None:
        self.graph = None
        self.arg_sets = []


def gpu_memory_stats(cupy: Any = None) -> dict[str, int]:
    """CuPy pool bytes in use and held, and the device's free and total bytes (``cudaMemGetInfo``)."""
    cupy = cupy or import_cupy()
    pool = cupy.get_default_memory_pool()
    free, total = cupy.cuda.runtime.memGetInfo()
    return {"pool_used_bytes": int(pool.used_bytes()), "pool_total_bytes": int(pool.total_bytes()),
            "device_free_bytes": int(free), "device_total_bytes": int(total)}
