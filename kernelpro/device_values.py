"""Device values that task and launch expressions may read: ``SM_COUNT``, ``L2_BYTES``...

A grid of "two blocks per SM" is ``grid = ["2 * SM_COUNT"]``. On a GPU the values come from the
visible device (:func:`values_for_device`); without one (loading a task, static analysis, the
prompt) from the target architecture's table (:func:`default_device_values`): per-SM limits from
:mod:`kernelpro.occupancy`, SM count and L2 size from the reference part of that architecture.
"""

from __future__ import annotations

from kernelpro.occupancy import arch_limits

DEVICE_NAMES = ("SM_COUNT", "MAX_THREADS_PER_SM", "MAX_SMEM_PER_BLOCK", "MAX_SMEM_PER_SM", "WARP_SIZE", "L2_BYTES")
DEFAULT_ARCH = "sm_90"
# SM count and L2 bytes of the reference part per architecture (the datasheet figures).
_PARTS: dict[str, tuple[int, int]] = {
    "sm_70": (80, 6 << 20),  # V100
    "sm_75": (40, 4 << 20),  # T4
    "sm_80": (108, 40 << 20),  # A100
    "sm_86": (84, 6 << 20),  # A40
    "sm_89": (58, 48 << 20),  # L4
    "sm_90": (132, 50 << 20),  # H100 SXM
    "sm_100": (148, 126 << 20),  # B200
    "sm_120": (84, 128 << 20),  # RTX PRO 6000 Blackwell
}
# Memory of an H100 (80 GB), the bound on a task's buffers when no GPU is visible.
DEFAULT_MEMORY_BYTES = 80 * 1024**3


def _values(arch: str, sm_count: int, l2_bytes: int) -> dict[str, int]:
    limits = arch_limits(arch)
    return {
        "SM_COUNT": sm_count,
        "MAX_THREADS_PER_SM": limits.max_warps_per_sm * limits.warp_size,
        "MAX_SMEM_PER_BLOCK": limits.max_shared_memory_per_block_optin,
        "MAX_SMEM_PER_SM": limits.shared_memory_per_sm,
        "WARP_SIZE": limits.warp_size,
        "L2_BYTES": l2_bytes,
    }


def default_device_values(arch: str = DEFAULT_ARCH) -> dict[str, int]:
    """The values of ``arch``'s reference part (sm_90: an H100 SXM)."""
    major, minor = arch_limits(arch).compute_capability
    sm_count, l2 = _PARTS.get(f"sm_{major}{minor}", _PARTS[DEFAULT_ARCH])
    return _values(arch, sm_count, l2)


def values_for_device(compute_capability: str, sm_count: int, l2_bytes: int) -> dict[str, int]:
    """The values of a visible GPU (``compute_capability`` like ``"9.0"``)."""
    try:
        return _values(compute_capability, sm_count, l2_bytes)
    except Exception:  # noqa: BLE001 - an architecture the occupancy table lacks: keep its SMs and L2
        return {**default_device_values(), "SM_COUNT": sm_count, "L2_BYTES": l2_bytes}
