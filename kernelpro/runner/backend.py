"""The interface between the wall and a device: what :mod:`kernelpro.runner.device` implements with CuPy.

The wall (:mod:`kernelpro.runner.wall`) and the timing loop (:mod:`kernelpro.runner.timing`) talk
to the GPU only through :class:`Backend`, so their logic runs in CPU tests against a numpy
stand-in whose "kernels" are Python functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from kernelpro.runner.records import DeviceInfo, GpuState


class LaunchRejected(Exception):
    """The driver refused the launch (too many resources, invalid configuration): nothing ran."""


class KernelFault(Exception):
    """The kernel faulted (illegal address, trap, misaligned access...): the CUDA context is lost."""


@dataclass(frozen=True)
class Geometry:
    """Grid and block dimensions and dynamic shared memory bytes of one launch."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int = 0


class TimedRunner(Protocol):
    """Runs ``launches_per_sample`` launches per sample and times them on the device."""

    method: str  # "events" | "graph" | "batch"
    launches_per_sample: int

    def sample(self) -> float:
        """Seconds for one sample (all its launches), L2 flushed first unless warm."""

    def close(self) -> None: ...


class Backend(Protocol):
    """A device that loads kernels, holds buffers, launches and times."""

    xp: ModuleType  # the array module buffers are made with (cupy, or numpy in tests)

    def load_kernel(self, cubin: str, symbol: str) -> Any:
        """The kernel ``symbol`` of the cubin at path ``cubin``; freed when the backend closes."""

    def launch(self, kernel: Any, geometry: Geometry | None, args: Sequence[Any]) -> None:
        """Queue one launch; raises :class:`LaunchRejected`. ``kernel`` may be a
        :class:`~kernelpro.runner.sequence.BoundSequence` (``geometry`` None, ``args`` the task's
        arguments): then each of its launches is queued in turn, with its own geometry and arguments."""

    def synchronize(self) -> None:
        """Wait for queued work; raises :class:`KernelFault` when a kernel faulted."""

    def to_host(self, array: Any) -> np.ndarray:
        """A host copy of a device array."""

    def copy(self, array: Any) -> Any:
        """A new device array with the same contents (no guards)."""

    def timed_runner(self, kernel: Any, geometry: Geometry, arg_sets: Sequence[Sequence[Any]],
                     launches_per_sample: int, flush_l2: bool | str, use_graph: bool) -> TimedRunner:
        """A timer for ``launches_per_sample`` launches per sample, launch ``i`` using ``arg_sets[i % len]``.

        ``flush_l2``: False (warm), True or ``"clean"`` (flush L2 before each sample and leave it clean),
        ``"dirty"`` (the flush's write pass only: its dirty lines may be written back during the sample).
        """

    def gpu_state(self) -> GpuState | None:
        """Clocks, temperature and throttling now (None without NVML)."""

    def device_info(self) -> DeviceInfo: ...

    def memory_stats(self) -> dict[str, int]:
        """Device memory use, for leak checks (pool bytes in use, free device bytes)."""

    def close(self) -> None:
        """Free every buffer, kernel module and stream this backend made."""
