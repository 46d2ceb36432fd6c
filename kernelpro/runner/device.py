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
* A CUDA error at a launch is a kernel fault (the worker restarts) unless it is one of the known
  errors that leave the context usable (:data:`_NOT_STICKY`): an earlier kernel's asynchronous fault
  surfaces at the next launch with the fault's code, and a sticky error (700, 702, 710, 714-719, 999)
  poisons every later call in the process, so it must never be blamed on the next candidate.
* Timing (:class:`_EventTimer`): the graph is uploaded and run once untimed before the first sample;
  the GPU is kept busy while the host records the start event and issues the launches (the L2 flush
  when cold, a ~50 µs spin kernel when warm), so the host's launch gap is not counted as kernel time;
  the cold flush writes twice L2 and then reads it back, so L2 holds only clean lines and no
  write-back of the flush lands inside the timed kernel.
"""

from __future__ import annotations

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
# Errors after which the CUDA context is lost (cudaError_t and CUresult share these numbers: 700 illegal
# address, 702 launch timeout, 710 assert, 714 hardware stack error, 715 illegal instruction, 716 misaligned
# address, 717 invalid address space, 718 invalid program counter, 719 launch failure, 999 unknown).
_CONTEXT_LOST = frozenset({700, 702, 710, 714, 715, 716, 717, 718, 719, 999})
# Errors a launch may return that leave the context usable: nothing ran. 1 invalid value (e.g. a block of
# more than 1024 threads, too much shared memory), 2 out of memory, 9 invalid configuration (runtime API),
# 98 invalid device function (runtime), 209 no binary for this GPU, 400 invalid handle, 500 not found,
# 701 too many resources requested, 720 cooperative launch too large, 801 not supported, 900-908 stream
# capture errors. Every other error at a launch is treated as a kernel fault (see the module docstring).
_NOT_STICKY = frozenset({1, 2, 9, 98, 209, 400, 500, 701, 720, 801, *range(900, 909)})
# How long the warm-mode spin kernel keeps the GPU busy before the start event (longer than the host needs to
# record the start event and issue the launches or the graph).
SPIN_NS = 50_000
# Kernels the backend itself runs: the spin of warm timing and the read sweep of the L2 flush (NVRTC, once per
# process). The sweep's conditional store keeps the compiler from dropping the loads; it never happens
# (the flush buffer holds one repeated byte, so the XOR of the four words of a uint4 is 0).
_HELPERS_SOURCE = r"""
extern "C" __global__ void kp_spin(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while (now - start < ns);
}
extern "C" __global__ void kp_read_sweep(const uint4* __restrict__ p, unsigned long long n, unsigned int* sink) {
    unsigned int acc = 0;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        uint4 v = p[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9E3779B9u) *sink = acc;
}
"""


_HELPER_MODULES: dict[tuple[int, int], Any] = {}


def cuda_status(exc: BaseException) -> int | None:
    """The CUDA error code of a CuPy runtime or driver error (None when it has none)."""
    status = getattr(exc, "status", None)
    return int(status) if isinstance(status, int) else None


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
            if cuda_status(exc) in _CONTEXT_LOST:  # an earlier fault poisoned this process: restart the worker
                raise KernelFault(f"cannot use CUDA device {device_id}: {exc}") from None
            raise KernelproError(f"cannot use CUDA device {device_id}: {exc}",
                                 fix="check `nvidia-smi` and CUDA_VISIBLE_DEVICES") from None
        self._kernels: list[_Kernel] = []
        self._flush_buffer: Any = None
        self._flush_sink: Any = None
        self._flush_value = 0
        self._helpers: Any = None  # the spin and read-sweep kernels, compiled on first use
        self.helpers_error: str | None = None  # why they could not be compiled (the fallbacks are used)
        self.context_lost = False  # set by close() when the final synchronize found a CUDA error
        self._info: DeviceInfo | None = None
        self._monitor = NvmlMonitor.open(self._pci_bus_id())

    # --- kernels and launches -----------------------------------------------------------------
    def load_kernel(self, cubin: str, symbol: str) -> _Kernel:
        module = self.cp.cuda.Module()
        try:
            module.load_file(str(cubin))
            function = module.get_function(symbol)
        except self._errors as exc:
            if cuda_status(exc) in _CONTEXT_LOST:
                raise KernelFault(f"cannot load kernel {symbol!r}: {exc}") from None
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
            if cuda_status(exc) not in _NOT_STICKY:
                raise KernelFault(f"{exc} (at the launch of {kernel.symbol}: this kernel's fault, or an earlier "
                                  "one's surfacing here)") from None
            raise LaunchRejected(f"launch of {kernel.symbol} with grid {geometry.grid}, block {geometry.block}, "
                                 f"{geometry.shared_mem} B dynamic shared memory failed: {exc}") from None

    def cuda_failure(self, exc: BaseException, what: str) -> Exception:
        """A CUDA error raised by ``what`` as :class:`LaunchRejected` (known non-sticky) or :class:`KernelFault`."""
        if cuda_status(exc) in _NOT_STICKY:
            return LaunchRejected(f"{what} failed: {exc}")
        return KernelFault(f"{what}: {exc}")

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

    def flush_l2(self, clean: bool = True) -> None:
        """Overwrite a buffer of twice the L2 size on the stream, evicting whatever L2 held; with ``clean``,
        then read the buffer back, so the dirty lines of the write are written back now and L2 is left
        holding clean lines only (nothing of the flush is written back during the timed kernel)."""
        try:
            if self._flush_buffer is None:
                size = max(2 * self.device_info().l2_bytes, 8 << 20)
                self._flush_buffer = self.cp.empty(size - size % 16, dtype=self.cp.uint8)
            self._flush_value ^= 0x5A  # alternate the value so no write can be skipped as redundant
            self._flush_buffer.fill(np.uint8(self._flush_value))
            if clean:
                self._read_sweep()
        except self._errors as exc:  # a fault of the kernel queued before the flush surfaces here
            raise KernelFault(str(exc)) from None

    def keep_busy(self, ns: int = SPIN_NS) -> None:
        """Queue a kernel of one thread that spins for ``ns`` nanoseconds (no memory traffic, L2 untouched)."""
        helpers = self._helper_kernels()
        if helpers is None:
            return  # no NVRTC: the host gap stays in warm timings (helpers_error says why)
        try:
            helpers.get_function("kp_spin")((1,), (1,), (np.uint64(ns),))  # queued before start.record
        except self._errors as exc:
            raise KernelFault(str(exc)) from None

    def _read_sweep(self) -> None:
        helpers = self._helper_kernels()
        if helpers is None:
            self._flush_buffer.max()  # a CuPy reduction reads the whole buffer too
            return
        if self._flush_sink is None:
            self._flush_sink = self.cp.zeros(1, dtype=self.cp.uint32)
        words = self._flush_buffer.size // 16
        blocks = max(1, min(self.device_info().sm_count * 8, -(-words // 256)))
        helpers.get_function("kp_read_sweep")((blocks,), (256,), (self._flush_buffer, np.uint64(words),
                                                                   self._flush_sink))

    def _helper_kernels(self) -> Any:
        """The module of :data:`_HELPERS_SOURCE` (None when NVRTC cannot build it), loaded once per process
        and device and kept (it is tiny). Launches go to the current stream, which is this backend's."""
        if self._helpers is None and self.helpers_error is None:
            key = (id(self.cp), self.device_id)
            try:
                if key not in _HELPER_MODULES:
                    module = self.cp.RawModule(code=_HELPERS_SOURCE)
                    module.get_function("kp_spin")  # compiles now, so a failure is caught here
                    _HELPER_MODULES[key] = module
                self._helpers = _HELPER_MODULES[key]
            except Exception as exc:  # noqa: BLE001 - no NVRTC, or it failed: fall back, say why
                self.helpers_error = f"{type(exc).__name__}: {exc}"
        return self._helpers

    # --- timing ---------------------------------------------------------------------------------
    def timed_runner(self, kernel: _Kernel, geometry: Geometry, arg_sets: Sequence[Sequence[Any]],
                     launches_per_sample: int, flush_l2: bool | str, use_graph: bool) -> _EventTimer:
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
        """Free buffers, unload modules, drop the stream; safe after a fault and when called twice.

        A CUDA error at the final synchronize (a fault nobody saw yet, or a sticky error) sets
        ``context_lost``: the job then restarts the worker instead of handing the poisoned process on.
        """
        try:
            self.stream.synchronize()
            self.cp.cuda.runtime.deviceSynchronize()
        except self._errors:
            self.context_lost = True
        except Exception:  # noqa: BLE001 - anything else here: everything is freed anyway
            pass
        self._flush_buffer = None
        self._flush_sink = None
        self._helpers = None
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

    Before the first sample the graph is uploaded and the sample's launches run once, untimed, so no
    sample pays for the upload or a first launch. Each sample then queues, in this order: the L2
    flush (``flush_l2``: True or ``"clean"`` writes and reads back twice L2, ``"dirty"`` only writes
    it) or, warm, a short spin kernel; the start event; the launches; the end event. The GPU is thus
    still busy with the flush or the spin while the host records the start event and issues the
    launches, and the host's gap between the two is not timed. Every CUDA error is raised as
    :class:`KernelFault` (or :class:`LaunchRejected` for the known non-sticky ones).
    """

    def __init__(self, backend: CupyBackend, kernel: _Kernel, geometry: Geometry,
                 arg_sets: Sequence[Sequence[Any]], launches: int, flush_l2: bool | str, use_graph: bool) -> None:
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
        self._warm_up()

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

    def _warm_up(self) -> None:
        """Upload the graph and run one sample's launches untimed."""
        backend = self.backend
        try:
            if self.graph is not None:
                upload = getattr(self.graph, "upload", None)
                if upload is not None:
                    upload(stream=backend.stream)
                self.graph.launch(stream=backend.stream)
            else:
                self._issue()
            backend.stream.synchronize()
        except backend._errors as exc:
            raise backend.cuda_failure(exc, "the untimed warm-up launch") from None

    def sample(self) -> float:
        backend = self.backend
        try:
            if self.flush_l2:
                backend.flush_l2(clean=self.flush_l2 != "dirty")
            else:
                backend.keep_busy()
            self.start.record(backend.stream)
            if self.graph is not None:
                self.graph.launch(stream=backend.stream)
            else:
                self._issue()
            self.end.record(backend.stream)
            self.end.synchronize()
            return backend.cp.cuda.get_elapsed_time(self.start, self.end) / 1e3
        except backend._errors as exc:
            raise backend.cuda_failure(exc, "a timed sample") from None

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
