"""The occupancy calculator: ncu's own figures for five H100 kernels, and hand-worked textbook cases."""

from pathlib import Path

import pytest

from kernelpro.errors import KernelproError
from kernelpro.ncu import load_raw_csv
from kernelpro.occupancy import ARCHES, arch_limits, compute_occupancy, what_if

FIXTURE = Path(__file__).parent / "fixtures" / "ncu-h100" / "planted_raw.csv"
H100_KERNELS = load_raw_csv(FIXTURE)
KB = 1024


def _from_ncu(kernel, **kwargs):
    return compute_occupancy(
        "sm_90",
        kernel.number("launch__block_size"),
        kernel.number("launch__registers_per_thread"),
        kernel.number("launch__shared_mem_per_block_static"),
        kernel.number("launch__shared_mem_per_block_dynamic"),
        kernel.number("launch__barrier_count"),
        **kwargs,
    )


@pytest.mark.parametrize("kernel", H100_KERNELS, ids=[k.name for k in H100_KERNELS])
def test_reproduces_ncu_on_h100(kernel) -> None:
    occ = _from_ncu(kernel)
    assert occ.limit_registers == kernel.number("launch__occupancy_limit_registers")
    assert occ.limit_shared_mem == kernel.number("launch__occupancy_limit_shared_mem")
    assert occ.limit_warps == kernel.number("launch__occupancy_limit_warps")
    assert occ.limit_blocks == kernel.number("launch__occupancy_limit_blocks")
    assert occ.limit_barriers == kernel.number("launch__occupancy_limit_barriers")
    assert occ.shared_mem_config_bytes == kernel.number("launch__shared_mem_config_size")
    assert occ.registers_per_thread_allocated == kernel.number("launch__registers_per_thread_allocated")
    assert occ.shared_mem_per_block_allocated == kernel.number("launch__shared_mem_per_block_allocated")
    # Theoretical occupancy, as warps and as a percentage.
    assert occ.active_warps_per_sm == kernel.number("sm__maximum_warps_avg_per_active_cycle")
    assert occ.occupancy * 100 == pytest.approx(kernel.number("sm__maximum_warps_per_active_cycle_pct"))


def test_sm90_limits_match_the_h100_device_attributes() -> None:
    h100, sm90 = H100_KERNELS[0], arch_limits("sm_90")
    assert sm90.max_blocks_per_sm == h100.number("device__attribute_max_blocks_per_multiprocessor")
    assert sm90.max_warps_per_sm == h100.number("device__attribute_max_warps_per_multiprocessor")
    assert sm90.max_threads_per_block == h100.number("device__attribute_max_threads_per_block")
    assert sm90.registers_per_sm == h100.number("device__attribute_max_registers_per_multiprocessor")
    assert sm90.max_registers_per_block == h100.number("device__attribute_max_registers_per_block")
    assert sm90.max_registers_per_thread == h100.number("device__attribute_max_registers_per_thread")
    assert sm90.shared_memory_per_sm == h100.number("device__attribute_max_shared_memory_per_multiprocessor")
    assert sm90.max_shared_memory_per_block == h100.number("device__attribute_max_shared_memory_per_block")
    assert sm90.max_shared_memory_per_block_optin == h100.number(
        "device__attribute_max_shared_memory_per_block_optin"
    )
    reserved = h100.number("device__attribute_reserved_shared_memory_per_block")
    assert sm90.reserved_shared_memory_per_block == reserved


def test_driver_carveout_is_not_the_real_shared_memory_limit() -> None:
    bank = next(k for k in H100_KERNELS if k.name == "k_bank_conflict")
    occ = _from_ncu(bank)
    # 4096 B static + 1024 B reserve = 5120 B/block. Warps and registers allow 2 blocks (10,240 B), so the
    # driver picks the smallest carveout holding them, 16 KB, which fits 3. The largest carveout
    # (228 KB = 233,472 B) would fit 45.
    assert (occ.shared_mem_config_bytes, occ.limit_shared_mem) == (16 * KB, 3)
    assert occ.limit_shared_mem_max_carveout == 45
    assert occ.limiters == ("warps", "registers")
    assert occ.limiter == "warps"


