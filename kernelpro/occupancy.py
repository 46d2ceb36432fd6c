"""The CUDA occupancy calculator: how many blocks of a kernel fit on one SM, and what limits them.

The per-architecture limits come from the CUDA C++ Programming Guide ("Technical Specifications per
Compute Capability") and the allocation rules from NVIDIA's occupancy calculator (``cuda_occupancy.h``,
the source of ``cudaOccupancyMaxActiveBlocksPerMultiprocessor`` and of the occupancy spreadsheet):

* warps: a block takes ``ceil(threads / 32)`` warp slots.
* registers: each warp gets ``regs * 32`` registers rounded up to 256; the register file is split
  over 4 sub-partitions, so an SM holds ``4 * floor(16384 / regs_per_warp)`` warps. A block whose
  warps, rounded up to a multiple of 4, need more than 64K registers cannot launch at all.
* shared memory: a block takes ``static + dynamic + driver reserve`` bytes (the reserve is 1 KB from
  sm_80 on), rounded up to 128 bytes (256 before sm_80), out of the *carveout*: the part of the
  unified L1/shared storage the driver configures as shared memory for the launch.
* blocks: a fixed maximum of resident blocks per SM.
* barriers (sm_90): 2 hardware barriers per block slot, so a block using ``b`` named barriers limits
  the SM to ``64 // b`` blocks. ncu reports this limit capped at the block limit, and so do we.

Which carveout the driver selects (ncu's ``launch__shared_mem_config_size``) is not documented: the
``cudaFuncAttributePreferredSharedMemoryCarveout`` docs only say the preference is "a hint, and the
driver can choose a different ratio if required to execute the function", and a question about it on
NVIDIA's developer forum ("How does the driver calculate the Shared Memory Configuration Size value?")
got no formula. ``cuda_occupancy.h`` sidesteps it by assuming the largest carveout when no preference
is set. This rule, for launches without a carveout hint (``CachePreferNone``), reproduces all five H100
kernels in ``tests/fixtures/ncu-h100`` (driver 580, CUDA 13.0) and the few sm_80/sm_90 ncu reports we
found in public repositories:

    The driver picks the smallest supported carveout that holds ``T`` blocks' shared memory, where
    ``T`` is the number of blocks the other limits (warps, registers, blocks, barriers) allow.
    A kernel that declares no shared memory of its own needs only the driver's reserve; then ``T``
    is the block limit (32 x 1 KB = 32 KB on sm_80/sm_90). When ``T`` blocks do not fit, the
    largest carveout is used.

So the H100 kernel with 4 KB static shared memory and 1024-thread blocks (2 blocks by warps and
registers, 5 KB allocated each) gets a 16 KB carveout and a shared-memory limit of 3, and kernels with
no shared memory get 32 KB and a limit of 32. Public reports from sm_86/sm_89 (and sm_120) parts show the
driver choosing other carveouts, both larger and smaller, so there the carveout is only an estimate;
pass ``carveout_bytes`` (e.g. ncu's value) to use the real one. By construction the estimated carveout
never costs occupancy, but a real one may look like a limit when it is only the driver's choice: that
is why :class:`Occupancy` also reports ``limit_shared_mem_max_carveout``, the limit at the largest
carveout (the figure ``cuda_occupancy.h`` gives). A small ``limit_shared_mem`` is a real constraint only
when the max-carveout figure is small too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from kernelpro.errors import KernelproError

KB = 1024
WARP_SIZE = 32

# Tie order for :attr:`Occupancy.limiter`. Capacity limits come first: when registers or shared memory
# tie with the warp or block limit, relieving them does not raise occupancy.
LIMITER_ORDER = ("warps", "blocks", "registers", "shared_mem", "barriers")


@dataclass(frozen=True)
class ArchLimits:
    """Per-SM resource limits of one compute capability (all memory sizes in bytes)."""

    name: str
    compute_capability: tuple[int, int]
    max_threads_per_block: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    registers_per_sm: int
    max_registers_per_block: int
    max_registers_per_thread: int
    register_allocation_unit: int  # registers, allocated per warp
    register_sub_partitions: int  # a block's warps are rounded up to this for the per-block check
    shared_memory_per_sm: int  # the largest carveout
    max_shared_memory_per_block: int  # without opting in
    max_shared_memory_per_block_optin: int  # with cudaFuncAttributeMaxDynamicSharedMemorySize
    reserved_shared_memory_per_block: int  # taken by the driver from every block
    shared_memory_carveouts: tuple[int, ...]  # the shared-memory sizes the SM can be configured to
    shared_memory_allocation_unit: int
    max_barriers_per_sm: int | None  # None where barriers do not limit occupancy
    warp_size: int = WARP_SIZE

    @property
    def register_allocation_granularity(self) -> str:
        """Registers are allocated per warp on every architecture here."""
        return "warp"


def _kb(*sizes: int) -> tuple[int, ...]:
    return tuple(size * KB for size in sizes)


def _arch(
    name: str,
    cc: tuple[int, int],
    *,
    warps: int,
    blocks: int,
    smem_kb: int,
    carveouts_kb: tuple[int, ...],
    reserve: int,
    unit: int,
    barriers: int | None = None,
) -> ArchLimits:
    return ArchLimits(
        name=name,
        compute_capability=cc,
        max_threads_per_block=1024,
        max_warps_per_sm=warps,
        max_blocks_per_sm=blocks,
        registers_per_sm=65536,
        max_registers_per_block=65536,
        max_registers_per_thread=255,
        register_allocation_unit=256,
        register_sub_partitions=4,
        shared_memory_per_sm=smem_kb * KB,
        max_shared_memory_per_block=48 * KB,
        max_shared_memory_per_block_optin=smem_kb * KB - reserve,
        reserved_shared_memory_per_block=reserve,
        shared_memory_carveouts=_kb(*carveouts_kb),
        shared_memory_allocation_unit=unit,
        max_barriers_per_sm=barriers,
    )


_VOLTA = (0, 8, 16, 32, 64, 96)
_GA100 = (0, 8, 16, 32, 64, 100, 132, 164)
_GA10X = (0, 8, 16, 32, 64, 100)

ARCHES: dict[str, ArchLimits] = {
    a.name: a
    for a in (
        _arch("sm_70", (7, 0), warps=64, blocks=32, smem_kb=96, carveouts_kb=_VOLTA, reserve=0, unit=256),
        _arch("sm_72", (7, 2), warps=64, blocks=32, smem_kb=96, carveouts_kb=_VOLTA, reserve=0, unit=256),
        _arch("sm_75", (7, 5), warps=32, blocks=16, smem_kb=64, carveouts_kb=(32, 64), reserve=0, unit=256),
        _arch("sm_80", (8, 0), warps=64, blocks=32, smem_kb=164, carveouts_kb=_GA100, reserve=KB, unit=128),
        _arch("sm_86", (8, 6), warps=48, blocks=16, smem_kb=100, carveouts_kb=_GA10X, reserve=KB, unit=128),
        _arch("sm_87", (8, 7), warps=48, blocks=16, smem_kb=164, carveouts_kb=_GA100, reserve=KB, unit=128),
        _arch("sm_89", (8, 9), warps=48, blocks=24, smem_kb=100, carveouts_kb=_GA10X, reserve=KB, unit=128),
        _arch(
            "sm_90",
            (9, 0),
            warps=64,
            blocks=32,
            smem_kb=228,
            carveouts_kb=_GA100 + (196, 228),
            reserve=KB,
            unit=128,
            barriers=64,
        ),
    )
}

_ARCH_SPELLING = re.compile(r"(?:sm_?|compute_)?(\d)(\d)[af]?|(\d+)\.(\d+)")


def arch_limits(arch: str) -> ArchLimits:
    """Limits for ``arch``: ``"sm_90"``, ``"sm_90a"``, ``"90"`` and ``"9.0"`` all name CC 9.0."""
    match = _ARCH_SPELLING.fullmatch(arch.strip().lower())
    if match:
        major, minor = (match[1], match[2]) if match[1] else (match[3], match[4])
        limits = ARCHES.get(f"sm_{int(major)}{int(minor)}")
        if limits is not None:
            return limits
    supported = ", ".join(ARCHES)
    raise KernelproError(
        f"unknown or unsupported GPU architecture {arch!r} (supported: {supported})",
        fix=f"name one of {supported} (also accepted: 'sm_90a', '90', '9.0')",
    )


@dataclass(frozen=True)
class Occupancy:
    """Theoretical occupancy of one launch configuration on one SM.

    ``limit_*`` are the blocks per SM each resource alone allows; ``blocks_per_sm`` is their minimum.
    ``limiter`` names the binding one (ties broken in :data:`LIMITER_ORDER`), ``limiters`` all that bind.
    ``limit_shared_mem`` is computed against ``shared_mem_config_bytes``, the carveout the driver selects;
    ``limit_shared_mem_max_carveout`` against the largest carveout (see the module docstring).
    """

    arch: str
    threads_per_block: int
    registers_per_thread: int
    static_shared_bytes: int
    dynamic_shared_bytes: int
    barriers: int
    warps_per_block: int
    registers_per_thread_allocated: int
    registers_per_block_allocated: int
    shared_mem_per_block_allocated: int
    shared_mem_config_bytes: int
    limit_warps: int
    limit_registers: int
    limit_shared_mem: int
    limit_shared_mem_max_carveout: int
    limit_blocks: int
    limit_barriers: int
    blocks_per_sm: int
    active_warps_per_sm: int
    max_warps_per_sm: int
    occupancy: float
    limiter: str
    limiters: tuple[str, ...]
    needs_shared_opt_in: bool  # over 48 KB per block: needs cudaFuncAttributeMaxDynamicSharedMemorySize

    @property
    def shared_bytes(self) -> int:
        """Shared memory the kernel asks for per block (static + dynamic, without the driver's reserve)."""
        return self.static_shared_bytes + self.dynamic_shared_bytes


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def _check_inputs(
    limits: ArchLimits, threads: int, registers: int, static: int, dynamic: int, barriers: int
) -> None:
    where = f"on {limits.name}"
    if not 1 <= threads <= limits.max_threads_per_block:
        raise KernelproError(
            f"block of {threads} threads is outside 1..{limits.max_threads_per_block} {where}",
            fix=f"use at most {limits.max_threads_per_block} threads per block (a multiple of 32)",
        )
    if not 0 <= registers <= limits.max_registers_per_thread:
        raise KernelproError(
            f"{registers} registers per thread is outside 0..{limits.max_registers_per_thread} {where}",
            fix=f"registers per thread is what ptxas reports (-Xptxas -v); it cannot exceed "
            f"{limits.max_registers_per_thread}",
        )
    if static < 0 or dynamic < 0:
        raise KernelproError("shared memory sizes cannot be negative", fix="pass byte counts >= 0")
    if static + dynamic > limits.max_shared_memory_per_block_optin:
        raise KernelproError(
            f"{static + dynamic:,} bytes of shared memory per block exceed the {limits.name} maximum of "
            f"{limits.max_shared_memory_per_block_optin:,} (with the opt-in attribute)",
            fix="shrink the tiles or pipeline stages that live in shared memory",
        )
    if not 0 <= barriers <= 16:
        raise KernelproError(
            f"{barriers} barriers per block is outside 0..16",
            fix="count the named barriers a block uses (IDs 0-15; __syncthreads uses barrier 0)",
        )


def _registers(limits: ArchLimits, warps: int, registers: int) -> tuple[int, int, int]:
    """(blocks per SM allowed by registers, registers allocated per thread, per block)."""
    per_warp = _round_up(registers * limits.warp_size, limits.register_allocation_unit)
    per_block = per_warp * warps
    if per_warp == 0:
        return limits.max_blocks_per_sm, 0, 0  # no registers: no register limit
    checked = per_warp * _round_up(warps, limits.register_sub_partitions)
    if checked > limits.max_registers_per_block or per_block > limits.max_registers_per_block:
        return 0, per_warp // limits.warp_size, per_block
    per_partition = limits.registers_per_sm // limits.register_sub_partitions
    warps_per_sm = (per_partition // per_warp) * limits.register_sub_partitions
    return warps_per_sm // warps, per_warp // limits.warp_size, per_block


def _carveout_at_least(limits: ArchLimits, size: int) -> int:
    """The smallest carveout holding ``size`` bytes, or the largest one."""
    return next((c for c in limits.shared_memory_carveouts if c >= size), limits.shared_memory_carveouts[-1])


def _evaluate(
    limits: ArchLimits,
    threads: int,
    registers: int,
    static: int,
    dynamic: int,
    barriers: int,
    carveout_bytes: int | None,
) -> Occupancy:
    warps = math.ceil(threads / limits.warp_size)
    limit_warps = limits.max_warps_per_sm // warps
    limit_blocks = limits.max_blocks_per_sm
    limit_registers, regs_thread_alloc, regs_block_alloc = _registers(limits, warps, registers)
    limit_barriers = limit_blocks
    if limits.max_barriers_per_sm is not None and barriers > 0:
        limit_barriers = min(limit_blocks, limits.max_barriers_per_sm // barriers)

    requested = static + dynamic
    smem_alloc = requested + limits.reserved_shared_memory_per_block
    smem_alloc = _round_up(smem_alloc, limits.shared_memory_allocation_unit) if smem_alloc else 0
    if carveout_bytes is None:
        # The driver's choice; see the module docstring.
        target = (
            limit_blocks
            if requested == 0
            else min(limit_warps, limit_registers, limit_blocks, limit_barriers)
        )
        config = _carveout_at_least(limits, max(target, 1) * smem_alloc)
    else:
        config = _carveout_at_least(limits, max(carveout_bytes, smem_alloc))
    if smem_alloc:
        limit_shared = config // smem_alloc
        limit_shared_max = limits.shared_memory_per_sm // smem_alloc
    else:
        limit_shared = limit_shared_max = limit_blocks

    limits_by_name = {
        "warps": limit_warps,
        "blocks": limit_blocks,
        "registers": limit_registers,
        "shared_mem": limit_shared,
        "barriers": limit_barriers,
    }
    blocks = min(limits_by_name.values())
    binding = tuple(name for name in LIMITER_ORDER if limits_by_name[name] == blocks)
    return Occupancy(
        arch=limits.name,
        threads_per_block=threads,
        registers_per_thread=registers,
        static_shared_bytes=static,
        dynamic_shared_bytes=dynamic,
        barriers=barriers,
        warps_per_block=warps,
        registers_per_thread_allocated=regs_thread_alloc,
        registers_per_block_allocated=regs_block_alloc,
        shared_mem_per_block_allocated=smem_alloc,
        shared_mem_config_bytes=config,
        limit_warps=limit_warps,
        limit_registers=limit_registers,
        limit_shared_mem=limit_shared,
        limit_shared_mem_max_carveout=limit_shared_max,
        limit_blocks=limit_blocks,
        limit_barriers=limit_barriers,
        blocks_per_sm=blocks,
        active_warps_per_sm=blocks * warps,
        max_warps_per_sm=limits.max_warps_per_sm,
        occupancy=blocks * warps / limits.max_warps_per_sm,
        limiter=binding[0],
        limiters=binding,
        needs_shared_opt_in=requested > limits.max_shared_memory_per_block,
    )


def _max_registers_for_block(limits: ArchLimits, warps: int) -> int:
    """The most registers per thread with which a block of ``warps`` warps can still launch."""
    per_warp = limits.max_registers_per_block // _round_up(warps, limits.register_sub_partitions)
    per_warp -= per_warp % limits.register_allocation_unit
    return min(limits.max_registers_per_thread, per_warp // limits.warp_size)


def compute_occupancy(
    arch: str,
    threads_per_block: int,
    registers_per_thread: int,
    static_shared_bytes: int = 0,
    dynamic_shared_bytes: int = 0,
    barriers: int = 1,
    *,
    carveout_bytes: int | None = None,
) -> Occupancy:
    """Theoretical occupancy of a launch on ``arch``.

    ``barriers`` is the number of named barriers a block uses (``__syncthreads`` uses one; ncu reports it
    as ``launch__barrier_count``). ``carveout_bytes`` is the shared-memory carveout in effect, e.g. ncu's
    ``launch__shared_mem_config_size``; by default it is the driver's choice as estimated in the module
    docstring. Sizes between supported carveouts round up to the next one.

    Raises :class:`KernelproError` for a configuration that cannot launch: too many threads, registers
    or shared memory per block, or a block whose registers exceed the SM's register file.
    """
    limits = arch_limits(arch)
    _check_inputs(
        limits, threads_per_block, registers_per_thread, static_shared_bytes, dynamic_shared_bytes, barriers
    )
    if carveout_bytes is not None and carveout_bytes < 0:
        raise KernelproError("the carveout cannot be negative", fix="pass a size in bytes, or None")
    result = _evaluate(
        limits,
        threads_per_block,
        registers_per_thread,
        static_shared_bytes,
        dynamic_shared_bytes,
        barriers,
        carveout_bytes,
    )
    if result.limit_registers == 0:
        cap = _max_registers_for_block(limits, result.warps_per_block)
        raise KernelproError(
            f"a block of {threads_per_block} threads x {registers_per_thread} registers needs "
            f"{result.registers_per_block_allocated:,} registers, more than the "
            f"{limits.max_registers_per_block:,} a block can have on {limits.name}; the launch fails with "
            "'too many resources requested'",
            fix=f"cap registers at {cap} with __launch_bounds__({threads_per_block}) or -maxrregcount={cap}, "
            "or launch smaller blocks",
        )
    return result


@dataclass(frozen=True)
class WhatIfRow:
    """Occupancy after changing one thing about the launch: ``change`` goes from ``before`` to ``after``."""

    change: str  # "block_size", "registers" or "shared_mem" (bytes per block, static + dynamic)
    before: int
    after: int
    current: Occupancy
    occupancy: Occupancy

    @property
    def text(self) -> str:
        """E.g. ``registers 72 -> 64: 24 -> 32 warps/SM (37.5% -> 50.0%), 4 blocks, limited by warps``."""
        old, new = self.current, self.occupancy
        return (
            f"{self.change} {self.before} -> {self.after}: "
            f"{old.active_warps_per_sm} -> {new.active_warps_per_sm} warps/SM "
            f"({old.occupancy:.1%} -> {new.occupancy:.1%}), {new.blocks_per_sm} blocks, "
            f"limited by {new.limiter}"
        )


BLOCK_SIZES = (64, 128, 192, 256, 384, 512, 768, 1024)


def _register_rows(limits: ArchLimits, base: Occupancy, args: tuple[int, int, int, int]) -> list[WhatIfRow]:
    threads, static, dynamic, barriers = args
    step = limits.register_allocation_unit // limits.warp_size  # 8 registers: one allocation step

    def at(regs: int) -> Occupancy:
        return _evaluate(limits, threads, regs, static, dynamic, barriers, None)

    rows = []
    best = base.blocks_per_sm
    # Fewer registers: the largest count reaching each higher block count.
    for regs in range(_round_up(base.registers_per_thread, step) - step, 0, -step):
        result = at(regs)
        if result.blocks_per_sm > best:
            rows.append(WhatIfRow("registers", base.registers_per_thread, regs, base, result))
            best = result.blocks_per_sm
    # More registers: the headroom before occupancy drops.
    ceiling = base.registers_per_thread
    for regs in range(
        _round_up(base.registers_per_thread + 1, step), limits.max_registers_per_thread + step, step
    ):
        regs = min(regs, limits.max_registers_per_thread)
        if at(regs).blocks_per_sm < base.blocks_per_sm:
            break
        ceiling = regs
    if ceiling > base.registers_per_thread:
        rows.append(WhatIfRow("registers", base.registers_per_thread, ceiling, base, at(ceiling)))
    return rows


def _shared_rows(limits: ArchLimits, base: Occupancy, args: tuple[int, int, int]) -> list[WhatIfRow]:
    threads, registers, barriers = args
    requested = base.shared_bytes
    reserve, unit = limits.reserved_shared_memory_per_block, limits.shared_memory_allocation_unit
    others = min(base.limit_warps, base.limit_registers, base.limit_blocks, base.limit_barriers)

    def at(size: int) -> Occupancy:
        return _evaluate(limits, threads, registers, size, 0, barriers, None)

    def largest_for(blocks: int) -> int:
        per_block = limits.shared_memory_per_sm // blocks // unit * unit - reserve
        return min(per_block, limits.max_shared_memory_per_block_optin)

    rows = []
    for blocks in range(base.blocks_per_sm + 1, others + 1):
        size = largest_for(blocks)
        if size < 0:
            break
        rows.append(WhatIfRow("shared_mem", requested, size, base, at(size)))
    rows = rows[:2] + rows[-1:] if len(rows) > 3 else rows  # the next steps and the full relief
    if base.blocks_per_sm > 0:
        headroom = largest_for(base.blocks_per_sm)
        if headroom > requested:
            rows.append(WhatIfRow("shared_mem", requested, headroom, base, at(headroom)))
    return rows


def what_if(
    arch: str,
    threads_per_block: int,
    registers_per_thread: int,
    static_shared_bytes: int = 0,
    dynamic_shared_bytes: int = 0,
    barriers: int = 1,
) -> list[WhatIfRow]:
    """Occupancy of nearby alternatives to a launch, one change at a time (each row also holds the
    launch's own occupancy as ``current``). With everything else unchanged:

    * ``block_size``: each of :data:`BLOCK_SIZES` other than the current one (a block size whose
      registers do not fit shows 0 blocks, limited by registers);
    * ``registers``: for each higher block count that fewer registers reach, the largest register count
      that reaches it, then the most registers the kernel could use without losing occupancy;
    * ``shared_mem`` (total per block): the same for shared memory, at most three steps, then the
      headroom.

    Shared memory is evaluated at the driver's carveout choice, which (see the module docstring) never
    costs occupancy unless even the largest carveout is too small.
    """
    base = compute_occupancy(
        arch, threads_per_block, registers_per_thread, static_shared_bytes, dynamic_shared_bytes, barriers
    )
    limits = arch_limits(arch)
    rows = []
    for size in BLOCK_SIZES:
        if size != threads_per_block and size <= limits.max_threads_per_block:
            result = _evaluate(
                limits, size, registers_per_thread, static_shared_bytes, dynamic_shared_bytes, barriers, None
            )
            rows.append(WhatIfRow("block_size", threads_per_block, size, base, result))
    rows += _register_rows(
        limits, base, (threads_per_block, static_shared_bytes, dynamic_shared_bytes, barriers)
    )
    rows += _shared_rows(limits, base, (threads_per_block, registers_per_thread, barriers))
    return rows
