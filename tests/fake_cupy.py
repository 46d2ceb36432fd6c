"""A stand-in for the parts of CuPy that :mod:`kernelpro.runner.device` uses, recording what is queued.

Put in ``sys.modules["cupy"]`` (:func:`install`), it lets the real :class:`~kernelpro.runner.device.CupyBackend`
and its event timer run on CPU. Every operation queued on the stream is appended to ``fake.ops`` as a short
tuple, in order: ``("launch", symbol)``, ``("fill", value)``, ``("helper", name)``, ``("record", "start")``,
``("graph-upload",)``, ``("graph-launch", n)``, ``("sync",)``... so tests can check *what the GPU would
have been asked to do, and in which order*. Errors are planted with :meth:`FakeCupy.fail`: the named
operation raises ``CUDARuntimeError``/``CUDADriverError`` with the given CUDA status, as CuPy does.
Nothing here computes: buffers are numpy arrays, kernels do nothing, elapsed times are fixed.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest


class CUDARuntimeError(RuntimeError):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"cudaError {status}")


class CUDADriverError(RuntimeError):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"CUDA_ERROR {status}")


class FakeArray:
    def __init__(self, fake: FakeCupy, size: int, dtype: Any) -> None:
        self.fake, self.size, self.dtype = fake, size, np.dtype(dtype)

    def fill(self, value: Any) -> None:
        self.fake.op("fill", int(value))

    def max(self) -> None:
        self.fake.op("reduce-max")


class FakeFunction:
    """A loaded kernel (``Module.get_function``) or a helper (``RawModule.get_function``)."""

    def __init__(self, fake: FakeCupy, name: str, kind: str) -> None:
        self.fake, self.name, self.kind, self.ptr = fake, name, kind, id(self)

    def __call__(self, grid, block, args, shared_mem: int = 0, stream: Any = None) -> None:
        self.fake.op(self.kind, self.name)


class FakeGraph:
    def __init__(self, fake: FakeCupy, ops: list[tuple]) -> None:
        self.fake, self.captured = fake, ops

    def upload(self, stream: Any = None) -> None:
        self.fake.op("graph-upload")

    def launch(self, stream: Any = None) -> None:
        self.fake.op("graph-launch", len(self.captured))


class FakeStream:
    def __init__(self, fake: FakeCupy, non_blocking: bool = False) -> None:
        self.fake = fake
        self.capturing: list[tuple] | None = None

    def use(self) -> FakeStream:
        return self

    def synchronize(self) -> None:
        self.fake.op("sync")

    def begin_capture(self) -> None:
        self.capturing = []
        self.fake.capture = self.capturing

    def end_capture(self) -> FakeGraph:
        ops, self.capturing, self.fake.capture = self.capturing or [], None, None
        return FakeGraph(self.fake, ops)


class FakeEvent:
    def __init__(self, fake: FakeCupy, name: str) -> None:
        self.fake, self.name = fake, name

    def record(self, stream: Any = None) -> None:
        self.fake.op("record", self.name)

    def synchronize(self) -> None:
        self.fake.op("event-sync", self.name)


class FakeCupy:
    """The fake ``cupy`` module; ``ops`` is the log of queued operations."""

    def __init__(self) -> None:
        self.ops: list[tuple] = []
        self.capture: list[tuple] | None = None
        self.failures: dict[str, list[int]] = {}
        self.events = 0
        self.elapsed_ms = 0.002
        self.nvrtc = True
        self.uint8, self.uint32 = np.uint8, np.uint32
        fake = self
        runtime = SimpleNamespace(CUDARuntimeError=CUDARuntimeError, deviceSynchronize=lambda: fake.op("device-sync"),
                                  memGetInfo=lambda: (1 << 30, 2 << 30), getDeviceCount=lambda: 1)
        driver = SimpleNamespace(CUDADriverError=CUDADriverError,
                                 funcSetAttribute=lambda ptr, attribute, value: fake.op("set-attribute", value))

        def make_event(*args: Any, **kwargs: Any) -> FakeEvent:
            fake.events += 1
            return FakeEvent(fake, "start" if fake.events % 2 else "end")

        class Stream(FakeStream):
            null = SimpleNamespace(use=lambda: None)

            def __init__(self, non_blocking: bool = False) -> None:
                super().__init__(fake, non_blocking)

        class Module:
            def load_file(self, path: str) -> None:
                fake.op("load", str(path))

            def get_function(self, name: str) -> FakeFunction:
                return FakeFunction(fake, name, "launch")

        self.cuda = SimpleNamespace(
            runtime=runtime, driver=driver, Stream=Stream, Module=Module, Event=make_event,
            Device=lambda device_id=0: SimpleNamespace(use=lambda: None, pci_bus_id="00000000:01:00.0"),
            set_allocator=lambda allocator: None,
            get_elapsed_time=lambda start, end: fake.elapsed_ms,
        )

    # --- what tests plant and read ----------------------------------------------------------------
    def fail(self, op: str, status: int, times: int = 1) -> None:
        """The next ``times`` operations named ``op`` raise a CUDA error with ``status``."""
        self.failures.setdefault(op, []).extend([status] * times)

    def op(self, name: str, *details: Any) -> None:
        pending = self.failures.get(name)
        if pending:
            status = pending.pop(0)
            raise (CUDADriverError if name == "launch" else CUDARuntimeError)(status)
        (self.capture if self.capture is not None else self.ops).append((name, *details))

    def names(self) -> list[str]:
        return [op[0] for op in self.ops]

    # --- the cupy functions device.py calls ---------------------------------------------------------
    def empty(self, size: int, dtype: Any) -> FakeArray:
        return FakeArray(self, size, dtype)

    def zeros(self, size: int, dtype: Any) -> FakeArray:
        return FakeArray(self, size, dtype)

    def RawModule(self, code: str) -> Any:  # noqa: N802 - CuPy's name
        if not self.nvrtc:
            raise RuntimeError("nvrtc: not available")
        return SimpleNamespace(get_function=lambda name: FakeFunction(self, name, "helper"))

    def get_default_memory_pool(self) -> Any:
        return SimpleNamespace(free_all_blocks=lambda: None, used_bytes=lambda: 0, total_bytes=lambda: 0)

    def get_default_pinned_memory_pool(self) -> Any:
        return SimpleNamespace(free_all_blocks=lambda: None)


def install(monkeypatch: pytest.MonkeyPatch) -> FakeCupy:
    """A fresh :class:`FakeCupy` as ``cupy`` for one test (NVML off, no helper module cached from before)."""
    from kernelpro.runner import device

    fake = FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(device.NvmlMonitor, "open", classmethod(lambda cls, bus=None: None))
    monkeypatch.setattr(device, "_HELPER_MODULES", {})
    return fake