def test_explicit_carveout() -> None:
    bank = next(k for k in H100_KERNELS if k.name == "k_bank_conflict")
    assert _from_ncu(bank, carveout_bytes=bank.number("launch__shared_mem_config_size")).limit_shared_mem == 3
    assert _from_ncu(bank, carveout_bytes=100 * KB).limit_shared_mem == 20  # 102,400 // 5,120
    # Between supported sizes: rounds up to the next one (40 KB -> 64 KB, 65,536 // 5,120 = 12).
    assert _from_ncu(bank, carveout_bytes=40 * KB).shared_mem_config_bytes == 64 * KB
    # Too small for one block: the driver must grow it to at least 8 KB, which holds only 1 block.
    tiny = _from_ncu(bank, carveout_bytes=0)
    assert (tiny.shared_mem_config_bytes, tiny.blocks_per_sm, tiny.limiter) == (8 * KB, 1, "shared_mem")


def test_public_h100_report_with_12kb_static_shared() -> None:
    # From the ncu output quoted in the README of github.com/ashvardanian/ScalingElections (H100, CC 9.0):
    # 1024 threads, 31 registers, 12.29 KB static shared, config 32.77 KB; limits: registers 2, shared 2,
    # warps 2. Per block 12,288 + 1,024 = 13,312 B; 2 blocks need 26,624 B -> the 32 KB carveout.
    occ = compute_occupancy("sm_90", 1024, 31, static_shared_bytes=12 * KB)
    assert (occ.shared_mem_config_bytes, occ.limit_shared_mem) == (32 * KB, 2)
    assert (occ.limit_registers, occ.limit_warps, occ.blocks_per_sm) == (2, 2, 2)


def test_sm80_register_limited() -> None:
    # 64 regs x 32 lanes = 2,048 registers per warp; 65,536 / 4 sub-partitions = 16,384 each, which hold
    # 8 warps: 32 warps per SM = 4 blocks of 8 warps. Warps alone would allow 64 / 8 = 8 blocks.
    occ = compute_occupancy("sm_80", 256, 64)
    assert (occ.limit_registers, occ.limit_warps, occ.limit_blocks) == (4, 8, 32)
    assert (occ.blocks_per_sm, occ.active_warps_per_sm, occ.occupancy) == (4, 32, 0.5)
    assert occ.limiter == "registers"
    assert occ.registers_per_block_allocated == 16384


def test_sm80_48kb_static_shared_memory() -> None:
    # 49,152 + 1,024 reserve = 50,176 B (a multiple of 128). The largest sm_80 carveout, 164 KB = 167,936 B,
    # holds 3 such blocks; 32 regs (1,024/warp -> 16 warps per sub-partition) would allow 8 blocks.
    occ = compute_occupancy("sm_80", 256, 32, static_shared_bytes=48 * KB)
    assert occ.shared_mem_per_block_allocated == 50176
    assert (occ.limit_shared_mem, occ.limit_shared_mem_max_carveout, occ.limit_registers) == (3, 3, 8)
    assert occ.shared_mem_config_bytes == 164 * KB
    assert (occ.blocks_per_sm, occ.active_warps_per_sm, occ.limiter) == (3, 24, "shared_mem")
    assert occ.occupancy == pytest.approx(0.375)
    assert not occ.needs_shared_opt_in  # exactly 48 KB needs no opt-in
    assert compute_occupancy("sm_80", 256, 32, 48 * KB, dynamic_shared_bytes=1).needs_shared_opt_in


def test_sm75_96_thread_blocks_are_warp_limited() -> None:
    # 96 threads = 3 warps; Turing holds 32 warps per SM: 10 blocks (30 warps, 93.75%), under its 16-block
    # cap. 32 regs: 16 warps per sub-partition, 64 per SM, 21 blocks. No shared memory and no driver
    # reserve before sm_80, so shared memory does not limit (reported as the block limit, as ncu does).
    occ = compute_occupancy("sm_75", 96, 32)
    assert (occ.limit_warps, occ.limit_registers, occ.limit_blocks, occ.limit_shared_mem) == (10, 21, 16, 16)
    assert (occ.blocks_per_sm, occ.active_warps_per_sm, occ.limiter) == (10, 30, "warps")
    assert occ.occupancy == pytest.approx(30 / 32)
    assert occ.shared_mem_per_block_allocated == 0
    assert occ.shared_mem_config_bytes == 32 * KB  # Turing's smaller carveout


