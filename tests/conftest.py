"""Shared test setup: `gpu`-marked tests skip cleanly where no CUDA GPU is visible.

On a machine that is meant to have one (an acceptance run, a GPU CI runner), set
``KERNELPRO_REQUIRE_GPU=1``: a missing GPU then fails the run instead of skipping every GPU test.
"""

from __future__ import annotations

import functools
import os

import pytest


@functools.cache
def gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver or no device all mean "no GPU"
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if gpu_available():
        return
    if os.environ.get("KERNELPRO_REQUIRE_GPU") == "1":
        raise pytest.UsageError("KERNELPRO_REQUIRE_GPU=1 but CuPy sees no CUDA GPU (is cupy installed for this "
                                "driver, and is the GPU visible?)")
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
