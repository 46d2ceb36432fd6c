"""What the GPU benchmarks need: ncu, nvcc and a visible NVIDIA GPU (and CuPy, for those that use the runner)."""

from __future__ import annotations

import shutil
import subprocess

from kernelpro.errors import KernelproError
from kernelpro.toolchain import find_tool


def gpu_missing(need_cupy: bool = False) -> str | None:
    """Why a GPU benchmark cannot run here (no ncu, nvcc, GPU or, with ``need_cupy``, CuPy), or None."""
    for tool in ("ncu", "nvcc"):
        if find_tool(tool, required=False) is None:
            return f"`{tool}` not found"
    smi = shutil.which("nvidia-smi")
    if smi is None or subprocess.run([smi, "-L"], capture_output=True, timeout=30).returncode != 0:
        return "no NVIDIA GPU visible (nvidia-smi -L failed)"
    if need_cupy:
        from kernelpro.runner.device import require_gpu

        try:
            require_gpu()
        except KernelproError as exc:
            return str(exc).splitlines()[0]
    return None