def test_sm86_block_of_1024_wastes_a_third_of_the_sm() -> None:
    # 48 warps per SM: one 32-warp block fits (67%), two 24-warp blocks fill it.
    assert compute_occupancy("sm_86", 1024, 32).occupancy == pytest.approx(32 / 48)
    assert compute_occupancy("sm_86", 768, 32).occupancy == 1.0


def test_allocation_rounding() -> None:
    # 31 regs -> 992 per warp -> 1,024 (32/thread); 33 -> 1,056 -> 1,280 (40/thread).
    assert compute_occupancy("sm_90", 128, 31).registers_per_thread_allocated == 32
    assert compute_occupancy("sm_90", 128, 33).registers_per_thread_allocated == 40
    # 1 byte of shared memory: 1,024 reserve + 1 -> 1,152 on sm_80 (128 B units); 256 on sm_70 (no reserve).
    assert compute_occupancy("sm_80", 128, 32, 1).shared_mem_per_block_allocated == 1152
    assert compute_occupancy("sm_70", 128, 32, 1).shared_mem_per_block_allocated == 256


def test_volta_without_shared_memory() -> None:
    # Nothing to allocate: no shared-memory limit, and the estimated carveout is the smallest (0 KB).
    occ = compute_occupancy("sm_70", 128, 32)
    assert (occ.shared_mem_per_block_allocated, occ.limit_shared_mem) == (0, 32)
    assert occ.shared_mem_config_bytes == 0


def test_barriers_limit_blocks_on_sm90_only() -> None:
    # sm_90 has 2 barriers per block slot (64); 3 barriers per block -> 21 blocks. 64 threads = 2 warps
    # (32 blocks by warps), 16 regs (64 blocks by registers).
    occ = compute_occupancy("sm_90", 64, 16, barriers=3)
    assert (occ.limit_barriers, occ.blocks_per_sm, occ.limiter) == (21, 21, "barriers")
    assert compute_occupancy("sm_90", 64, 16, barriers=1).limit_barriers == 32  # capped at the block limit
    assert compute_occupancy("sm_80", 64, 16, barriers=3).blocks_per_sm == 32


def test_block_whose_registers_do_not_fit_cannot_launch() -> None:
    # 72 regs -> 2,304 per warp x 32 warps = 73,728 > 65,536. 64 regs (2,048 x 32 = 65,536) fit.
    with pytest.raises(KernelproError, match="73,728 registers") as error:
        compute_occupancy("sm_90", 1024, 72)
    assert "-maxrregcount=64" in error.value.fix
    assert "__launch_bounds__(1024)" in error.value.fix
    assert compute_occupancy("sm_90", 1024, 64).blocks_per_sm == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((1025, 32), {}, "1025 threads is outside 1..1024"),
        ((0, 32), {}, "0 threads"),
        ((256, 256), {}, "256 registers per thread is outside 0..255"),
        ((256, 32), {"static_shared_bytes": 227 * KB + 1}, "232,449 bytes of shared memory"),
        ((256, 32), {"dynamic_shared_bytes": -1}, "cannot be negative"),
        ((256, 32), {"barriers": 17}, "17 barriers"),
    ],
)
def test_invalid_launches_raise(args, kwargs, words) -> None:
    with pytest.raises(KernelproError, match=words) as error:
        compute_occupancy("sm_90", *args, **kwargs)
    assert error.value.fix


def test_largest_shared_memory_block_fits_once() -> None:
    occ = compute_occupancy("sm_90", 128, 32, dynamic_shared_bytes=227 * KB)
    assert (occ.shared_mem_per_block_allocated, occ.blocks_per_sm) == (228 * KB, 1)


@pytest.mark.parametrize("spelling", ["sm_90", "sm_90a", "SM_90", "sm90", "90", "90a", "9.0", "compute_90"])
def test_arch_spellings(spelling) -> None:
    assert arch_limits(spelling).name == "sm_90"


