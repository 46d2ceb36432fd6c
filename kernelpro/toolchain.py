"""Find the CUDA command-line tools.

Search order for each tool: ``PATH``, then ``$CUDA_HOME/bin``, ``$CUDA_PATH/bin`` and
``/usr/local/cuda/bin``, then the ``nvidia/cu*/bin`` folders that the PyPI wheels
(``nvidia-cuda-nvcc``, ``nvidia-cuda-cuobjdump``, ``nvidia-cuda-nvdisasm``) install into
site-packages. A missing tool raises :class:`ToolchainError` saying how to install it.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from kernelpro.errors import ToolchainError

# How to get each tool when it is missing.
INSTALL_HINTS: dict[str, str] = {
    "nvcc": "install the CUDA toolkit, or `pip install 'kernelpro[toolchain]'` (nvidia-cuda-nvcc)",
    "ptxas": "install the CUDA toolkit, or `pip install 'kernelpro[toolchain]'` (nvidia-cuda-nvcc)",
    "cuobjdump": "install the CUDA toolkit, or `pip install 'kernelpro[toolchain]'` (nvidia-cuda-cuobjdump)",
    "nvdisasm": "install the CUDA toolkit, or `pip install 'kernelpro[toolchain]'` (nvidia-cuda-nvdisasm)",
    "ncu": "install Nsight Compute (part of the CUDA toolkit) and put `ncu` on PATH",
    "compute-sanitizer": "install the CUDA toolkit and put `compute-sanitizer` on PATH",
}


def _env_bin_dirs() -> list[Path]:
    dirs = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root:
            dirs.append(Path(root) / "bin")
    dirs.append(Path("/usr/local/cuda/bin"))
    return dirs


def _wheel_bin_dirs() -> list[Path]:
    """``nvidia/cu*/bin`` folders of the NVIDIA PyPI wheels, newest CUDA major first."""
    dirs: list[Path] = []
    for entry in sys.path:
        base = Path(entry or ".") / "nvidia"
        if base.is_dir():
            dirs.extend(sorted(base.glob("cu*/bin"), reverse=True))
            # CUDA 12 wheels used per-component folders: nvidia/cuda_nvcc/bin, ...
            dirs.extend(sorted(base.glob("cuda_*/bin")))
    return list(dict.fromkeys(dirs))


def search_dirs() -> list[Path]:
    """Every folder searched after ``PATH``, in order."""
    return _env_bin_dirs() + _wheel_bin_dirs()


def find_tool(name: str, required: bool = True) -> Path | None:
    """Absolute path of CUDA tool ``name``; raise (or return None) when it is nowhere to be found."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for folder in search_dirs():
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    if not required:
        return None
    searched = ", ".join(str(d) for d in search_dirs()) or "(none)"
    raise ToolchainError(
        f"`{name}` not found on PATH or in {searched}",
        fix=INSTALL_HINTS.get(name, f"install {name} and put it on PATH"),
    )


@functools.cache
def tool_version(path: str) -> str:
    """The version a CUDA tool prints, e.g. ``13.0.88``; the whole first line if no number is found."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"`{path} --version` failed: {exc}", fix="check the CUDA installation") from exc
    match = re.search(r"V(\d+\.\d+\.\d+)", out) or re.search(r"release (\d+\.\d+)", out)
    if match:
        return match.group(1)
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown"


def describe() -> dict[str, str]:
    """Where each tool was found (or "missing"), for `kernelpro doctor`-style reports."""
    report = {}
    for name in INSTALL_HINTS:
        path = find_tool(name, required=False)
        report[name] = str(path) if path else "missing"
    return report