def test_every_listed_arch_resolves() -> None:
    assert list(ARCHES) == ["sm_70", "sm_72", "sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90"]
    assert arch_limits("8.6").max_warps_per_sm == 48
    assert arch_limits("89").max_blocks_per_sm == 24


@pytest.mark.parametrize("bad", ["sm_100", "sm_61", "hopper", ""])
def test_unknown_arch_lists_the_supported_ones(bad) -> None:
    supported = "supported: sm_70, sm_72, sm_75, sm_80, sm_86, sm_87, sm_89, sm_90"
    with pytest.raises(KernelproError, match=supported):
        arch_limits(bad)


def test_what_if_register_steps() -> None:
    # sm_90, 256 threads (8 warps), 72 regs: 2,304/warp -> 7 warps per sub-partition -> 28 warps -> 3 blocks.
    #   64 -> 2,048 -> 8 -> 32 warps -> 4 blocks     56 -> 1,792 -> 9 -> 36 -> 4 (no gain, not listed)
    #   48 -> 1,536 -> 10 -> 40 -> 5 blocks          40 -> 1,280 -> 12 -> 48 -> 6 blocks
    #   32 -> 1,024 -> 16 -> 64 -> 8 blocks (now the warp limit)
    #   headroom: 80 -> 2,560 -> 6 -> 24 -> 3 blocks; 88 -> 2,816 -> 5 -> 20 -> 2.
    rows = [r for r in what_if("sm_90", 256, 72) if r.change == "registers"]
    assert [(r.after, r.occupancy.blocks_per_sm, r.occupancy.active_warps_per_sm) for r in rows] == [
        (64, 4, 32),
        (48, 5, 40),
        (40, 6, 48),
        (32, 8, 64),
        (80, 3, 24),
    ]
    assert rows[0].current.active_warps_per_sm == 24
    assert rows[0].text == (
        "registers 72 -> 64: 24 -> 32 warps/SM (37.5% -> 50.0%), 4 blocks, limited by registers"
    )
    assert rows[3].occupancy.limiter == "warps"


def test_what_if_block_sizes() -> None:
    rows = {r.after: r.occupancy for r in what_if("sm_90", 256, 72) if r.change == "block_size"}
    assert sorted(rows) == [64, 128, 192, 384, 512, 768, 1024]
    # 28 register-limited warps: 2-warp blocks use all 28, 16-warp blocks only 16, 32-warp blocks none.
    assert rows[64].active_warps_per_sm == 28
    assert rows[512].active_warps_per_sm == 16
    assert (rows[1024].blocks_per_sm, rows[1024].limiter) == (0, "registers")


def test_what_if_shared_memory_steps() -> None:
    # sm_90, 128 threads, 40 regs, 48 KB static: 50,176 B/block, 233,472 // 50,176 = 4 blocks (16 warps).
    # Warps allow 16 blocks and registers 12 (1,280/warp -> 12 warps per sub-partition -> 48 warps).
    # Block b needs floor(233,472 / b) rounded down to 128, minus the 1,024 reserve:
    #   5 -> 46,592 - 1,024 = 45,568    6 -> 38,912 - 1,024 = 37,888    12 -> 19,456 - 1,024 = 18,432
    #   headroom at 4 blocks: 58,368 - 1,024 = 57,344
    rows = [r for r in what_if("sm_90", 128, 40, static_shared_bytes=48 * KB) if r.change == "shared_mem"]
    assert [(r.before, r.after, r.occupancy.blocks_per_sm) for r in rows] == [
        (49152, 45568, 5),
        (49152, 37888, 6),
        (49152, 18432, 12),
        (49152, 57344, 4),
    ]
    assert rows[2].occupancy.limiter == "registers"


def test_what_if_shared_headroom_without_shared_memory() -> None:
    # Nothing to cut; 3 register-limited blocks could each take 233,472 // 3 = 77,824 - 1,024 = 76,800 B.
    rows = [r for r in what_if("sm_90", 256, 72) if r.change == "shared_mem"]
    assert [(r.after, r.occupancy.blocks_per_sm) for r in rows] == [(76800, 3)]
